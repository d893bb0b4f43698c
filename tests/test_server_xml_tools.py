"""Qwen3-Coder's XML tool calls through the `openai` package against a real
`localspec serve` process: Qwen2.5-Coder-1.5B given Qwen3-Coder's chat
template (models.toml's chat_template): the tools are shown to it in that
format, its calls are held to the tools' grammar and read back by each
parameter's schema, and a call in the history goes back for a final answer.
(The history as the template writes it: tests/test_toolparse.py.)"""

from __future__ import annotations

import json

import pytest

from localspec.bench import agent_requests as agent
from localspec.bench.agent_requests import WEATHER
from serving import Server, isolated_env, serving
from test_toolparse import TEMPLATES

pytestmark = [pytest.mark.qwen, pytest.mark.models]

MODEL = "qwen-xml-tools"
ASK = [{"role": "system", "content": agent.SYSTEM}, {"role": "user", "content": "What is the weather in Paris right now?"}]
LOOKUP = {"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "required": ["city", "days"],
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"}}}}}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory, qwen_target_path):
    root = tmp_path_factory.mktemp("serve-xml-tools")
    env = isolated_env(root, {})
    template = (TEMPLATES / "Qwen3-Coder.jinja").read_text()
    # (A JSON string is a TOML basic string.)
    (root / "config" / "models.toml").write_text(
        f"[models.{MODEL}]\nchat_template = {json.dumps(template)}\n\n"
        f"[[models.{MODEL}.sources]]\npath = {json.dumps(str(qwen_target_path))}\n"
    )
    yield from serving(Server(env, root / "server.log", "--target", MODEL, "--method", "lookup"))


def ask(server, messages=ASK, tools=(WEATHER,), **kw):
    return server.client().chat.completions.create(model=MODEL, messages=messages, tools=list(tools), temperature=0, **kw)


def test_a_forced_call_has_its_values_typed_by_the_schema(server):
    resp = ask(server, [{"role": "user", "content": "Paris for the next 3 days, please."}], tools=[LOOKUP],
               tool_choice="required", max_tokens=80)  # fmt: skip
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    (call,) = choice.message.tool_calls
    args = json.loads(call.function.arguments)
    assert call.function.name == "lookup" and call.id.startswith("call_")
    assert isinstance(args["city"], str) and "paris" in args["city"].lower()
    assert type(args["days"]) is int and type(args.get("metric", True)) is bool


NOTE = {"type": "function", "function": {"name": "save_note", "parameters": {
    "type": "object", "required": ["title", "lines"], "properties": {"title": {"type": "string"}, "lines": {"type": "string"}}}}}  # fmt: skip


def test_a_string_value_keeps_its_line_breaks(server):
    ask_ = [{"role": "user", "content": "Save a note titled groceries with three lines: eggs, milk, bread (one per line)."}]
    resp = ask(server, ask_, tools=[NOTE], tool_choice="required", max_tokens=100)
    (call,) = resp.choices[0].message.tool_calls
    args = json.loads(call.function.arguments)
    assert args["title"] == "groceries" and args["lines"].split("\n") == ["eggs", "milk", "bread"]


@pytest.fixture(scope="module")
def called(server):
    return ask(server, max_tokens=100)


def test_left_to_the_model_it_calls_in_xml(called):
    choice = called.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and "paris" in json.loads(call.function.arguments)["city"].lower()


def test_streamed_call_agrees_with_the_whole_one(server, called):
    chunks = list(ask(server, max_tokens=100, stream=True))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    parts = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert parts[0].id and parts[0].function.name == "get_weather" and all(d.index == 0 for d in parts)
    whole = called.choices[0].message
    assert content == (whole.content or "")
    assert json.loads("".join(d.function.arguments or "" for d in parts)) == json.loads(whole.tool_calls[0].function.arguments)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_the_tool_result_gets_a_final_answer(server, called):
    call = called.choices[0].message.tool_calls[0]
    history = [
        *ASK,
        called.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature_c": 18, "sky": "cloudy"})},
    ]
    answer = ask(server, history, max_tokens=60)
    choice = answer.choices[0]
    assert choice.finish_reason == "stop" and not choice.message.tool_calls and "18" in choice.message.content
