"""tok/s and acceptance through `localspec serve` next to `localspec run`, same prompt, side by side.

    .venv/bin/python scripts/serve_speed.py --pair qwen2.5-coder --prompt-id edit-4 --rounds 2

Alternates run and server requests `--rounds` times (greedy, the same
max_tokens) and prints each round and the fastest of each; the server's
numbers are its own `timings` (generation only, as `run`'s tok/s). Run it on a
quiet machine: it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
from importlib import resources

LOCALSPEC = [sys.executable, "-m", "localspec"]


def bench_prompt(prompt_id: str) -> str:
    data = resources.files("localspec.bench") / "data" / "localspec_extra.jsonl"
    for line in data.read_text().splitlines():
        row = json.loads(line)
        if row["id"] == prompt_id:
            return row["prompt"]
    raise SystemExit(f"no prompt {prompt_id} in localspec_extra.jsonl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def via_run(model_args: list[str], prompt: str, max_tokens: int) -> dict:
    out = subprocess.run([*LOCALSPEC, "run", *model_args, "--temp", "0", "--max-tokens", str(max_tokens),
                          "--json", "--prompt", prompt], capture_output=True, text=True, check=True)  # fmt: skip
    r = json.loads(out.stdout)
    s = r["stats"]
    return {"tok_s": s["tokens_per_s"], "tokens": s["n_generated"], "drafted": s["drafted"],
            "accepted": s["accepted"], "text": r["text"]}  # fmt: skip


def via_server(client, prompt: str, max_tokens: int) -> dict:
    resp = client.chat.completions.create(
        model="local", messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=max_tokens
    )
    t = resp.model_extra["timings"]
    return {"tok_s": t["predicted_per_second"], "tokens": t["predicted_n"], "drafted": t["draft_n"],
            "accepted": t["draft_n_accepted"], "text": resp.choices[0].message.content}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair")
    ap.add_argument("--target")
    ap.add_argument("--method")
    ap.add_argument("--prompt-id", default="edit-4")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    model_args = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k in ("pair", "target", "method") and v]
    prompt = bench_prompt(args.prompt_id)

    import openai

    port = free_port()
    server = subprocess.Popen([*LOCALSPEC, "serve", *model_args, "--port", str(port)], stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(1)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", timeout=600)
        via_server(client, "Say hi.", 8)  # warm-up: the first request pays for nothing the others do not
        rows = []
        for i in range(args.rounds):
            for name, fn in (("run", lambda: via_run(model_args, prompt, args.max_tokens)),
                             ("serve", lambda: via_server(client, prompt, args.max_tokens))):  # fmt: skip
                r = fn()
                rows.append((name, r))
                acc = r["accepted"] / r["drafted"] if r["drafted"] else 0.0
                print(f"round {i + 1} {name:5} {r['tok_s']:6.2f} tok/s  {r['tokens']} tokens  "
                      f"drafted {r['drafted']} accepted {r['accepted']} ({acc:.0%})", flush=True)  # fmt: skip
        best = {n: max((r for m, r in rows if m == n), key=lambda r: r["tok_s"]) for n in ("run", "serve")}
        same = best["run"]["text"] == best["serve"]["text"]
        print(f"fastest: run {best['run']['tok_s']:.2f} tok/s, serve {best['serve']['tok_s']:.2f} tok/s "
              f"(ratio {best['serve']['tok_s'] / best['run']['tok_s']:.3f}); same text: {same}")  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
