"""Which JSON types a schema lets a value take. Qwen3-Coder's XML calls write
a string parameter's value as its bare text and any other value as JSON, so
the call grammar and the call reader both need to know which a parameter is
(llama.cpp: `common_chat_schema::value_types` in its Qwen3-Coder parser).

Types are JSON schema's names; "integer" is also a "number". A schema that
says nothing about type (`{}`, or only a description) allows them all.
"""

from __future__ import annotations

import json
from typing import Any

ALL = frozenset({"string", "number", "integer", "boolean", "null", "object", "array"})
_IMPLIED = {  # keywords that only apply to one type, for a schema without "type"
    "properties": "object", "additionalProperties": "object", "required": "object",
    "items": "array", "prefixItems": "array", "minItems": "array", "maxItems": "array",
    "minLength": "string", "maxLength": "string", "pattern": "string", "format": "string",
    "minimum": "number", "maximum": "number",
}  # fmt: skip


def type_of(value: Any) -> str:
    if isinstance(value, bool):  # (before int: a bool is an int in Python)
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "array" if isinstance(value, list) else "object"


def value_types(schema: Any, root: Any = None, _seen: frozenset[str] = frozenset()) -> frozenset[str]:
    """The types `schema` allows; `root`: the document its "$ref"s point into."""
    if not isinstance(schema, dict):
        return frozenset() if schema is False else ALL
    root = schema if root is None else root
    if isinstance(ref := schema.get("$ref"), str):
        target = _resolve(root, ref)
        if target is None:
            return ALL
        if ref in _seen:  # a cycle adds no type of its own (as llama.cpp)
            return frozenset()
        return value_types(target, root, _seen | {ref})
    if "const" in schema:
        return frozenset({type_of(schema["const"])})
    if isinstance(schema.get("enum"), list):
        return frozenset(type_of(v) for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return frozenset().union(*(value_types(s, root, _seen) for s in schema[key]))
    if isinstance(schema.get("allOf"), list):
        out = ALL
        for s in schema["allOf"]:
            out &= _widen(value_types(s, root, _seen))
        return out
    kind = schema.get("type")
    if isinstance(kind, str):
        return _widen(frozenset({kind}) & ALL)
    if isinstance(kind, list):
        return _widen(frozenset(k for k in kind if k in ALL))
    implied = {_IMPLIED[k] for k in schema if k in _IMPLIED}
    return _widen(frozenset(implied)) if len(implied) == 1 else ALL


def _widen(types: frozenset[str]) -> frozenset[str]:
    """A number may be written as an integer."""
    return types | {"integer"} if "number" in types else types


def _resolve(root: Any, ref: str) -> Any:
    """The schema a local "#/a/b" ref names in `root`; None when it names none."""
    if not ref.startswith("#"):
        return None
    node = root
    for part in filter(None, ref[1:].split("/")):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def is_text(types: frozenset[str]) -> bool:
    """Whether a value of these types is written as bare text, never as JSON."""
    return types == {"string"}


def read_value(text: str, types: frozenset[str]) -> tuple[Any, bool]:
    """A parameter's value from its text: (value, True), or (None, False) when
    the text is not JSON and a string is not allowed. A value that may be a
    string or something else is read as JSON if it parses as one of the
    other types, as llama.cpp reads it: text in quotes stays text, quotes
    and all."""
    if is_text(types):
        return text, True
    try:
        value = json.loads(text)
    except ValueError:
        return (text, True) if "string" in types else (None, False)
    if "string" in types and (type_of(value) == "string" or type_of(value) not in types):
        return text, True
    return value, True
