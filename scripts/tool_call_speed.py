"""tok/s of tool-call requests through `localspec serve`, with and without speculation.

    flock /tmp/cpu.lock .venv/bin/python scripts/tool_call_speed.py --rounds 3 [--out docs/tool-calls.json]

Starts the default pair's server once with `--method none` (plain decoding)
and once with `--method auto`, and sends each the same requests through the
`openai` package, greedy: a short call (the weather), and an agent's edit,
where the call's arguments carry a whole file the model rewrites (copied
from the prompt, which is where drafting pays), once left to the model
(`auto`) and once forced (`tool_choice: required`, the output held to the
tool's grammar). It prints each request's generation speed from the
server's own `timings` (median and best of `--rounds`), draft acceptance,
and whether both servers wrote the same call. A measurement, not a test:
run it alone on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from openai import OpenAI

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}  # fmt: skip
WRITE = {"type": "function", "function": {"name": "write_file", "description": "Write a file, replacing what it held",
         "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                        "required": ["path", "content"]}}}  # fmt: skip
CODE = '''def area(w, h):
    return w * h


def perimeter(w, h):
    return 2 * (w + h)


def scale(shape, factor):
    return {"w": shape["w"] * factor, "h": shape["h"] * factor}


def describe(shape):
    return f"{shape['w']} by {shape['h']}: area {area(shape['w'], shape['h'])}"
'''
SYSTEM = ("You are a helpful assistant with tools. Use get_weather for weather questions and write_file to save files. "
          "Once a tool response is given, answer the user in plain words from it.")  # fmt: skip
EDIT = f"Add type hints to every function in shapes.py and save the whole file with write_file.\n\nshapes.py:\n```python\n{CODE}```"
REQUESTS = {
    "weather call": dict(messages=[{"role": "system", "content": SYSTEM},
                                   {"role": "user", "content": "What is the weather in Paris right now?"}],
                         tools=[WEATHER]),
    "edit call (auto)": dict(messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": EDIT}],
                             tools=[WRITE]),
    "edit call (required)": dict(messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": EDIT}],
                                 tools=[WRITE], tool_choice="required"),
}  # fmt: skip


def serve(method: str, log_path: str) -> tuple[subprocess.Popen, str]:
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "localspec", "serve", "--method", method, "--port", "0"],
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        m = re.search(r" on (http://127\.0\.0\.1:\d+)/v1", open(log_path).read())
        if m:
            return proc, m[1] + "/v1"
        if proc.poll() is not None:
            raise SystemExit(open(log_path).read())
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not start")


def measure(url: str, rounds: int) -> dict:
    client = OpenAI(base_url=url, api_key="none", max_retries=0, timeout=900)
    out = {}
    for name, req in REQUESTS.items():
        runs = []
        for _ in range(rounds):
            resp = client.chat.completions.create(model="local", temperature=0, max_tokens=600, **req)
            t, msg = resp.model_extra["timings"], resp.choices[0].message
            calls = [(c.function.name, c.function.arguments) for c in msg.tool_calls or []]
            runs.append({"tok_s": t["predicted_per_second"], "tokens": t["predicted_n"], "drafted": t["draft_n"],
                         "accepted": t["draft_n_accepted"], "calls": calls, "content": msg.content,
                         "finish": resp.choices[0].finish_reason})  # fmt: skip
        out[name] = runs
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", help="write every run as JSON here")
    args = ap.parse_args()
    results = {}
    for method in ("none", "auto"):
        with tempfile.NamedTemporaryFile(suffix=".log", delete=False) as f:
            log = f.name
        proc, url = serve(method, log)
        try:
            results[method] = measure(url, args.rounds)
        finally:
            proc.terminate()
            proc.wait(60)
            os.unlink(log)
    print(f"{'request':<22} {'tokens':>6} {'plain tok/s':>18} {'auto tok/s':>18} {'speedup':>8} {'accepted':>12} same call")
    for name in REQUESTS:
        plain, auto = results["none"][name], results["auto"][name]
        p = [r["tok_s"] for r in plain]
        a = [r["tok_s"] for r in auto]
        acc = f"{sum(r['accepted'] for r in auto)}/{sum(r['drafted'] for r in auto)}"
        same = plain[0]["calls"] == auto[0]["calls"] and plain[0]["content"] == auto[0]["content"]
        print(f"{name:<22} {auto[0]['tokens']:>6} {statistics.median(p):>8.2f} (best {max(p):5.2f}) "
              f"{statistics.median(a):>8.2f} (best {max(a):5.2f}) {statistics.median(a) / statistics.median(p):>7.2f}x "
              f"{acc:>12} {same} ({auto[0]['finish']}, {len(auto[0]['calls'])} call)")  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
