"""A thinking model's reasoning comes back as `reasoning_content`, apart from
its answer: the `openai` package against a real `localspec serve` process.
Qwen2.5-Coder-1.5B is given Qwen3.5's chat template (models.toml's
chat_template), whose prompt opens <think> for the reply; told to, this model
closes it with </think> and answers. Which templates think, and how the
reasoning of earlier turns goes back to them: the pure tests at the end."""

from __future__ import annotations

import itertools
import json

import pytest

from localspec.bench.agent_requests import WEATHER
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from localspec.reasoning import END, START, Reasoning
from localspec.events import Counters, GenerationResult
from localspec.server import tools
from localspec.server.app import ChatShape
from localspec.server.schemas import ChatRequest
from localspec.server.stats import Metrics
from localspec.server.toolparse import FAMILIES, ToolStream
from serving import Server, isolated_env, serving
from test_toolparse import TEMPLATES

MODEL = "qwen-thinking"
QWEN35 = (TEMPLATES / "Qwen3.5-4B.jinja").read_text()
ASK = [
    {"role": "system", "content": "Format: your reasoning, then the line </think>, then the answer."},
    {"role": "user", "content": "What is 17 + 25?"},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, qwen_target_path):
    root = tmp_path_factory.mktemp("serve-thinking")
    env = isolated_env(root, {})
    (root / "config" / "models.toml").write_text(
        f"[models.{MODEL}]\nchat_template = {json.dumps(QWEN35)}\n\n"
        f"[[models.{MODEL}.sources]]\npath = {json.dumps(str(qwen_target_path))}\n"
    )
    yield from serving(Server(env, root / "server.log", "--target", MODEL, "--method", "lookup"))


def read_whole(reply: str, open_: bool = True) -> tuple[str, str]:
    split = Reasoning(open_).split()
    (r, a), (r2, a2) = split.push(reply), split.finish()
    return r + r2, a + a2


def ask(server, messages=ASK, **kw):
    return server.client().chat.completions.create(model=MODEL, messages=messages, temperature=0, **kw)


@pytest.fixture(scope="module")
def answered(server):
    return ask(server, max_tokens=150)


@pytest.mark.qwen
@pytest.mark.models
def test_the_reasoning_comes_apart_from_the_answer(answered):
    choice = answered.choices[0]
    reasoning, content = choice.message.reasoning_content, choice.message.content
    assert choice.finish_reason == "stop"
    assert "17 + 25" in reasoning and content  # (what the sum comes to is this small model's business)
    for tag in (START, END):
        assert tag not in reasoning and tag not in content
    assert reasoning == reasoning.strip() and content == content.strip()


@pytest.mark.qwen
@pytest.mark.models
def test_streamed_reasoning_agrees_with_the_whole(server, answered):
    chunks = list(ask(server, max_tokens=150, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    content = "".join(d.content or "" for d in deltas)
    whole = answered.choices[0].message
    assert (reasoning, content) == (whole.reasoning_content, whole.content)
    first_answer = next(i for i, d in enumerate(deltas) if d.content)
    assert any(getattr(d, "reasoning_content", None) for d in deltas[:first_answer])  # reasoning streams before it


@pytest.mark.qwen
@pytest.mark.models
def test_reasoning_format_none_leaves_the_reply_as_written(server, answered):
    resp = ask(server, max_tokens=150, extra_body={"reasoning_format": "none"})
    message = resp.choices[0].message
    assert getattr(message, "reasoning_content", None) is None
    assert END in message.content
    whole = answered.choices[0].message
    assert read_whole(message.content) == (whole.reasoning_content, whole.content)
    legacy = ask(server, max_tokens=150, extra_body={"reasoning_format": "deepseek-legacy"}).choices[0].message
    assert (legacy.reasoning_content, legacy.content) == (whole.reasoning_content, message.content)


@pytest.mark.qwen
@pytest.mark.models
def test_usage_counts_the_reasoning_tokens(server, answered):
    # The tokens as written, in bytes from logprobs: those that begin before the answer are reasoning.
    resp = ask(server, max_tokens=150, logprobs=True, extra_body={"reasoning_format": "none"})
    pieces = [bytes(entry.bytes) for entry in resp.choices[0].logprobs.content]
    written = b"".join(pieces)
    end = written.index(END.encode()) + len(END)
    answer_at = len(written) - len(written[end:].lstrip())
    n = sum(1 for start in itertools.accumulate(map(len, pieces[:-1]), initial=0) if start < answer_at)
    assert 0 < n < resp.usage.completion_tokens
    assert resp.usage.completion_tokens_details.reasoning_tokens == n
    assert answered.usage.completion_tokens_details.reasoning_tokens == n
    chunks = list(ask(server, max_tokens=150, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == n


@pytest.mark.qwen
@pytest.mark.models
def test_thinking_turned_off_answers_at_once(server):
    for extra in ({"chat_template_kwargs": {"enable_thinking": False}}, {"reasoning_effort": "none"}):
        resp = ask(server, max_tokens=60, extra_body=extra)
        message = resp.choices[0].message
        assert getattr(message, "reasoning_content", None) is None and message.content, extra
        assert END not in message.content, extra
        assert resp.usage.completion_tokens_details.reasoning_tokens == 0, extra


@pytest.mark.qwen
@pytest.mark.models
def test_a_schema_holds_the_answer_and_leaves_the_reasoning_free(server):
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "sum", "schema": schema}}
    message = ask(server, max_tokens=150, response_format=fmt).choices[0].message
    assert "17 + 25" in message.reasoning_content and type(json.loads(message.content)["answer"]) is int


@pytest.mark.qwen
@pytest.mark.models
def test_a_forced_call_follows_the_reasoning(server):
    ask_ = [ASK[0], {"role": "user", "content": "What is the weather in Paris right now?"}]
    resp = ask(server, ask_, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False, max_tokens=150)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and "Paris" in choice.message.reasoning_content
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}


@pytest.mark.qwen
@pytest.mark.models
@pytest.mark.parametrize(
    "extra, param",
    [
        ({"chat_template_kwargs": {"messages": []}}, "chat_template_kwargs"),
        ({"chat_template_kwargs": {"enable_thinking": "false"}}, "chat_template_kwargs"),
        ({"reasoning_format": "hidden"}, "reasoning_format"),
    ],
)
def test_bad_thinking_options_are_a_400_naming_the_field(server, extra, param):
    r = server.http.post("/v1/chat/completions", json={"model": MODEL, "messages": ASK, **extra})
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


@pytest.mark.parametrize(
    "template, thinks, opens, opens_off",
    [
        ("Qwen3.5-4B.jinja", True, True, False),  # the prompt opens <think>; enable_thinking false closes it
        ("Qwen-Qwen3-0.6B.jinja", True, False, False),  # the model writes <think> itself
        ("Qwen3-Coder.jinja", False, None, None),
        ("meta-llama-Llama-3.1-8B-Instruct.jinja", False, None, None),
    ],
)
def test_which_templates_think_and_open_their_reasoning(template, thinks, opens, opens_off):
    text = (TEMPLATES / template).read_text()

    def reasoning(**kwargs) -> Reasoning | None:
        return Reasoning.of(text, render(text, [{"role": "user", "content": "hi"}], **kwargs))

    on, off = reasoning(), reasoning(enable_thinking=False)
    assert (on is not None, off is not None) == (thinks, thinks)
    if thinks:
        assert (on.open, off.open) == (opens, opens_off)


def render(template: str, messages: list[dict], **kwargs) -> str:
    return Jinja2ChatFormatter(template=template, eos_token="", bos_token="", add_generation_prompt=True)(
        messages=messages, **kwargs
    ).prompt


def test_earlier_reasoning_goes_back_to_the_template():
    body = ChatRequest.model_validate({"messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "reasoning_content": "I should call get_weather.",
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18 C"},
    ], "tools": [WEATHER]})  # fmt: skip
    messages = tools.plan(body, tools.TemplateTools.probe(MODEL, QWEN35)).messages
    prompt = render(QWEN35, messages, tools=[WEATHER])
    assert "<think>\nI should call get_weather.\n</think>" in prompt


@pytest.mark.parametrize(
    "pieces, n",
    [
        (["First", " step", ".\n</th", "ink>\n\nIt", " is", " 4."], 4),  # the token that begins the answer after the tag counts
        (["First", " step", "."], 3),  # cut by a stop string ("\n</"): the clipped token's piece ends the text
    ],
)
def test_usage_counts_the_tokens_before_the_answer(pieces, n):
    result = GenerationResult("".join(pieces), [], "eog", Counters(n_generated=len(pieces)), [], [], pieces)
    for reasoning, expected in [(Reasoning(open=True), n), (Reasoning(open=False), 0), (None, 0)]:
        usage = ChatShape("m", "lookup", False, None, Metrics(), reasoning).whole(("done", result, {}, 10))["usage"]
        assert usage["completion_tokens_details"] == {"reasoning_tokens": expected}


CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
THOUGHT = f"I could write {CALL[:40]}, but first: is it {CALL}? Hmm."


@pytest.mark.parametrize("format_", ["deepseek", "none", "deepseek-legacy"])
@pytest.mark.parametrize("stream", [True, False])
def test_only_the_answer_is_read_for_calls(format_, stream):
    """A call written while the model thinks is reasoning, not a call, with
    reasoning_format none too (then it stays in content, as written), or
    deepseek-legacy (both)."""
    reply = f"{THOUGHT}\n{END}\n\n{CALL.replace('Paris', 'Rome')}"
    stream_ = ToolStream(FAMILIES["hermes"], ["get_weather"], parameters={"get_weather": WEATHER["function"]["parameters"]})
    shape = ChatShape("m", "lookup", False, stream_, Metrics(), Reasoning(open=True), format_)
    done = ("done", GenerationResult(reply, [], "eog", Counters(), []), {}, 10)
    if stream:
        deltas = [c["choices"][0]["delta"] for i in range(0, len(reply), 7) for c in shape.piece(reply[i : i + 7])]
        deltas += [c["choices"][0]["delta"] for c in shape.closing(done)]
        reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
        content = "".join(d.get("content") or "" for d in deltas)
        calls = [d["tool_calls"][0] for d in deltas if d.get("tool_calls")]
        arguments = "".join(c["function"].get("arguments") or "" for c in calls)
    else:
        message = shape.whole(done)["choices"][0]["message"]
        reasoning, content = message.get("reasoning_content", ""), message["content"] or ""
        (call,) = message["tool_calls"]
        arguments = call["function"]["arguments"]
    assert json.loads(arguments) == {"city": "Rome"}
    as_written = f"{THOUGHT}\n{END}\n\n"
    expected = {"deepseek": (THOUGHT, ""), "none": ("", as_written), "deepseek-legacy": (THOUGHT, as_written)}
    assert (reasoning, content) == expected[format_]
