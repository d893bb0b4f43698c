"""localspec beside llama-server (the reference engine), on the bench's prompts.

Starts one llama-server process per setting (plain decoding and its n-gram
drafters: ngram-simple, ngram-map-k, ngram-mod at draft lengths 8 and 16,
and at llama.cpp's own defaults), all on the same target file and thread
count, and loads localspec's engine in this process. Each prompt then runs
in every setting back to back, the order rotated from prompt to prompt, so
the machine's drift spreads over all of them; greedy, the same chat
messages, the same token limit. Every prompt is evaluated once before its
timed runs, so each side starts with all of it but its last token cached.

Both sides are timed alike: the tokens the reply shows over the time from
the decode of the prompt's last token (which gives the reply's first token)
to the reply's last token. localspec's rate is that already. llama-server's
own `timings.predicted_per_second` is not: it leaves out the first token's
decode (counted as prompt processing) and counts the end-of-generation
token as generated, so on a 15-token reply it reads 15 tokens over 15
decodes where localspec reads 15 over 16, 7% that is only bookkeeping. Its
rate here is (predicted_n, less the end token when the reply ended on one)
over (prompt_ms + predicted_ms), with prompt_n = 1; its own figure is kept
in results.json beside it.

Each llama-server setting is a process of its own, and processes loaded
from the same file do not decode at the same speed: on an Intel Xeon, one
of six plain llama-server processes ran 4% slower than the other five on
every request of its life (why, not traced; on the same tokens llama.cpp's
decode matched localspec's within 2%). Rotation cannot spread a process's
luck, and the best of ten settings picks the luckiest: on prompts where
no setting drafted a token, "the best setting" was plain decoding plus
luck. So every process, localspec's included, is also timed on a
yardstick: single-row decodes after the same 128 tokens, where no drafter
can run (see `yardstick_server`), three rounds over the run. The second
table divides each setting's rate by its own process's plain decoding:
the speedup drafting gives inside one process, which is what the engines'
drafting is compared on.

    .venv/bin/python scripts/llama_server_compare.py --server /path/to/llama-server --out docs/llama-server

Build llama-server from the vendored llama.cpp of the llama-cpp-python sdist
(pip download --no-binary :all: --no-deps llama-cpp-python==0.3.36; cmake
-B build -DLLAMA_CURL=OFF; cmake --build build --target llama-server), with
the same CMAKE_ARGS localspec's build used (`localspec doctor` shows them).
Run it alone: anything else on the cores ruins the timings.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import socket
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

from localspec.bench.modes import BY_NAME, apply
from localspec.bench.prompts import WARM_UP, all_prompts, parse_categories, select
from localspec.bench.runner import prime, rotated, run_once
from localspec.engine import load_engine
from localspec.generate import GenerateOptions
from localspec.host import cpu_name
from localspec.resolve import ensure_local, resolve_model


YARDSTICK_DECODES = 16  # single-row decodes timed per process and round


def yardstick_prompt(vocabulary: list[int]) -> list[int]:
    """128 tokens drawn (fixed seed) from the bench prompts' vocabulary: a
    context for timing single-row decodes, the same in every process."""
    return random.Random(26).sample(vocabulary, 128)


def yardstick_server(port: int, tokens: list[int]) -> float:
    """Single-row decodes per second in one llama-server process.

    Two tokens per request: the first comes from the prompt's last token
    (counted as prompt processing, where llama-server also does per-request
    work), the second from one decode, timed alone as `predicted_ms`. With one
    token left to predict llama-server drafts nothing (its draft is at most
    the tokens left less one), whatever its drafter, so this is plain decoding
    in every setting's process."""
    body = {"prompt": tokens, "temperature": 0, "cache_prompt": True, "n_predict": 2}
    post(port, body, "/completion")  # the prompt into the cache
    ms = []
    for _ in range(YARDSTICK_DECODES):
        t = post(port, body, "/completion")["timings"]
        if t["prompt_n"] != 1 or t["predicted_n"] != 2 or t.get("draft_n", 0):
            raise SystemExit(f"the yardstick was not one plain decode after a cached prompt: {t}")
        ms.append(t["predicted_ms"])
    return 1000 / statistics.median(ms)


def yardstick_localspec(engine, tokens: list[int]) -> float:
    """The same in localspec's process: its second step, decode and all (its
    first, also one row, should a target end the reply at once)."""
    apply(engine, BY_NAME["plain"])
    seconds = []
    for _ in range(YARDSTICK_DECODES):
        steps = list(engine.generate(list(tokens), GenerateOptions(max_tokens=2)))
        seconds.append(steps[-1].wall_s)
    return 1 / statistics.median(seconds)


def server_settings(lengths: list[int]) -> dict[str, list[str]]:
    out = {"llama-server plain": []}
    for k in lengths:
        out[f"ngram-simple {k}"] = ["--spec-type", "ngram-simple", "--spec-ngram-simple-size-m", str(k)]
        out[f"ngram-map-k {k}"] = ["--spec-type", "ngram-map-k", "--spec-ngram-map-k-size-m", str(k)]
        out[f"ngram-mod {k}"] = ["--spec-type", "ngram-mod", "--spec-ngram-mod-n-max", str(k),
                                 "--spec-ngram-mod-n-min", str(min(k, 48) // 2)]  # fmt: skip
    for kind in ("ngram-simple", "ngram-map-k", "ngram-mod"):
        out[f"{kind} default"] = ["--spec-type", kind]
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, body: dict, path: str = "/v1/chat/completions") -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def start(server: Path, model: Path, threads: int, n_ctx: int, extra: list[str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [str(server), "-m", str(model), "-t", str(threads), "-tb", str(threads), "-c", str(n_ctx), "-np", "1",
           "--host", "127.0.0.1", "--port", str(port), "--no-webui", *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise SystemExit(f"llama-server exited at start: {' '.join(cmd)}")
    raise SystemExit("llama-server did not come up")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", type=Path, required=True)
    ap.add_argument("--target", default="qwen2.5-coder-1.5b")
    ap.add_argument("--categories", default="code-edit,code-generation,rag,summarization,extraction")
    ap.add_argument("--per-category", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lengths", default="8,16")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    spec = resolve_model(args.target)
    model = spec.path or ensure_local(spec)
    n_ctx = 4096
    engine = load_engine(str(model), None, method="auto", n_threads=args.threads, n_ctx=n_ctx)
    servers = {name: start(args.server, model, args.threads, n_ctx, extra)
               for name, extra in server_settings([int(k) for k in args.lengths.split(",")]).items()}  # fmt: skip
    modes = {name: BY_NAME[name] for name in ("plain", "auto")}
    settings = [f"localspec {m}" for m in modes] + list(servers)
    options = GenerateOptions(max_tokens=args.max_tokens)
    prompts = select(parse_categories(args.categories), args.per_category)
    records = []
    tokenize = engine.target.tokenize
    vocabulary = sorted({t for p in all_prompts() for t in tokenize(p.text, add_special=False, parse_special=False)})
    yard_tokens = yardstick_prompt(vocabulary)
    yardsticks: dict[str, list[float]] = {"localspec": []} | {name: [] for name in servers}
    # Three times over the run: before the first timed prompt, halfway, and after the last.
    yard_at = {1, 1 + len(prompts) // 2}

    def measure_yardsticks() -> None:
        yardsticks["localspec"].append(yardstick_localspec(engine, yard_tokens))
        for name, (_, port) in servers.items():
            yardsticks[name].append(yardstick_server(port, yard_tokens))
        print("yardstick: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in yardsticks.items()), flush=True)

    try:
        # A warm-up pass over every setting, not recorded: a context's first
        # decodes are not what a running server sees. Its prompt is none of the
        # timed ones: ngram-mod's table outlives a request (llama.cpp keeps it
        # for the server's life), so a timed prompt seen before is drafted from
        # the earlier reply (the first run of this script warmed up on its first
        # prompt, and ngram-mod drafted that reply whole: 115 of 115 accepted).
        for n, (i, prompt, keep) in enumerate([(0, WARM_UP, False)] + [(i, p, True) for i, p in enumerate(prompts)]):
            if n in yard_at:
                measure_yardsticks()
            messages = [{"role": "user", "content": prompt.text}]
            body = {"messages": messages, "max_tokens": args.max_tokens, "temperature": 0, "cache_prompt": True}
            prime(engine, prompt, args.max_tokens)
            for _, port in servers.values():
                post(port, {**body, "max_tokens": 1})  # the prompt into its cache, outside the timed run
            for setting in rotated(settings, i):
                if setting.startswith("localspec "):
                    rec = run_once(engine, prompt, modes[setting.removeprefix("localspec ")], options)
                    tps, text = rec["stats"]["tokens_per_s"], rec["text"]
                    drafted, accepted = rec["stats"]["drafted"], rec["stats"]["accepted"]
                else:
                    reply = post(servers[setting][1], body)
                    t = reply["timings"]
                    tps, text = reply_rate(reply), reply["choices"][0]["message"]["content"]
                    drafted, accepted = t.get("draft_n", 0), t.get("draft_n_accepted", 0)
                if keep:
                    records.append({"prompt_id": prompt.id, "category": prompt.category, "setting": setting,
                                    "tokens_per_s": tps, "drafted": drafted, "accepted": accepted, "text": text}
                                   | ({} if setting.startswith("localspec ") else {"timings": reply["timings"]}))  # fmt: skip
                print(f"{prompt.id} {setting}: {tps:.1f} tok/s{'' if keep else ' (warm-up)'}", flush=True)
        measure_yardsticks()
    finally:
        for proc, _ in servers.values():
            proc.terminate()
        for proc, _ in servers.values():
            proc.wait()
        engine.close()
    write(args, settings, prompts, records, yardsticks)


def reply_rate(reply: dict) -> float:
    """llama-server's reply on localspec's footing (see the module's docstring)."""
    t = reply["timings"]
    if t["prompt_n"] != 1:
        # More than the last prompt token evaluated: the prime did not hold, and the time is not a reply's.
        raise SystemExit(f"llama-server evaluated {t['prompt_n']} prompt tokens in a timed run, not 1")
    ended_on_eog = reply["choices"][0]["finish_reason"] == "stop"  # no stop strings are sent
    shown = t["predicted_n"] - (1 if ended_on_eog else 0)
    return shown / ((t["prompt_ms"] + t["predicted_ms"]) / 1000)


def geomean(xs) -> float:
    xs = list(xs)
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def process_of(setting: str) -> str:
    return "localspec" if setting.startswith("localspec ") else setting


def write(args, settings: list[str], prompts, records: list[dict], yardsticks: dict[str, list[float]]) -> None:
    def rate(pid: str, setting: str) -> float:
        return next(r["tokens_per_s"] for r in records if r["prompt_id"] == pid and r["setting"] == setting)

    categories = list(dict.fromkeys(p.category for p in prompts))
    groups = {c: [p.id for p in prompts if p.category == c] for c in categories} | {"overall": [p.id for p in prompts]}
    servers = [s for s in settings if process_of(s) != "localspec"]
    header = ["| setting | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
    ratio = {(g, s): geomean(rate(p, s) / rate(p, "localspec plain") for p in ids)
             for g, ids in groups.items() for s in settings}  # fmt: skip
    yard = {k: statistics.median(v) for k, v in yardsticks.items()}

    def relative(a: str, b: str) -> float:
        """Process a's plain decoding against process b's, round by round (the machine drifts between rounds)."""
        return statistics.median(x / y for x, y in zip(yardsticks[a], yardsticks[b]))

    # A setting's own plain decoding on a prompt: the plain run of its engine,
    # scaled by how its process decodes against that plain run's process.
    reference = {s: ("localspec plain" if process_of(s) == "localspec" else "llama-server plain") for s in settings}
    inside = {(g, s): geomean(rate(p, s) / rate(p, reference[s]) / relative(process_of(s), process_of(reference[s]))
                              for p in ids)
              for g, ids in groups.items() for s in settings}  # fmt: skip

    def table(values: dict) -> list[str]:
        out = list(header)
        best = {g: max(servers, key=lambda s: values[(g, s)]) for g in groups}
        for s in settings:
            cells = [(f"**{values[(g, s)]:.2f}x**" if best[g] == s else f"{values[(g, s)]:.2f}x") for g in groups]
            out.append(f"| {s} | " + " | ".join(cells) + " |")
        return out

    def drafted(g: str, s: str) -> str:
        rs = [r for r in records if r["setting"] == s and r["prompt_id"] in groups[g]]
        return f"{sum(r['drafted'] for r in rs)} ({sum(r['accepted'] for r in rs)})"

    lines = [
        "# localspec beside llama-server",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M %z')}, {cpu_name()}, {args.threads} threads; `scripts/llama_server_compare.py`, "
        f"greedy, {args.max_tokens} tokens at most, {args.per_category} prompts per category, every setting on every "
        "prompt back to back (order rotated per prompt). Speed as a multiple of localspec plain decoding on the "
        "same prompt, geometric mean over the category's prompts; the best llama-server setting per category in bold. "
        "Both engines timed alike: the tokens a reply shows over the time from the prompt's last token to the "
        "reply's last (the script's docstring says why llama-server's own `predicted_per_second` is not that).",
        "",
        *table(ratio),
    ]
    plain_tps = geomean(rate(p, "localspec plain") for p in groups["overall"])
    lines += ["", f"localspec plain: {plain_tps:.1f} tok/s (geometric mean over prompts)."]
    own = {g: geomean(r["timings"]["predicted_per_second"] / r["tokens_per_s"] for r in records
                      if r["setting"] == "llama-server plain" and r["prompt_id"] in ids) for g, ids in groups.items()}  # fmt: skip
    lines += ["", "llama-server plain's own `predicted_per_second` against its rate above (geometric mean): "
              + ", ".join(f"{g} {x:.2f}x" for g, x in own.items()) + "."]  # fmt: skip
    server_yards = [yard[s] for s in servers]
    lines += [
        "",
        "## Inside each process",
        "",
        f"Single-row decodes per second on the yardstick (after 128 shuffled tokens; median of "
        f"{YARDSTICK_DECODES} per round, median of {len(yardsticks['localspec'])} rounds): localspec "
        f"{yard['localspec']:.2f}, llama-server plain "
        f"{yard['llama-server plain']:.2f} ({relative('llama-server plain', 'localspec'):.2f}x, round by round), "
        f"the {len(server_yards)} llama-server processes {min(server_yards):.2f}-{max(server_yards):.2f}. "
        "Each setting as a multiple of its own "
        "process's plain decoding (its engine's plain run on the prompt, scaled by the two processes' "
        "yardsticks): the speedup drafting gives, with the process's luck taken out.",
        "",
        *table(inside),
        "",
        "Tokens drafted (kept), summed over the category's prompts:",
        "",
        *header,
        *(f"| {s} | " + " | ".join(drafted(g, s) for g in groups) + " |" for s in settings if s != "localspec plain"),
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"settings": settings, "records": records, "yardsticks": yardsticks}
    (args.out / "results.json").write_text(json.dumps(results))
    (args.out / "llama-server.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
