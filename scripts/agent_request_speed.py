"""tok/s of a coding agent's requests through `localspec serve`, with and without speculation.

    flock /tmp/cpu.lock .venv/bin/python scripts/agent_request_speed.py --rounds 3 [--out docs/agent-requests/results.json]

Starts the default pair's server with `--method none` (plain decoding) and
with `--method auto`, a fresh pair of processes per round in alternating
order, and sends each the same requests through the
`openai` package, greedy: a short call (the weather), and an agent's edit,
where the call's arguments carry a whole file the model rewrites (copied
from the prompt, which is where drafting pays), once left to the model
(`auto`) and once forced (`tool_choice: required`, the output held to the
tool's grammar); and two JSON extractions held to a JSON schema
(`response_format` json_schema), a CSV turned into records and the facts of
a paragraph, whose values are copied from the prompt. It prints each
request's generation speed from the
server's own `timings` (median and best of `--rounds`), draft acceptance,
whether both servers wrote the same reply, and whether each JSON reply
validates against its schema. A measurement, not a test:
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

import jsonschema
from openai import OpenAI

from localspec.bench.agent_requests import EDIT, SYSTEM, WEATHER, WRITE

CSV = """name,age,city,score,joined
Ada Lovelace,36,London,91.5,2019-03-14
Bo Andersen,29,Oslo,78,2020-11-02
Chen Wei,41,Taipei,88.25,2018-06-30
Dara Byrne,22,Dublin,65,2023-01-09
Eli Quispe,33,Lima,93,2021-08-21
Farah Haddad,38,Amman,71.75,2017-12-05
Goran Petrovic,45,Belgrade,84,2016-04-18
Hana Sato,27,Osaka,97.5,2022-09-27
"""
PEOPLE = {"type": "array", "items": {"type": "object", "additionalProperties": False,
          "required": ["name", "age", "city", "score", "joined"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "city": {"type": "string"},
                         "score": {"type": "number"}, "joined": {"type": "string"}}}}
FACTS_TEXT = ("Nordlicht Instruments was founded in 1987 in Tromso and moved its headquarters to Bergen in 2004. "
              "The company employs about 1,250 people and makes marine sonar systems, weather buoys and underwater drones.")
FACTS = {"type": "object", "additionalProperties": False,
         "required": ["company", "founded", "headquarters", "employees", "products"],
         "properties": {"company": {"type": "string"}, "founded": {"type": "integer"}, "headquarters": {"type": "string"},
                        "employees": {"type": "integer"}, "products": {"type": "array", "items": {"type": "string"}}}}
SCHEMAS = {"json extraction (csv)": PEOPLE, "json extraction (facts)": FACTS}


def json_schema(name: str, schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


REQUESTS = {
    "weather call": dict(messages=[{"role": "system", "content": SYSTEM},
                                   {"role": "user", "content": "What is the weather in Paris right now?"}],
                         tools=[WEATHER]),
    "edit call (auto)": dict(messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": EDIT}],
                             tools=[WRITE]),
    "edit call (required)": dict(messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": EDIT}],
                                 tools=[WRITE], tool_choice="required"),
    "json extraction (csv)": dict(messages=[{"role": "user", "content": f"Convert this CSV to a JSON array of objects with numeric fields as numbers.\n\n{CSV}"}],
                                  response_format=json_schema("people", PEOPLE)),
    "json extraction (facts)": dict(messages=[{"role": "user", "content": f"Extract the key facts from this text as JSON.\n\n{FACTS_TEXT}"}],
                                    response_format=json_schema("facts", FACTS)),
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


def valid(name: str, content: str | None) -> bool | None:
    """Whether a JSON request's reply validates against its schema (None: not a JSON request)."""
    if name not in SCHEMAS:
        return None
    try:
        jsonschema.validate(json.loads(content or ""), SCHEMAS[name])
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


def measure(url: str) -> dict:
    """One run of each request against the server at `url`."""
    client = OpenAI(base_url=url, api_key="none", max_retries=0, timeout=900)
    out = {}
    for name, req in REQUESTS.items():
        resp = client.chat.completions.create(model="local", temperature=0, max_tokens=600, **req)
        t, msg = resp.model_extra["timings"], resp.choices[0].message
        calls = [(c.function.name, c.function.arguments) for c in msg.tool_calls or []]
        out[name] = [{"tok_s": t["predicted_per_second"], "tokens": t["predicted_n"], "drafted": t["draft_n"],
                      "accepted": t["draft_n_accepted"], "calls": calls, "content": msg.content,
                      "finish": resp.choices[0].finish_reason, "valid": valid(name, msg.content)}]  # fmt: skip
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", help="write every run as JSON here")
    args = ap.parse_args()
    results: dict = {"none": {name: [] for name in REQUESTS}, "auto": {name: [] for name in REQUESTS}}
    # A fresh server per round, the order alternating: two server processes on
    # the same 2 cores have run 10% apart with nothing drafted, so each method
    # gets as many first and second places, and as many processes, as the other.
    for r in range(args.rounds):
        for method in ("none", "auto") if r % 2 == 0 else ("auto", "none"):
            with tempfile.NamedTemporaryFile(suffix=".log", delete=False) as f:
                log = f.name
            proc, url = serve(method, log)
            try:
                for name, runs in measure(url).items():
                    results[method][name] += runs
            finally:
                proc.terminate()
                proc.wait(60)
                os.unlink(log)
    print(f"{'request':<22} {'tokens':>6} {'plain tok/s':>18} {'auto tok/s':>18} {'speedup':>8} {'accepted':>12} same reply")
    for name in REQUESTS:
        plain, auto = results["none"][name], results["auto"][name]
        p = [r["tok_s"] for r in plain]
        a = [r["tok_s"] for r in auto]
        acc = f"{sum(r['accepted'] for r in auto)}/{sum(r['drafted'] for r in auto)}"
        same = plain[0]["calls"] == auto[0]["calls"] and plain[0]["content"] == auto[0]["content"]
        print(f"{name:<22} {auto[0]['tokens']:>6} {statistics.median(p):>8.2f} (best {max(p):5.2f}) "
              f"{statistics.median(a):>8.2f} (best {max(a):5.2f}) {statistics.median(a) / statistics.median(p):>7.2f}x "
              f"{acc:>12} {same} ({auto[0]['finish']}, {len(auto[0]['calls'])} call"
              + (f", valid {sum(bool(r['valid']) for r in plain + auto)}/{len(plain + auto)})" if name in SCHEMAS else ")"))  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
