"""Replay the planner on bench runs' texts, and weigh a change to lookup's decay.

Each results.json's plain texts are replayed with the planner as it is
(localspec/bench/replay.py) and, for each --lookup-decay given, with
lookup's survival estimates forgetting at that rate instead. Printed per
category and run: the replayed speedup over plain decoding, then, pooled
over every text given, each variant's geometric-mean ratio to the planner
as it is, and on how many texts it did better and worse.

    python scripts/planner_replay.py docs/xeon-long/results.json docs/epyc-zen4-long/results.json \\
        --lookup-decay 0.8 0.9

`--passes PAPPAP` replays each text as a bench run meets it (plain passes
around auto's) instead of once (replay.replay_run).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict

from localspec.bench import replay
from localspec.bench.texts import plain_texts
from localspec.controller import LOOKUP_DECAY


def with_decay(decay: float):
    return lambda costs: replay.default_planner(costs, lookup_decay=decay)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="bench runs' results.json")
    ap.add_argument("--lookup-decay", type=float, nargs="*", default=[], help="variants to weigh against the planner as it is")
    ap.add_argument("--passes", default="A", help="each text's passes: A auto (priced), P plain; PAPPAP is a bench's rotation twice")
    args = ap.parse_args()
    variants = {f"as it is ({LOOKUP_DECAY})": replay.default_planner}
    variants.update({f"decay {d}": with_decay(d) for d in args.lookup_decay})
    log_ratios: dict[str, dict[str, list[float]]] = {v: defaultdict(list) for v in variants}
    for path in args.results:
        with open(path) as f:
            texts = plain_texts(json.load(f)["runs"])  # only texts with their own recorded costs
        runs = {v: replay.replay_run(texts, make, args.passes) for v, make in variants.items()}
        base = runs[next(iter(variants))]
        print(path)
        for cat in replay.speedups(base):
            print(f"  {cat:16s}" + "".join(f"  {v} {replay.speedups(r)[cat]:.3f}" for v, r in runs.items()))
        for v, r in runs.items():
            for cat, replayed in r.items():
                for a, b in zip(base[cat], replayed):
                    log_ratios[v][cat].append(math.log(b.speedup / a.speedup))
    for v in list(variants)[1:]:
        print(f"{v}, against the planner as it is, over every text given:")
        pooled = [x for xs in log_ratios[v].values() for x in xs]
        for cat, xs in [*sorted(log_ratios[v].items()), ("all", pooled)]:
            better, worse = sum(x > 1e-9 for x in xs), sum(x < -1e-9 for x in xs)
            print(f"  {cat:16s} {len(xs):4d} texts  {math.exp(sum(xs) / len(xs)):.4f}x  better on {better}, worse on {worse}")


if __name__ == "__main__":
    main()
