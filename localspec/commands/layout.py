"""`localspec layout`: write a model file's weights in another layout, opt-in,
and show on this machine what it buys and what it changes.

On a 2-core AMD EPYC Zen 4 an all-Q4_K copy of the shipped Qwen2.5-Coder
1.5B Q4_K_M decoded 1.22x faster plainly and 1.24x with auto, choosing the
shipped file's token at 98.1% of positions (docs/benchmarks.md); other CPUs
differ, so the command measures the two files' verify curves side by side
here and their agreement on a few greedy replies, and the user decides.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from localspec.commands.run import positive_int

PROMPTS = (
    "def merge_sorted(a, b):\n    \"\"\"Merge two sorted lists into one sorted list.\"\"\"\n",
    "The three laws of thermodynamics, each in one sentence:\n1.",
    '{"name": "Ada Lovelace", "born": 1815, "known_for": [',
)
REPLY_TOKENS = 48
ROWS = (1, 4, 9, 16, 32, 64)


def register(sub) -> None:
    from localspec.layouts import LAYOUTS

    p = sub.add_parser("layout", help="write a model's weights in another layout and compare the two here")
    p.add_argument("model", metavar="MODEL", help="model name or GGUF path")
    p.add_argument("--to", choices=list(LAYOUTS), default="q4_k", help="the layout to write (default q4_k)")
    p.add_argument("--out", type=Path, help="where to write it (default: the cache, beside the model)")
    p.add_argument("--threads", type=positive_int, help="CPU threads (default: all cores)")
    p.set_defaults(func=handle)


def greedy_reply(ctx, prompt: list[int], n: int) -> list[int]:
    """n tokens of plain greedy decoding (no end-of-text check: the text is only read back)."""
    ctx.truncate(0)
    logits = ctx.decode(prompt)
    out = []
    for _ in range(n):
        out.append(int(logits[-1].argmax()))
        logits = ctx.decode([out[-1]])
    return out


def agreement(src: Path, dst: Path, n_threads: int) -> tuple[int, int]:
    """Of the positions of the source's greedy replies to PROMPTS, how many
    the layout, reading the same text, puts the source's token first at."""
    from localspec.backend import Context, Model
    from localspec.layouts import top1_agreement

    model = Model(src)
    ctx = Context(model, n_ctx=256, n_threads=n_threads)
    texts = [model.tokenize(p, add_special=True, parse_special=False) for p in PROMPTS]
    replies = [greedy_reply(ctx, t, REPLY_TOKENS) for t in texts]
    ctx.close()
    model.close()
    model = Model(dst)
    ctx = Context(model, n_ctx=256, n_threads=n_threads)
    agree = sum(top1_agreement(ctx, t, r) for t, r in zip(texts, replies))
    ctx.close()
    model.close()
    return agree, sum(len(r) for r in replies)


def handle(args: argparse.Namespace) -> int:
    from localspec.backend import default_threads
    from localspec.commands.curve import measure_files, table
    from localspec.fetch import cache_dir
    from localspec.gguf_info import read_gguf_info
    from localspec.layouts import LAYOUTS, requantize
    from localspec.resolve import ensure_local, resolve_model

    spec = resolve_model(args.model)
    src = spec.path or ensure_local(spec)
    read_gguf_info(src)
    layout = LAYOUTS[args.to]
    dst = args.out or cache_dir() / "layouts" / f"{src.stem}.{layout.name}.gguf"
    threads = args.threads or default_threads()
    print(f"writing {dst} ({layout.about})", flush=True)
    requantize(src, dst, layout, threads)
    print(f"measuring both files here, side by side ({threads} threads)", flush=True)
    curves = measure_files([src, dst], ROWS, 2, threads, 0)
    for line in table([src.name, dst.name], curves):
        print(line)
    agree, total = agreement(src, dst, threads)
    print(f"top-1 agreement with {src.name} on {len(PROMPTS)} greedy replies: {agree}/{total} positions "
          f"({agree / total:.1%}); a layout is a requantized copy, so its text can part from the source's")  # fmt: skip
    mib = 2**20
    print(f"size {dst.stat().st_size / mib:.0f} MiB against {src.stat().st_size / mib:.0f} MiB")
    print(f"use it: localspec run --target {dst}   (or a [models.X] path in models.toml)")
    return 0
