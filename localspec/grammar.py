"""Constrained output: GBNF grammars through llama.cpp's own grammar machinery.

How a caller constrains a reply: put GBNF text (with a `root` rule) in
`GenerateOptions.grammar`; `schema_to_gbnf` turns a JSON schema into one and
`JSON_OBJECT_GBNF` accepts any JSON object. The generation compiles it with
`Grammar` (a `LocalspecError` with llama.cpp's reason if it cannot) and the
verifier masks every row it reads with it (localspec/verify.py,
`verify_constrained_*`).

`Grammar` wraps llama.cpp's grammar sampler (`llama_sampler_init_grammar`):
`llama_sampler_apply` sets the logit of every token the grammar forbids in
its current state to -inf, `llama_sampler_accept` advances the state by one
token. The state only ever advances on tokens the verifier emitted, so it
never needs to be rolled back. llama.cpp throws (and so aborts the process)
when it is made to accept a token the grammar forbids: callers accept only
tokens a mask allowed.

Masking a whole 152k vocabulary decodes every token's text against the parse
stacks, which costs milliseconds; a single token costs microseconds. So the
greedy verifier asks first whether the best token is allowed and masks more
only when it is not (`allowed_among` the best few, then all).

The JSON-schema conversion is llama.cpp's own converter as llama-cpp-python
ships it (`llama_cpp.llama_grammar`), with two of its rules brought up to
the C++ converter that llama-server uses (vendor/llama.cpp/common/
json-schema-to-grammar.cpp): a string character excludes control characters
(the Python copy lets a raw newline into a string, which is not JSON), and
the space between tokens may be a line break and indentation, as models
write JSON.
"""

from __future__ import annotations

import ctypes
import json
import re

import llama_cpp
import numpy as np
from llama_cpp.llama_grammar import json_schema_to_gbnf

from localspec.backend import Model, llama_errors
from localspec.errors import LocalspecError
from localspec.reasoning import END, Reasoning

# The rules of llama-cpp-python's copy of the converter, and llama.cpp's (C++) for them.
_RULE_FIXES = {
    "char": (
        r'[^"\\] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])',
        r'[^"\\\x7F\x00-\x1F] | [\\] (["\\bfnrt] | "u" [0-9a-fA-F]{4})',
    ),
    "space": ('" "?', r'| " " | "\n"{1,2} [ \t]{0,20}'),
}


def schema_to_gbnf(schema: dict) -> str:
    """GBNF (with a `root` rule) for the JSON documents `schema` allows."""
    if not isinstance(schema, dict):
        raise LocalspecError(f"a JSON schema must be an object, got {type(schema).__name__}")
    try:
        text = json_schema_to_gbnf(json.dumps(schema))
    except Exception as e:  # the converter asserts, and fails in its own ways on odd input
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise LocalspecError(f"the JSON schema cannot be turned into a grammar: {reason}") from None
    lines = []
    for line in text.splitlines():
        name, sep, body = line.partition(" ::= ")
        old_new = _RULE_FIXES.get(name)
        if sep and old_new and body == old_new[0]:
            line = f"{name} ::= {old_new[1]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


JSON_OBJECT_GBNF = schema_to_gbnf({"type": "object"})

_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
assert _TOKEN_DATA.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)


class Grammar:
    """A compiled grammar over `model`'s vocabulary, and how far it has parsed."""

    def __init__(self, model: Model, text: str, root: str = "root"):
        if not text or not text.strip():
            raise LocalspecError("the grammar is empty")
        self.model = model
        self.text = text
        self.root = root
        with llama_errors() as errors:
            ptr = llama_cpp.llama_sampler_init_grammar(model.vocab, text.encode("utf-8"), root.encode("utf-8"))
        if not ptr:
            raise LocalspecError(f"llama.cpp cannot compile the grammar: {_reason(errors)}")
        self._ptr = ptr
        self._all = _TokenData(model.n_vocab)
        self._all.data["id"] = np.arange(model.n_vocab, dtype=np.int32)
        self._some = _TokenData(0)

    def allowed(self, token: int) -> bool:
        """Whether the grammar, in its current state, allows `token` next."""
        return bool(self.allowed_among(np.array([token]))[0])

    def allowed_among(self, tokens: np.ndarray) -> np.ndarray:
        """A bool per token in `tokens`: allowed next."""
        n = len(tokens)
        if n > len(self._some.data):
            self._some = _TokenData(max(n, 2 * len(self._some.data)))
        data = self._some.data[:n]
        data["id"] = tokens
        data["logit"] = 0.0
        self._some.apply(self._ptr, n)
        return data["logit"] == 0.0

    def mask(self) -> np.ndarray:
        """A bool per vocabulary token: allowed next (the costly, whole-vocabulary call)."""
        data = self._all.data
        data["logit"] = 0.0
        self._all.apply(self._ptr, len(data))
        return data["logit"] == 0.0

    def accept(self, token: int) -> None:
        """Advance past `token`, which a mask (or `allowed`) has just allowed."""
        llama_cpp.llama_sampler_accept(self._ptr, token)

    def reset(self) -> None:
        """Back to the start of the grammar."""
        llama_cpp.llama_sampler_reset(self._ptr)

    def close(self) -> None:
        if getattr(self, "_ptr", None):
            llama_cpp.llama_sampler_free(self._ptr)
            self._ptr = None

    def __del__(self) -> None:
        self.close()


class LazyGrammar:
    """A grammar that holds the reply only from where its text first matches
    `trigger` (a regex), as llama-server's tool-call grammars under
    tool_choice auto: before that every token is allowed.

    On the match, the text from the match's start to the end of the reply so
    far (the trigger's own token may run past it) is tokenized afresh and fed
    to the grammar, each token checked first: a grammar parses text, so any
    tokenization of the same text leaves it in the same state. When the
    grammar refuses that text, the reply stays free to the end, rather than
    being forced into what it had not begun. (llama.cpp's own lazy sampler
    replays the text unchecked and aborts the process when the grammar
    refuses it.)

    With `reasoning` (localspec.reasoning.Reasoning), the trigger is looked
    for in the answer only: a model may name a call while it thinks."""

    _LOOKBACK = 64  # bytes before the newest token a match may start in, past the trigger's own length

    def __init__(self, model: Model, text: str, trigger: str, root: str = "root", reasoning: Reasoning | None = None):
        self.model = model
        self.reasoning = reasoning
        self.inner = Grammar(model, text, root)
        try:
            self.trigger = re.compile(trigger.encode("utf-8"))
        except re.error as e:
            raise LocalspecError(f"the grammar's trigger is not a regex: {e}") from None
        self._lookback = self._LOOKBACK + len(trigger.encode("utf-8"))
        self.reset()

    @property
    def held(self) -> bool:
        return self.state == "held"

    def allowed(self, token: int) -> bool:
        return self.inner.allowed(token) if self.held else True

    def allowed_among(self, tokens: np.ndarray) -> np.ndarray:
        return self.inner.allowed_among(tokens) if self.held else np.ones(len(tokens), dtype=bool)

    def mask(self) -> np.ndarray:
        return self.inner.mask() if self.held else np.ones(self.model.n_vocab, dtype=bool)

    def accept(self, token: int) -> None:
        if self.state == "held":
            self.inner.accept(token)
            return
        if self.state == "free":
            return
        piece = self.model.piece(token, special=True)
        if self._split is not None and not self._split.answering:
            # Only the answer is searched; it begins with the bytes after the tag.
            self._split.push(piece.decode("utf-8", "replace"))  # (the tags are ASCII)
            self._thought += piece
            if not self._split.answering:
                return
            end = self._thought.find(END.encode()) if self._split.thought else -1
            piece = bytes(self._thought[end + len(END) :] if end >= 0 else self._thought)
        self._text += piece
        m = self.trigger.search(self._text, max(0, len(self._text) - len(piece) - self._lookback))
        if m:
            self._start(bytes(self._text[m.start() :]))

    def _start(self, text: bytes) -> None:
        self.state = "free"
        try:
            replay = self.model.tokenize(text.decode("utf-8"), add_special=False, parse_special=True)
        except UnicodeDecodeError:  # the trigger's token ends inside a character
            return
        for token in replay:
            if not self.inner.allowed(token):
                self.inner.reset()
                return
            self.inner.accept(token)
        self.state = "held"

    def reset(self) -> None:
        self.inner.reset()
        self.state = "waiting"  # then "held" from the trigger on, or "free" when the grammar refused it
        self._text = bytearray()  # the answer so far
        self._split = self.reasoning.split() if self.reasoning else None
        self._thought = bytearray()  # the reply while it may still be reasoning

    def close(self) -> None:
        self.inner.close()


class _TokenData:
    """A llama_token_data array held by numpy, so rows are filled without a Python loop."""

    def __init__(self, n: int):
        self.data = np.zeros(n, dtype=_TOKEN_DATA)
        self._array = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self.data.ctypes.data, llama_cpp.llama_token_data_p), size=n, selected=-1, sorted=False
        )

    def apply(self, sampler, n: int) -> None:
        self._array.size = n
        self._array.selected = -1
        self._array.sorted = False
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(self._array))


def _reason(lines: list[str]) -> str:
    """llama.cpp's own words for a grammar that did not compile, in one line."""
    for line in lines:
        _, found, reason = line.partition("error parsing grammar: ")
        if found:
            return reason.strip()
    said = [line.strip() for line in lines if line.strip()]
    return "; ".join(dict.fromkeys(said)) or "it was refused"
