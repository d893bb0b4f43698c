"""Logprobs in OpenAI's two shapes, added to a response shape's chunks.

Chat (`logprobs: true`, `top_logprobs: n`): `choices[].logprobs` is
`{"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}], "refusal": null}`.
Completions (`logprobs: n`, the legacy form): `{"tokens", "token_logprobs",
"top_logprobs": [{text: logprob}], "text_offset"}`, where each top dict also
holds the chosen token, as OpenAI's does. Streamed, each chunk carries the
tokens whose text it carries; a token with no text of its own (half a UTF-8
character) rides on the next chunk that has some.

The numbers come from the generation (GenerateOptions.logprobs, described in
localspec/generate.py). A token the sampling filters gave no chance has
-inf there; JSON has no -inf, so it is written as -9999.0, as OpenAI does.
"""

from __future__ import annotations

import ctypes
import functools
import math
from typing import Any, Callable, Sequence

import llama_cpp

from localspec.backend import Model
from localspec.events import EmittedToken

NO_CHANCE = -9999.0


def token_bytes_of(model: Model) -> Callable[[int], bytes]:
    """A token's bytes, safe to call on the event loop while the engine thread
    decodes (Model.piece shares one buffer with the engine's text stream)."""

    @functools.lru_cache(maxsize=65536)
    def token_bytes(token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(model.vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(model.vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]

    return token_bytes


def _lp(x: float) -> float:
    return x if x > -math.inf else NO_CHANCE


class WithLogprobs:
    """Wraps a response shape (server/app.py's ChatShape or CompletionShape)
    and fills the `logprobs` of its choices; everything else is the shape's."""

    def __init__(self, shape: Any, token_bytes: Callable[[int], bytes], legacy: bool):
        self.shape = shape
        self.token_bytes = token_bytes
        self.legacy = legacy
        self.pending: list[EmittedToken] = []
        self.offset = 0  # characters of text before the pending tokens (legacy text_offset)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.shape, name)

    def step(self, text: str, tokens: Sequence[EmittedToken]) -> list[dict]:
        self.pending.extend(tokens)
        return self._attach(self.shape.step(text, ()))

    def closing(self, done: tuple) -> list[dict]:
        return self._attach(self.shape.closing(done))

    def whole(self, done: tuple) -> dict:
        body = self.shape.whole(done)
        body["choices"][0]["logprobs"] = self.block(done[1].released)
        return body

    def _attach(self, chunks: list[dict]) -> list[dict]:
        for chunk in chunks:
            if chunk.get("choices") and self.pending:
                chunk["choices"][0]["logprobs"] = self.block(self.pending)
                self.pending = []
                break
        return chunks

    def block(self, tokens: Sequence[EmittedToken]) -> dict:
        return self._legacy(tokens) if self.legacy else self._chat(tokens)

    def _text(self, token: int) -> str:
        return self.token_bytes(token).decode("utf-8", errors="replace")

    def _entry(self, token: int, logprob: float) -> dict:
        return {"token": self._text(token), "logprob": _lp(logprob), "bytes": list(self.token_bytes(token))}

    def _chat(self, tokens: Sequence[EmittedToken]) -> dict:
        content = []
        for t in tokens:
            entry = self._entry(t.id, t.logprob)
            entry["top_logprobs"] = [self._entry(alt, lp) for alt, lp in t.top_logprobs]
            content.append(entry)
        return {"content": content, "refusal": None}

    def _legacy(self, tokens: Sequence[EmittedToken]) -> dict:
        out: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for t in tokens:
            text = self._text(t.id)
            top = {self._text(alt): _lp(lp) for alt, lp in t.top_logprobs}
            top.setdefault(text, _lp(t.logprob))
            out["tokens"].append(text)
            out["token_logprobs"].append(_lp(t.logprob))
            out["top_logprobs"].append(top)
            out["text_offset"].append(self.offset)
            self.offset += len(text)
        return out
