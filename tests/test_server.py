"""`localspec serve` as a client sees it: a real server process, the `openai`
package (and a raw HTTP client where the SDK would hide the wire), SmolLM2-135M.

Two servers for the whole module: one plain, one with an API key and a
one-request queue. Replies at temperature 0 are compared with `localspec run`
for the same prompt. Each process gets its own cache and config (tests/serving.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from serving import REQUEST_TIMEOUT_S, Server, httpx, isolated_env, openai, serving

MODEL = "smollm2-135m"
KEY = "sk-test-key"
CHAT_PROMPT = "Write the numbers from 1 to 10 separated by commas."
CHAT_TOKENS = 48
COUNTING = "1, 2, 3, 4, 5, 6,"  # a raw prompt the model continues for thousands of tokens
RAW_TOKENS = 40
LONG = 2000  # max_tokens of a generation meant to still run when the test acts


@pytest.fixture(scope="module")
def env(tmp_path_factory, smollm2_path) -> dict[str, str]:
    return isolated_env(tmp_path_factory.mktemp("serve"), {MODEL: smollm2_path})


SMOLLM2 = ("--target", MODEL, "--method", "lookup")


def _serve(env, tmp_path_factory, name: str, *args: str):
    yield from serving(Server(env, tmp_path_factory.mktemp(name) / "server.log", *SMOLLM2, *args))


@pytest.fixture(scope="module")
def server(env, tmp_path_factory):
    yield from _serve(env, tmp_path_factory, "server")


@pytest.fixture(scope="module")
def keyed_server(env, tmp_path_factory):
    """The key comes from $LOCALSPEC_API_KEY (the flag is the same code path)."""
    yield from _serve(dict(env, LOCALSPEC_API_KEY=KEY), tmp_path_factory, "keyed", "--queue", "1")


def cli_run(env, prompt: str, max_tokens: int, *extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "localspec", "run", "--target", MODEL, "--method", "lookup", "--temp", "0",
         "--max-tokens", str(max_tokens), "--json", "--prompt", prompt, *extra],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def chat_ref(env) -> dict:
    return cli_run(env, CHAT_PROMPT, CHAT_TOKENS)


@pytest.fixture(scope="module")
def raw_ref(env) -> dict:
    return cli_run(env, COUNTING, RAW_TOKENS, "--raw")


def finish_for(ref: dict) -> str:
    return "length" if ref["stop_reason"] in ("max_tokens", "context_full") else "stop"


def chat_stream(client, prompt: str = CHAT_PROMPT, **kw) -> tuple[str, list]:
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}], temperature=0, stream=True, **kw
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def sse_events(response) -> list:
    return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


# --- the endpoints -----------------------------------------------------------


def test_health_and_models(server):
    assert server.http.get("/health").json()["status"] == "ok"
    models = server.client().models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_chat_equals_run(server, chat_ref):
    resp = server.client().chat.completions.create(
        model="whatever-the-editor-says", messages=[{"role": "user", "content": CHAT_PROMPT}],
        temperature=0, max_tokens=CHAT_TOKENS,
    )  # fmt: skip
    assert resp.object == "chat.completion" and resp.model == MODEL
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == chat_ref["text"]
    assert choice.finish_reason == finish_for(chat_ref)
    assert resp.usage.completion_tokens == len(chat_ref["tokens"])
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert resp.usage.completion_tokens_details.reasoning_tokens == 0  # (a template that does not think)


def test_chat_stream_equals_run(server, chat_ref):
    text, chunks = chat_stream(server.client(), max_tokens=CHAT_TOKENS, stream_options={"include_usage": True})
    assert text == chat_ref["text"]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == finish_for(chat_ref)
    timings = finals[0].model_extra["timings"]
    assert timings["predicted_n"] == len(chat_ref["tokens"])
    assert "localspec" in finals[0].model_extra
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage.completion_tokens == len(chat_ref["tokens"])


def test_max_completion_tokens_is_length(server):
    resp = server.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": CHAT_PROMPT}], temperature=0, max_completion_tokens=3
    )
    assert resp.usage.completion_tokens == 3
    assert resp.choices[0].finish_reason == "length"


def test_completion_equals_run_both_modes(server, raw_ref):
    client = server.client()
    whole = client.completions.create(model=MODEL, prompt=COUNTING, temperature=0, max_tokens=RAW_TOKENS)
    assert whole.object == "text_completion"
    assert whole.choices[0].text == raw_ref["text"]
    assert whole.choices[0].finish_reason == finish_for(raw_ref)
    chunks = list(
        client.completions.create(model=MODEL, prompt=COUNTING, temperature=0, max_tokens=RAW_TOKENS, stream=True)
    )
    assert "".join(c.choices[0].text for c in chunks) == raw_ref["text"]
    assert chunks[-1].choices[0].finish_reason == finish_for(raw_ref)
    assert chunks[-1].model_extra["timings"]["predicted_n"] == len(raw_ref["tokens"])


def test_raw_sse_ends_with_done(server):
    body = {"prompt": COUNTING, "max_tokens": 4, "temperature": 0, "stream": True}
    with server.http.stream("POST", "/v1/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    assert all(json.loads(e)["object"] == "text_completion" for e in events[:-1])


@pytest.mark.parametrize("stop", [", 1", ["zzz", " 9", "8,"]])
def test_stop_strings_stream_equals_whole(server, raw_ref, stop):
    stops = [stop] if isinstance(stop, str) else stop
    hits = [raw_ref["text"].find(s) for s in stops if s in raw_ref["text"]]
    assert hits, "the reference text should contain a stop string"
    expected = raw_ref["text"][: min(hits)]
    client = server.client()
    kw = dict(model=MODEL, prompt=COUNTING, temperature=0, max_tokens=RAW_TOKENS, stop=stop)
    whole = client.completions.create(**kw)
    streamed = list(client.completions.create(**kw, stream=True))
    assert whole.choices[0].text == expected
    assert whole.choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].text for c in streamed) == expected
    assert streamed[-1].choices[0].finish_reason == "stop"


def test_chat_stop_string(server, chat_ref):
    stop = "5"
    assert stop in chat_ref["text"]
    expected = chat_ref["text"][: chat_ref["text"].index(stop)]
    client = server.client()
    kw = dict(model=MODEL, messages=[{"role": "user", "content": CHAT_PROMPT}], temperature=0, max_tokens=CHAT_TOKENS)
    assert client.chat.completions.create(**kw, stop=stop).choices[0].message.content == expected
    text, _ = chat_stream(client, max_tokens=CHAT_TOKENS, stop=[stop])
    assert text == expected


def test_timings_are_sane(server):
    resp = server.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "List the first five prime numbers."}],
        temperature=0, max_tokens=24,
    )  # fmt: skip
    t = resp.model_extra["timings"]
    ls = resp.model_extra["localspec"]
    assert t["predicted_n"] == resp.usage.completion_tokens > 0
    assert t["prompt_n"] + t["cache_n"] == resp.usage.prompt_tokens
    assert t["prompt_n"] >= 1 and t["prompt_ms"] >= 0 and t["predicted_ms"] > 0 and t["predicted_per_second"] > 0
    assert t["draft_n"] >= t["draft_n_accepted"] >= 0
    assert ls["method"] == "lookup" and set(ls["methods"]) <= {"lookup", "none"}
    assert sum(ls["methods"].values()) == ls["steps"] >= 1
    assert ls["tokens_per_step"] == pytest.approx(t["predicted_n"] / ls["steps"], abs=1e-3)
    assert all(0.0 <= a <= 1.0 for a in ls["per_position_acceptance"])


def test_a_follow_up_reuses_the_cached_prefix(server):
    messages = [{"role": "user", "content": "Name three colours."}]
    client = server.client()
    first = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=16)
    messages += [{"role": "assistant", "content": first.choices[0].message.content}, {"role": "user", "content": "One more?"}]
    again = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=8)
    assert again.model_extra["timings"]["cache_n"] > 0


# --- concurrency and faults --------------------------------------------------


def test_eight_concurrent_streams_all_complete(server, chat_ref):
    n = 8
    barrier = threading.Barrier(n, timeout=60)
    texts: list[str | None] = [None] * n
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            client = server.client()
            barrier.wait()
            texts[i], _ = chat_stream(client, max_tokens=CHAT_TOKENS)
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(REQUEST_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert texts == [chat_ref["text"]] * n


def test_hang_up_cancels_and_the_next_request_is_right(server, raw_ref):
    cancelled = server.metric("requests_cancelled_total")
    body = {"prompt": COUNTING, "max_tokens": LONG, "temperature": 0, "stream": True}
    with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as c:
        with c.stream("POST", "/v1/completions", json=body) as r:
            assert r.status_code == 200
            for i, line in enumerate(r.iter_lines()):
                if i >= 6:
                    break  # hang up mid-stream
    server.wait_for(lambda: server.metric("requests_cancelled_total") == cancelled + 1)
    server.wait_for(lambda: server.http.get("/health").json()["running"] == 0)
    after = server.client().completions.create(model=MODEL, prompt=COUNTING, temperature=0, max_tokens=RAW_TOKENS)
    assert after.choices[0].text == raw_ref["text"]


def test_hang_up_while_waiting(server, raw_ref):
    """A request that gives up while queued is dropped, not run, or stopped at
    its first step if its turn came before the server noticed."""
    cancelled = server.metric("requests_cancelled_total")
    body = {"prompt": COUNTING, "max_tokens": LONG, "temperature": 0}
    gave_up: list[BaseException] = []

    def impatient() -> None:
        try:
            httpx.post(server.url + "/v1/completions", json=body, timeout=httpx.Timeout(60, read=1.0))
        except httpx.ReadTimeout as e:
            gave_up.append(e)

    with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as c:
        with c.stream("POST", "/v1/completions", json={**body, "stream": True}) as first:
            lines = first.iter_lines()
            assert next(lines).startswith("data: ")
            waiter = threading.Thread(target=impatient)
            waiter.start()
            server.wait_for(lambda: server.http.get("/health").json()["waiting"] == 1, timeout_s=60)
            waiter.join(60)
            assert gave_up and server.http.get("/health").json()["running"] == 1
    server.wait_for(lambda: server.metric("requests_cancelled_total") == cancelled + 2)
    server.wait_for(lambda: server.http.get("/health").json() | {"model": None} == {
        "status": "ok", "model": None, "running": 0, "waiting": 0})  # fmt: skip
    after = server.client().completions.create(model=MODEL, prompt=COUNTING, temperature=0, max_tokens=RAW_TOKENS)
    assert after.choices[0].text == raw_ref["text"]


def test_busy_port_is_a_one_line_error(env):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        proc = subprocess.run(
            [sys.executable, "-m", "localspec", "serve", "--target", MODEL, "--port", port],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot listen on 127.0.0.1:" + port in lines[0], proc.stderr


def _error(r, status: int) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    return err


USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "path, body, param",
    [
        ("/v1/chat/completions", {}, "messages"),
        ("/v1/chat/completions", {"messages": []}, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ("/v1/chat/completions", {"messages": "hi"}, "messages"),
        ("/v1/chat/completions", {"messages": USER, "max_tokens": "many"}, "max_tokens"),
        ("/v1/chat/completions", {"messages": USER, "temperature": "hot"}, "temperature"),
        ("/v1/chat/completions", {"messages": USER, "temperature": -1}, "temperature"),
        ("/v1/chat/completions", {"messages": USER, "stop": 7}, "stop"),
        ("/v1/chat/completions", {"messages": USER, "n": 2}, "n"),
        ("/v1/chat/completions", [USER], None),
        ("/v1/completions", {"max_tokens": 4}, "prompt"),
        ("/v1/completions", {"prompt": ["a", "b"]}, "prompt"),
        ("/v1/completions", {"prompt": "x", "top_p": 0}, "top_p"),
    ],
)
def test_malformed_request_is_400(server, path, body, param):
    err = _error(server.http.post(path, json=body), 400)
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param


def test_invalid_json_is_400(server):
    r = server.http.post("/v1/chat/completions", content=b'{"messages": [', headers={"Content-Type": "application/json"})
    assert _error(r, 400)["type"] == "invalid_request_error"


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_longer_than_the_context_is_400(server, stream):
    long = "hello " * 5000  # n_ctx is 4096
    r = server.http.post("/v1/completions", json={"prompt": long, "max_tokens": 4, "stream": stream})
    assert "context" in _error(r, 400)["message"]
    with pytest.raises(openai.BadRequestError):
        server.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": long}], stream=stream)


def test_sdk_sees_openai_errors(server):
    with pytest.raises(openai.BadRequestError) as e:
        server.client().chat.completions.create(model=MODEL, messages=[{"role": "robot", "content": "hi"}])
    assert e.value.param == "messages[0].role"
    # ... and the server still answers.
    assert server.client().completions.create(model=MODEL, prompt=COUNTING, max_tokens=2).choices[0].text


def test_tools_on_a_model_without_tool_support_is_400(server):
    tool = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
    with pytest.raises(openai.BadRequestError) as e:
        server.client().chat.completions.create(model=MODEL, messages=USER, tools=[tool])
    assert e.value.param == "tools" and MODEL in e.value.message and "no tool support" in e.value.message


def test_legacy_functions_are_400(server):
    r = server.http.post("/v1/chat/completions", json={"messages": USER, "functions": [{"name": "f"}]})
    assert _error(r, 400)["param"] == "functions"


BIG = 30_000_000


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_larger_than_the_context_could_hold_is_refused_unread(server, chunked):
    """413 before the body is parsed or tokenized: by Content-Length, or by
    counting a chunked body as it comes."""
    body = b'{"messages": [{"role": "user", "content": "' + b"a" * BIG + b'"}]}'
    refused, answered = server.metric("invalid_requests_total"), server.metric("requests_total")
    content = iter([body[i : i + (1 << 20)] for i in range(0, len(body), 1 << 20)]) if chunked else body
    r = server.http.post("/v1/chat/completions", content=content, headers={"Content-Type": "application/json"})
    err = _error(r, 413)
    assert err["code"] == "request_too_large" and "4096 tokens" in err["message"]
    assert f"is {len(body)} bytes" in err["message"]  # (the chunked one counted to its end)
    assert server.metric("invalid_requests_total") == refused + 1
    assert server.metric("requests_total") == answered  # nothing ran
    assert server.http.get("/health").json()["running"] == 0
    # A body within the limit still goes through.
    ok = server.client().completions.create(model=MODEL, prompt=COUNTING, temperature=0, max_tokens=2)
    assert ok.choices[0].text


def test_unknown_route_is_an_openai_404(server):
    assert _error(server.http.get("/v1/nothing-here"), 404)["code"] == "not_found"


def test_metrics_count_requests(server):
    text = server.http.get("/metrics").text
    assert "# TYPE localspec_tokens_generated_total counter" in text
    for name in ("requests_total", "tokens_generated_total", "tokens_drafted_total", "tokens_accepted_total"):
        assert server.metric(name) > 0, name
    assert server.metric("tokens_accepted_total") <= server.metric("tokens_drafted_total")
    assert server.metric("invalid_requests_total") > 0 and server.metric("errors_total") == 0


def test_wrong_key_is_401(keyed_server):
    anon = httpx.Client(base_url=keyed_server.url, timeout=60)
    with anon:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            err = _error(anon.post("/v1/chat/completions", json={"messages": USER}, headers=headers), 401)
            assert err["code"] == "invalid_api_key"
        # Even a malformed body: the key is checked first.
        _error(anon.post("/v1/chat/completions", content=b"{", headers={"Content-Type": "application/json"}), 401)
        _error(anon.get("/v1/models"), 401)
        assert anon.get("/health").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        keyed_server.client(key="wrong").models.list()
    assert [m.id for m in keyed_server.client().models.list().data] == [MODEL]


def test_full_queue_is_503_with_retry_after(keyed_server, raw_ref):
    """--queue 1: one request runs, one waits, the third is turned away."""
    s = keyed_server
    body = {"prompt": COUNTING, "max_tokens": LONG, "temperature": 0, "stream": True}
    waiting_result: dict = {}

    def second() -> None:
        try:
            waiting_result["text"] = s.client().completions.create(
                model=MODEL, prompt=COUNTING, temperature=0, max_tokens=RAW_TOKENS
            ).choices[0].text
        except BaseException as e:
            waiting_result["error"] = e

    with httpx.Client(base_url=s.url, timeout=REQUEST_TIMEOUT_S, headers=s.auth()) as c:
        with c.stream("POST", "/v1/completions", json=body) as first:
            assert first.status_code == 200
            lines = first.iter_lines()  # kept: a dropped iterator closes the response
            assert next(lines).startswith("data: ")  # the long generation is running
            waiter = threading.Thread(target=second)
            waiter.start()
            s.wait_for(lambda: s.http.get("/health").json()["waiting"] == 1, timeout_s=60)
            r = s.http.post("/v1/completions", json={"prompt": "x", "max_tokens": 1})
            err = _error(r, 503)
            assert r.headers["Retry-After"].isdigit()
            assert err["code"] == "queue_full"
            assert s.metric("requests_rejected_total") == 1
            assert s.http.get("/health").json()["running"] == 1
        # The first client hung up: the waiting request runs and is answered in full.
        waiter.join(REQUEST_TIMEOUT_S)
    assert not waiter.is_alive()
    assert waiting_result == {"text": raw_ref["text"]}
