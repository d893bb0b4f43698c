"""`localspec bench`: every drafting mode on shipped prompt sets, side by side.

Writes results.json (every run), benchmarks.md and speedup.png into --out;
progress goes to stderr, the tables to stdout. Ctrl-C stops after the run in
progress and still writes everything measured so far.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from localspec.commands.run import add_model_args, engine_kwargs, non_negative_float, non_negative_int, positive_int
from localspec.errors import LocalspecError

RESULTS = "results.json"
REPORT = "benchmarks.md"
PLOT = "speedup.png"
BUSY_LOAD = 0.5  # 1-minute load average above which a warning is printed before measuring


def register(sub) -> None:
    from localspec.bench.modes import BY_NAME
    from localspec.bench.prompts import CATEGORIES

    p = sub.add_parser("bench", help="measure speed and acceptance of each drafting mode on prompt sets")
    add_model_args(p)
    p.add_argument("--modes", help=f"comma-separated, of: {', '.join(BY_NAME)} (default: all the engine can run)")
    p.add_argument("--categories", help=f"comma-separated, of: {', '.join(CATEGORIES)} (default: all)")
    p.add_argument("--per-category", type=positive_int, default=3, help="prompts per category (default 3, max 10)")
    p.add_argument("--max-tokens", type=positive_int, default=128, help="new tokens per run (default 128)")
    p.add_argument("--warmup", type=non_negative_int, default=1, help="warm-up passes over all modes (default 1)")
    p.add_argument(
        "--repeats", type=positive_int, default=1, help="runs of every mode per prompt; the fastest counts (default 1)"
    )
    p.add_argument("--temp", type=non_negative_float, default=0.0,
                   help="sample at this temperature (default 0: greedy); needs --seeds")  # fmt: skip
    p.add_argument("--top-p", type=float, default=1.0, help="with --temp: nucleus sampling (default 1)")
    p.add_argument("--seeds", type=positive_int, default=0,
                   help="with --temp: seeds per prompt (1..N), each a prompt of its own (default 3)")  # fmt: skip
    p.add_argument("--out", type=Path, help="output folder (default: ./localspec-bench-DATE-TIME)")
    p.add_argument("--json-only", action="store_true", help="write results.json only; print the summary as JSON")
    p.add_argument(
        "--from-json",
        type=Path,
        metavar="RESULTS",
        help="run nothing: write the report and plot again from a results.json (into its folder unless --out)",
    )
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from localspec.bench.modes import MODES, choose_modes
    from localspec.bench.prompts import parse_categories, select
    from localspec.bench.system import load_average

    load_start = load_average()  # before loading the models adds our own
    if not args.json_only:
        from localspec.bench.report import require_matplotlib

        require_matplotlib()
    if args.from_json is not None:
        return _rerender(args)

    if args.draft_max is not None or args.p_min is not None:
        raise LocalspecError("bench sets --draft-max and --p-min per mode; leave them out")
    if args.seeds and not args.temp:
        raise LocalspecError("--seeds is for sampled runs: give --temp too (e.g. --temp 0.8)")
    if args.temp and not args.seeds:
        args.seeds = 3
    if not 0.0 < args.top_p <= 1.0:
        raise LocalspecError(f"--top-p must be in (0, 1], got {args.top_p}")
    categories = parse_categories(args.categories)
    choose_modes(args.modes, tuple(m.method for m in MODES))  # bad names fail before a model loads
    prompts = select(categories, args.per_category)
    out_dir = args.out or Path(time.strftime("localspec-bench-%Y%m%d-%H%M%S"))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LocalspecError(f"cannot create output folder {out_dir}: {e}") from None

    from localspec.engine import load_engine

    engine = load_engine(**engine_kwargs(args), progress=_load_progress)
    try:
        modes, notes = choose_modes(args.modes, engine.methods)
        meta = _meta(engine, args, categories, len(prompts), modes, notes, load_start)
        meta["costs"] = {"calibrated": engine.planner.costs.snapshot()}
        records, interrupted = _run(engine, prompts, modes, args, meta, out_dir / RESULTS)
        # What every step of the run taught the planner: the costs at this run's contexts.
        meta["costs"]["end_of_run"] = engine.planner.costs.snapshot()
    finally:
        engine.close()
    if not records:
        print("localspec: interrupted before any prompt finished; nothing written", file=sys.stderr)
        return 130
    return _finish(records, meta, interrupted, args, out_dir)


def _load_progress(stage: str, frac: float) -> None:
    if frac == 0.0:
        print(f"{stage}…", file=sys.stderr)


def _meta(engine, args, categories, n_prompts: int, modes, notes, load_start: float | None) -> dict:
    from localspec.backend import default_threads
    from localspec.bench import system

    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "interrupted": False,
        "load_average_start": load_start,
        "load_average_end": None,
        "machine": system.machine(),
        "libraries": system.libraries(),
        "models": system.models(engine),
        "settings": {
            "max_tokens": args.max_tokens,
            "warmup": args.warmup,
            "repeats": args.repeats,
            # Every run of a prompt starts from what the engine had learned before the prompt
            # (bench/runner.py); runs made before this key learned from each other.
            "runs_meet_prompt_as_new": True,
            "per_category": args.per_category,
            "prompts": n_prompts * (args.seeds or 1),
            "categories": list(categories),
            "n_ctx": engine.target_ctx.n_ctx,
            "threads": args.threads or default_threads(),
            "n_gpu_layers": args.ngl,  # None: each model's models.toml setting
            "n_gpu_layers_draft": args.ngl_draft,
            "greedy": not args.temp,
            "sampling": {"temp": args.temp, "top_p": args.top_p, "seeds": args.seeds} if args.temp else None,
            "batch": 1,
        },
        "modes": {m.name: m.describe() for m in modes},
        "notes": notes,
    }


def _run(engine, prompts, modes, args, meta, results_path: Path) -> tuple[list[dict], bool]:
    from localspec.bench.runner import iter_benchmark
    from localspec.verify import SamplingParams

    def progress(i, n, prompt, mode, rec) -> None:
        st = rec["stats"]
        acc = f"{st['acceptance_rate']:4.0%}" if st["drafted"] else "   –"
        print(
            f"[{i + 1}/{n}] {prompt.category:<15} {prompt.id:<26} {mode.name:<13} "
            f"{st['tokens_per_s']:6.1f} tok/s  accept {acc}  {st['n_generated']} tokens",
            file=sys.stderr,
        )

    for note in meta["notes"]:
        print(f"note: {note}", file=sys.stderr)
    load = meta["load_average_start"]
    if load is not None and load > BUSY_LOAD:
        print(f"warning: load average is {load}; other processes will distort the timings", file=sys.stderr)
    times = f" x {args.repeats} repeats" if args.repeats > 1 else ""
    seeds = f" x {args.seeds} seeds (temp {args.temp}, top-p {args.top_p})" if args.seeds else ""
    print(f"{len(prompts)} prompts{seeds} x {len(modes)} modes{times}, {args.max_tokens} tokens each", file=sys.stderr)
    records: list[dict] = []
    try:
        for prompt_records in iter_benchmark(
            engine,
            prompts,
            modes,
            max_tokens=args.max_tokens,
            warmup=args.warmup,
            repeats=args.repeats,
            progress=progress,
            sampling=SamplingParams(temp=args.temp, top_p=args.top_p),
            seeds=tuple(range(1, args.seeds + 1)),
        ):
            records += prompt_records
            _write_json(results_path, meta, records)  # a checkpoint: a long run survives a crash
    except KeyboardInterrupt:
        print("interrupted: writing what was measured", file=sys.stderr)
        return records, True
    return records, False


def _finish(records: list[dict], meta: dict, interrupted: bool, args, out_dir: Path, measured: bool = True) -> int:
    from localspec.bench import report
    from localspec.bench.system import load_average

    done = len({r["prompt_id"] for r in records})
    # A checkpoint of a run that was killed says it was complete; the count does not.
    meta["interrupted"] = interrupted or done < meta["settings"]["prompts"]
    meta["prompts_done"] = done
    if measured:
        meta["load_average_end"] = load_average()
    summary = _write_json(out_dir / RESULTS, meta, records)
    written = [out_dir / RESULTS]
    if args.json_only:
        json.dump(summary, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        plot_name = PLOT if report.plot(records, out_dir / PLOT) else None
        if plot_name:
            written.append(out_dir / PLOT)
        (out_dir / REPORT).write_text(report.markdown(meta, records, plot_name), encoding="utf-8")
        written.append(out_dir / REPORT)
        sys.stdout.write(report.tables(records))
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 130 if interrupted and measured else 0


def _rerender(args) -> int:
    try:
        saved = json.loads(args.from_json.read_text(encoding="utf-8"))
        meta, records = saved["meta"], saved["runs"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LocalspecError(f"cannot read benchmark results from {args.from_json}: {e}") from None
    out_dir = args.out or args.from_json.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    return _finish(records, meta, False, args, out_dir, measured=False)


def _write_json(path: Path, meta: dict, records: list[dict]) -> dict:
    from localspec.bench.aggregate import by_category, summarize

    summary = {
        "overall": [s.to_dict() for s in summarize(records)],
        "by_category": {c: [s.to_dict() for s in rows] for c, rows in by_category(records).items()},
    }
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"meta": meta, "summary": summary, "runs": records}, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return summary
