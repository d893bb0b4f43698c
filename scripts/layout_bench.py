"""Which weight layout of the target verifies cheapest, on whole replies.

Makes each layout (localspec/layouts.py) from the shipped target file, loads
the shipped file and every layout as targets beside the same draft model,
and runs plain and auto on each prompt with every file, back to back and
the file order rotated from prompt to prompt (as `localspec bench` rotates
modes), so the machine's drift spreads over all of them. Ratios are against
the shipped file's plain decoding on the same prompt.

Fidelity: each layout reads the shipped file's greedy reply (teacher-forced,
one batch) and the share of positions where its top-1 token is the shipped
file's token is reported, with the share of replies that came out identical.

    .venv/bin/python scripts/layout_bench.py --out docs/layouts \
        --categories code-edit,code-generation,rag,summarization,extraction --per-category 2

Run it alone: anything else on the cores ruins the timings.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np

from localspec.bench.modes import MODES, apply
from localspec.bench.prompts import parse_categories, select
from localspec.bench.runner import prime, rotated, run_once
from localspec.engine import load_engine
from localspec.fetch import cache_dir
from localspec.generate import GenerateOptions
from localspec.host import cpu_name
from localspec.layouts import LAYOUTS, requantize
from localspec.resolve import ensure_local, resolve_model

SHIPPED = "shipped"


def agreement(engine, prompt_tokens: list[int], reference: list[int]) -> tuple[int, int]:
    """Positions where the engine's target, reading prompt + reference, puts
    reference's own token on top; and how many positions were read."""
    ctx = engine.target_ctx
    ctx.prefill(prompt_tokens[:-1])
    rows = ctx.decode([prompt_tokens[-1], *reference[:-1]], logits="all")
    top = np.argmax(rows, axis=1)
    return int(np.sum(top == np.asarray(reference))), len(reference)


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default="qwen2.5-coder-1.5b")
    ap.add_argument("--draft", default="qwen2.5-coder-0.5b")
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    ap.add_argument("--categories", default="code-edit,code-generation,rag,summarization,extraction")
    ap.add_argument("--per-category", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    spec = resolve_model(args.target)
    src = spec.path or ensure_local(spec)
    files = {SHIPPED: src}
    for name in args.layouts.split(","):
        dst = cache_dir() / "layouts" / f"{src.stem}.{name}.gguf"
        if not dst.exists():
            print(f"writing {dst.name}", flush=True)
            requantize(src, dst, LAYOUTS[name], args.threads or 2)
        files[name] = dst
    engines = {name: load_engine(str(path), args.draft, method="auto", n_threads=args.threads) for name, path in files.items()}
    prompts = select(parse_categories(args.categories), args.per_category)
    plain, auto = (next(m for m in MODES if m.name == n) for n in ("plain", "auto"))
    options = GenerateOptions(max_tokens=args.max_tokens)
    records = []
    for i, prompt in enumerate(prompts):
        tokens = {}
        for name in rotated(list(engines), i):
            engine = engines[name]
            tokens[name] = prime(engine, prompt, args.max_tokens)
            for mode in rotated([plain, auto], i):
                rec = run_once(engine, prompt, mode, options)
                rec["layout"] = name
                records.append(rec)
                print(f"{prompt.id} {name} {mode.name} {rec['stats']['tokens_per_s']:.1f} tok/s", flush=True)
        reference = next(r["tokens"] for r in records if r["prompt_id"] == prompt.id and r["layout"] == SHIPPED
                         and r["mode"] == "plain")  # fmt: skip
        for name, engine in engines.items():
            agree, n = agreement(engine, tokens[name], reference)
            records.append({"prompt_id": prompt.id, "category": prompt.category, "layout": name,
                            "mode": "fidelity", "agree": agree, "positions": n})  # fmt: skip
    for engine in engines.values():
        engine.close()

    def rate(pid: str, layout: str, mode: str) -> float:
        return next(r["stats"]["tokens_per_s"] for r in records
                    if r["prompt_id"] == pid and r["layout"] == layout and r["mode"] == mode)  # fmt: skip

    def text(pid: str, layout: str) -> list[int]:
        return next(r["tokens"] for r in records if r["prompt_id"] == pid and r["layout"] == layout and r["mode"] == "plain")

    ids = [p.id for p in prompts]
    rows = []
    for name, path in files.items():
        fid = [r for r in records if r["layout"] == name and r["mode"] == "fidelity"]
        rows.append({
            "layout": name,
            "about": "the file as shipped" if name == SHIPPED else LAYOUTS[name].about,
            "size_mib": path.stat().st_size / 2**20,
            "plain_vs_shipped_plain": geomean([rate(p, name, "plain") / rate(p, SHIPPED, "plain") for p in ids]),
            "auto_vs_shipped_plain": geomean([rate(p, name, "auto") / rate(p, SHIPPED, "plain") for p in ids]),
            "auto_vs_own_plain": geomean([rate(p, name, "auto") / rate(p, name, "plain") for p in ids]),
            "top1_agreement": sum(r["agree"] for r in fid) / sum(r["positions"] for r in fid),
            "identical_replies": sum(text(p, name) == text(p, SHIPPED) for p in ids) / len(ids),
        })  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"cpu": cpu_name(), "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M %z"),
            "target": str(src), "draft": args.draft, "prompts": ids, "max_tokens": args.max_tokens}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "summary": rows, "records": records}))
    lines = [
        f"# Weight layouts of {src.name}, on whole replies",
        "",
        f"{meta['date']}, {meta['cpu']}; `scripts/layout_bench.py`, greedy, {args.max_tokens} tokens at most, "
        f"{len(ids)} prompts ({args.categories}), every file with draft model {args.draft}; geometric means "
        "over prompts. Top-1 agreement: the layout reading the shipped file's replies, the share of positions "
        "where its first choice is the shipped file's token.",
        "",
        "| layout | what it is | MiB | plain vs shipped plain | auto vs shipped plain | auto vs own plain "
        "| top-1 agreement | identical replies |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['layout']} | {r['about']} | {r['size_mib']:.0f} | {r['plain_vs_shipped_plain']:.2f}x "
                     f"| {r['auto_vs_shipped_plain']:.2f}x | {r['auto_vs_own_plain']:.2f}x "
                     f"| {r['top1_agreement']:.1%} | {r['identical_replies']:.0%} |")  # fmt: skip
    (args.out / "layouts.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
