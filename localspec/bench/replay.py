"""The planner's own choices, replayed on a bench run's texts at fixed costs.

The hindsight bounds (hindsight.py) say what a planner could have done; this
says what the planner does, without a model: its lookup proposals depend
only on the context, and on a known text the agreement of each one is what
verification would have accepted. Greedy, that is exact. Sampled, a
point-mass draft token is accepted with the target's probability of it, the
chance the sampled text continues with it, so a sampled text's agreements
have the acceptance's distribution (controller.LookupScores).

A replay prices each step at the run's learned curve (no noise, no drift),
so two planners replayed on the same texts differ only in what they chose:
a way to weigh a planner change on many machines' runs before a bench
confirms it on one. It replays lookup alone: a draft model's acceptance
is not in a text. Nor are the prompt's JSON-quoted forms (LookupDrafter.quote),
which need the messages: a reply that copies them into JSON replays slower.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterable, NamedTuple, Sequence

from localspec.bench import hindsight
from localspec.bench.aggregate import geometric_mean
from localspec.bench.texts import Text
from localspec.controller import Planner, PlannerSettings
from localspec.costs import CostModel
from localspec.drafters.lookup import LookupDrafter
from localspec.ngram import common_prefix_len


class Replayed(NamedTuple):
    seconds: float
    speedup: float  # over plain decoding at the same costs
    steps: int
    drafted: int
    kept: int


def replay(planner: Planner, prompt: Sequence[int], text: Sequence[int]) -> Replayed:
    """Generate `text` after `prompt` the engine's way (generate.py's loop),
    with `planner` choosing each step's draft, and price the steps at its
    (fixed) costs. The planner keeps what it learned, as in a session.

    A draft is cut at the text's last token: the live loop cannot know where
    a reply ends and may draft past its end-of-generation token, one step in
    a reply, the same for every planner replayed."""
    costs, drafter = planner.costs, planner.drafters["lookup"]
    context = list(prompt)
    i, n = 0, len(text)
    seconds, steps, drafted, kept = 0.0, 0, 0, 0
    drafter.observe(context, 0)
    while i < n:
        plan = planner.plan(context)
        k = min(plan.k, n - 1 - i)
        draft = drafter.propose(context, k, None, None).tokens[:k] if plan.method == "lookup" and k else []
        accepted = common_prefix_len(list(draft), list(text[i : i + len(draft)]))
        seconds += costs.verify(len(draft) + 1)
        steps, drafted, kept = steps + 1, drafted + len(draft), kept + accepted
        context.extend(text[i : i + accepted + 1])
        i += accepted + 1
        drafter.observe(context, accepted)
    return Replayed(seconds, hindsight.speedup(seconds, n, costs.verify), steps, drafted, kept)


def replay_run(
    texts: Iterable[Text], make_planner: Callable[[CostModel], Planner] | None = None, passes: str = "A"
) -> dict[str, list[Replayed]]:
    """Replay a run's texts in order with one planner (priced per text at
    that text's costs), per category.

    `passes` is what each text gets, in order: "A" an auto pass, replayed
    and priced (of several, the fastest counts, as the bench keeps a
    prompt's fastest run), "P" a plain pass, where the planner drafts
    nothing and only scores lookup, as in the bench's plain modes. One "A"
    replays each text once, which is how the bench meets a prompt since its
    runs start from the estimates from before the prompt (runner.py,
    `runs_meet_prompt_as_new`); "PAPPAP" is how it met one before, its plain,
    auto, plain-rerun rotation run twice, each run learning from the ones
    before it. A change about memory (how fast the estimates forget) can
    replay one way with one and another with the other.
    """
    if "A" not in passes or set(passes) - {"A", "P"}:
        raise ValueError(f"passes must be made of A and P, with at least one A: {passes!r}")
    make_planner = make_planner or default_planner
    planner = None
    out: dict[str, list[Replayed]] = {}
    for t in texts:
        costs = CostModel.from_snapshot(t.costs)
        if planner is None:
            planner = make_planner(costs)
        planner.costs = costs
        auto, best = planner.settings, None
        for kind in passes:
            planner.settings = auto if kind == "A" else replace(auto, method="none")
            planner.lookup.quote([])  # as Engine.generate does per reply; quoted forms are not replayed
            r = replay(planner, t.prompt, t.tokens)
            if kind == "A" and (best is None or r.speedup > best.speedup):
                best = r
        planner.settings = auto
        out.setdefault(t.category, []).append(best)
    return out


def default_planner(costs: CostModel, **planner_options) -> Planner:
    lookup = LookupDrafter()
    return Planner(PlannerSettings(method="auto"), {"lookup": lookup}, lookup, costs, **planner_options)


def speedups(replayed: dict[str, list[Replayed]]) -> dict[str, float]:
    """Geometric mean speedup per category and "overall", as the report takes them."""
    out = {cat: geometric_mean(r.speedup for r in rs) for cat, rs in replayed.items()}
    every = [r for rs in replayed.values() for r in rs]
    if every:
        out["overall"] = geometric_mean(r.speedup for r in every)
    return out
