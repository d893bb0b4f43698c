"""The hindsight bound of the benchmark report: lookup agreement along a text,
and the shortest-path cost of producing it, against brute force."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from localspec.bench import hindsight
from localspec.bench.aggregate import geometric_mean


def test_agreement_follows_a_copy_of_the_prompt():
    prompt = [1, 2, 3, 4, 5, 6, 1, 2]
    # The suffix (1, 2) recurs at the prompt's start, so the proposal is 3, 4, 5, 6, ...
    assert hindsight.lookup_agreement(prompt, [3, 4, 5, 6]) == [4, 3, 2, 1]
    # Where the text turns away, agreement ends; with no repeat there is no proposal.
    assert hindsight.lookup_agreement(prompt, [3, 4, 9]) == [2, 1, 0]
    assert hindsight.lookup_agreement([7, 8, 9], [10, 11]) == [0, 0]


def test_a_copy_counts_from_its_first_token_where_lookup_needs_a_repeat_first():
    prompt = [1, 2, 3, 4, 5, 6]
    # Lookup sees the copy of (2, 3, 4) only once (2, 3) has been written.
    assert hindsight.lookup_agreement(prompt, [2, 3, 4, 9]) == [0, 0, 1, 0]
    assert hindsight.copy_agreement(prompt, [2, 3, 4, 9]) == [3, 2, 1, 0]
    # The best of several places: (7, 8, 1) agrees for 2, the later (7, 8, 9) for 3.
    assert hindsight.copy_agreement([7, 8, 1, 7, 8, 9], [7, 8, 9, 0]) == [3, 2, 1, 0]
    # The reply's own text is a source too, but never past what the context
    # holds yet: at the second 7 the copy (7, 8) ends at the context's end.
    assert hindsight.copy_agreement([1], [7, 8, 7, 8, 7]) == [0, 0, 2, 2, 1]
    assert hindsight.copy_agreement(list(range(40)), list(range(40)), k_max=5)[:3] == [5, 5, 5]


def test_the_copy_bound_is_never_below_lookups():
    rng = random.Random(7)
    snap = {"verify_s": {str(n): 1.0 + 0.3 * (n - 1) for n in range(1, 10)}, "draft_token_s": {}}
    records = []
    for i in range(40):
        prompt = [rng.randrange(6) for _ in range(rng.randrange(2, 30))]
        text = [rng.randrange(6) for _ in range(rng.randrange(1, 30))]
        records.append({"prompt_id": str(i), "category": str(i % 4), "mode": "plain", "tokens": text,
                        "prompt_tokens": prompt})  # fmt: skip
    out = hindsight.by_category(records, snap, with_draft=False)
    assert all(b.copy >= b.lookup * (1 - 1e-9) for b in out.values())
    assert any(b.copy > b.lookup for b in out.values())


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
    assert hindsight.fastest_seconds(agree, free, lengths=range(1, 5)) == math.ceil(n / 5)
    # When rows cost what decodes cost, drafting never pays, however right it is.
    assert math.isclose(hindsight.fastest_seconds(agree, plain_cost, lengths=range(1, 5)), n * 0.07)


def brute_force(agree, verify, draft, lengths, proposed=None):
    """Every way of cutting the text into steps, each step's k checked against what may be drafted.
    Without a draft model, a draft past the agreement keeps only the agreed part (where `proposed`
    reaches that far); with one, the model covers the rest."""
    n = len(agree)
    best = math.inf
    for cuts in itertools.product([0, *lengths], repeat=n):
        i, total = 0, 0.0
        for k in cuts:
            if i >= n:
                break
            if k > n - 1 - i:
                total = math.inf  # a length that does not fit is not a choice
                break
            uncovered = k - agree[i]
            if uncovered > 0 and draft is None:
                if proposed is None or k > proposed[i]:
                    total = math.inf
                    break
                total += verify(k + 1)
                i += agree[i] + 1
                continue
            total += verify(k + 1) + (draft(uncovered) if uncovered > 0 else 0.0)
            i += k + 1
        best = min(best, total)
    return best


@pytest.mark.parametrize("lengths", [(1, 2, 3), (1, 3), (2,)])
@pytest.mark.parametrize("seed", range(6))
def test_shortest_path_is_the_cheapest_cutting(seed, lengths):
    rng = random.Random(seed)
    n = 7
    agree = [min(rng.choice([0, 0, 1, 2, 3]), n - 1 - i) for i in range(n)]
    curve = {1: 1.0, 2: 1.4, 3: 1.7, 4: 1.75}
    verify = curve.__getitem__
    draft = lambda k: 0.3 * k  # noqa: E731
    for d in (None, draft):
        got = hindsight.fastest_seconds(agree, verify, d, lengths)
        assert math.isclose(got, brute_force(agree, verify, d, lengths))
    # A draft model that is never wrong can only help.
    with_model = hindsight.fastest_seconds(agree, verify, draft, lengths)
    assert with_model <= hindsight.fastest_seconds(agree, verify, None, lengths)


@pytest.mark.parametrize("seed", range(6))
def test_a_draft_past_the_agreement_counts_where_the_longer_verify_is_cheaper(seed):
    rng = random.Random(seed)
    n = 7
    agree = [min(rng.choice([0, 1, 2]), n - 1 - i) for i in range(n)]
    proposed = [min(a + rng.choice([0, 1, 2]), n - 1 - i) for i, a in enumerate(agree)]
    curve = {1: 1.0, 2: 1.6, 3: 2.4, 4: 1.5}  # 4 rows below 2 and 3, as 16 rows cost less than 12 on the Zen 4
    verify = curve.__getitem__
    got = hindsight.fastest_seconds(agree, verify, None, (1, 2, 3), proposed)
    assert math.isclose(got, brute_force(agree, verify, None, (1, 2, 3), proposed))
    assert got <= hindsight.fastest_seconds(agree, verify, None, (1, 2, 3))
    # One right token and a wrong one after it: a 3-token draft (4 rows) is the cheaper way to 2 tokens.
    agree, proposed = [1, 0, 0, 0], [3, 0, 0, 0]
    assert hindsight.fastest_seconds(agree, verify, None, (1, 2, 3), proposed) == pytest.approx(1.5 + 2.0)
    assert hindsight.fastest_seconds(agree, verify, None, (1, 2, 3)) == pytest.approx(1.6 + 2.0)


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
    assert out["copy"].lookup == pytest.approx(4.0)  # one step of 4 rows for 4 tokens, rows at one price
    assert out["copy"].with_draft is None
    assert out["copy"].copy == pytest.approx(4.0) and out["free"].copy == pytest.approx(1.0)
    assert out["free"].lookup == pytest.approx(1.0)
    assert out["overall"].lookup == pytest.approx(2.0)  # geometric mean of 4 and 1
    # The copy's proposal (match length 2) holds all the way: the best rule drafts it whole.
    assert out["copy"].by_match_length == pytest.approx(4.0)
    assert out["overall"].by_match_length == pytest.approx(2.0)


def test_proposals_carry_the_match_length_behind_them():
    prompt = [1, 2, 3, 4, 5, 6, 7, 1, 2, 3]
    props = hindsight.lookup_proposals(prompt, [4, 5, 9])
    assert props[0] == hindsight.Proposal(match_n=3, length=3, agreement=2)
    assert [p.agreement for p in props] == hindsight.lookup_agreement(prompt, [4, 5, 9])
    assert hindsight.lookup_proposals([7, 8, 9], [10]) == [hindsight.Proposal(0, 0, 0)]


def random_proposals(rng, n):
    """A text's proposals: match length 2 mostly wrong, 6 mostly right, runs of copies."""
    out = []
    for i in range(n):
        m = rng.choice([0, 2, 2, 4, 6, 6])
        length = min(4, n - i) if m else 0
        right = {2: 0.3, 4: 0.6, 6: 0.9}.get(m, 0.0)
        a = 0
        while a < length and rng.random() < right:
            a += 1
        out.append(hindsight.Proposal(m, length, a))
    return out


CURVE = {1: 1.0, 2: 1.4, 3: 1.75, 4: 1.85, 5: 2.6}.__getitem__


def priced(texts):
    return [hindsight.PricedText(t, CURVE, range(1, 5)) for t in texts]


def rule_speedup(texts, rule):
    return hindsight.rule_speedup(priced(texts), rule)


def test_a_rule_is_priced_step_by_step():
    # Match length 6 drafts 3 and keeps 2; then the next proposal (length 2) is not used.
    text = [hindsight.Proposal(6, 3, 2), hindsight.Proposal(0, 0, 0), hindsight.Proposal(0, 0, 0),
            hindsight.Proposal(2, 1, 1), hindsight.Proposal(0, 0, 0)]
    rule = {2: 0, 3: 0, 4: 0, 5: 0, 6: 3}
    assert hindsight.rule_seconds(text, rule, CURVE) == pytest.approx(CURVE(4) + CURVE(1) + CURVE(1))
    assert rule_speedup([text], rule) == pytest.approx(5 / (1.85 + 2))


@pytest.mark.parametrize("seed", range(4))
def test_best_rule_lies_between_plain_decoding_and_hindsight(seed):
    rng = random.Random(seed)
    texts = [random_proposals(rng, 40) for _ in range(3)]
    rule = hindsight.best_rule(priced(texts))
    got = rule_speedup(texts, rule)
    assert got >= 1.0 - 1e-12  # the search starts at plain decoding
    foresight = geometric_mean(
        hindsight.speedup(hindsight.fastest_seconds([p.agreement for p in t], CURVE, lengths=range(1, 5)), len(t), CURVE)
        for t in texts
    )
    assert got <= foresight + 1e-12
    # A local optimum: no single match length does better with another k.
    for b in rule:
        for k in range(5):
            assert rule_speedup(texts, {**rule, b: k}) <= got * (1 + 1e-9)


def test_best_rule_drafts_only_behind_the_matches_that_hold():
    always = [hindsight.Proposal(6, 4, 4), hindsight.Proposal(2, 4, 0)] * 20
    rule = hindsight.best_rule(priced([always]))
    assert rule[2] == 0 and rule[6] > 0


def test_each_prompt_is_priced_at_the_costs_recorded_with_it():
    prompt = [1, 2, 3, 4, 5, 6, 1, 2]
    flat = {"verify_s": {str(n): 1.0 for n in range(1, 6)}, "draft_token_s": {}}
    steep = {"verify_s": {str(n): float(n) for n in range(1, 6)}, "draft_token_s": {}}  # a row costs a decode
    plain = {"category": "copy", "mode": "plain", "tokens": [3, 4, 5, 6], "prompt_tokens": prompt}
    records = [{**plain, "prompt_id": "a", "costs": steep}, {**plain, "prompt_id": "b"}]  # b: none recorded
    out = hindsight.by_category(records, flat, with_draft=False)
    # a at its own costs, where drafting cannot pay (1.0x); b at the run's (4 tokens in one step).
    assert out["copy"].lookup == pytest.approx(math.sqrt(1.0 * 4.0))
    assert out["copy"].by_match_length <= out["copy"].lookup + 1e-12
