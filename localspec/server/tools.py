"""Tool calling on the way in: a chat request's tools, tool_choice and
tool-call history, checked and put the way the model's chat template wants.

Every check here answers a 400 naming the field at fault, before the request
is queued: a tool that is not a function with a name, a tool_choice naming
no tool, a tool result answering no earlier call, a model whose template
cannot take tools (or takes them in a format not read back here).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from localspec.errors import LocalspecError
from localspec.server.schemas import ChatRequest
from localspec.server.toolgrammar import SchemaError, force_calls, lazy_calls
from localspec.server.toolparse import Family, ToolStream, detect_family

CHOICES = ("none", "auto", "required")
_NEEDLE = "argument_needle"


class RequestError(LocalspecError):
    """A 400 whose `param` names the request field at fault."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class TemplateTools:
    """What a model's chat template does with tools, found once at start."""

    model: str
    takes_tools: bool  # the template reads `tools`
    family: Family | None  # how its model writes a call
    object_arguments: bool  # history's call arguments go in as objects (they are JSON strings on the wire)
    style: str | None = None  # the form a forced call takes (localspec/server/toolgrammar.py)

    @classmethod
    def probe(cls, model: str, template: str | None) -> TemplateTools:
        if not template:
            return cls(model, False, None, False)
        # As llama.cpp's template capabilities (minja): render a call with its
        # arguments as text, then as an object, and see which one the
        # template writes out as JSON.
        as_text = _renders_arguments(template, json.dumps({_NEEDLE: "x"}))
        as_object = _renders_arguments(template, {_NEEDLE: "x"})
        family = detect_family(template)
        style = family.name if family else None
        if style == "mistral" and "[ARGS]" in template:
            style = "mistral-args"  # Small 3.2 and Devstral write name[ARGS]{..}, not Nemo's array
        return cls(
            model=model,
            takes_tools=re.search(r"\btools\b", template) is not None,
            family=family,
            object_arguments=as_object and not as_text,
            style=style,
        )


def _renders_arguments(template: str, arguments: Any) -> bool:
    call = {"id": "abcdefghi", "type": "function", "function": {"name": "probe", "arguments": arguments}}
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
    ]
    try:
        out = Jinja2ChatFormatter(template=template, eos_token="", bos_token="")(messages=messages).prompt
    except Exception:  # a template may refuse anything; then it does not render this form
        return False
    # (JSON or a Python dict's repr; Qwen3-Coder's XML writes each argument as <parameter=key>.)
    return any(f in out for f in (f'"{_NEEDLE}":', f"'{_NEEDLE}':", f"<parameter={_NEEDLE}>"))


@dataclass
class ToolPlan:
    """One request's tool set-up: the template's input and how to read the reply."""

    messages: list[dict]
    tools: list[dict] | None  # for the template (None: the request has none)
    choice: str  # "none", "auto", "required" or "named"
    names: list[str]
    family: Family | None
    max_calls: int | None
    parameters: dict[str, dict] = field(default_factory=dict)  # each tool's parameter schema, by name
    grammar: str | None = None  # GBNF of the calls the reply may make
    trigger: str | None = None  # tool_choice auto: the regex from whose match on the grammar holds the reply

    @property
    def parses(self) -> bool:
        """Whether the reply is read for calls (tool_choice none: it is all content)."""
        return self.tools is not None

    def stream(self) -> ToolStream | None:
        if not self.parses:
            return None
        assert self.family is not None
        return ToolStream(self.family, self.names, self.max_calls, self.parameters)


def plan(body: ChatRequest, tt: TemplateTools) -> ToolPlan:
    """Raises RequestError for what does not fit together."""
    tools = body.tools or []
    names = [t.function.name for t in tools]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise RequestError(f"two tools are named {name!r}", f"tools[{i}].function.name")
    if tools and not tt.takes_tools:
        raise RequestError(f"{tt.model} cannot call tools: its chat template has no tool support", "tools")
    if tools and tt.family is None:
        raise RequestError(
            f"{tt.model}'s chat template takes tools in a format localspec does not read back "
            "(it reads Qwen/Hermes <tool_call> JSON, Qwen3-Coder's XML, Llama 3.x JSON and Mistral [TOOL_CALLS] calls)",
            "tools",
        )
    choice, named = _choice(body.tool_choice, names)
    shown = [t.model_dump(exclude_none=True) for t in tools]
    max_calls = 1 if body.parallel_tool_calls is False else None
    grammar = trigger = None
    if tools:
        # Built whether or not it is used: a schema llama.cpp cannot convert is a 400 either way.
        assert tt.style is not None
        forced = [t for t in shown if t["function"]["name"] == named] if choice == "named" else shown
        try:
            if choice == "auto":
                # The model may answer in words; once it begins a call, the
                # call is held to the tools' grammar, as llama-server holds it.
                grammar, trigger = lazy_calls(tt.style, shown, max_calls)
            else:
                grammar = force_calls(tt.style, forced, 1 if choice == "named" else max_calls)
        except SchemaError as e:
            raise RequestError(str(e), f"tools[{names.index(forced[e.index]['function']['name'])}].function.parameters")
        if choice == "none":
            grammar = None
    return ToolPlan(
        messages=_messages(body, tt),
        # tool_choice none: the template is not shown the tools, whose
        # instructions would only invite a call that is not read back.
        tools=shown if tools and choice != "none" else None,
        choice=choice,
        names=names,
        family=tt.family,
        max_calls=max_calls,
        parameters={t["function"]["name"]: t["function"].get("parameters") or {} for t in shown},
        grammar=grammar,
        trigger=trigger,
    )


def _choice(value: Any, names: list[str]) -> tuple[str, str | None]:
    """("none" | "auto" | "required", None) or ("named", the function's name)."""
    if value is None:
        return ("auto" if names else "none"), None
    if isinstance(value, str):
        if value not in CHOICES:
            raise RequestError(f"tool_choice must be one of {', '.join(CHOICES)} or a named function", "tool_choice")
        if value != "none" and not names:
            raise RequestError(f"tool_choice {value!r} needs tools", "tool_choice")
        return value, None
    function = value.get("function") if isinstance(value, dict) and value.get("type") == "function" else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise RequestError('a named tool_choice is {"type": "function", "function": {"name": ...}}', "tool_choice")
    if name not in names:
        raise RequestError(f"tool_choice names the function {name!r}, which is not among the tools", "tool_choice")
    return "named", name


def _messages(body: ChatRequest, tt: TemplateTools) -> list[dict]:
    out: list[dict] = []
    called: dict[str, str] = {}  # call id: function name, for the results that answer them
    for i, m in enumerate(body.messages):
        msg = m.as_template_input()
        if m.tool_calls is not None:
            if m.role != "assistant":
                raise RequestError("only assistant messages carry tool_calls", f"messages[{i}].tool_calls")
            msg["tool_calls"] = []
            for j, call in enumerate(m.tool_calls):
                called[call.id] = call.function.name
                msg["tool_calls"].append(
                    {"id": call.id, "type": "function", "function": {
                        "name": call.function.name,
                        "arguments": _arguments(call.function.arguments, tt, f"messages[{i}].tool_calls[{j}].function.arguments"),
                    }}
                )  # fmt: skip
        if m.role == "tool":
            if not m.tool_call_id:
                raise RequestError("a tool message needs the tool_call_id it answers", f"messages[{i}].tool_call_id")
            if m.tool_call_id not in called:
                raise RequestError(
                    f"tool_call_id {m.tool_call_id!r} answers no tool call of an earlier assistant message",
                    f"messages[{i}].tool_call_id",
                )
            msg["tool_call_id"] = m.tool_call_id
            msg["name"] = called[m.tool_call_id]
        out.append(msg)
    return out


def _arguments(value: str | dict, tt: TemplateTools, param: str) -> str | dict:
    """A call's arguments as the template takes them (text or object); they must be a JSON object."""
    if isinstance(value, dict):
        return value if tt.object_arguments else json.dumps(value, ensure_ascii=False)
    try:
        parsed = json.loads(value) if value.strip() else {}
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise RequestError("the arguments of a tool call must be a JSON object", param)
    return parsed if tt.object_arguments else value
