"""What the planner's slow start costs, in hindsight, on a bench run's texts.

`localspec bench` reports lookup's best rule k = f(match length) on each
category's plain texts (localspec/bench/hindsight.py). The planner cannot
follow such a rule past K_MAX: it drafts at most max(K_MAX, 2 * copied + 1)
tokens, where `copied` is how long the text has just been copying (the
slow start in controller.Planner). This prices that rule with and without
the cap, at each text's own learned costs (hindsight.rule_seconds says how
`copied` is approximated).

    python scripts/slow_start_bound.py docs/xeon-long-sampled/results.json code-generation
"""

from __future__ import annotations

import argparse
import json

from localspec.bench import hindsight
from localspec.bench.texts import plain_texts
from localspec.controller import draft_lengths, lookup_cap
from localspec.costs import CostModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="a bench run's results.json")
    ap.add_argument("category")
    args = ap.parse_args()
    with open(args.results) as f:
        runs = json.load(f)["runs"]
    texts = []
    for t in plain_texts(runs):
        if t.category != args.category:
            continue
        costs = CostModel.from_snapshot(t.costs)
        cap = lookup_cap(costs)
        proposals = hindsight.lookup_proposals(t.prompt, t.tokens, cap)
        texts.append(hindsight.PricedText(proposals, costs.verify, draft_lengths(costs, cap)))
    rule = hindsight.best_rule(texts)
    print(f"{args.category}: {len(texts)} texts; best rule k = f(match bucket): {rule}")
    print(f"  the rule as the report prices it: {hindsight.rule_speedup(texts, rule):.3f}x")
    print(f"  under the slow start's cap:       {hindsight.rule_speedup(texts, rule, slow_start=True):.3f}x")


if __name__ == "__main__":
    main()
