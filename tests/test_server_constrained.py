"""`localspec serve` with constrained output and logprobs, as the `openai`
package sees it: response_format (json_object, json_schema), llama-server's
`grammar` field, chat `logprobs`/`top_logprobs` and the completions' legacy
`logprobs`, streamed and whole, against real server processes (SmolLM2-135M
for the shapes and the refusals, the Qwen2.5-Coder pair for the 10-of-10)."""

from __future__ import annotations

import json
import math

import pytest

from serving import Server, isolated_env, openai, serving
from test_server import SMOLLM2, env  # noqa: F401  (env: SmolLM2's server environment)

jsonschema = pytest.importorskip("jsonschema")

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer"},
        "city": {"type": "string", "maxLength": 40},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
PERSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
NOTE = [{"role": "user", "content": "Who is in this note? Maria Lopez, 34, moved to Valencia last spring."}]


@pytest.fixture(scope="module")
def server(env, tmp_path_factory):  # noqa: F811
    yield from serving(Server(env, tmp_path_factory.mktemp("constrained") / "server.log", *SMOLLM2))


def streamed_chat(client, **kwargs) -> tuple[str, list, dict]:
    text, logprobs, last = "", [], {}
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            if chunk.choices[0].logprobs:
                logprobs += chunk.choices[0].logprobs.content
            last = chunk.model_extra
    return text, logprobs, last


def test_json_schema_replies_validate_whole_and_streamed_alike(server):
    client = server.client()
    whole = client.chat.completions.create(
        model="any", messages=NOTE, temperature=0, max_tokens=60, response_format=PERSON_FORMAT
    )
    reply = whole.choices[0].message.content
    jsonschema.validate(json.loads(reply), PERSON)
    assert whole.choices[0].finish_reason == "stop"
    text, _, last = streamed_chat(
        client, model="any", messages=NOTE, temperature=0, max_tokens=60, response_format=PERSON_FORMAT
    )
    assert text == reply
    # What speculation did is on constrained replies too.
    for extra in (whole.model_extra, last):
        assert extra["timings"]["predicted_n"] > 0 and extra["localspec"]["stop_reason"] == "eog"


def test_json_object_and_a_gbnf_grammar(server):
    client = server.client()
    r = client.chat.completions.create(
        model="any", messages=NOTE, temperature=0.8, seed=3, max_tokens=80, response_format={"type": "json_object"}
    )
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)
    else:  # cut by max_tokens: still a JSON object so far
        assert r.choices[0].message.content.startswith("{")
    r = client.completions.create(
        model="any", prompt="The capital of France is", max_tokens=8, temperature=0,
        extra_body={"grammar": 'root ::= " " [A-Z] [a-z]+ "."'},
    )  # fmt: skip
    assert r.choices[0].text == " Paris." and r.choices[0].finish_reason == "stop"
    r = client.chat.completions.create(
        model="any", messages=[{"role": "user", "content": "Is water wet?"}], temperature=0, max_tokens=5,
        extra_body={"grammar": 'root ::= "yes" | "no"'},
    )  # fmt: skip
    assert r.choices[0].message.content in ("yes", "no")


@pytest.mark.parametrize(
    "kwargs, reason, param",
    [
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}}},
         "Unrecognized schema", "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/nope"}}}},
         "cannot be turned into a grammar", "response_format"),
        ({"extra_body": {"grammar": "root ::= foo"}}, "Undefined rule identifier 'foo'", None),
        ({"extra_body": {"grammar": 'root ::= root "x"'}}, "left recursion", None),
        ({"response_format": {"type": "json_object"}, "extra_body": {"grammar": 'root ::= "x"'}},
         "either grammar or response_format", "grammar"),
        ({"top_logprobs": 2}, "top_logprobs needs logprobs", "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "top_logprobs"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("stream", [False, True])
def test_what_cannot_be_served_is_a_400_with_the_reason(server, kwargs, reason, param, stream):
    with pytest.raises(openai.BadRequestError) as e:
        server.client().chat.completions.create(model="any", messages=NOTE, max_tokens=4, stream=stream, **kwargs)
    assert e.value.status_code == 400
    err = e.value.body
    assert reason in err["message"] and err["type"] == "invalid_request_error" and err["param"] == param


def check_chat_logprobs(entries: list, top_n: int, constrained: bool) -> None:
    for e in entries:
        assert e.logprob <= 0 and bytes(e.bytes).decode("utf-8", errors="replace") == e.token
        # Under a grammar only allowed tokens are listed, and at times fewer are allowed.
        assert 1 <= len(e.top_logprobs) <= top_n if constrained else len(e.top_logprobs) == top_n
        alts = [t.logprob for t in e.top_logprobs]
        assert alts == sorted(alts, reverse=True) and all(a <= 0 for a in alts)
        assert (e.top_logprobs[0].token, e.top_logprobs[0].logprob) == (e.token, e.logprob)  # greedy: the top one
        assert sum(math.exp(a) for a in alts) <= 1 + 1e-6


@pytest.mark.parametrize("response_format", [None, PERSON_FORMAT])
def test_chat_logprobs_whole_and_streamed(server, response_format):
    client = server.client()
    kwargs = dict(model="any", messages=NOTE, temperature=0, max_tokens=24, logprobs=True, top_logprobs=3)
    if response_format:
        kwargs["response_format"] = response_format
    whole = client.chat.completions.create(**kwargs)
    entries = whole.choices[0].logprobs.content
    assert "".join(e.token for e in entries) == whole.choices[0].message.content
    assert len(entries) == whole.usage.completion_tokens
    check_chat_logprobs(entries, 3, constrained=response_format is not None)
    text, streamed, _ = streamed_chat(client, **kwargs)
    assert text == whole.choices[0].message.content
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in entries]
    plain = client.chat.completions.create(**{**kwargs, "logprobs": None, "top_logprobs": None})
    assert plain.choices[0].logprobs is None


def test_sampled_logprobs_are_of_the_tempered_distribution(server):
    kwargs = dict(model="any", messages=NOTE, max_tokens=16, logprobs=True, top_logprobs=5, seed=1)
    cold = server.client().chat.completions.create(temperature=0.3, **kwargs).choices[0].logprobs.content
    warm = server.client().chat.completions.create(temperature=1.5, **kwargs).choices[0].logprobs.content
    # The first token's context is the same: a colder distribution is sharper.
    assert cold[0].top_logprobs[0].logprob > warm[0].top_logprobs[0].logprob
    for e in cold + warm:
        # A sampled token need not be among the five best; where it is, the numbers agree.
        listed = {t.token: t.logprob for t in e.top_logprobs}
        assert e.logprob <= 0
        assert listed[e.token] == e.logprob if e.token in listed else e.logprob <= e.top_logprobs[-1].logprob


def test_completion_logprobs_in_the_legacy_shape(server):
    client = server.client()
    kwargs = dict(model="any", prompt="1, 2, 3, 4,", max_tokens=8, temperature=0, logprobs=2)
    whole = client.completions.create(**kwargs).choices[0]
    lp = whole.logprobs
    assert "".join(lp.tokens) == whole.text
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]
    for tok, p, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert p <= 0 and top[tok] == p and max(top.values()) == p and len(top) == 2
    pieces = [c.choices[0] for c in client.completions.create(stream=True, **kwargs) if c.choices]
    streamed = [(t, p) for c in pieces if c.logprobs for t, p in zip(c.logprobs.tokens, c.logprobs.token_logprobs)]
    assert streamed == list(zip(lp.tokens, lp.token_logprobs))
    offsets = [o for c in pieces if c.logprobs for o in c.logprobs.text_offset]
    assert offsets == lp.text_offset


# The bar, on the default pair: 10 of 10 replies validate at temperature 0 and 0.8.


@pytest.fixture(scope="module")
def qwen_server(tmp_path_factory, qwen_target_path, qwen_draft_path):
    root = tmp_path_factory.mktemp("qwen-serve")
    env = isolated_env(root, {"qwen2.5-coder-1.5b": qwen_target_path, "qwen2.5-coder-0.5b": qwen_draft_path})
    args = ("--target", "qwen2.5-coder-1.5b", "--draft", "qwen2.5-coder-0.5b", "--method", "auto")
    yield from serving(Server(env, root / "server.log", *args))


INVOICE = {
    "type": "object",
    "properties": {
        "vendor": {"type": "string", "maxLength": 40},
        "total": {"type": "number"},
        "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
        "paid": {"type": "boolean"},
    },
    "required": ["vendor", "total", "currency", "paid"],
    "additionalProperties": False,
}
INVOICE_NOTE = [
    {"role": "user", "content": "Extract the invoice: 'Acme Tools Ltd. billed us 1,240.50 EUR on 3 May; still unpaid.'"}
]


@pytest.mark.qwen
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_qwen_json_schema_replies_validate_10_of_10(qwen_server, temperature):
    client = qwen_server.client()
    fmt = {"type": "json_schema", "json_schema": {"name": "invoice", "schema": INVOICE, "strict": True}}
    for seed in range(10):
        r = client.chat.completions.create(
            model="any", messages=INVOICE_NOTE, temperature=temperature, seed=seed, max_tokens=48,
            response_format=fmt, logprobs=True, top_logprobs=2,
        )  # fmt: skip
        choice = r.choices[0]
        assert choice.finish_reason == "stop", choice.message.content
        jsonschema.validate(json.loads(choice.message.content), INVOICE)
        assert all(e.logprob <= 0 for e in choice.logprobs.content)
        assert r.model_extra["localspec"]["steps"] > 0
