"""`localspec curve`: what verifying n rows costs on this machine, per model file.

Whether speculation pays is decided here: a step that verifies a draft of
k tokens costs the price of k + 1 rows, and a right draft yields k + 1
tokens. So (k + 1) · t(1) / t(k + 1) is the most any drafter can reach at
that length, and the shape of t(n) follows the kernels llama.cpp picks for
the file's weight types (repacked 16- and 4-row tiles, tinyBLAS, row by row).
Files are measured side by side: each repeat goes round every file, so a
slow moment on the machine does not fall on one of them.
"""

from __future__ import annotations

import argparse
import json
import os

from localspec import calibrate
from localspec.commands.run import positive_int

DEFAULT_ROWS = tuple(sorted({*calibrate.ROWS, *calibrate.TILE_ROWS, *calibrate.FILL_ROWS}))
REPEATS = 4
MOST_ROWS = 512  # one batch; more is a prefill, not a verify
MOST_AFTER = 32768  # Qwen2.5's training context; a longer cache is not what a chat verifies after


def row_list(s: str) -> tuple[int, ...]:
    try:
        rows = tuple(sorted({int(x) for x in s.split(",") if x.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected row counts like 1,4,16, got {s!r}") from None
    if not rows or rows[0] < 1 or rows[-1] > MOST_ROWS:
        raise argparse.ArgumentTypeError(f"row counts must be 1 to {MOST_ROWS}, got {s!r}")
    if 1 not in rows:
        rows = (1, *rows)  # every multiple is of one row
    return rows


def after_tokens(s: str) -> int:
    try:
        n = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of tokens, got {s!r}") from None
    if not 1 <= n <= MOST_AFTER:
        raise argparse.ArgumentTypeError(f"--after must be 1 to {MOST_AFTER} tokens, got {n}")
    return n


def register(sub) -> None:
    p = sub.add_parser("curve", help="measure what verifying n rows costs here, for one or more model files")
    p.add_argument("models", nargs="*", metavar="MODEL", help="model names or GGUF paths (default: the default pair's target)")
    p.add_argument("--rows", type=row_list, default=DEFAULT_ROWS, help="row counts to measure, comma-separated "
                   f"(default: the sizes calibration may measure, {','.join(map(str, DEFAULT_ROWS))})")  # fmt: skip
    p.add_argument("--repeats", type=positive_int, default=REPEATS, help=f"best of this many (default {REPEATS})")
    p.add_argument("--threads", type=positive_int, help="CPU threads (default: all cores)")
    p.add_argument("--ngl", type=int, default=0, help="layers to offload to the GPU (default 0: the CPU's curve)")
    p.add_argument("--after", type=after_tokens, default=calibrate.PREFIX, metavar="TOKENS",
                   help=f"tokens already in the cache before the rows (default {calibrate.PREFIX}, a short prompt; "
                   "a document to answer from is several hundred)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=handle)


def measure_files(
    paths: list, rows: tuple[int, ...], repeats: int, n_threads: int, ngl: int, after: int = calibrate.PREFIX
) -> list[dict[int, float]]:
    """Seconds per verify of each row count after `after` tokens, for each file, the best of `repeats`."""
    from localspec.backend import Context, Model

    most = max(rows)
    loaded = []
    try:
        for path in paths:
            model = Model(path, n_gpu_layers=ngl)
            loaded.append(model)
            ctx = Context(model, n_ctx=after + most + 1, n_batch=max(512, most), n_threads=n_threads)
            loaded.append(ctx)
        contexts = loaded[1::2]
        tokens = [calibrate.seed_tokens(ctx.model, most, after) for ctx in contexts]
        best = [{n: float("inf") for n in rows} for _ in contexts]
        for _ in range(repeats):
            for ctx, toks, b in zip(contexts, tokens, best):
                for n, s in calibrate.time_rows(ctx, rows, toks, repeats=1, prefix=after).items():
                    b[n] = min(b[n], s)
        return best
    finally:
        for thing in reversed(loaded):
            thing.close()


def table(names: list[str], curves: list[dict[int, float]]) -> list[str]:
    """One line per row count; per file: milliseconds, multiple of one row,
    and the speedup of a draft of that length that is always right."""
    width = max(30, *(len(n) for n in names))
    out = [
        "rows" + "".join(f" | {n:<{width}}" for n in names),
        "    " + "".join(f" | {'ms':>8} {'x 1 row':>8} {'right draft':>11}".ljust(width + 3) for _ in names),
    ]
    for n in sorted(curves[0]):
        cells = (f" | {c[n] * 1e3:8.1f} {c[n] / c[1]:8.1f} {n * c[1] / c[n]:10.2f}x".ljust(width + 3) for c in curves)
        out.append(f"{n:>4}" + "".join(cells))
    return out


def summary(curve: dict[int, float]) -> str:
    """One line: one row's cost, a few sizes' multiples of it, and the best a right draft can do."""
    one = curve[1]
    shown = [n for n in (4, 9, 16, 32, 64) if n in curve]
    best = max(curve, key=lambda n: n * one / curve[n])
    multiples = "; ".join(f"{n} rows {curve[n] / one:.1f}x" for n in shown)
    return (f"1 row {one * 1e3:.0f} ms; {multiples}; a right draft pays at most "
            f"{best * one / curve[best]:.2f}x ({best - 1} tokens)")  # fmt: skip


def handle(args: argparse.Namespace) -> int:
    from localspec import registry
    from localspec.backend import default_threads
    from localspec.resolve import ensure_local, resolve_model
    from localspec.gguf_info import read_gguf_info
    from localspec.host import cpu_name

    reg = registry.load_registry()
    names = args.models or [registry.resolve_pair(None, reg).target]
    paths, labels = [], []
    for name in names:
        spec = resolve_model(name, reg)
        path = spec.path or ensure_local(spec)
        read_gguf_info(path)  # a file that is not GGUF: one line, before llama.cpp sees it
        paths.append(path)
        labels.append(spec.name if spec.name not in labels else str(path))
    threads = args.threads or default_threads()
    curves = measure_files(paths, args.rows, args.repeats, threads, args.ngl, args.after)
    if args.json:
        print(json.dumps({
            "cpu": cpu_name(), "threads": threads, "n_gpu_layers": args.ngl, "repeats": args.repeats, "after": args.after,
            "models": [{"name": label, "path": str(p), "size": os.path.getsize(p),
                        "verify_s": {str(n): s for n, s in c.items()}} for label, p, c in zip(labels, paths, curves)],
        }, indent=2))  # fmt: skip
        return 0
    print(f"verify cost by rows on {cpu_name()}, {threads} threads, after {args.after} tokens, best of "
          f"{args.repeats} (a right draft of k tokens verifies in k + 1 rows)")  # fmt: skip
    for line in table(labels, curves):
        print(line)
    return 0

