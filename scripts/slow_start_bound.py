"""What the planner's slow start costs, in hindsight, on a bench run's texts.

`localspec bench` reports lookup's best rule k = f(match length) on each
category's plain texts (localspec/bench/hindsight.py). The planner cannot
follow such a rule past K_MAX: it drafts at most max(K_MAX, 2 * copied + 1)
tokens, where `copied` is how long the text has just been copying (the
slow start in controller.Planner). This prices that rule with and without
the cap, at each text's own learned costs.

`copied` is approximated as the planner's LookupScores.run would see it from
the previous step's proposal alone: its agreement, as far as the text has
come since (earlier proposals still pending are ignored), or a match longer
than K_MAX.

    python scripts/slow_start_bound.py docs/xeon-long-sampled/results.json code-generation
"""

from __future__ import annotations

import argparse
import json
from typing import Callable, Sequence

from localspec.bench import hindsight
from localspec.controller import K_MAX, draft_lengths, lookup_bucket, lookup_cap
from localspec.costs import CostModel


def seconds(
    proposals: Sequence[hindsight.Proposal],
    rule: dict[int, int],
    verify: Callable[[int], float],
    lengths: Sequence[int],
    slow_start: bool,
) -> float:
    i, n, total = 0, len(proposals), 0.0
    previous: tuple[int, int] | None = None  # (position, agreement) of the latest proposal
    while i < n:
        p = proposals[i]
        run = min(previous[1], i - previous[0]) if previous else 0
        copied = max(run, p.match_n if p.match_n > K_MAX else 0)
        cap = max(K_MAX, 2 * copied + 1) if slow_start else n
        most = min(rule[lookup_bucket(p.match_n)], p.length, n - 1 - i, cap)
        k = max((k for k in lengths if k <= most), default=0)
        total += verify(k + 1)
        if p.length:
            previous = (i, p.agreement)
        i += min(p.agreement, k) + 1
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="a bench run's results.json")
    ap.add_argument("category")
    args = ap.parse_args()
    runs = json.load(open(args.results))["runs"]
    plain = {}
    for r in runs:
        if r["mode"] == "plain" and r["category"] == args.category and r.get("prompt_tokens"):
            plain.setdefault(r["prompt_id"], r)
    texts = []
    for r in plain.values():
        costs = CostModel.from_snapshot(r["costs"])
        cap = lookup_cap(costs)
        proposals = hindsight.lookup_proposals(r["prompt_tokens"], r["tokens"], cap)
        texts.append(hindsight.PricedText(proposals, costs.verify, draft_lengths(costs, cap)))
    rule = hindsight.best_rule(texts)

    def speedup(slow_start: bool) -> float:
        return hindsight.geometric_mean(
            hindsight.speedup(seconds(t.proposals, rule, t.verify, t.lengths, slow_start), len(t.proposals), t.verify)
            for t in texts
        )

    print(f"{args.category}: {len(texts)} texts; best rule k = f(match bucket): {rule}")
    print(f"  the rule as the report prices it: {hindsight.rule_speedup(texts, rule):.3f}x")
    print(f"  the same rule, here, no cap:      {speedup(False):.3f}x")
    print(f"  under the slow start's cap:       {speedup(True):.3f}x")


if __name__ == "__main__":
    main()
