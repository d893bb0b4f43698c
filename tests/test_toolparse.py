"""Tool calls read back from a reply, per model family (pure: no model runs),
and a request's tools checked and rendered through real chat templates
(tests/data/chat_templates, copied from llama.cpp)."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from localspec.backend import Model
from localspec.grammar import Grammar, LazyGrammar
from localspec.server.schemas import ChatRequest
from localspec.server.toolgrammar import force_calls, lazy_calls, rename
from localspec.server.toolparse import FAMILIES, ToolStream, detect_family
from localspec.server.tools import RequestError, TemplateTools, plan

TEMPLATES = Path(__file__).parent / "data" / "chat_templates"
NAMES = ["get_weather", "search"]
PARIS = '{"city": "Paris"}'
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'

XML = "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>"
XML_SEARCH = ("<tool_call>\n<function=search>\n<parameter=q>\n42\n</parameter>\n<parameter=limit>\n5\n</parameter>\n"
              '<parameter=filters>\n{"site": ["a.org"]}\n</parameter>\n<parameter=exact>\ntrue\n</parameter>\n</function>\n</tool_call>')
XML_SEARCH_ARGS = '{"q": "42", "limit": 5, "filters": {"site": ["a.org"]}, "exact": true}'
XML_PARAMETERS = {
    "get_weather": {"type": "object", "properties": {"city": {"type": "string"}}},
    "search": {"type": "object", "$defs": {"flag": {"type": "boolean"}}, "properties": {
        "q": {"type": "string"}, "limit": {"type": "integer"}, "filters": {"type": "object"},
        "exact": {"$ref": "#/$defs/flag"}}},
}  # fmt: skip

# (family, reply, content, [(name, arguments)], malformed)
CASES = [
    ("hermes", CALL, None, [("get_weather", PARIS)], 0),
    ("hermes", "Let me look.\n" + CALL + "\n" + CALL.replace("get_weather", "search").replace("city", "q"),
     "Let me look.", [("get_weather", PARIS), ("search", '{"q": "Paris"}')], 0),
    # What Qwen2.5-Coder-1.5B writes (recorded from the default pair):
    ("hermes", '```json\n{\n  "name": "get_weather",\n  "arguments": {\n    "city": "Paris"\n  }\n}\n```',
     None, [("get_weather", '{\n    "city": "Paris"\n  }')], 0),
    ("hermes", '{{"name": "get_weather", "arguments": {"city": "Paris"}}}', None, [("get_weather", PARIS)], 0),
    ("hermes", '<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}</tool_call>',
     None, [("get_weather", PARIS)], 0),
    ("hermes", '<tool_call>\n{"name": "get_weather"}\n</tool_call>', None, [("get_weather", "{}")], 0),
    ("hermes", "A" + CALL + " and B", "A and B", [("get_weather", PARIS)], 0),
    # Content that only looks like the start of a call stays content, whole.
    ("hermes", 'Use {"a": 1} or ```json\n{"name": "Bob"}\n```\nas you like', 'Use {"a": 1} or ```json\n{"name": "Bob"}\n```\nas you like', [], 0),
    ("hermes", "Ends with <tool", "Ends with <tool", [], 0),
    ("hermes", "Trailing space kept  \n", "Trailing space kept  \n", [], 0),
    # Unparseable calls are content, counted.
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {city: Paris}}\n</tool_call>',
     '<tool_call>\n{"name": "get_weather", "arguments": {city: Paris}}\n</tool_call>', [], 1),
    ("hermes", '<tool_call>\n{"name": "launch_rockets", "arguments": {}}\n</tool_call>',
     '<tool_call>\n{"name": "launch_rockets", "arguments": {}}\n</tool_call>', [], 1),
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": [1]}\n</tool_call>\nsorry',
     '<tool_call>\n{"name": "get_weather", "arguments": [1]}\n</tool_call>\nsorry', [], 1),
    ("hermes", '<tool_call>\n{"name": "get_weather", "argu', '<tool_call>\n{"name": "get_weather", "argu', [], 1),
    ("hermes", "<tool_call>\n<function=get_weather>", "<tool_call>\n<function=get_weather>", [], 1),  # (XML is qwen3-coder's)
    ("llama3", '{"name": "get_weather", "parameters": {"city": "Paris"}}', None, [("get_weather", PARIS)], 0),
    ("llama3", '{"type": "function", "name": "search", "parameters": {"q": "x"}}', None, [("search", '{"q": "x"}')], 0),
    ("llama3", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}', None, [("get_weather", PARIS)], 0),
    ("llama3", '<|python_tag|>get_weather.call(city="Paris")', None, [("get_weather", PARIS)], 0),
    ("llama3", "<|python_tag|>print(1 + 1)", "<|python_tag|>print(1 + 1)", [], 1),
    ("llama3", 'The JSON is {"name": "Bob"}.', 'The JSON is {"name": "Bob"}.', [], 0),
    ("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1b2c3d4e"}]',
     None, [("get_weather", PARIS)], 0),
    ("mistral", 'Sure.[TOOL_CALLS]get_weather[CALL_ID]000000001[ARGS]{"city": "Paris"}[TOOL_CALLS]search[CALL_ID]000000002[ARGS]{"q": "x"}',
     "Sure.", [("get_weather", PARIS), ("search", '{"q": "x"}')], 0),
    ("mistral", '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}', None, [("get_weather", PARIS)], 0),
    ("mistral", '[TOOL_CALLS]get_weather{"city": "Paris"}', '[TOOL_CALLS]get_weather{"city": "Paris"}', [], 1),
    ("mistral", "[TOOL_CALLS][not json", "[TOOL_CALLS][not json", [], 1),
    # Qwen3-Coder's XML: a string's value is its text, anything else JSON, by the schema (XML_PARAMETERS).
    ("qwen3-coder", "I will look.\n" + XML, "I will look.", [("get_weather", PARIS)], 0),
    ("qwen3-coder", XML.replace("Paris", "1 + 1 < 3\n</parameter> is text"),
     None, [("get_weather", '{"city": "1 + 1 < 3\\n</parameter> is text"}')], 0),
    ("qwen3-coder", XML_SEARCH, None, [("search", '{"q": "42", "limit": 5, "filters": {"site": ["a.org"]}, "exact": true}')], 0),
    ("qwen3-coder", XML + "\n" + XML_SEARCH, None, [("get_weather", PARIS), ("search", XML_SEARCH_ARGS)], 0),
    # One line each, or with no <tool_call> before the call (Qwen3-Coder does both now and then).
    ("qwen3-coder", "<tool_call><function=get_weather><parameter=city>Paris</parameter></function></tool_call>",
     None, [("get_weather", PARIS)], 0),
    ("qwen3-coder", "<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
     None, [("get_weather", PARIS)], 0),
    ("qwen3-coder", "#include <functional>\n<function=main>", "#include <functional>\n<function=main>", [], 0),
    # A model that reasons first may name a call as it does: only a tagged call is one.
    ("qwen3.5", "<function=get_weather> it is, then.\n" + XML, "<function=get_weather> it is, then.", [("get_weather", PARIS)], 0),
    # A value may hold the closing tag's text where the grammar lets it (not after a line break and before one).
    ("qwen3-coder", XML.replace("Paris", "x</parameter>\n<parameter=city>\nRome"),
     None, [("get_weather", '{"city": "x</parameter>\\n<parameter=city>\\nRome"}')], 0),
    ("qwen3-coder", XML_SEARCH.replace('{"site": ["a.org"]}', '{"site": ["</parameter></function>"]}'),
     None, [("search", XML_SEARCH_ARGS.replace("a.org", "</parameter></function>"))], 0),
    ("qwen3-coder", XML_SEARCH.replace("\n5\n", "\nfive\n"), XML_SEARCH.replace("\n5\n", "\nfive\n"), [], 1),
    ("qwen3-coder", XML.replace("get_weather", "launch_rockets") + " done", XML.replace("get_weather", "launch_rockets") + " done", [], 1),
    ("qwen3-coder", "<tool_call>\n<function=get_weather>\n<parameter=city>\nPar", "<tool_call>\n<function=get_weather>\n<parameter=city>\nPar", [], 1),
    ("qwen3-coder", "<tool_call>\n<function=get_weather>\nParis\n</function>", "<tool_call>\n<function=get_weather>\nParis\n</function>", [], 1),
]  # fmt: skip


def read(family: str, text: str, step: int | None, names=NAMES, parameters=XML_PARAMETERS, **kw) -> tuple[ToolStream, list[dict]]:
    ts = ToolStream(FAMILIES[family], names, parameters=parameters, **kw)
    deltas: list[dict] = []
    for i in range(0, len(text), step or len(text) or 1):
        deltas += ts.push(text[i : i + (step or len(text))])
    deltas += ts.finish()
    return ts, deltas


@pytest.mark.parametrize("family, text, content, calls, malformed", CASES)
@pytest.mark.parametrize("step", [None, 1, 2, 3, 7])
def test_reply_reads_the_same_streamed_or_whole(family, text, content, calls, malformed, step):
    ts, deltas = read(family, text, step)
    msg = ts.message()
    assert msg["content"] == (content if content is not None else (None if calls else ""))
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in msg.get("tool_calls", [])] == calls
    assert ts.malformed == malformed
    # The deltas add up to the message: content pieces, then per call its
    # header (index, id, name) followed by its arguments in pieces.
    assert "".join(d.get("content", "") for d in deltas) == (msg["content"] or "")
    for i, call in enumerate(msg.get("tool_calls", [])):
        parts = [d["tool_calls"][0] for d in deltas if "tool_calls" in d and d["tool_calls"][0]["index"] == i]
        assert parts[0]["id"] == call["id"] and parts[0]["function"] == {"name": call["function"]["name"], "arguments": ""}
        assert all("id" not in p and "name" not in p["function"] for p in parts[1:])
        assert "".join(p["function"]["arguments"] for p in parts) == call["function"]["arguments"]
        json.loads(call["function"]["arguments"])


def test_content_never_carries_part_of_a_call():
    text = "Checking.\n" + CALL
    for step in range(1, 12):
        _, deltas = read("hermes", text, step)
        assert "".join(d.get("content", "") for d in deltas) == "Checking."


def test_ids_follow_the_family():
    ts, _ = read("hermes", CALL + CALL, None)
    ids = [c.id for c in ts.calls]
    assert all(i.startswith("call_") and len(i) > 20 for i in ids) and len(set(ids)) == 2
    ts, _ = read("mistral", '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}', None)
    (call,) = ts.calls  # Mistral's templates take back only 9 letters or digits
    assert len(call.id) == 9 and set(call.id) <= set(string.ascii_letters + string.digits)


def test_parallel_tool_calls_false_keeps_the_first():
    ts, deltas = read("hermes", CALL + CALL.replace("Paris", "Rome"), 2, max_calls=1)
    assert [c.arguments for c in ts.calls] == [PARIS]
    assert {d["tool_calls"][0]["index"] for d in deltas if "tool_calls" in d} == {0}
    assert ts.content == "" and ts.malformed == 0


# --- templates ---------------------------------------------------------------


def template(name: str) -> str:
    return (TEMPLATES / name).read_text()


@pytest.mark.parametrize(
    "name, family, object_arguments",
    [
        ("meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3", True),
        ("mistralai-Mistral-Nemo-Instruct-2407.jinja", "mistral", True),
        ("Mistral-Small-3.2-24B-Instruct-2506.jinja", "mistral", True),
        ("Qwen-Qwen3-0.6B.jinja", "hermes", False),  # it writes a string's text as it is
        ("Qwen3-Coder.jinja", "qwen3-coder", True),  # each argument as <parameter=key>
        ("Qwen3.5-4B.jinja", "qwen3.5", True),  # the same XML, after its reasoning
    ],
)
def test_template_probe(name, family, object_arguments):
    tt = TemplateTools.probe("m", template(name))
    assert tt.takes_tools and tt.family is FAMILIES[family]
    assert tt.object_arguments == object_arguments


WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}  # fmt: skip


def history(call_id: str) -> list[dict]:
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": PARIS}}]},
        {"role": "tool", "tool_call_id": call_id, "content": '{"temperature_c": 18}'},
        {"role": "assistant", "content": "It is 18 C."},
        {"role": "user", "content": "And tomorrow?"},
    ]  # fmt: skip


def render(name: str, request: dict) -> str:
    tt = TemplateTools.probe("m", template(name))
    p = plan(ChatRequest(**request), tt)
    return Jinja2ChatFormatter(template=template(name), eos_token="</s>", bos_token="<s>")(
        messages=p.messages, tools=p.tools
    ).prompt


@pytest.mark.parametrize(
    "name, family, call_id, written",
    [
        ("Qwen-Qwen3-0.6B.jinja", "hermes", "call_abc", CALL),
        ("meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3", "call_abc",
         '{"name": "get_weather", "parameters": {"city": "Paris"}}'),
        ("mistralai-Mistral-Nemo-Instruct-2407.jinja", "mistral", "a1b2c3d4e",
         '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1b2c3d4e"}]'),
        ("Qwen3-Coder.jinja", "qwen3-coder", "call_abc", XML),
        ("Qwen3.5-4B.jinja", "qwen3.5", "call_abc", XML),
    ],
)  # fmt: skip
def test_history_renders_in_the_models_own_format(name, family, call_id, written):
    """A call from the history goes into the prompt the way the model writes
    calls, and reading that text back gives the call again."""
    prompt = render(name, {"messages": history(call_id), "tools": [WEATHER]})
    assert written in prompt and "temperature_c" in prompt and "Weather in a city" in prompt
    ts, _ = read(family, written, None)
    assert [(c.name, json.loads(c.arguments)) for c in ts.calls] == [("get_weather", {"city": "Paris"})]


def test_tool_choice_none_shows_the_template_no_tools():
    prompt = render("Qwen-Qwen3-0.6B.jinja", {"messages": history("call_abc"), "tools": [WEATHER], "tool_choice": "none"})
    assert "Weather in a city" not in prompt and CALL in prompt


QWEN3 = TemplateTools.probe("qwen3", template("Qwen-Qwen3-0.6B.jinja"))
USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "request_, param, words",
    [
        ({"messages": USER, "tools": [WEATHER, WEATHER]}, "tools[1].function.name", "two tools"),
        ({"messages": USER, "tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
         "tool_choice", "'nope'"),
        ({"messages": USER, "tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice", "one of"),
        ({"messages": USER, "tool_choice": "required"}, "tool_choice", "needs tools"),
        ({"messages": USER + [{"role": "tool", "tool_call_id": "call_x", "content": "1"}]},
         "messages[1].tool_call_id", "no tool call"),
        ({"messages": USER + [{"role": "tool", "content": "1"}]}, "messages[1].tool_call_id", "needs"),
        ({"messages": [{"role": "user", "content": "x", "tool_calls": history("c")[1]["tool_calls"]}]},
         "messages[0].tool_calls", "assistant"),
        ({"messages": [*USER, {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "get_weather", "arguments": "{oops"}}]}]},
         "messages[1].tool_calls[0].function.arguments", "JSON object"),
    ],
)  # fmt: skip
def test_bad_tool_requests(request_, param, words):
    with pytest.raises(RequestError) as e:
        plan(ChatRequest(**request_), QWEN3)
    assert e.value.param == param and words in str(e.value)


@pytest.mark.parametrize(
    "name, words",
    [("google-gemma-2-2b-it.jinja", "no tool support"), ("meetkai-functionary-medium-v3.2.jinja", "format localspec does not read")],
)
def test_templates_that_cannot_serve_tools(name, words):
    tt = TemplateTools.probe("their-model", template(name))
    assert detect_family(template(name)) is None
    with pytest.raises(RequestError) as e:
        plan(ChatRequest(messages=USER, tools=[WEATHER]), tt)
    assert "their-model" in str(e.value) and words in str(e.value) and e.value.param == "tools"


# --- forcing calls -------------------------------------------------------------

TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
XML_TIME = "<tool_call>\n<function=get_time>\n</function>\n</tool_call>"


def accepts(grammar: Grammar | LazyGrammar, model: Model, text: str) -> bool:
    """Whether `grammar` lets `text` be written, token by token, and then end."""
    grammar.reset()
    for token in model.tokenize(text, add_special=False, parse_special=True):
        if not grammar.allowed(token):
            return False
        grammar.accept(token)
    return grammar.allowed(model.eos)


@pytest.mark.parametrize(
    "style, good, bad",
    [
        ("hermes", CALL + "\n" + CALL.replace("get_weather", "get_time").replace(PARIS, "{}"),
         CALL.replace("Paris", "7").replace('"7"', "7")),
        ("llama3", '{"name": "get_weather", "parameters": {"city": "Paris"}}', '{"name": "get_weather", "parameters": {}}'),
        ("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}]',
         '[TOOL_CALLS][{"name": "get_date", "arguments": {}}]'),
        ("mistral-args", '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{}',
         '[TOOL_CALLS]get_weather[ARGS]{"town": "Paris"}'),
        ("qwen3-coder", XML + "\n" + XML_TIME, XML.replace("city", "town")),
    ],
)  # fmt: skip
def test_forcing_grammar_takes_calls_and_only_calls(smollm2_path, style, good, bad):
    """The grammar, compiled by llama.cpp, lets a model write calls of the
    tools with schema-valid arguments, as the family's reader reads them, and
    nothing else (no leading prose, no other function, no wrong arguments)."""
    model = Model(smollm2_path)
    try:
        grammar = Grammar(model, force_calls(style, [WEATHER, TIME], None))
        assert accepts(grammar, model, good)
        assert not accepts(grammar, model, bad)
        assert not accepts(grammar, model, "Sure! " + good)
        family = "mistral" if style.startswith("mistral") else style
        ts, _ = read(family, good, None, names=["get_weather", "get_time"])
        expected = ["get_weather"] if style == "llama3" else ["get_weather", "get_time"]  # (one call a turn)
        assert [c.name for c in ts.calls] == expected and not ts.malformed
        one = Grammar(model, force_calls(style, [WEATHER, TIME], 1))
        first = good.split("\n<tool_call>")[0] if style in ("hermes", "qwen3-coder") else None
        if style == "mistral-args":
            first = good.split("[TOOL_CALLS]get_time")[0]
        if first:
            assert accepts(one, model, first) and not accepts(one, model, good)
        grammar.close()
        one.close()
    finally:
        model.close()


EDIT = {"type": "function", "function": {"name": "edit", "parameters": {
    "type": "object", "required": ["path", "line"], "properties": {
        "path": {"type": "string"}, "line": {"type": "integer"}, "text": {"type": ["string", "null"]},
        "opts": {"type": "object", "properties": {"dry": {"type": "boolean"}}, "required": ["dry"]}}}}}  # fmt: skip


def xml_edit(*params: tuple[str, str]) -> str:
    body = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in params)
    return f"<tool_call>\n<function=edit>\n{body}</function>\n</tool_call>"


# Texts a string value may hold under the grammar (not its closing line), read back whole.
CODE = 'if a </parameter> b:\n    print("<parameter=x>")'
TRICKY = 'x</parameter>\n<parameter=path>\nb.py\n</parameter></function>'
A = {"path": "a.py", "line": 3}


@pytest.mark.parametrize(
    "text, args",
    [
        (xml_edit(("path", "a.py"), ("line", "3")), A),
        (xml_edit(("line", "3"), ("path", "a.py"), ("text", CODE), ("opts", '{"dry": true}')),
         {**A, "text": CODE, "opts": {"dry": True}}),  # any order
        (xml_edit(("path", "a.py"), ("line", "3"), ("text", TRICKY)), {**A, "text": TRICKY}),
        (xml_edit(("path", "a.py"), ("line", "3"), ("text", '"quoted"')), {**A, "text": '"quoted"'}),  # text, quotes kept
        (xml_edit(("path", "a.py"), ("line", "3"), ("text", "null")), {**A, "text": None}),
        (xml_edit(("path", "a.py"), ("line", "three")), None),  # an integer is JSON
        (xml_edit(("path", "a.py"), ("line", "3"), ("opts", '{"dry": 1}')), None),  # and so is an object, by its schema
        (xml_edit(("path", "a.py")), None),  # a required parameter left out
        (xml_edit(("path", "a.py"), ("line", "3"), ("text", "a\n</parameter>\nb")), None),  # its closing line inside
    ],
)  # fmt: skip
def test_xml_values_follow_each_parameters_schema(smollm2_path, text, args):
    """Qwen3-Coder's calls under llama.cpp's grammar: a string parameter is any
    text short of its closing line, every other value JSON by its schema; and
    what the grammar lets through reads back to the arguments written, streamed
    a character at a time or whole."""
    model = Model(smollm2_path)
    try:
        grammar = Grammar(model, force_calls("qwen3-coder", [EDIT], None))
        assert accepts(grammar, model, text) == (args is not None)
        grammar.close()
    finally:
        model.close()
    if args is not None:
        for step in (None, 1):
            ts, _ = read("qwen3-coder", text, step, names=["edit"], parameters={"edit": EDIT["function"]["parameters"]})
            (call,) = ts.calls
            assert json.loads(call.arguments) == args and not ts.malformed


@pytest.mark.parametrize(
    "style, held, free",
    [
        ("hermes", "I will look.\n" + CALL + "\n" + CALL.replace("get_weather", "get_time").replace(PARIS, "{}"),
         ['No call, a word on {"name": "get_date"} instead.', '<tool_call>\n{"name":"get_weather"} spaced otherwise']),
        ("hermes", '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```', []),
        ("llama3", '{"name": "get_weather", "parameters": {"city": "Paris"}}', ["Just words."]),
        ("mistral", 'Let me see. [TOOL_CALLS][{"name": "get_time", "arguments": {}}]', ["No [TOOL CALLS] here."]),
        ("qwen3-coder", "I will look.\n" + XML + "\n" + XML_TIME, ["#include <functional>\n<function=main>"]),
        ("qwen3-coder", XML.removeprefix("<tool_call>\n"), []),
        ("qwen3.5", "I will look.\n" + XML, ["<function=get_time> is what I would call."]),  # (no bare opener)
    ],
)  # fmt: skip
def test_under_auto_calls_are_held_once_begun_and_the_rest_is_free(smollm2_path, style, held, free):
    model = Model(smollm2_path)
    try:
        gbnf, trigger = lazy_calls(style, [WEATHER, TIME], None)
        grammar = LazyGrammar(model, gbnf, trigger)
        assert accepts(grammar, model, held) and grammar.held
        for text in free:
            assert accepts(grammar, model, text) and not grammar.held
        # Once held, a call names a tool and its arguments follow its schema.
        bad = held.replace('"Paris"', "7") if '"Paris"' in held else held.replace("get_time", "get_date").replace("city", "town")
        assert not accepts(grammar, model, bad)
        grammar.close()
    finally:
        model.close()


def test_required_and_named_choices_carry_a_grammar():
    both = {"messages": USER, "tools": [WEATHER, TIME]}
    auto = plan(ChatRequest(**both), QWEN3)
    assert "get_time" in auto.grammar and "get_weather" in auto.trigger  # held once a call begins
    assert plan(ChatRequest(**both, tool_choice="none"), QWEN3).grammar is None
    required = plan(ChatRequest(**both, tool_choice="required"), QWEN3)
    assert "get_weather" in required.grammar and "get_time" in required.grammar
    named = plan(ChatRequest(**both, tool_choice={"type": "function", "function": {"name": "get_time"}}), QWEN3)
    assert "get_time" in named.grammar and "get_weather" not in named.grammar


@pytest.mark.parametrize("tt", [QWEN3, TemplateTools.probe("coder", template("Qwen3-Coder.jinja"))], ids=["hermes", "xml"])
def test_a_schema_llama_cpp_cannot_convert_is_a_400(tt):
    bad = {"type": "function", "function": {"name": "f", "parameters": {"type": "foo"}}}
    with pytest.raises(RequestError) as e:
        plan(ChatRequest(messages=USER, tools=[WEATHER, bad]), tt)
    assert e.value.param == "tools[1].function.parameters" and "Unrecognized schema" in str(e.value)


def test_rename_leaves_literals_and_classes_alone():
    gbnf = 'root ::= "root space" [a-z] space root?\nspace ::= " "\n'
    assert rename(gbnf, "t0-") == 't0-root ::= "root space" [a-z] t0-space t0-root?\nt0-space ::= " "\n'
