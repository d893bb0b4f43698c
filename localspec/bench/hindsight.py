"""The best any planner could have done on a run's text, knowing it in advance.

With greedy decoding the text is fixed before a single draft is made: it is
plain decoding's. So is every lookup proposal, which depends only on the
context (prompt plus the text so far), not on earlier choices. Knowing the
text, the agreement a(i) of the lookup proposal at every position i is known,
and the cheapest way to produce the text is a shortest path:

    C(N) = 0
    C(i) = min over k in {0} ∪ L, k <= min(a(i), N - 1 - i), of  verify(k + 1) + C(i + k + 1)
           and over k in L, a(i) < k <= p(i), of                  verify(k + 1) + C(i + a(i) + 1)

(k = 0 is a plain step: one row, one token; L is the set of draft lengths
the planner may choose on the machine: every k up to K_MAX and the longer
ones whose verify size was measured, controller.draft_lengths). The second
line drafts more of the proposal p(i) than agrees and keeps the agreed part:
on a curve that is not monotone (16 rows below 12 on the Zen 4) that can be
the cheaper way to verify a(i) + 1 tokens, and the planner may take it. A draft
model that is always right lifts the bound on k: it drafts what lookup does
not cover, at draft(k - a(i)) more (lookup first, the model after it, as
draft+lookup does; its catch-up on tokens it did not draft is left free,
which only raises the bound). Plain decoding costs N · verify(1), so N · verify(1) / C(0)
is the speedup a planner with perfect foresight would reach with these
drafters at these costs. No online planner can beat it (run-to-run noise
apart), which makes it the yardstick for a target ratio a run did not meet.

The same recurrence over `copy_agreement` (at each position the longest run
of what follows found anywhere in the context so far, or lookup's proposal
where that agrees further) bounds every drafter that copies from its
context, however it picks where to copy from: a target above it is out of
reach for n-gram lookup of any design, on these texts at these costs.

Between that bound and what the planner measured sits a second question:
how far could the planner's own signal take it? Before a step it sees the
proposal and the length of the n-gram match behind it (its acceptance
estimates are kept per match length). The best rule k = f(match length),
chosen knowing the texts, is what exact acceptance rates per match length,
fixed for the texts, would buy; what lies beyond it needs foresight of the
single match. (The planner's estimates move within a reply, so where a text
changes character it can beat any fixed rule.)
The rule is found by coordinate search (each length's k in turn, until no
single change helps): a local optimum, so it can only understate the best
rule, and it starts from plain decoding, so it never falls below 1.0x.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

from localspec.bench.aggregate import geometric_mean
from localspec.bench.texts import plain_texts
from localspec.controller import K_MAX, LOOKUP_BUCKETS, draft_lengths, lookup_bucket, lookup_cap
from localspec.costs import CostModel
from localspec.drafters.lookup import LookupDrafter
from localspec.ngram import common_prefix_len


class Proposal(NamedTuple):
    match_n: int  # length of the n-gram match behind it, 0 for no proposal
    length: int  # tokens proposed
    agreement: int  # of which this many agree with what follows


def lookup_proposals(prompt: Sequence[int], text: Sequence[int], k_max: int = K_MAX) -> list[Proposal]:
    """The engine's lookup proposal at each position of `text` (context:
    prompt + text so far), scored against what follows."""
    drafter = LookupDrafter()  # the engine's own: n-gram settings and substitutions
    context = list(prompt)
    out = []
    for i in range(len(text)):
        draft = drafter.propose(context, min(k_max, len(text) - i), None, None)
        proposal, n = draft.tokens, draft.match_n
        out.append(Proposal(n, len(proposal), common_prefix_len(proposal, list(text[i : i + len(proposal)]))))
        context.append(text[i])
    return out


def lookup_agreement(prompt: Sequence[int], text: Sequence[int], k_max: int = K_MAX) -> list[int]:
    """For each position of `text`, how many tokens of the engine's lookup
    proposal there agree with what follows."""
    return [p.agreement for p in lookup_proposals(prompt, text, k_max)]


def copy_agreement(prompt: Sequence[int], text: Sequence[int], k_max: int = K_MAX) -> list[int]:
    """For each position of `text`, the longest run of what follows (at most
    k_max tokens) found anywhere in the context so far (prompt + text before
    it): what a drafter that copies from its context could propose there if
    it knew where to copy from. Lookup finds a copy only once the context's
    last tokens repeat (n_min of them), and then picks one place among the
    repeats; the difference between the two bounds is what a better choice of
    place could win, the rest needs a drafter that writes what was never
    there."""
    context = list(prompt)
    at: dict[int, list[int]] = {}
    for j, t in enumerate(context):
        at.setdefault(t, []).append(j)
    out = []
    for i in range(len(text)):
        want = text[i : i + k_max]
        best = 0
        for j in at.get(want[0], ()):
            n = common_prefix_len(context[j : j + len(want)], want)
            best = max(best, n)
            if best == len(want):
                break
        out.append(best)
        at.setdefault(text[i], []).append(len(context))
        context.append(text[i])
    return out


def fastest_seconds(
    agreement: Sequence[int],
    verify: Callable[[int], float],
    draft: Callable[[int], float] | None = None,
    lengths: Sequence[int] = range(1, K_MAX + 1),
    proposed: Sequence[int] | None = None,
) -> float:
    """C(0) of the recurrence above: the least time to produce the text.

    `verify(n)` is the price of verifying n rows, `draft(k)` that of drafting
    k tokens with a model that is always right (None: no draft model),
    `lengths` the draft lengths that may be chosen (ascending), `proposed`
    the length of lookup's proposal at each position (None: drafts stop
    where the proposal stops agreeing).
    """
    n = len(agreement)
    best = [0.0] * (n + 1)
    ks = [0, *lengths]
    for i in range(n - 1, -1, -1):
        c = math.inf
        a = agreement[i]
        for k in ks:
            if k > n - 1 - i:
                break
            if k <= a:
                c = min(c, verify(k + 1) + best[i + k + 1])
                continue
            if draft is not None:
                c = min(c, draft(k - a) + verify(k + 1) + best[i + k + 1])
            if proposed is not None and k <= proposed[i]:
                c = min(c, verify(k + 1) + best[i + a + 1])
        best[i] = c
    return best[0]


def speedup(seconds: float, n_tokens: int, verify: Callable[[int], float]) -> float:
    return n_tokens * verify(1) / seconds if seconds > 0 else 1.0


def rule_seconds(
    proposals: Sequence[Proposal],
    rule: dict[int, int],
    verify: Callable[[int], float],
    lengths: Sequence[int] = range(1, K_MAX + 1),
    slow_start: bool = False,
) -> float:
    """Time to produce the text drafting k = rule[match bucket] lookup tokens
    at every step (or the longest of `lengths` that is proposed and fits), the
    planner's way: a step keeps the agreed prefix plus the target's own token.

    `slow_start` holds the rule to the planner's cap past K_MAX (twice the
    copy so far, plus one: controller.Planner), with the copy so far taken
    from the previous proposal alone (its agreement, as far as the text has
    come since; the planner also counts earlier proposals still pending) or
    a match longer than K_MAX (scripts/slow_start_bound.py)."""
    i, n, total = 0, len(proposals), 0.0
    previous: tuple[int, int] | None = None  # (position, agreement) of the latest proposal
    while i < n:
        p = proposals[i]
        most = min(rule[lookup_bucket(p.match_n)], p.length, n - 1 - i)  # no proposal: length 0
        if slow_start:
            run = min(previous[1], i - previous[0]) if previous else 0
            most = min(most, max(K_MAX, 2 * max(run, p.match_n if p.match_n > K_MAX else 0) + 1))
            if p.length:
                previous = (i, p.agreement)
        k = max((k for k in lengths if k <= most), default=0)
        total += verify(k + 1)
        i += min(p.agreement, k) + 1
    return total


class PricedText(NamedTuple):
    proposals: Sequence[Proposal]  # one per token of the text
    verify: Callable[[int], float]  # the costs it is priced at
    lengths: Sequence[int] = range(1, K_MAX + 1)  # the draft lengths those costs let the planner choose


def rule_speedup(texts: Sequence[PricedText], rule: dict[int, int], slow_start: bool = False) -> float:
    """Geometric mean over `texts` of the rule's speedup over plain decoding."""
    return geometric_mean(
        speedup(rule_seconds(t.proposals, rule, t.verify, t.lengths, slow_start), len(t.proposals), t.verify)
        for t in texts
        if t.proposals
    )


def best_rule(texts: Sequence[PricedText]) -> dict[int, int]:
    """The rule k = f(match bucket) with the highest `rule_speedup` over
    `texts`, by coordinate search from plain decoding (module docstring)."""
    rule = {b: 0 for b in LOOKUP_BUCKETS}
    best = rule_speedup(texts, rule)
    ks = sorted({0, *(k for t in texts for k in t.lengths)})
    improved = True
    while improved:
        improved = False
        for b in rule:
            for k in ks:
                trial = {**rule, b: k}
                s = rule_speedup(texts, trial)
                if s > best * (1 + 1e-9):
                    rule, best, improved = trial, s, True
    return rule


class Bounds(NamedTuple):
    """One row of the report's hindsight table (speedups over plain decoding)."""

    by_match_length: float  # lookup, the best rule k = f(match length) for these texts
    lookup: float  # lookup, drafting exactly where its proposal holds
    copy: float  # any copy from the context, or lookup's proposal where that agrees further
    with_draft: float | None  # lookup and an always-right draft model (None: the run had none)


def by_category(records: list[dict], snapshot: dict, with_draft: bool) -> dict[str, Bounds]:
    """Per category (in run order) and "overall": geometric means over
    prompts of the hindsight speedups. The best rule is chosen per row: one
    for the category's texts, one for all texts in "overall".

    Texts are the plain runs' (one per prompt); the prices are the planner's:
    each prompt's text at the costs it had learned by the end of that
    prompt's runs, or at `snapshot` for results that did not record them.
    A rule is priced like the texts, each at its own costs.
    """
    per: dict[str, list[tuple[PricedText, float, float | None]]] = {}
    for _, cat, prompt, text, snap in plain_texts(records, snapshot):
        costs = CostModel.from_snapshot(snap)
        cap = lookup_cap(costs)  # as long as the planner may draft on this machine
        lengths = draft_lengths(costs, cap)
        proposals = lookup_proposals(prompt, text, cap)
        agree, proposed = [p.agreement for p in proposals], [p.length for p in proposals]
        alone = speedup(fastest_seconds(agree, costs.verify, None, lengths, proposed), len(text), costs.verify)
        # Lookup's own proposal may agree further than any literal copy: it carries the reply's renames.
        # A copy may be drafted past its agreement like a proposal (its source runs on, mostly).
        copies = copy_agreement(prompt, text, cap)
        anywhere = [max(a, c) for a, c in zip(agree, copies)]
        longest = [cap if c else p for p, c in zip(proposed, copies)]
        copied = speedup(fastest_seconds(anywhere, costs.verify, None, lengths, longest), len(text), costs.verify)
        both = None
        if with_draft:
            seconds = fastest_seconds(agree, costs.verify, lambda k: costs.draft("draft", k), lengths, proposed)
            both = speedup(seconds, len(text), costs.verify)
        per.setdefault(cat, []).append((PricedText(proposals, costs.verify, lengths), alone, copied, both))
    per_all = [x for xs in per.values() for x in xs]
    out = {}
    for cat, xs in list(per.items()) + ([("overall", per_all)] if per_all else []):
        texts = [x[0] for x in xs]
        out[cat] = Bounds(
            by_match_length=rule_speedup(texts, best_rule(texts)),
            lookup=geometric_mean(x[1] for x in xs),
            copy=geometric_mean(x[2] for x in xs),
            with_draft=geometric_mean(x[3] for x in xs) if with_draft else None,
        )
    return out
