"""The planner replayed on known texts (localspec/bench/replay.py): the real
Planner and LookupDrafter, no model; a text's steps add up, drafting follows
the copies, and no replay beats the hindsight bound on the same text."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from localspec.bench import hindsight, replay
from localspec.bench.texts import Text, plain_texts
from localspec.controller import lookup_cap
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


def test_a_copy_that_turns_away_costs_one_wrong_draft_then_fresh_text_goes_a_token_a_step():
    block, went_on = list(range(1000, 1200)), list(range(3000, 3100))
    prompt = [*block, *went_on, 7, 8, *block[:3]]
    fresh = list(range(5000, 5060))
    copy, _ = run_one(prompt, block[3:])
    got, costs = run_one(prompt, [*block[3:], *fresh])  # the prompt's block went on; the reply's does not
    wrong = got.drafted - got.kept
    assert 0 < wrong <= lookup_cap(costs)  # the draft running into the turn proposed the prompt's continuation
    assert got.kept >= copy.kept  # the copy itself was drafted as it is alone (and its last token too)
    # After the turn nothing matches: one step a fresh token, plus the step the wrong draft cost.
    assert got.steps <= copy.steps + len(fresh) + 1


def drifting_copy(rng, n=120, every=12):
    """A reply that copies the prompt but departs from it now and then: lookup
    proposes throughout, and is right until the next departure."""
    block = [rng.randrange(1000, 5000) for _ in range(n)]
    text = [t if rng.random() > 1 / every else rng.randrange(6000, 7000) for t in block[3:]]
    return [*block, 7, 8, *block[:3]], text


@pytest.mark.parametrize("seed", range(8))
def test_no_replay_beats_hindsight(seed):
    prompt, text = drifting_copy(random.Random(seed))
    got, costs = run_one(prompt, text)
    cap = lookup_cap(costs)
    proposals = hindsight.lookup_proposals(prompt, text, cap)
    agree, proposed = [p.agreement for p in proposals], [p.length for p in proposals]
    # Every draft length the replay may verify (a short proposal makes sizes between the measured ones).
    best = hindsight.fastest_seconds(agree, costs.verify, None, range(1, cap + 1), proposed)
    assert got.drafted > got.kept > 0  # it drafted, and some drafts ran past a departure
    assert got.steps + got.kept == len(text)
    assert got.seconds >= best - 1e-9


def test_each_text_is_priced_at_its_own_costs():
    block = list(range(1000, 1100))
    prompt = [*block, 7, 8, *block[:3]]
    steep = {"verify_s": {"1": 0.05, "2": 0.1, "3": 0.15, "4": 0.2, "5": 0.25, "6": 0.3, "7": 0.35, "8": 0.4,
                          "9": 0.45}, "draft_token_s": {}}  # fmt: skip
    texts = [Text("a", "copy", prompt, block[3:], SNAPSHOT), Text("b", "copy", prompt, block[3:], steep)]
    first, second = replay.replay_run(texts)["copy"]
    assert first.speedup > 1.5
    # Rows cost what single steps cost: the same text, drafted or not, is no faster than plain decoding.
    assert second.speedup <= 1.0 + 1e-9
    assert second.seconds >= len(block[3:]) * 0.05 - 1e-9


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
    texts = plain_texts(results["runs"])
    assert [(t.category, len(t.tokens)) for t in texts] == [("copy", 97), ("free", 30)]
    # Older results recorded one snapshot for the run, not one per prompt: it prices the rest.
    assert [t.prompt_id for t in plain_texts(results["runs"], SNAPSHOT)] == ["a", "b", "c"]
    out = replay.speedups(replay.replay_run(texts))
    assert list(out) == ["copy", "free", "overall"]
    assert out["free"] == pytest.approx(1.0)
    assert out["overall"] == pytest.approx(math.sqrt(out["copy"]))


@pytest.mark.parametrize("seed", range(4))
def test_a_plain_pass_first_teaches_the_planner_what_the_text_does(seed):
    # A copy that departs every third token or so: drafting it mostly fails. A bench's plain pass over
    # the text scores lookup on it, so the auto pass after it wastes fewer drafted tokens.
    prompt, text = drifting_copy(random.Random(seed), every=3)
    t = [Text("p", "copy", prompt, text, SNAPSHOT)]
    cold = replay.replay_run(t)["copy"][0]
    taught = replay.replay_run(t, passes="PA")["copy"][0]
    assert taught.drafted - taught.kept < cold.drafted - cold.kept


@pytest.mark.parametrize("passes", ["", "P", "PXA"])
def test_passes_need_an_auto_pass_and_nothing_else(passes):
    with pytest.raises(ValueError):
        replay.replay_run([], passes=passes)


def test_replaying_another_commits_planner_gives_this_commits_replay_on_this_commit(tmp_path):
    # scripts/replay_commit.py repeats replay.py's loop so that commits before it can be replayed;
    # on this commit the two must agree, or a before-and-after made with it compares unlike things.
    rng = random.Random(5)
    runs = []
    for i, (cat, every) in enumerate([("copy", 12), ("copy", 4), ("drift", 3), ("drift", 30)]):
        prompt, text = drifting_copy(rng, every=every)
        runs.append({"prompt_id": f"p{i}", "category": cat, "mode": "plain", "tokens": text, "prompt_tokens": prompt,
                     "costs": SNAPSHOT})  # fmt: skip
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"runs": runs}))
    root = Path(__file__).resolve().parents[1]
    script = [sys.executable, str(root / "scripts" / "replay_commit.py"), str(path), "--passes", "PAPPAP", "--json"]
    out = subprocess.run(script, capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(root)})
    got = json.loads(out.stdout)[str(path)]
    want = replay.speedups(replay.replay_run(plain_texts(runs), passes="PAPPAP"))
    assert want["copy"] > 1.1  # the texts draft, so agreeing is not agreeing on plain decoding
    assert got == pytest.approx(want, rel=1e-12)
