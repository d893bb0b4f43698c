"""tool_choice "required" or a named function: a GBNF grammar that lets the
model write nothing but calls, in its family's own format, each naming one
of the tools and with arguments that follow that tool's parameter schema.
Under "auto", `lazy_calls`: the same calls, held from where the model begins one.

The generation applies it at every drafted position (localspec/constrain.py),
so a forced call is drafted and verified like any other text and greedy
output is what plain constrained decoding writes. Each tool's schema becomes
a grammar through llama.cpp's converter (localspec.grammar.schema_to_gbnf);
its rules are renamed apart (`t0-root`, `t0-space`, ...) so that several
tools fit in one grammar, and the family's wrapper is put around them:

    hermes         <tool_call>\\n{"name": "f", "arguments": ARGS}\\n</tool_call> (one per call)
    llama3         {"name": "f", "parameters": ARGS} (its templates take one call a turn)
    mistral        [TOOL_CALLS][{"name": "f", "arguments": ARGS}, ...]
    mistral-args   [TOOL_CALLS]f[ARGS]ARGS (one per call; Small 3.2, Devstral)
    qwen3-coder,   <tool_call>\\n<function=f>\\n<parameter=k>\\nVALUE\\n</parameter>\\n...</function>\\n</tool_call>
    qwen3.5        (one per call): a string VALUE is any text without "\\n</parameter>\\n",
                   any other is JSON by the parameter's schema; required parameters
                   in any order, then optional ones (as llama.cpp's grammar for it)
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Sequence

from localspec.errors import LocalspecError
from localspec.gbnf import until_rules
from localspec.grammar import schema_to_gbnf
from localspec.server.schematypes import value_types


class SchemaError(LocalspecError):
    """A tool's parameter schema that llama.cpp's converter cannot turn into a grammar."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index

_RULE = re.compile(r"^([A-Za-z0-9-]+) ::= (.*)$")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")


def _literal(text: str) -> str:
    """A GBNF string literal (GBNF's escapes are JSON's, for these characters)."""
    return json.dumps(text, ensure_ascii=False)


def rename(gbnf: str, prefix: str) -> str:
    """`gbnf` with every rule name, where defined and where used, given `prefix`
    (names inside "literals" and [classes] are text, not rules, and stay)."""
    rules = {m[1] for line in gbnf.splitlines() if (m := _RULE.match(line))}
    out = []
    for line in gbnf.splitlines():
        m = _RULE.match(line)
        if not m:
            out.append(line)
            continue
        out.append(f"{prefix}{m[1]} ::= {_rename_body(m[2], rules, prefix)}")
    return "\n".join(out) + "\n"


def _rename_body(body: str, rules: set[str], prefix: str) -> str:
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c in "\"[":  # a literal or a character class, copied through its end
            close = '"' if c == '"' else "]"
            j = i + 1
            while j < len(body) and body[j] != close:
                j += 2 if body[j] == "\\" else 1
            out.append(body[i : j + 1])
            i = j + 1
        elif m := _NAME.match(body, i):
            out.append(prefix + m[0] if m[0] in rules else m[0])
            i = m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _arguments(tools: Sequence[dict]) -> list[str]:
    """Each tool's parameter grammar, its rules renamed apart (t0-root, t1-root, ...)."""
    parts = []
    for i, tool in enumerate(tools):
        fn = tool["function"]
        try:
            args = schema_to_gbnf(fn.get("parameters") or {"type": "object"})
        except LocalspecError as e:
            raise SchemaError(f"the parameters of {fn['name']}: {e}", i) from None
        parts.append(rename(args, f"t{i}-"))
    return parts


def force_calls(style: str, tools: Sequence[dict], max_calls: int | None) -> str:
    """GBNF for one call (max_calls 1) or one or more, of `tools` (OpenAI's
    tool objects, already checked), in `style` (a key of _FRAMES)."""
    if style in _XML_STYLES:
        return _xml_calls(tools, max_calls, bare=False)
    parts = _arguments(tools)
    alternatives = [_call(style, tool["function"]["name"], f"t{i}-root") for i, tool in enumerate(tools)]
    opening, between, closing, single = _FRAMES[style]
    root = [_literal(opening)] if opening else []
    root.append("call" if single or max_calls == 1 else f"call ({_literal(between)} call)*")
    root += [_literal(closing)] if closing else []
    return "\n".join([f"root ::= {' '.join(root)}", f"call ::= {' | '.join(alternatives)}", *parts]) + "\n"


def lazy_calls(style: str, tools: Sequence[dict], max_calls: int | None) -> tuple[str, str]:
    """Under tool_choice auto: (GBNF, trigger), the grammar a call is held to
    from where its text first matches the trigger regex on
    (localspec.grammar.LazyGrammar); before that the model writes freely.

    Mistral's calls begin with [TOOL_CALLS], and the forced grammar from it.
    A Hermes or Llama 3.x call is held from its `{"name": "f"` on, spaced
    and keyed ("arguments" or "parameters") as these models write it
    (Qwen2.5-Coder puts it in a <tool_call> tag or a ```json fence, or in
    neither, on one line or pretty-printed): the object, then the tag or
    fence that may close it, then (Hermes, unless parallel_tool_calls is
    false) more tagged calls. A call that does not begin so stays free and
    is read back as before."""
    if style.startswith("mistral"):
        return force_calls(style, tools, max_calls), re.escape("[TOOL_CALLS]")
    if style in _XML_STYLES:
        # Held from <tool_call>; Qwen3-Coder's also from a declared function's
        # full opener, when the model leaves the tag out (localspec/server/toolxml.py).
        bare = style == "qwen3-coder"
        names = "|".join(re.escape(tool["function"]["name"]) for tool in tools)
        trigger = f"<tool_call>|<function=(?:{names})>" if bare else re.escape("<tool_call>")
        return _xml_calls(tools, max_calls, bare), trigger
    parts = _arguments(tools)
    names = [tool["function"]["name"] for tool in tools]
    bodies = [
        f'"{{" ws "\\"name\\"" ws ":" ws {_literal(json.dumps(name))} ws "," ws key ws ":" ws t{i}-root ws "}}"'
        for i, name in enumerate(names)
    ]
    root = "body close"
    if style == "hermes" and max_calls != 1:
        root += ' (ws "<tool_call>" ws body close)*'
    rules = [
        f"root ::= {root}",
        f"body ::= {' | '.join(bodies)}",
        'key ::= "\\"arguments\\"" | "\\"parameters\\""',
        'close ::= ws ("</tool_call>" | "```")?' if style == "hermes" else "close ::= ws",
        r"ws ::= [ \t\n]{0,20}",
    ]
    trigger = r'\{\s*"name"\s*:\s*(?:' + "|".join(re.escape(json.dumps(n)) for n in names) + ")"
    return "\n".join([*rules, *parts]) + "\n", trigger


# style: (before the calls, between two calls, after them, one call only)
_FRAMES = {
    "hermes": ("", "\n", "", False),
    "llama3": ("", "", "", True),
    "mistral": ("[TOOL_CALLS][", ", ", "]", False),
    "mistral-args": ("", "", "", False),
}


def _call(style: str, name: str, args: str) -> str:
    """One call of `name` whose arguments are the rule `args`."""
    if style == "mistral-args":
        return f"{_literal('[TOOL_CALLS]' + name + '[ARGS]')} {args}"
    body = _body("parameters" if style == "llama3" else "arguments", name, args)
    if style == "hermes":
        return f"{_literal(_TAG)} {body} {_literal(_UNTAG)}"
    return body


_TAG, _UNTAG = "<tool_call>\n", "\n</tool_call>"


def _body(key: str, name: str, args: str) -> str:
    """A call's JSON object, its arguments under `key` the rule `args`."""
    head = '{"name": ' + json.dumps(name) + ', "' + key + '": '
    return f"{_literal(head)} {args} {_literal('}')}"


_XML_STYLES = ("qwen3-coder", "qwen3.5")


def _xml_calls(tools: Sequence[dict], max_calls: int | None, bare: bool) -> str:
    """Qwen3-Coder's XML calls of `tools`; `bare`: the first call's <tool_call> may be missing."""
    _arguments(tools)  # (a schema llama.cpp cannot convert is refused whole, as for the other formats)
    rules = [*until_rules("xml-text", _XML_CLOSE), r"ws ::= [ \t\n]{0,20}"]
    functions = []
    for i, tool in enumerate(tools):
        fn = tool["function"]
        schema = fn.get("parameters") or {"type": "object"}
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        wanted = schema.get("required") if isinstance(schema.get("required"), list) else []
        required, optional = [], []
        for j, (key, prop) in enumerate(properties.items()):
            rule = f"f{i}-a{j}"
            types = value_types(prop, schema)
            if "string" in types:
                # (A value that may be a string or not: any text will do, read as JSON where it parses.)
                value = "xml-text"
            else:
                value = f"f{i}-a{j}-root"
                rules.append(_json_value(prop, schema, f"f{i}-a{j}-", i, fn["name"], key))
            rules.append(f"{rule} ::= {_literal(f'<parameter={key}>' + chr(10))} {value} {_literal(_XML_CLOSE)}")
            (required if key in wanted else optional).append(rule)
        args = _in_any_order(required)
        if optional:
            args.append(f"({' | '.join(optional)})*")
        opener = _literal(f"<function={fn['name']}>\n")
        rules.append(f"f{i} ::= {' '.join([opener, *args, _literal('</function>' + chr(10))])}")
        functions.append(f"f{i}")
    tag = _literal("<tool_call>\n")
    rules.append(f"call ::= ({' | '.join(functions)}) {_literal('</tool_call>')} ws")
    first = f"{tag}? call" if bare else f"{tag} call"
    root = first if max_calls == 1 else f"{first} ({tag} call)*"
    return "\n".join([f"root ::= {root}", *rules]) + "\n"


_XML_CLOSE = "\n</parameter>\n"


def _json_value(prop: dict, schema: dict, prefix: str, index: int, name: str, key: str) -> str:
    """The rules of a parameter's JSON value, its $refs into the tool's schema kept whole."""
    sub = dict(prop) if isinstance(prop, dict) else {}
    for defs in ("$defs", "definitions"):
        if defs in schema and defs not in sub:
            sub[defs] = schema[defs]
    try:
        return rename(schema_to_gbnf(sub), prefix).rstrip("\n")
    except LocalspecError as e:
        raise SchemaError(f"the parameter {key} of {name}: {e}", index) from None


def _in_any_order(rules: list[str]) -> list[str]:
    """A sequence of `rules`, each once, in any order (as Qwen writes them,
    not always in the schema's order); past four, in the schema's order, as
    the orders grow as a factorial."""
    if len(rules) <= 1 or len(rules) > 4:
        return rules
    orders = [" ".join(p) for p in itertools.permutations(rules)]
    return [f"({' | '.join(orders)})"]
