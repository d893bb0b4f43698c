"""Replay bench runs' texts with the planner of another commit.

A live before-and-after of two commits on one machine is two bench runs
minutes apart, and on a 2-core guest a category's plain-rerun moves by
5-10% between them. Replayed on the same texts at the same costs
(localspec/bench/replay.py), two planners differ only in what they chose.
This script replays with whatever `localspec` comes first on the path, so
an old commit's planner runs from a worktree of it:

    git worktree add /tmp/before a8c3063
    PYTHONPATH=/tmp/before .venv/bin/python scripts/replay_commit.py docs/epyc-zen4-long-2/results.json --passes PAPPAP
    PYTHONPATH=. .venv/bin/python scripts/replay_commit.py docs/epyc-zen4-long-2/results.json --passes PAPPAP

It repeats replay.py's loop instead of importing it because the commits
before the replay was written lack that module; it uses only what they
share (Planner, PlannerSettings, CostModel.from_snapshot, LookupDrafter,
common_prefix_len, geometric_mean),
and tests/test_replay.py checks that on this commit both give the same.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import localspec
from localspec.bench.aggregate import geometric_mean
from localspec.controller import Planner, PlannerSettings
from localspec.costs import CostModel
from localspec.drafters.lookup import LookupDrafter
from localspec.ngram import common_prefix_len


def replay(planner: Planner, prompt: list[int], text: list[int]) -> float:
    """`text` generated after `prompt` with `planner` choosing each step; its
    speedup over plain decoding at the planner's costs."""
    costs, drafter = planner.costs, planner.drafters["lookup"]
    context, i, seconds = list(prompt), 0, 0.0
    drafter.observe(context, 0)
    while i < len(text):
        plan = planner.plan(context)
        k = min(plan.k, len(text) - 1 - i)
        draft = list(drafter.propose(context, k, None, None).tokens[:k]) if plan.method == "lookup" and k else []
        kept = common_prefix_len(draft, list(text[i : i + len(draft)]))
        seconds += costs.verify(len(draft) + 1)
        context.extend(text[i : i + kept + 1])
        i += kept + 1
        drafter.observe(context, kept)
    return len(text) * costs.verify(1) / seconds


def replay_run(records: list[dict], passes: str) -> dict[str, list[tuple[str, float]]]:
    """Each prompt's first plain text, in run order, through one planner; per
    category, (prompt, the best speedup of its auto passes). Texts without
    costs of their own (results older than per-prompt snapshots) are left
    out, as plain_texts leaves them out without a snapshot."""
    planner, seen, out = None, set(), {}
    for r in records:
        priced = r.get("prompt_tokens") and r["tokens"] and r.get("costs")
        if r["mode"] != "plain" or not priced or r["prompt_id"] in seen:
            continue
        seen.add(r["prompt_id"])
        costs = CostModel.from_snapshot(r["costs"])
        if planner is None:
            lookup = LookupDrafter()
            planner = Planner(PlannerSettings(method="auto"), {"lookup": lookup}, lookup, costs)
        planner.costs = costs
        auto, best = planner.settings, 0.0
        for kind in passes:
            planner.settings = auto if kind == "A" else replace(auto, method="none")
            if hasattr(planner.lookup, "quote"):
                planner.lookup.quote([])  # as Engine.generate does per reply (commits that have it)
            speedup = replay(planner, r["prompt_tokens"], r["tokens"])
            best = max(best, speedup) if kind == "A" else best
        planner.settings = auto
        out.setdefault(r["category"], []).append((r["prompt_id"], best))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="bench runs' results.json")
    ap.add_argument("--passes", default="A",
                    help="each text's passes: A auto (priced), P plain; PAPPAP is a bench's rotation twice")  # fmt: skip
    ap.add_argument("--json", action="store_true", help="print one JSON object: per file, per category and overall")
    args = ap.parse_args()
    if "A" not in args.passes or set(args.passes) - {"A", "P"}:
        ap.error(f"--passes must be made of A and P, with at least one A: {args.passes!r}")
    report = {}
    for path in args.results:
        with open(path) as f:
            by_category = replay_run(json.load(f)["runs"], args.passes)
        every = [s for rows in by_category.values() for _, s in rows]
        report[path] = {c: geometric_mean([s for _, s in rows]) for c, rows in by_category.items()}
        report[path]["overall"] = geometric_mean(every)
        if not args.json:
            print(f"{path} (the planner of {localspec.__file__.rsplit('/', 2)[0]})")
            for c, rows in by_category.items():
                print(f"  {c:16s} {report[path][c]:.3f}  " + "  ".join(f"{p} {s:.2f}" for p, s in rows))
            if every:
                print(f"  {'overall':16s} {report[path]['overall']:.3f}")
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
