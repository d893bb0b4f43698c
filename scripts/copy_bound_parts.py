"""Where the copy bound's lead over lookup's comes from, on recorded runs.

The report's hindsight table bounds lookup (its own proposals, knowing how
far each holds) and any drafter that copies from its context (every run of
what follows found anywhere in it: hindsight.copy_agreement). Between the
two sit two questions: does lookup copy from the wrong place, or does it
start copying too late? This prices, per category, four kinds of copy at
the run's costs as the report prices its bounds: with perfect foresight of
how far a copy holds, and drafting past that where a longer verify is the
cheaper one (16 rows below 12 on some CPUs): lookup its proposal's length, a
copy as far as lookup may draft:

  lookup           the engine's proposal (a repeat of the context's last 2+ tokens)
  best after 2+    the best of the places behind the longest repeat lookup sees
  best after 1     the best of the places behind a repeat of the last token
  anywhere         the best place, the copy's first token included

and two that take lookup's proposal where it agrees further (it carries the
reply's renames, which no literal copy does): "lookup or best after 1", and
"lookup or anywhere", the report's "any copy from the context" column.

    python scripts/copy_bound_parts.py docs/epyc-zen4-long-2/results.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from typing import Sequence

from localspec.bench import hindsight
from localspec.bench.aggregate import geometric_mean
from localspec.bench.texts import plain_texts
from localspec.controller import draft_lengths, lookup_cap
from localspec.costs import CostModel
from localspec.drafters.lookup import DEFAULT_N_MAX, DEFAULT_N_MIN
from localspec.ngram import common_prefix_len


def best_place(context: Sequence[int], want: Sequence[int], n_min: int) -> int:
    """The most of `want` a copy agrees on, from a place whose n tokens before
    it repeat the context's last n, for the longest such n >= n_min (n_min 0:
    any place)."""
    end = len(context)
    for n in range(min(DEFAULT_N_MAX, end - 1), n_min - 1, -1):
        tail = context[end - n :] if n else []
        places = [j for j in range(n, end) if context[j - n : j] == tail]
        if places:
            return max(common_prefix_len(context[j : j + len(want)], want) for j in places)
    return 0


def parts(prompt: Sequence[int], text: Sequence[int], cap: int) -> dict[str, tuple[list[int], list[int]]]:
    """Per kind of copy: (agreement, proposal length) at each position of `text`."""
    proposals = hindsight.lookup_proposals(prompt, text, cap)
    out = {
        "lookup": [p.agreement for p in proposals],
        f"best after {DEFAULT_N_MIN}+": [],
        "best after 1": [],
        "anywhere": hindsight.copy_agreement(prompt, text, cap),
    }
    context = list(prompt)
    for i, token in enumerate(text):
        want = text[i : i + cap]
        out[f"best after {DEFAULT_N_MIN}+"].append(best_place(context, want, DEFAULT_N_MIN))
        out["best after 1"].append(best_place(context, want, 1))
        context.append(token)
    lengths = {name: [cap if a else 0 for a in agree] for name, agree in out.items()}
    lengths["lookup"] = [p.length for p in proposals]
    for name in ("best after 1", "anywhere"):
        out[f"lookup or {name}"] = [max(a, b) for a, b in zip(out["lookup"], out[name])]
        lengths[f"lookup or {name}"] = [max(a, b) for a, b in zip(lengths["lookup"], lengths[name])]
    return {name: (agree, lengths[name]) for name, agree in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="bench runs' results.json")
    args = ap.parse_args()
    for path in args.results:
        data = json.load(open(path))
        per: dict[str, list[dict[str, float]]] = defaultdict(list)
        for t in plain_texts(data["runs"], data["meta"].get("costs")):
            costs = CostModel.from_snapshot(t.costs)
            cap = lookup_cap(costs)
            lengths = draft_lengths(costs, cap)
            per[t.category].append(
                {
                    name: hindsight.speedup(
                        hindsight.fastest_seconds(agree, costs.verify, None, lengths, proposed),
                        len(t.tokens),
                        costs.verify,
                    )
                    for name, (agree, proposed) in parts(t.prompt, t.tokens, cap).items()
                }
            )
        per["overall"] = [x for xs in list(per.values()) for x in xs]
        print(path)
        names = list(per["overall"][0])
        print(f"  {'category':<17}" + "".join(f"{n:>25}" for n in names))
        for cat, xs in per.items():
            print(f"  {cat:<17}" + "".join(f"{geometric_mean(x[n] for x in xs):>24.3f}x" for n in names))


if __name__ == "__main__":
    main()
