"""Request bodies of the OpenAI endpoints, checked by pydantic.

Fields OpenAI defines that change nothing here (user, presence_penalty, ...)
are accepted and ignored, as llama-server does; anything that would change
the reply and is not supported (n > 1, tools, content other than text) is a
400, not a silent difference.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from localspec.generate import GenerateOptions
from localspec.verify import SamplingParams

COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions

Positive = Annotated[int, Field(ge=1)]


class StreamOptions(BaseModel):
    include_usage: bool = False


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_call_id, ... ignored

    role: Literal["system", "developer", "user", "assistant"]
    content: Any = None

    @field_validator("content")
    @classmethod
    def _text(cls, v: Any) -> str | None:
        """A string, or a list of text parts (what Cline, Continue and the SDKs send)."""
        if v is None or isinstance(v, str):
            return v
        if isinstance(v, list) and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in v
        ):
            return "".join(p["text"] for p in v)
        raise ValueError("must be a string or a list of {\"type\": \"text\", \"text\": ...} parts")

    def as_template_input(self) -> dict[str, str]:
        # Chat templates know "system"; OpenAI's newer name for it is "developer".
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": self.content or ""}


class _Sampling(BaseModel):
    model: str | None = None  # any name: one model is loaded
    max_tokens: Positive | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    min_p: Annotated[float, Field(ge=0, lt=1)] | None = None
    seed: int | None = None
    stop: Any = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Field(ge=1, le=1)] | None = None  # one choice per request

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: Any) -> str | list[str] | None:
        if v is None or isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v)):
            return v
        raise ValueError("must be a string or a list of strings")

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def options(self, max_tokens: int) -> GenerateOptions:
        """Raises LocalspecError for values SamplingParams rejects (a 400)."""
        sampling = SamplingParams(
            temp=1.0 if self.temperature is None else self.temperature,
            top_k=self.top_k or 0,
            top_p=1.0 if self.top_p is None else self.top_p,
            min_p=self.min_p or 0.0,
            # llama.cpp's clients send -1 for "random".
            seed=self.seed if self.seed is not None and self.seed >= 0 else None,
        )
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return GenerateOptions(max_tokens=max_tokens, sampling=sampling, stop=tuple(s for s in stops if s))


class ChatRequest(_Sampling):
    messages: Annotated[list[Message], Field(min_length=1)]
    max_completion_tokens: Positive | None = None
    tools: list[Any] | None = None

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, v: list[Any] | None) -> None:
        if v:
            raise ValueError("tool calling is not supported")
        return None

    def token_limit(self, n_ctx: int) -> int:
        # Unset: until the model ends its reply or the context is full.
        return self.max_completion_tokens or self.max_tokens or n_ctx

    def template_input(self) -> list[dict[str, str]]:
        return [m.as_template_input() for m in self.messages]


class CompletionRequest(_Sampling):
    prompt: Any

    @field_validator("prompt")
    @classmethod
    def _one_string(cls, v: Any) -> str:
        if isinstance(v, list) and len(v) == 1:
            v = v[0]
        if not isinstance(v, str):
            raise ValueError("must be a string (or a list holding one string)")
        return v

    def token_limit(self, n_ctx: int) -> int:
        return self.max_tokens or COMPLETION_MAX_TOKENS
