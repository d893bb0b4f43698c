"""The best any planner could have done on a run's text, knowing it in advance.

With greedy decoding the text is fixed before a single draft is made: it is
plain decoding's. So is every lookup proposal, which depends only on the
context (prompt plus the text so far), not on earlier choices. Knowing the
text, the agreement a(i) of the lookup proposal at every position i is known,
and the cheapest way to produce the text is a shortest path:

    C(N) = 0
    C(i) = min over 0 <= k <= min(a(i), K_MAX, N - 1 - i) of  verify(k + 1) + C(i + k + 1)

(k = 0 is a plain step: one row, one token). A draft model that is always
right lifts the bound on k: it drafts what lookup does not cover, at
draft(k - a(i)) more (lookup first, the model after it, as draft+lookup
does; its catch-up on tokens it did not draft is left free, which only
raises the bound). Plain decoding costs N · verify(1), so N · verify(1) / C(0)
is the speedup a planner with perfect foresight would reach with these
drafters at these costs. No online planner can beat it (run-to-run noise
apart), which makes it the yardstick for a target ratio a run did not meet.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from localspec.bench.aggregate import geometric_mean
from localspec.controller import K_MAX
from localspec.costs import CostModel
from localspec.drafters.lookup import LookupDrafter
from localspec.ngram import common_prefix_len


def lookup_agreement(prompt: Sequence[int], text: Sequence[int], k_max: int = K_MAX) -> list[int]:
    """For each position of `text`, how many tokens of the engine's lookup
    proposal there (context: prompt + text so far) agree with what follows."""
    index = LookupDrafter().index  # the engine's own n-gram settings
    context = list(prompt)
    out = []
    for i in range(len(text)):
        index.sync(context)
        proposal = index.lookup(min(k_max, len(text) - i))
        out.append(common_prefix_len(proposal, list(text[i : i + len(proposal)])))
        context.append(text[i])
    return out


def fastest_seconds(
    agreement: Sequence[int],
    verify: Callable[[int], float],
    draft: Callable[[int], float] | None = None,
    k_max: int = K_MAX,
) -> float:
    """C(0) of the recurrence above: the least time to produce the text.

    `verify(n)` is the price of verifying n rows, `draft(k)` that of drafting
    k tokens with a model that is always right (None: no draft model).
    """
    n = len(agreement)
    best = [0.0] * (n + 1)
    for i in range(n - 1, -1, -1):
        c = math.inf
        for k in range(min(k_max, n - 1 - i) + 1):
            step = verify(k + 1) + best[i + k + 1]
            uncovered = k - agreement[i]
            if uncovered <= 0:
                c = min(c, step)
            elif draft is not None:
                c = min(c, draft(uncovered) + step)
        best[i] = c
    return best[0]


def speedup(seconds: float, n_tokens: int, verify: Callable[[int], float]) -> float:
    return n_tokens * verify(1) / seconds if seconds > 0 else 1.0


def by_category(records: list[dict], snapshot: dict, with_draft: bool) -> dict[str, tuple[float, float | None]]:
    """Per category (in run order) and "overall": the geometric mean over
    prompts of the hindsight speedup with lookup alone, and with an
    always-right draft model as well (None when the run had none).

    Texts are the plain runs' (one per prompt); the prices are the planner's
    (a cost snapshot, as the report records them).
    """
    costs = CostModel.from_snapshot(snapshot)
    seen: dict[str, tuple[str, list[int], list[int]]] = {}
    for r in records:
        if r["mode"] == "plain" and r.get("prompt_tokens") and r["tokens"] and r["prompt_id"] not in seen:
            seen[r["prompt_id"]] = (r["category"], r["prompt_tokens"], r["tokens"])
    per: dict[str, list[tuple[float, float | None]]] = {}
    for cat, prompt, text in seen.values():
        agree = lookup_agreement(prompt, text)
        alone = speedup(fastest_seconds(agree, costs.verify), len(text), costs.verify)
        both = None
        if with_draft:
            seconds = fastest_seconds(agree, costs.verify, lambda k: costs.draft("draft", k))
            both = speedup(seconds, len(text), costs.verify)
        per.setdefault(cat, []).append((alone, both))
    per_all = [x for xs in per.values() for x in xs]
    out = {}
    for cat, xs in list(per.items()) + ([("overall", per_all)] if per_all else []):
        g_alone = geometric_mean(a for a, _ in xs)
        out[cat] = (g_alone, geometric_mean(b for _, b in xs) if with_draft else None)
    return out
