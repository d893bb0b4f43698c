"""A real `localspec serve` process for tests: its own cache and config, started,
waited for, and stopped with its log checked.

The user's calibration cache and models.toml are never touched: a server gets a
fresh cache directory whose only models are links to the fetched files, and an
empty config directory.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")
try:  # the openai package's own HTTP client (httpx, or its successor httpx2)
    import httpx2 as httpx
except ImportError:
    httpx = pytest.importorskip("httpx")

START_TIMEOUT_S = 300
REQUEST_TIMEOUT_S = 300


def isolated_env(root: Path, models: dict[str, str | Path]) -> dict[str, str]:
    """An environment whose cache holds only `models` (name -> file) and whose config is empty."""
    cache = root / "cache" / "models"
    cache.mkdir(parents=True)
    for name, path in models.items():
        (cache / f"{name}.gguf").symlink_to(Path(path).resolve())
    (root / "config").mkdir()
    env = dict(os.environ, LOCALSPEC_CACHE_DIR=str(root / "cache"), LOCALSPEC_CONFIG_DIR=str(root / "config"))
    env.pop("LOCALSPEC_API_KEY", None)
    return env


class Server:
    """`localspec serve ARGS --port 0`, up once its /health answers."""

    def __init__(self, env: dict[str, str], log: Path, *args: str):
        self.log = log
        self.key = env.get("LOCALSPEC_API_KEY")
        with open(log, "w") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "localspec", "serve", *args, "--port", "0"],
                stdout=f, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        try:
            self.url = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.http = httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S, headers=self.auth())

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            text = self.log.read_text()
            m = re.search(r" on (http://127\.0\.0\.1:\d+)/v1", text)
            if m:
                try:
                    if httpx.get(m[1] + "/health", timeout=5).status_code == 200:
                        return m[1]
                except httpx.HTTPError:
                    pass
            assert self.proc.poll() is None, f"server exited with {self.proc.returncode}:\n{text}"
            time.sleep(0.2)
        raise AssertionError(f"server not up after {START_TIMEOUT_S}s:\n{self.log.read_text()}")

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def client(self, key: str | None = None):
        return openai.OpenAI(
            base_url=self.url + "/v1", api_key=key or self.key or "unused", timeout=REQUEST_TIMEOUT_S, max_retries=0
        )

    def metric(self, name: str) -> float:
        text = self.http.get("/metrics").text
        m = re.search(rf"^localspec_{name} (\S+)$", text, re.M)
        assert m, text
        return float(m[1])

    def wait_for(self, what, timeout_s: float = 120):
        deadline = time.monotonic() + timeout_s
        while not what():
            assert time.monotonic() < deadline, "condition not reached"
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def serving(server: Server):
    """Yield the server; afterwards it must stop cleanly, with no traceback in its log."""
    try:
        yield server
    finally:
        server.http.close()
        code = server.stop()
    log = server.log.read_text()
    assert code == 0, log
    assert "Traceback" not in log, log
