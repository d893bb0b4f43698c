"""Request bodies of the OpenAI endpoints, checked by pydantic.

Fields OpenAI defines that change nothing here (user, presence_penalty, ...)
are accepted and ignored, as llama-server does; anything that would change
the reply and is not supported (n > 1, content other than text, the legacy
`functions`) is a 400, not a silent difference. How tools, tool calls and
tool results fit together is checked in localspec/server/tools.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from localspec.errors import LocalspecError
from localspec.generate import GenerateOptions
from localspec.grammar import JSON_OBJECT_GBNF, schema_to_gbnf
from localspec.verify import SamplingParams

COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions

Positive = Annotated[int, Field(ge=1)]


class StreamOptions(BaseModel):
    include_usage: bool = False


class JsonSchemaSpec(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)  # description, ...

    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None  # the grammar holds the reply to the schema either way


class ResponseFormat(BaseModel):
    """OpenAI's `response_format`; llama-server's `{"type": "json_object", "schema": {...}}` too."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")

    @model_validator(mode="after")
    def _schema_given(self) -> "ResponseFormat":
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type json_schema needs a json_schema object")
        return self

    def gbnf(self) -> str | None:
        """The grammar the reply must follow (LocalspecError: a schema the converter refuses)."""
        if self.type == "text":
            return None
        schema = self.json_schema.schema_ if self.json_schema is not None else self.schema_
        return JSON_OBJECT_GBNF if schema is None else schema_to_gbnf(schema)


def _refusal(message: str, param: str) -> LocalspecError:
    err = LocalspecError(message)
    err.param = param  # server/app.py puts it in the error object
    return err


# What the server itself gives a chat template (llama_cpp's Jinja2ChatFormatter).
TEMPLATE_OWN_VARIABLES = frozenset({
    "messages", "tools", "tool_choice", "functions", "function_call", "add_generation_prompt",
    "eos_token", "bos_token", "raise_exception", "strftime_now",
})  # fmt: skip

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
    reasoning_content: str | None = None  # assistant: what it thought (a thinking model's template may show it)

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
        out = {"role": role, "content": self.content or ""}
        if self.reasoning_content is not None:
            out["reasoning_content"] = self.reasoning_content
        return out


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
        return GenerateOptions(
            max_tokens=max_tokens,
            sampling=sampling,
            stop=tuple(s for s in stops if s),
            grammar=self.constraint(),
            logprobs=self.logprob_count(),
        )

    # llama-server's GBNF field, on both endpoints.
    grammar: str | None = None

    def constraint(self) -> str | None:
        """GBNF text the reply must match, or None (LocalspecError for a schema that cannot be converted)."""
        return self.grammar or None

    def logprob_count(self) -> int | None:
        """Alternatives to report per token with its logprob; None: no logprobs."""
        return None


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

    # Thinking models (localspec/reasoning.py), as llama-server takes them.
    chat_template_kwargs: dict[str, Any] | None = None  # more variables for the template (enable_thinking, ...)
    # none: the reasoning stays in content; deepseek-legacy: in both
    reasoning_format: Literal["none", "auto", "deepseek", "deepseek-legacy"] | None = None
    reasoning_effort: str | None = None  # "none" turns thinking off; other values go to the template

    @field_validator("chat_template_kwargs")
    @classmethod
    def _template_variables(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        taken = sorted(set(v or ()) & TEMPLATE_OWN_VARIABLES)
        if taken:
            raise ValueError(f"{taken[0]!r} is set by the server, not by chat_template_kwargs")
        if v and v.get("enable_thinking") is not None and not isinstance(v["enable_thinking"], bool):
            raise ValueError("enable_thinking must be true or false")
        return v

    def template_kwargs(self) -> dict[str, Any]:
        """The variables the chat template gets besides messages and tools."""
        out = dict(self.chat_template_kwargs or {})
        # As llama-server: reasoning_effort wins over chat_template_kwargs.
        if self.reasoning_effort == "none":
            out["enable_thinking"] = False
            out.pop("reasoning_effort", None)
        elif self.reasoning_effort is not None:
            out["reasoning_effort"] = self.reasoning_effort
        return out

    def token_limit(self, n_ctx: int) -> int:
        # Unset: until the model ends its reply or the context is full.
        return self.max_completion_tokens or self.max_tokens or n_ctx

    # Constrained output and logprobs (localspec/grammar.py, server/logprobs.py).
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None

    def constraint(self) -> str | None:
        if self.response_format is None or self.response_format.type == "text":
            return super().constraint()
        if self.grammar:
            raise _refusal("give either grammar or response_format, not both", "grammar")
        try:
            return self.response_format.gbnf()
        except LocalspecError as e:
            raise _refusal(str(e), "response_format") from None

    def logprob_count(self) -> int | None:
        if not self.logprobs:
            if self.top_logprobs:
                raise _refusal("top_logprobs needs logprobs: true", "top_logprobs")
            return None
        return self.top_logprobs or 0


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

    # The legacy form: how many alternatives per token (OpenAI allows up to 5).
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None

    def logprob_count(self) -> int | None:
        return self.logprobs
