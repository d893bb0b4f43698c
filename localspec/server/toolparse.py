"""A chat reply as OpenAI's `content` and `tool_calls`, for the families whose
tool-call formats llama.cpp parses (common/chat.cpp and its tests):

    hermes   Qwen2.5, Qwen3, Hermes: <tool_call>\\n{"name": .., "arguments": {..}}\\n</tool_call>,
             one block per call; small Qwen2.5-Coders write the same object in a
             ```json fence instead, which llama.cpp also accepts
    llama3   Llama 3.x: {"name": .., "parameters": {..}} as the reply, or after
             <|python_tag|>, where a built-in style name.call(k="v") may follow
    mistral  [TOOL_CALLS][{"name": .., "arguments": {..}, "id": ..}, ..] (Nemo) or
             [TOOL_CALLS]name[CALL_ID]id[ARGS]{..} per call (Small 3.2, Devstral)
    qwen3-coder, qwen3.5
             Qwen3-Coder; Qwen3.5, Nemotron 3 Nano: <tool_call>\\n<function=name>\\n
             <parameter=key>\\nvalue\\n</parameter>\\n ... </function>\\n</tool_call>,
             a string's value as bare text and any other as JSON, which only
             the tool's parameter schema tells apart (localspec/server/schematypes.py)

`ToolStream` reads the reply as it streams and says what OpenAI's deltas
are: content, or a call (index, id, name) and then its arguments. A call is
released whole, once its JSON is complete and names a declared function, so a
call a client sees always parses; text that could still become the start of a
call is held back meanwhile, so content never carries half a call. Reading
the whole reply in one push gives the same content and calls: the whole
response is built by the same code as the stream. A call that never completes
or does not parse goes out as content and is counted in `malformed`.
"""

from __future__ import annotations

import ast
import json
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from localspec.server.callscan import WS, BodyParser, Found, Incomplete, Malformed, Opening, match, past, skip
from localspec.server.toolxml import xml_openings

_DECODER = json.JSONDecoder()
_ALNUM = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Call:
    id: str
    name: str
    arguments: str  # the JSON object's text as the model wrote it

    def header(self, index: int) -> dict:
        return {"index": index, "id": self.id, "type": "function", "function": {"name": self.name, "arguments": ""}}

    def as_message_part(self) -> dict:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


def members(text: str, start: int) -> tuple[dict[str, tuple[object, int, int]], int]:
    """The JSON object at `start`: each key's value with the span of its text,
    and where the object ends. ValueError (or IndexError) if there is no whole object."""
    if not text.startswith("{", start):
        raise ValueError("not an object")
    out: dict[str, tuple[object, int, int]] = {}
    pos = skip(text, start + 1)
    if text.startswith("}", pos):
        return out, pos + 1
    while True:
        if not text.startswith('"', pos):
            raise ValueError("expected a key")
        key, pos = json.decoder.scanstring(text, pos + 1)
        pos = skip(text, pos)
        if not text.startswith(":", pos):
            raise ValueError("expected ':'")
        vstart = skip(text, pos + 1)
        value, vend = _DECODER.raw_decode(text, vstart)
        out[key] = (value, vstart, vend)
        pos = skip(text, vend)
        if text.startswith("}", pos):
            return out, pos + 1
        if not text.startswith(",", pos):
            raise ValueError("expected ',' or '}'")
        pos = skip(text, pos + 1)


def _json(text: str, pos: int, final: bool, what: str) -> tuple[object, int]:
    """The JSON value at `pos`; while the reply runs, text that does not parse yet may still."""
    try:
        return _DECODER.raw_decode(text, pos)
    except ValueError:
        if final:
            raise Malformed(f"{what} is not valid JSON") from None
        raise Incomplete from None


def _object_call(text: str, start: int, final: bool, arg_keys: tuple[str, ...]) -> tuple[Found, int]:
    """One {"name": .., <arg key>: {..}} object at `start`."""
    _json(text, start, final, "the call")  # whole and valid, or Incomplete/Malformed
    try:
        obj, end = members(text, start)
    except ValueError as e:
        raise Malformed(f"the call is not a JSON object ({e})") from None
    name = obj.get("name", (None,))[0]
    if not isinstance(name, str):
        raise Malformed('the call has no "name" string', end)
    raw_id = obj.get("id", (None,))[0]
    call_id = raw_id if isinstance(raw_id, str) and raw_id else None
    key = next((k for k in arg_keys if k in obj), None)
    if key is None:
        return [(name, "{}", call_id)], end
    value, a, b = obj[key]
    args = text[a:b]
    if isinstance(value, str):  # some models write the arguments as a JSON string
        args = value
        try:
            value = json.loads(value)
        except ValueError:
            raise Malformed(f'"{key}" is neither an object nor JSON text', end) from None
    if not isinstance(value, dict):
        raise Malformed(f'"{key}" is not an object', end)
    return [(name, args, call_id)], end


def _json_body(arg_keys: tuple[str, ...], closers: Sequence[str] = (), brace_in_opening: bool = False) -> BodyParser:
    """A call written as one JSON object: its "{" is part of the opening (one
    that reads up to the function's name; the last "{" there), or follows it."""

    def body(text: str, start: int, opened: int, final: bool) -> tuple[Found, int]:
        if brace_in_opening:
            brace = text.rindex("{", start, opened)
        else:
            brace = skip(text, opened)
            if brace == len(text):
                if final:
                    raise Malformed("the call stops at its opening")
                raise Incomplete
            if text[brace] != "{":
                raise Malformed("the call is not a JSON object", past(text, brace, final, closers))
        try:
            found, end = _object_call(text, brace, final, arg_keys)
        except Malformed as e:
            if e.end is not None:
                e.end = past(text, e.end, True, closers)
            raise
        return found, past(text, end, final, closers)

    return body


_PY_CALL = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\.call\((.*)\)\s*$", re.S)
_LLAMA_JSON = _json_body(("parameters", "arguments"))


def _python_tag(text: str, start: int, opened: int, final: bool) -> tuple[Found, int]:
    pos = skip(text, opened)
    if pos == len(text) and not final:
        raise Incomplete
    if text.startswith("{", pos):
        return _LLAMA_JSON(text, start, opened, final)
    # name.call(k="v", ...) runs to the end of the reply (<|eom_id|> ends it).
    if not final:
        raise Incomplete
    m = _PY_CALL.match(text, pos)
    if not m:
        raise Malformed("<|python_tag|> is followed by neither JSON nor name.call(...)")
    try:
        node = ast.parse(f"f({m[2]})", mode="eval").body
        if not isinstance(node, ast.Call) or node.args:
            raise ValueError
        args = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
    except (SyntaxError, ValueError):
        raise Malformed("the arguments of name.call(...) are not keyword literals") from None
    return [(m[1], json.dumps(args, ensure_ascii=False), None)], len(text)


_MISTRAL_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_MISTRAL_ID = re.compile(r"[A-Za-z0-9]*")


def _mistral(text: str, start: int, opened: int, final: bool) -> tuple[Found, int]:
    pos = skip(text, opened)
    if pos == len(text):
        if final:
            raise Malformed("nothing follows [TOOL_CALLS]")
        raise Incomplete
    if text[pos] == "[":  # Nemo: a JSON array of call objects
        items, end = _json(text, pos, final, "the [TOOL_CALLS] array")
        if not isinstance(items, list) or not items:
            raise Malformed("[TOOL_CALLS] holds no calls", end)
        found: Found = []
        for item in items:
            piece = json.dumps(item, ensure_ascii=False)
            try:
                found += _object_call(piece, 0, True, ("arguments", "parameters"))[0]
            except Malformed as e:
                raise Malformed(str(e), end) from None
        return found, end
    # Small 3.2 and Devstral: name[CALL_ID]id[ARGS]{..}
    m = _MISTRAL_NAME.match(text, pos)
    if not m:
        raise Malformed("[TOOL_CALLS] is followed by no function name")
    name, pos, call_id = m[0], m.end(), None
    if match(("[CALL_ID]",), text, pos) is True or match(("[ARGS]",), text, pos) is True:
        if final:
            raise Malformed(f"the call of {name} stops before its [ARGS]")
        raise Incomplete
    if text.startswith("[CALL_ID]", pos):
        idm = _MISTRAL_ID.match(text, pos + len("[CALL_ID]"))
        call_id, pos = idm[0] or None, idm.end()
        if match(("[ARGS]",), text, pos) is True:
            if final:
                raise Malformed(f"the call of {name} stops before its [ARGS]")
            raise Incomplete
    if not text.startswith("[ARGS]", pos):
        raise Malformed(f"no [ARGS] after {name}")
    pos = skip(text, pos + len("[ARGS]"))
    if pos == len(text):
        if final:
            raise Malformed(f"no arguments after {name}[ARGS]")
        raise Incomplete
    args, end = _json(text, pos, final, f"the arguments of {name}")
    if not isinstance(args, dict):
        raise Malformed(f"the arguments of {name} are not a JSON object", end)
    return [(name, text[pos:end], call_id)], end


@dataclass(frozen=True)
class Family:
    name: str
    markers: tuple[str, ...]  # special tokens the reply must show as text for the parser to see them
    # The ways a call opens, given the tools' names and each one's parameter schema.
    openings: Callable[[Sequence[str], Mapping[str, dict]], list[Opening]]
    new_id: Callable[[], str]


def _openai_id() -> str:
    return "call_" + secrets.token_hex(12)


def _mistral_id() -> str:
    # Mistral's templates refuse a history whose call ids are not 9 letters or digits.
    return "".join(secrets.choice(_ALNUM) for _ in range(9))


def _named(name: str) -> tuple[str | None, ...]:
    return ("{", WS, '"name"', WS, ":", WS, json.dumps(name))


def _hermes_openings(names: Sequence[str], parameters: Mapping[str, dict]) -> list[Opening]:
    out = []
    for tag, closer in (("<tool_call>", "</tool_call>"), ("<function_call>", "</function_call>")):
        out.append(Opening((tag,), _json_body(("arguments", "parameters"), [closer])))
    for fence in ("```json\n", "```xml\n", "```\n"):
        for tag, closer in (("<tool_call>", "</tool_call>"), ("<function_call>", "</function_call>")):
            out.append(Opening((fence, WS, tag), _json_body(("arguments", "parameters"), [closer, "```"])))
    # Without a tag, only an object that names a declared function is a call.
    # Qwen2.5-Coder-1.5B's own template shows the call as {{"name": ..}} (its
    # braces doubled inside a string), and the model writes it back so.
    for name in names:
        for fence, closers in (("```json\n", ["```"]), ("```\n", ["```"]), ("", [])):
            for outer, close in (("", []), ("{", ["}"])):
                parts = (fence, WS, outer, WS, *_named(name)) if fence else (outer, WS, *_named(name))
                body = _json_body(("arguments", "parameters"), [*close, *closers], brace_in_opening=True)
                out.append(Opening(tuple(p for p in parts if p != ""), body))
    return out


def _llama_openings(names: Sequence[str], parameters: Mapping[str, dict]) -> list[Opening]:
    out = [Opening(("<|python_tag|>",), _python_tag)]
    typed = ("{", WS, '"type"', WS, ":", WS, '"function"', WS, ",", WS, '"name"', WS, ":", WS)
    for name in names:
        body = _json_body(("parameters", "arguments"), brace_in_opening=True)
        out += [Opening(_named(name), body), Opening((*typed, json.dumps(name)), body)]
    return out


def _mistral_openings(names: Sequence[str], parameters: Mapping[str, dict]) -> list[Opening]:
    return [Opening(("[TOOL_CALLS]",), _mistral)]


FAMILIES = {
    "hermes": Family("hermes", ("<tool_call>", "</tool_call>"), _hermes_openings, _openai_id),
    "llama3": Family("llama3", ("<|python_tag|>",), _llama_openings, _openai_id),
    "mistral": Family("mistral", ("[TOOL_CALLS]", "[CALL_ID]", "[ARGS]"), _mistral_openings, _mistral_id),
    "qwen3-coder": Family("qwen3-coder", ("<tool_call>", "</tool_call>"), xml_openings(bare=True), _openai_id),
    # The same XML from models that reason first (Qwen3.5, Nemotron 3 Nano): every call in its tag.
    "qwen3.5": Family("qwen3.5", ("<tool_call>", "</tool_call>"), xml_openings(bare=False), _openai_id),
}


def detect_family(template: str) -> Family | None:
    """The tool-call format a chat template teaches its model, by the markers
    llama.cpp's format detection looks for; None when it is none of these."""
    if "<tool_call>" in template and "<function=" in template and "<parameter=" in template:
        # (As llama.cpp: a template that writes the tags with no line break
        # between them teaches another format.)
        if "'<tool_call><function=' ~ tool_call.name ~ '>'" in template:
            return None
        return FAMILIES["qwen3.5" if "<think>" in template else "qwen3-coder"]
    if "<tool_call>" in template and "<function=" not in template:
        return FAMILIES["hermes"]
    if "[TOOL_CALLS]" in template:
        return FAMILIES["mistral"]
    if "<|python_tag|>" in template or "ipython<|end_header_id|>" in template:
        return FAMILIES["llama3"]
    return None


@dataclass
class ToolStream:
    """Feed a reply's text with `push`, then call `finish`; each returns OpenAI delta dicts."""

    family: Family
    names: Sequence[str]
    max_calls: int | None = None  # parallel_tool_calls false: 1 (later calls are dropped)
    parameters: Mapping[str, dict] = field(default_factory=dict)  # each tool's parameter schema, by name
    calls: list[Call] = field(default_factory=list)
    content: str = ""
    malformed: int = 0
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._openings = self.family.openings(self.names, self.parameters)
        self._text = ""
        self._done = 0  # characters of _text released or consumed
        self._cuts: list[int] = []  # where each push ended: arguments go out in the model's own pieces
        self._ws = ""  # whitespace held until something follows it

    def push(self, text: str) -> list[dict]:
        self._text += text
        self._cuts.append(len(self._text))
        return self._advance(final=False)

    def finish(self) -> list[dict]:
        out = self._advance(final=True)
        if self._ws and not self.calls:
            out += self._say(self._ws)
        self._ws = ""
        return out

    def message(self) -> dict:
        """The whole response's message: what the pushes released."""
        out: dict = {"role": "assistant", "content": self.content or (None if self.calls else "")}
        if self.calls:
            out["tool_calls"] = [c.as_message_part() for c in self.calls]
        return out

    def _say(self, text: str) -> list[dict]:
        self.content += text
        return [{"content": text}]

    def _content(self, text: str) -> list[dict]:
        """Release content; trailing whitespace waits to see whether a call follows it."""
        text = self._ws + text
        body = text.rstrip()
        self._ws = text[len(body):]
        return self._say(body) if body else []

    def _advance(self, final: bool) -> list[dict]:
        out: list[dict] = []
        text = self._text
        while self._done < len(text):
            start, opened, opening = self._find(text, self._done, final)
            if start > self._done:
                out += self._content(text[self._done:start])
                self._done = start
            if opening is None:  # nothing opens here (start == len), or it may yet: wait
                break
            try:
                found, end = opening.body(text, start, opened, final)
                unknown = sorted({name for name, _, _ in found} - set(self.names))
                if unknown:
                    raise Malformed(f"the reply calls {unknown[0]!r}, which is not among the tools", end)
            except Incomplete:
                break
            except Malformed as e:
                self.malformed += 1
                self.problems.append(str(e))
                end = len(text) if e.end is None else e.end
                out += self._content(text[start:end])
                self._done = end
                continue
            self._ws = ""  # whitespace before a call is not content
            for name, args, model_id in found:
                if self.max_calls is None or len(self.calls) < self.max_calls:
                    out += self._emit(Call(model_id or self.family.new_id(), name, args), text, end)
            self._done = end
        return out

    def _emit(self, call: Call, text: str, end: int) -> list[dict]:
        index = len(self.calls)
        self.calls.append(call)
        out = [{"tool_calls": [call.header(index)]}]
        at = text.rfind(call.arguments, 0, end)  # -1 for arguments rebuilt from a parsed object
        cuts = [c - at for c in self._cuts if at < c < at + len(call.arguments)] if at >= 0 else []
        for a, b in zip([0, *cuts], [*cuts, len(call.arguments)]):
            out.append({"tool_calls": [{"index": index, "function": {"arguments": call.arguments[a:b]}}]})
        return out

    def _find(self, text: str, pos: int, final: bool) -> tuple[int, int, Opening | None]:
        """The first place at or after `pos` where a call opens: (start, end of
        the opening, the opening); where one may still open: (start, start,
        None); if none can: (len(text), len(text), None)."""
        for i in range(pos, len(text)):
            maybe = False
            for op in self._openings:
                m = match(op.parts, text, i)
                if m is True:
                    maybe = maybe or not final
                elif m is not None:
                    return i, m, op
            if maybe:
                return i, i, None
        return len(text), len(text), None
