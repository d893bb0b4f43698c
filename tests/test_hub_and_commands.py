"""`pull`, `models` and `doctor` as a user runs them, and the Hugging Face
source through the real huggingface_hub client against a local stand-in hub."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import platform
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from localspec.registry import load_registry

PAYLOAD = b"GGUF" + bytes(range(256)) * 64
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub(http.server.BaseHTTPRequestHandler):
    """Answers /<repo>/resolve/<revision>/<file> the way the Hub does for a
    plain (non-LFS, non-xet) file: metadata on HEAD, bytes on GET."""

    files: dict[str, bytes] = {}

    def _send_headers(self) -> bytes | None:
        body = self.files.get(self.path)
        if body is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.end_headers()
            return None
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", '"' + hashlib.sha256(body).hexdigest() + '"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return body

    def do_HEAD(self):  # noqa: N802 (http.server's naming)
        self._send_headers()

    def do_GET(self):  # noqa: N802
        body = self._send_headers()
        if body is not None:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def hub():
    FakeHub.files = {"/someone/tiny-GGUF/resolve/main/tiny.gguf": PAYLOAD}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def write_user_models(config: Path, sha256: str, extra_source: str = "") -> None:
    config.mkdir(parents=True, exist_ok=True)
    (config / "models.toml").write_text(
        f"""
[models.hubby]
sha256 = "{sha256}"

[[models.hubby.sources]]
hf = "someone/tiny-GGUF"
file = "tiny.gguf"
{extra_source}
"""
    )


def localspec(tmp_path: Path, endpoint: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        HF_ENDPOINT=endpoint,
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_DISABLE_XET="1",
        LOCALSPEC_CONFIG_DIR=str(tmp_path / "config"),
        LOCALSPEC_CACHE_DIR=str(tmp_path / "cache"),
    )
    env.pop("HF_HUB_OFFLINE", None)
    return subprocess.run(
        [sys.executable, "-m", "localspec", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_pull_from_the_hub_verifies_and_uses_the_hf_cache(tmp_path, hub):
    write_user_models(tmp_path / "config", hashlib.sha256(PAYLOAD).hexdigest())
    proc = localspec(tmp_path, hub, "pull", "hubby")
    assert proc.returncode == 0, proc.stderr
    in_hf_cache = list((tmp_path / "hf").rglob("tiny.gguf"))
    assert in_hf_cache and in_hf_cache[0].read_bytes() == PAYLOAD
    # A second pull is served from the cache with no hub at all.
    again = localspec(tmp_path, "http://127.0.0.1:9", "pull", "hubby")
    assert again.returncode == 0, again.stderr


def test_hub_checksum_mismatch_is_one_line_exit_2(tmp_path, hub):
    write_user_models(tmp_path / "config", "0" * 64)
    proc = localspec(tmp_path, hub, "pull", "hubby")
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "sha256" in last and "Traceback" not in proc.stderr
    assert not list((tmp_path / "cache").glob("**/*.part"))


@pytest.mark.slow  # huggingface_hub retries a refused connection for about 20 s
def test_unreachable_hub_falls_through_to_the_next_source(tmp_path):
    local = tmp_path / "copy.gguf"
    local.write_bytes(PAYLOAD)
    write_user_models(
        tmp_path / "config",
        hashlib.sha256(PAYLOAD).hexdigest(),
        extra_source=f'\n[[models.hubby.sources]]\npath = "{local}"\n',
    )
    proc = localspec(tmp_path, "http://127.0.0.1:9", "pull", "hubby")  # port 9: nothing listens
    assert proc.returncode == 0, proc.stderr
    assert "hf someone/tiny-GGUF/tiny.gguf failed" in proc.stderr


def test_models_and_doctor_json(tmp_path, smollm2_path):
    env_cache = str(Path(smollm2_path).parent)
    env = dict(os.environ, LOCALSPEC_CONFIG_DIR=str(tmp_path / "config"), LOCALSPEC_CACHE_DIR=env_cache)
    models = subprocess.run(
        [sys.executable, "-m", "localspec", "models", "--json"], capture_output=True, text=True, env=env, timeout=300
    )
    assert models.returncode == 0, models.stderr
    listed = json.loads(models.stdout)
    assert "smollm2-135m" in json.dumps(listed)
    doctor = subprocess.run(
        [sys.executable, "-m", "localspec", "doctor", "--json"], capture_output=True, text=True, env=env, timeout=300
    )
    assert doctor.returncode == 0, doctor.stderr
    report = json.loads(doctor.stdout)
    assert "llama_cpp_python" in json.dumps(report) or "llama-cpp-python" in json.dumps(report)
    build = report["build"]
    assert build["features"] and build["compiler"]
    # make's install built it for this machine (localspec/llama_build.py), and the suite's models ran on it.
    assert build["matches_this_machine"] and not build["amx_crash_risk"]


def test_doctor_shows_the_verify_curve_calibration_measured(tmp_path, smollm2_path):
    """doctor measures nothing: the curve line appears once a run has calibrated the default target here."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "models.toml").write_text('default_pair = "smollm2-self"\n')
    env = dict(os.environ, LOCALSPEC_CONFIG_DIR=str(config), LOCALSPEC_CACHE_DIR=str(Path(smollm2_path).parent),
               LOCALSPEC_CALIBRATION_FILE=str(tmp_path / "calibration.json"))  # fmt: skip

    def doctor() -> str:
        proc = subprocess.run([sys.executable, "-m", "localspec", "doctor"], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "verify curve" not in doctor()
    assert "layout:" not in doctor()  # SmolLM2's file has no Q6_K tensor
    run = subprocess.run([sys.executable, "-m", "localspec", "run", "--method", "none", "--prompt", "Hi", "--max-tokens", "2"],
                         capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    line = next(x for x in doctor().splitlines() if x.startswith("verify curve of smollm2-135m here: 1 row "))
    assert "16 rows" in line and "64 rows" in line and "a right draft pays at most" in line


X86 = platform.machine().lower() in ("x86_64", "amd64")


@pytest.mark.skipif(not X86, reason="the hint is about llama.cpp's x86 kernels")
def test_the_layout_hint_is_for_weights_the_cpu_runs(tmp_path, monkeypatch, qwen_target_path, smollm2_path):
    from localspec.commands.models import _layout_hint
    from localspec.gguf_info import read_gguf_info
    from localspec.inventory import Entry

    monkeypatch.setenv("LOCALSPEC_CONFIG_DIR", str(tmp_path))  # the shipped registry: qwen2.5-coder by default
    reg = load_registry()

    def entry(name, path):
        return Entry(name, "registry", path, None, info=read_gguf_info(path))

    qwen = [entry("qwen2.5-coder-1.5b", qwen_target_path)]
    assert _layout_hint(reg, qwen, local_gpu=False)["q6_k_share"] == pytest.approx(431554560 / 1777088000)
    assert _layout_hint(reg, qwen, local_gpu=True) is None  # its layers go to the GPU (n_gpu_layers -1)
    assert _layout_hint(reg, [entry("qwen2.5-coder-1.5b", smollm2_path)], local_gpu=False) is None  # no Q6_K
    assert _layout_hint(reg, [], local_gpu=False) is None  # the target is not here


@pytest.mark.skipif(not X86, reason="the hint is about llama.cpp's x86 kernels")
def test_doctor_names_the_layout_command_for_a_target_with_q6_k_weights(tmp_path, qwen_target_path):
    """The shipped Qwen2.5-Coder 1.5B holds 432M Q6_K weights of 1777M, which x86 never repacks."""
    from localspec.rpc import Ggml

    if Ggml().local_gpus():
        pytest.skip("a GPU runs the default target's layers here, and doctor leaves the hint out")
    cache_root = Path(qwen_target_path).parent.parent
    env = dict(os.environ, LOCALSPEC_CONFIG_DIR=str(tmp_path / "config"), LOCALSPEC_CACHE_DIR=str(cache_root))

    def doctor(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "localspec", "doctor", *args], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    hint = json.loads(doctor("--json"))["layout"]
    assert hint["model"] == "qwen2.5-coder-1.5b"
    assert hint["q6_k_share"] == pytest.approx(431554560 / 1777088000)
    assert hint["command"] == "localspec layout qwen2.5-coder-1.5b --to q4_k"
    assert "layout: 24% of qwen2.5-coder-1.5b's weights are Q6_K" in doctor()
