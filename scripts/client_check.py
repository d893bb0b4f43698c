"""Real clients against `localspec serve`, set up as the README says.

    python -m venv /tmp/llm && /tmp/llm/bin/pip install llm
    python -m venv /tmp/aider && /tmp/aider/bin/pip install aider-chat
    (cd /tmp/cn && npm install @continuedev/cli)
    flock /tmp/cpu.lock .venv/bin/python scripts/client_check.py \\
        --llm /tmp/llm/bin/llm --aider /tmp/aider/bin/aider --cn /tmp/cn/node_modules/.bin/cn

Starts the default pair's server and, for each client given:
- llm (Simon Willison's CLI), through extra-openai-models.yaml with
  supports_tools: a question only a Python function it is given can answer;
  llm runs the tool call, sends the result back, and prints the answer;
- aider, with --openai-api-base: an edit of a small file (aider edits
  through its own text formats, not tool calls);
- Continue's CLI (`cn`, the same config.yaml as the VS Code/JetBrains
  extension, provider openai with apiBase): a one-shot question (-p) only
  its file-reading tool can answer; the server must have returned a call.
Each client runs in a scratch home, so the user's own settings are neither
read nor changed. Prints what each did and PASS/FAIL; exits 1 on a failure.
Not part of the test suite: the clients are big installs the suite should
not need (aider alone brings about 100 packages).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

MODEL = "qwen2.5-coder-1.5b"
FUNCTIONS = '''
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    open(__import__("os").environ["WEATHER_LOG"], "a").write(city + "\\n")
    return "18 degrees Celsius and cloudy"
'''
CODE = "def area(w, h):\n    return w * h\n"


def serve(log: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "localspec", "serve", "--port", "0"],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)  # fmt: skip
    for _ in range(1200):
        m = re.search(r" on (http://127\.0\.0\.1:\d+)/v1", log.read_text())
        if m:
            return proc, m[1] + "/v1"
        if proc.poll() is not None:
            raise SystemExit(log.read_text())
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not start")


def run(cmd: list[str], env: dict, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    print("$", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    print(textwrap.indent((out.stdout + out.stderr).strip()[-3000:], "  | "), flush=True)
    return out


def check_llm(llm: str, url: str, home: Path) -> bool:
    user = home / "llm"
    user.mkdir()
    (user / "extra-openai-models.yaml").write_text(
        f"- model_id: localspec\n  model_name: {MODEL}\n  api_base: \"{url}\"\n  supports_tools: true\n"
    )
    log = home / "weather.log"
    env = dict(os.environ, HOME=str(home), LLM_USER_PATH=str(user), WEATHER_LOG=str(log))
    system = "Use get_weather for weather questions. Once a tool response is given, answer the user in plain words from it."
    out = run([llm, "-m", "localspec", "--functions", FUNCTIONS, "-s", system, "-o", "temperature", "0",
               "What is the weather in Paris right now?"], env, home)  # fmt: skip
    called = log.exists() and "paris" in log.read_text().lower()
    return out.returncode == 0 and called and "18" in out.stdout


def check_aider(aider: str, url: str, home: Path) -> bool:
    work = home / "project"
    work.mkdir()
    (work / "shapes.py").write_text(CODE)
    env = dict(os.environ, HOME=str(home))
    out = run([aider, "--openai-api-base", url, "--openai-api-key", "none", "--model", f"openai/{MODEL}",
               "--no-git", "--yes-always", "--no-check-update", "--analytics-disable", "--no-show-model-warnings",
               "--no-stream", "--message", "Add type hints to area in shapes.py.", "shapes.py"], env, work)  # fmt: skip
    after = (work / "shapes.py").read_text()
    print("  shapes.py now:\n" + textwrap.indent(after, "    "))
    return out.returncode == 0 and after != CODE and "def area(" in after and "->" in after


def check_cn(cn: str, url: str, home: Path) -> bool:
    config = home / ".continue" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(textwrap.dedent(f"""\
        name: localspec
        version: 1.0.0
        schema: v1
        models:
          - name: localspec
            provider: openai
            model: {MODEL}
            apiBase: {url}
            apiKey: none
            roles: [chat, edit, apply]
        """))
    # Only a tool (cn's file reader) can answer: the server must have returned a call.
    (home / "notes_on_pelicans.txt").write_text("Pelicans have large throat pouches.\n")
    env = dict(os.environ, HOME=str(home), CONTINUE_GLOBAL_DIR=str(home / ".continue"))
    before = _tool_calls(url)
    out = run([cn, "--config", str(config), "-p", "Read the file notes_on_pelicans.txt and tell me what it says."],
              env, home)  # fmt: skip
    return out.returncode == 0 and "pouch" in out.stdout.lower() and _tool_calls(url) > before


def _tool_calls(url: str) -> float:
    text = urllib.request.urlopen(url.removesuffix("/v1") + "/metrics").read().decode()
    return float(re.search(r"^localspec_tool_calls_total (\S+)$", text, re.M)[1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llm")
    ap.add_argument("--aider")
    ap.add_argument("--cn")
    args = ap.parse_args()
    checks = [(n, c, p) for n, c, p in (("llm", check_llm, args.llm), ("aider", check_aider, args.aider),
                                          ("cn", check_cn, args.cn)) if p]  # fmt: skip
    if not checks:
        ap.error("give at least one of --llm, --aider, --cn")
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = serve(Path(tmp) / "server.log")
        try:
            for name, check, path in checks:
                home = Path(tmp) / name
                home.mkdir()
                ok = check(path, url, home)
                failed += not ok
                print(f"{name}: {'PASS' if ok else 'FAIL'}", flush=True)
        finally:
            proc.terminate()
            proc.wait(60)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
