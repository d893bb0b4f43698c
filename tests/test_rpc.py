"""The target over llama.cpp's RPC backend: real `localspec rpc-server` processes
on 127.0.0.1 (two, the target's layers split across both), SmolLM2-135M and the
tiny F32 model, compared with the same models run locally; and what happens
when a server is not there, dies mid-reply, or stalls."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from localspec import calibrate, rpc
from localspec.errors import LocalspecError
from localspec.llama_build import rpc_server_path
from localspec.lossless import TIE_MARGIN

from test_cli import assert_one_line_error, localspec
from test_kv_consistency import F32_EXACT, F32_TOLERANCE, NoisyDrafter, NoisyPlanner, next_token_logits
from test_lossless import PROMPTS, assert_lossless, generate
from test_server import env  # noqa: F401 - the fixture: a cache holding only SmolLM2, an empty config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RpcServer:
    """`localspec rpc-server` on a loopback port (the process execs llama.cpp's binary: its pid is the server's)."""

    def __init__(self, port: int | None = None):
        assert rpc_server_path(), "no rpc-server next to this llama-cpp-python: run `make install`"
        self.port = port or free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "localspec", "rpc-server", "--port", str(self.port), "--threads", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                rpc.probe([self.endpoint], timeout=1)
                return
            except LocalspecError:
                assert self.proc.poll() is None and time.monotonic() < deadline, "rpc-server did not start"
                time.sleep(0.1)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def servers():
    pair = [RpcServer(), RpcServer()]
    yield pair
    for s in pair:
        s.kill()
        assert s.proc.returncode in (-signal.SIGKILL, 0)


def endpoints(pair) -> str:
    return ",".join(s.endpoint for s in pair)


# --- without a model ---


def test_endpoints_are_checked_and_kept_in_order():
    assert rpc.parse_endpoints("127.0.0.1:50052, host:1,127.0.0.1:50052") == ("127.0.0.1:50052", "host:1")
    assert rpc.parse_endpoints(["[::1]:9"]) == ("[::1]:9",)
    for bad in ("127.0.0.1", "host:0", "host:70000", ":50052", "host:port", ""):
        with pytest.raises(LocalspecError):
            rpc.parse_endpoints(bad)
    assert rpc.parse_tensor_split("3,1") == (3.0, 1.0)
    for bad in ("0,0", "a,1", "-1,2"):
        with pytest.raises(LocalspecError):
            rpc.parse_tensor_split(bad)


def test_calibration_over_rpc_is_its_own_curve(smollm2_path):
    class Ctx:  # keys_for reads only the model's path
        class model:
            path = smollm2_path

    local = calibrate.keys_for(Ctx, None, 2, (0, 0))["target"]
    one = calibrate.keys_for(Ctx, None, 2, (-1, 0), rpc=rpc.RpcSettings(("h:1", "h:2")))["target"]
    split = calibrate.keys_for(Ctx, None, 2, (-1, 0), rpc=rpc.RpcSettings(("h:1", "h:2"), (3.0, 1.0)))["target"]
    other = calibrate.keys_for(Ctx, None, 2, (-1, 0), rpc=rpc.RpcSettings(("h:1", "h:3")))["target"]
    assert len({local, one, split, other}) == 4 and "rpc=h:1,h:2" in one


def test_a_server_that_is_not_there_is_one_line(smollm2_path):
    port = free_port()
    proc = localspec("run", "--target", str(smollm2_path), "--rpc", f"127.0.0.1:{port}", "--prompt", "hi")
    assert_one_line_error(proc, f"rpc-server 127.0.0.1:{port} is not reachable", "localspec rpc-server")
    assert_one_line_error(localspec("run", "--target", str(smollm2_path), "--rpc", "nohost", "--prompt", "hi"), "HOST:PORT")
    assert_one_line_error(localspec("run", "--tensor-split", "1,1", "--prompt", "hi"), "--tensor-split needs --rpc")


def test_rpc_server_refuses_a_busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert_one_line_error(localspec("rpc-server", "--port", str(s.getsockname()[1])), "cannot listen")


# --- the target on two servers ---


def test_doctor_lists_the_remote_devices(servers):
    proc = localspec("doctor", "--json", "--rpc", endpoints(servers))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)["rpc"]
    assert report["supported"] and report["rpc_server"]
    assert [d["description"] for d in report["devices"]] == [s.endpoint for s in servers]
    assert all(d["total"] > 0 for d in report["devices"])


def test_plain_lookup_and_draft_over_rpc_equal_the_local_run(servers, smollm2_path):
    from localspec.engine import load_engine

    local = load_engine(str(smollm2_path), str(smollm2_path), method="none", draft_max=5)
    remote = load_engine(str(smollm2_path), str(smollm2_path), method="none", draft_max=5, rpc=endpoints(servers))
    try:
        assert [d["description"] for d in remote.target_ctx.devices] == [s.endpoint for s in servers]
        drafted = {"lookup": 0, "draft": 0}
        for prompt in PROMPTS[:2]:
            plain = generate(local, "none", prompt, 48)
            assert generate(remote, "none", prompt, 48).tokens == plain.tokens
            for method in drafted:
                spec = generate(remote, method, prompt, 48)
                assert_lossless(plain, spec, TIE_MARGIN)
                drafted[method] += spec.counters.drafted
        # Over both prompts: whether one reply repeats anything for lookup to
        # draft depends on the CPU (its kernels round differently; on an AVX2
        # Zen 3 the planets reply has no repeated n-gram).
        assert all(drafted.values()), drafted
        assert set(remote.target_ctx.ping()) == {s.endpoint for s in servers}
    finally:
        remote.close()
        local.close()


def test_run_auto_over_rpc_prints_the_local_text(servers, smollm2_path):
    args = ("run", "--target", str(smollm2_path), "--draft", str(smollm2_path), "--method", "auto", "--temp", "0",
            "--max-tokens", "40", "--json", "--prompt", PROMPTS[1])  # fmt: skip
    here, there = localspec(*args), localspec(*args, "--rpc", endpoints(servers))
    assert here.returncode == 0 and there.returncode == 0, there.stderr
    remote = json.loads(there.stdout)
    assert remote["tokens"] == json.loads(here.stdout)["tokens"]
    assert set(remote["rpc"]["rtt_s"]) == {s.endpoint for s in servers} and "rpc" not in json.loads(here.stdout)


def test_remote_cache_matches_a_fresh_local_evaluation_after_many_rollbacks(servers, tiny_f32_path):
    from localspec.backend import Context, Model
    from localspec.generate import GenerateOptions, Generation
    from localspec.remote import RemoteContext

    model = Model(tiny_f32_path)
    spec = rpc.TargetSpec(str(tiny_f32_path), 2048, 512, None, -1, False, True, 0)
    ctx = RemoteContext(Model(tiny_f32_path, vocab_only=True), spec, rpc.RpcSettings(tuple(s.endpoint for s in servers)))
    drafter = NoisyDrafter(model, seed=2)
    context = model.tokenize("The quick brown fox jumps over the lazy dog. " * 3, add_special=True, parse_special=False)
    events = []
    while len(events) < 250 and len(context) < 1500:
        gen = Generation(ctx, context, NoisyPlanner(drafter, k_max=6), GenerateOptions(max_tokens=300), drafters=[drafter])
        events.extend(gen)
        context = drafter.last_context + model.tokenize(" And then", add_special=False, parse_special=False)
    assert len({e.accepted for e in events}) >= 3 and sum(e.accepted < e.drafted for e in events) >= 100
    context = drafter.last_context
    cached = next_token_logits(ctx, context)
    ctx.close()
    fresh_ctx = Context(model, n_ctx=2048, **F32_EXACT)
    fresh_ctx.decode(context[:-1], logits="none")
    diff = np.abs(cached - next_token_logits(fresh_ctx, context))
    assert diff.max() < F32_TOLERANCE[0] and diff.mean() < F32_TOLERANCE[1], (diff.max(), diff.mean())
    fresh_ctx.close()
    drafter.close()


# --- faults ---


def run_until_text(args: list[str]) -> tuple[subprocess.Popen, bytes]:
    """`localspec run` started, returned once it has written some of its reply (and that first byte)."""
    proc = subprocess.Popen([sys.executable, "-m", "localspec", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), True)
    first = proc.stdout.read(1)  # the first byte of the reply: the model is loaded over RPC and decoding
    assert first, proc.stderr.read().decode() if proc.stderr else ""
    return proc, first


LONG_RUN = ["--temp", "0", "--max-tokens", "3000", "--n-ctx", "4096", "--method", "none", "--raw", "--prompt", "1, 2, 3, 4,"]


def test_a_server_killed_mid_reply_ends_it_with_one_line(servers, smollm2_path):
    proc, first = run_until_text(["run", "--target", str(smollm2_path), "--rpc", endpoints(servers), *LONG_RUN])
    servers[1].kill()
    out, err = proc.communicate(timeout=60)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, err.decode()
    assert f"rpc-server {servers[1].endpoint} is gone" in lines[0] and "Traceback" not in lines[0]
    assert first and out.endswith(b"\n")  # the reply had begun; the error line goes under its text


def test_a_stalled_server_ends_the_reply_within_the_timeout(servers, smollm2_path):
    args = ["run", "--target", str(smollm2_path), "--rpc", endpoints(servers), "--rpc-timeout", "3", *LONG_RUN]
    proc, _ = run_until_text(args)
    os.kill(servers[0].proc.pid, signal.SIGSTOP)
    t = time.monotonic()
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        os.kill(servers[0].proc.pid, signal.SIGCONT)
    assert time.monotonic() - t < 10
    assert_one_line_error(subprocess.CompletedProcess(args, proc.returncode, "", err.decode()), "no answer from rpc-server", "in 3 s")


def test_serve_answers_503_while_a_server_is_gone_and_serves_again_once_it_is_back(servers, env, tmp_path):
    import threading

    from serving import Server
    from test_server import COUNTING, LONG, SMOLLM2

    srv = Server(env, tmp_path / "serve.log", *SMOLLM2, "--rpc", endpoints(servers))
    try:
        body = {"model": "smollm2-135m", "prompt": COUNTING, "max_tokens": LONG, "temperature": 0}
        answer = {}
        request = threading.Thread(target=lambda: answer.update(r=srv.http.post("/v1/completions", json=body)))
        request.start()
        srv.wait_for(lambda: srv.http.get("/health").json()["running"] == 1)
        time.sleep(1.0)  # well into the reply
        servers[1].kill()
        request.join(60)
        lost = answer["r"]
        assert lost.status_code == 503 and lost.json()["error"]["code"] == "backend_unavailable", lost.text
        assert f"rpc-server {servers[1].endpoint} is gone" in lost.json()["error"]["message"]
        again = srv.http.post("/v1/completions", json=dict(body, max_tokens=8))
        assert again.status_code == 503 and "not reachable" in again.json()["error"]["message"], again.text
        servers[1] = RpcServer(servers[1].port)
        back = srv.http.post("/v1/completions", json=dict(body, max_tokens=8))
        assert back.status_code == 200 and back.json()["choices"][0]["text"], back.text
    finally:
        srv.http.close()
        assert srv.stop() == 0
    assert "Traceback" not in srv.log.read_text()
