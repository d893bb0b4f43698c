"""Request bodies of the OpenAI endpoints, checked by pydantic.

Fields OpenAI defines that change nothing here (user, presence_penalty, ...)
are accepted and ignored, as llama-server does; anything that would change
the reply and is not supported (n > 1, content other than text, the legacy
`functions`) is a 400, not a silent difference. How tools, tool calls and
tool results fit together is checked in localspec/server/tools.py.
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


# OpenAI's rule for function names (and what llama.cpp's grammars assume).
FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="allow")  # strict, ...

    name: Annotated[str, Field(pattern=FUNCTION_NAME)]
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON schema


class Tool(BaseModel):
    type: Literal["function"]
    function: FunctionDef


class CalledFunction(BaseModel):
    name: str
    arguments: str | dict[str, Any]  # OpenAI sends a JSON string; some clients an object


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    type: Literal["function"] = "function"
    function: CalledFunction


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, ... ignored

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Any = None
    tool_calls: list[ToolCall] | None = None  # assistant
    tool_call_id: str | None = None  # tool

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

    def as_template_input(self) -> dict[str, Any]:
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
    tools: list[Tool] | None = None
    tool_choice: Any = None  # "none", "auto", "required" or {"type": "function", "function": {"name": ..}}
    parallel_tool_calls: bool | None = None
    functions: Any = None  # OpenAI's deprecated form of tools
    function_call: Any = None

    @field_validator("functions", "function_call")
    @classmethod
    def _no_legacy_functions(cls, v: Any) -> None:
        if v is not None:
            raise ValueError("the deprecated functions/function_call are not supported; send tools and tool_choice")
        return None

    def token_limit(self, n_ctx: int) -> int:
        # Unset: until the model ends its reply or the context is full.
        return self.max_completion_tokens or self.max_tokens or n_ctx


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
