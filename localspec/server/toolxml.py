"""Reading Qwen3-Coder's XML calls (also Qwen3.5's and Nemotron 3 Nano's),
as llama.cpp's parser for them (common/parsers/qwen3-coder.cpp) reads
them, and a call written on one line too.

    <tool_call>
    <function=name>
    <parameter=key>
    value
    </parameter>
    </function>
    </tool_call>

A value is bare text for a string parameter and JSON for any other, so the
tool's parameter schema decides how it is read (localspec/server/schematypes.py).
The arguments come out as a JSON object written anew.
"""

from __future__ import annotations

import json
import re
from typing import Callable, Mapping, Sequence

from localspec.server.callscan import WS, BodyParser, Found, Incomplete, Malformed, Opening, past, skip
from localspec.server.schematypes import read_value, value_types


def xml_openings(bare: bool) -> Callable[[Sequence[str], Mapping[str, dict]], list[Opening]]:
    """The openings of XML calls; `bare`: also a declared function's full
    `<function=f>` without the <tool_call> before it. Qwen3-Coder now and
    then leaves the tag out; llama.cpp reads such calls only for templates
    without <think> (a model that reasons may name the call while it does),
    and then only with a declared name (a bare "<function" is also C++:
    #include <functional>)."""

    def openings(names: Sequence[str], parameters: Mapping[str, dict]) -> list[Opening]:
        body = _xml_body(parameters)
        out = [Opening(("<tool_call>", WS, "<function="), body)]
        return out + [Opening((f"<function={name}>",), body) for name in names] if bare else out

    return openings


_XML_KEY = re.compile(r"[^>\n<]+")


def _xml_body(parameters: Mapping[str, dict]) -> BodyParser:
    """Qwen3-Coder's XML call, after its `<function=` (with or without the
    <tool_call> before it): the name, each `<parameter=key>` and its value,
    `</function>`, and the closing tag. Each value is read by its
    parameter's schema: bare text for a string, JSON otherwise."""

    def body(text: str, start: int, opened: int, final: bool) -> tuple[Found, int]:
        def more(what: str) -> Exception:
            return Malformed(f"the call stops {what}") if final else Incomplete()

        # (An opening without <tool_call> reads up to the name's end: read it again.)
        name, pos = _xml_name(text, text.index("<function=", start) + len("<function="), more, "<function=")
        schema = parameters.get(name) or {}
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        args: dict = {}
        while True:
            pos = skip(text, pos)
            for literal in ("</function>", "<parameter="):
                if text.startswith(literal, pos):
                    break
                if len(text) - pos < len(literal) and literal.startswith(text[pos:]):
                    raise more("before </function>")
            else:
                raise Malformed(f"the call of {name} holds something other than <parameter=..>", _xml_end(text, pos))
            if literal == "</function>":
                pos += len(literal)
                break
            key, vstart = _xml_name(text, pos + len(literal), more, f"<parameter= in the call of {name}")
            if vstart == len(text):
                raise more(f"in the value of {key}")
            lines = text.startswith("\n", vstart)
            vstart += lines
            vend, pos = (_value_end_lines if lines else _value_end_inline)(text, vstart, final)
            if vend < 0:
                raise more(f"in the value of {key}")
            value, ok = read_value(text[vstart:vend], value_types(properties.get(key, {}), schema))
            if not ok:
                raise Malformed(f"the value of {key} is not JSON", _xml_end(text, pos))
            args[key] = value
        return [(name, json.dumps(args, ensure_ascii=False), None)], past(text, pos, final, ["</tool_call>"])

    return body


def _value_end_lines(text: str, start: int, final: bool) -> tuple[int, int]:
    """Where a value written on its own lines (as the grammar has it) ends,
    and where its </parameter> does: at the first "\n</parameter>\n" (or
    at one that ends the reply). The grammar lets a value hold anything
    else, "</parameter>" included, so the first is where it ends; (-1, -1)
    if none yet."""
    pos = start - 1  # (an empty value may be written with a single line break)
    while (close := text.find("\n</parameter>", pos)) >= 0:
        end = close + len("\n</parameter>")
        if text.startswith("\n", end) or (final and end == len(text)):
            return max(close, start), end
        if end == len(text):
            raise Incomplete  # (its line break may be coming)
        pos = close + 1
    return -1, -1


def _value_end_inline(text: str, start: int, final: bool) -> tuple[int, int]:
    """Where a value written on the line of its tags ends, and where its
    </parameter> does: at the first </parameter> the next tag follows
    (spaces between allowed); (-1, -1) if none yet."""
    pos = start
    while (close := text.find("</parameter>", pos)) >= 0:
        after = skip(text, close + len("</parameter>"))
        for tag in ("<parameter=", "</function>"):
            if text.startswith(tag, after):
                return close, close + len("</parameter>")
            if not final and tag.startswith(text[after : after + len(tag)]):
                raise Incomplete  # (the next tag may be coming)
        pos = close + 1
    return -1, -1


def _xml_name(text: str, pos: int, more: Callable[[str], Exception], tag: str) -> tuple[str, int]:
    """The name at `pos` up to its ">", and where its ">" ends."""
    m = _XML_KEY.match(text, pos)
    end = m.end() if m else pos
    if end == len(text):
        raise more("in a name")
    if not m or text[end] != ">":
        raise Malformed(f"{tag} is followed by no name", _xml_end(text, end))
    return m[0], end + 1


def _xml_end(text: str, pos: int) -> int:
    """Where a malformed XML call's text ends: past its </function> (and
    </tool_call>) if it has one, else the reply's end."""
    end = text.find("</function>", pos)
    return len(text) if end < 0 else past(text, end + len("</function>"), True, ["</tool_call>"])
