"""The hindsight bound of the benchmark report: lookup agreement along a text,
and the shortest-path cost of producing it, against brute force."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from localspec.bench import hindsight


def test_agreement_follows_a_copy_of_the_prompt():
    prompt = [1, 2, 3, 4, 5, 6, 1, 2]
    # The suffix (1, 2) recurs at the prompt's start, so the proposal is 3, 4, 5, 6, ...
    assert hindsight.lookup_agreement(prompt, [3, 4, 5, 6]) == [4, 3, 2, 1]
    # Where the text turns away, agreement ends; with no repeat there is no proposal.
    assert hindsight.lookup_agreement(prompt, [3, 4, 9]) == [2, 1, 0]
    assert hindsight.lookup_agreement([7, 8, 9], [10, 11]) == [0, 0]


def test_agreement_stops_at_the_longest_draft():
    prompt = list(range(40)) + [0, 1]
    assert hindsight.lookup_agreement(prompt, list(range(2, 30)), k_max=5)[:3] == [5, 5, 5]


def plain_cost(n):
    return 0.07 * n  # verify cost of n rows: each row as dear as a decode


def test_nothing_to_copy_costs_plain_decoding():
    assert math.isclose(hindsight.fastest_seconds([0] * 10, plain_cost), 10 * 0.07)
    assert hindsight.speedup(hindsight.fastest_seconds([0] * 10, plain_cost), 10, plain_cost) == pytest.approx(1.0)


def test_rows_that_cost_no_more_than_one_take_the_longest_drafts():
    free = lambda n: 1.0  # noqa: E731
    n = 20
    agree = [n - 1 - i for i in range(n)]  # the whole rest of the text is proposed everywhere
    assert hindsight.fastest_seconds(agree, free, k_max=4) == math.ceil(n / 5)
    # When rows cost what decodes cost, drafting never pays, however right it is.
    assert math.isclose(hindsight.fastest_seconds(agree, plain_cost, k_max=4), n * 0.07)


def brute_force(agree, verify, draft, k_max):
    """Every way of cutting the text into steps, each step's k checked against what may be drafted."""
    n = len(agree)
    best = math.inf
    for cuts in itertools.product(range(k_max + 1), repeat=n):
        i, total = 0, 0.0
        for k in cuts:
            if i >= n:
                break
            k = min(k, n - 1 - i)
            uncovered = k - agree[i]
            if uncovered > 0 and draft is None:
                total = math.inf
                break
            total += verify(k + 1) + (draft(uncovered) if uncovered > 0 else 0.0)
            i += k + 1
        best = min(best, total)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_shortest_path_is_the_cheapest_cutting(seed):
    rng = random.Random(seed)
    n, k_max = 7, 3
    agree = [min(rng.choice([0, 0, 1, 2, 3]), n - 1 - i) for i in range(n)]
    curve = {1: 1.0, 2: 1.4, 3: 1.7, 4: 1.75}
    verify = curve.__getitem__
    draft = lambda k: 0.3 * k  # noqa: E731
    for d in (None, draft):
        assert math.isclose(hindsight.fastest_seconds(agree, verify, d, k_max), brute_force(agree, verify, d, k_max))
    # A draft model that is never wrong can only help.
    with_model = hindsight.fastest_seconds(agree, verify, draft, k_max)
    assert with_model <= hindsight.fastest_seconds(agree, verify, None, k_max)


def test_by_category_uses_each_prompts_plain_text_and_pools_overall():
    prompt = [1, 2, 3, 4, 5, 6, 1, 2]
    snap = {"verify_s": {"1": 1.0, "2": 1.0, "3": 1.0, "4": 1.0, "5": 1.0}, "draft_token_s": {}}

    def rec(pid, cat, mode, tokens):
        return {"prompt_id": pid, "category": cat, "mode": mode, "tokens": tokens, "prompt_tokens": prompt}

    records = [
        rec("a", "copy", "plain", [3, 4, 5, 6]),
        rec("a", "copy", "plain", [3, 4, 5, 6]),  # a repeat: counted once
        rec("a", "copy", "lookup", [9, 9, 9, 9]),  # not plain: its text is not the reference
        rec("b", "free", "plain", [10, 11, 12]),
    ]
    out = hindsight.by_category(records, snap, with_draft=False)
    assert list(out) == ["copy", "free", "overall"]
    assert out["copy"] == (pytest.approx(4.0), None)  # one step of 4 rows for 4 tokens, rows at one price
    assert out["free"] == (pytest.approx(1.0), None)
    assert out["overall"][0] == pytest.approx(2.0)  # geometric mean of 4 and 1
