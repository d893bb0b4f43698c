"""The planner replayed on known texts (localspec/bench/replay.py): the real
Planner and LookupDrafter, no model; a text's steps add up, drafting follows
the copies, and no replay beats the hindsight bound on the same text."""

from __future__ import annotations

import math
import random

import pytest

from localspec.bench import hindsight, replay
from localspec.controller import draft_lengths, lookup_cap
from localspec.costs import CostModel

# The Zen 4's shape (issue 26): a long verify is cheap per row, so copies pay long drafts.
ZEN4 = {1: 0.030, 2: 0.054, 3: 0.075, 4: 0.095, 5: 0.114, 6: 0.14, 7: 0.17, 8: 0.214, 9: 0.228,
        12: 0.262, 16: 0.255, 24: 0.379, 32: 0.423, 48: 0.594, 64: 0.739}  # fmt: skip
SNAPSHOT = {"verify_s": {str(n): s for n, s in ZEN4.items()}, "draft_token_s": {}}


def run_one(prompt, text, snapshot=SNAPSHOT):
    costs = CostModel.from_snapshot(snapshot)
    return replay.replay(replay.default_planner(costs), prompt, text), costs


def test_a_text_without_repeats_replays_as_plain_decoding():
    got, costs = run_one(list(range(50)), list(range(100, 160)))
    assert (got.steps, got.drafted, got.kept) == (60, 0, 0)
    assert got.seconds == pytest.approx(60 * costs.verify(1))
    assert got.speedup == pytest.approx(1.0)


def test_a_long_copy_is_drafted_long_and_kept():
    block = list(range(1000, 1200))
    prompt = [*block, 7, 8, *block[:3]]
    text = block[3:]  # the reply copies the block it was shown
    got, costs = run_one(prompt, text)
    assert got.steps + got.kept == len(text)  # each step: its kept draft and the target's own token
    assert got.drafted == got.kept  # nothing proposed here is wrong
    assert got.drafted / got.steps > 10  # past K_MAX: the slow start lets it reach the long sizes
    assert got.speedup > 1.8


def test_after_a_copy_turns_away_fresh_text_goes_a_token_a_step():
    block, went_on = list(range(1000, 1040)), list(range(3000, 3040))
    prompt = [*block, *went_on, 7, 8, *block[:3]]
    fresh = list(range(5000, 5060))
    got, _ = run_one(prompt, [*block[3:], *fresh])  # the prompt's block went on; the reply's does not
    assert got.kept > 20  # the copy was drafted
    # Once the copy has ended there is nothing to match: the fresh tokens go one a step.
    assert got.steps >= len(fresh)


@pytest.mark.parametrize("seed", range(8))
def test_no_replay_beats_hindsight(seed):
    rng = random.Random(seed)
    prompt = [rng.randrange(6) for _ in range(60)]
    text = [rng.randrange(6) for _ in range(80)]  # a small vocabulary: matches everywhere, often wrong
    got, costs = run_one(prompt, text)
    cap = lookup_cap(costs)
    agreement = hindsight.lookup_agreement(prompt, text, cap)
    best = hindsight.fastest_seconds(agreement, costs.verify, lengths=draft_lengths(costs, cap))
    assert got.steps + got.kept == len(text)
    assert got.seconds >= best - 1e-9


def test_a_run_replays_each_prompts_first_plain_text_in_order():
    block = list(range(1000, 1100))
    prompt = [*block, 7, 8, *block[:3]]

    def rec(pid, cat, mode, tokens, costs=SNAPSHOT):
        return {"prompt_id": pid, "category": cat, "mode": mode, "tokens": tokens, "prompt_tokens": prompt,
                "costs": costs}  # fmt: skip

    results = {
        "runs": [
            rec("a", "copy", "plain", block[3:]),
            rec("a", "copy", "plain", block[3:10]),  # a repeat of the prompt: the first one counts
            rec("a", "copy", "auto", [1, 2, 3]),  # not plain: not the reference text
            rec("b", "free", "plain", list(range(2000, 2030))),
            rec("c", "free", "plain", [1, 2], costs=None),  # recorded no costs: cannot be priced
        ]
    }
    texts = replay.texts_of(results)
    assert [(t.category, len(t.tokens)) for t in texts] == [("copy", 97), ("free", 30)]
    out = replay.speedups(replay.replay_run(texts))
    assert list(out) == ["copy", "free", "overall"]
    assert out["free"] == pytest.approx(1.0)
    assert out["overall"] == pytest.approx(math.sqrt(out["copy"]))
