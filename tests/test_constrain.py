"""Tests for localspec.constrain: verification under a grammar, on numpy rows
with a stand-in grammar (a rule from the accepted prefix to the allowed set).

The stand-in refuses to accept a token it does not allow, as llama.cpp does
(there by aborting), and counts whole-vocabulary masks so the tests can see
the cheap paths stay cheap. The sampled tests are statistical, with the
chi-square check of test_verify.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from localspec.constrain import (
    allowed_margin,
    best_allowed,
    draw_allowed,
    verify_constrained_greedy,
    verify_constrained_sampled,
)
from localspec.verify import SamplingParams, logprobs_at, probs_from_logits
from test_verify import assert_distributed_as

V = 8
N = 100_000


class FakeGrammar:
    def __init__(self, rule, vocab: int = V):
        self.rule = rule  # accepted prefix (a tuple) -> set of allowed tokens
        self.vocab = vocab
        self.prefix: tuple[int, ...] = ()
        self.masks = 0

    def _ok(self) -> set[int]:
        return self.rule(self.prefix)

    def allowed(self, token: int) -> bool:
        return token in self._ok()

    def allowed_among(self, tokens: np.ndarray) -> np.ndarray:
        ok = self._ok()
        return np.array([int(t) in ok for t in tokens], dtype=bool)

    def mask(self) -> np.ndarray:
        self.masks += 1
        out = np.zeros(self.vocab, dtype=bool)
        out[list(self._ok())] = True
        return out

    def accept(self, token: int) -> None:
        assert token in self._ok(), f"accepted {token}, which the grammar forbids after {self.prefix}"
        self.prefix += (token,)


def no_even_after_odd(prefix: tuple[int, ...]) -> set[int]:
    """Any token first; after an odd token only odd ones; after an even one, anything but 0."""
    if not prefix:
        return set(range(V))
    return set(range(1, V, 2)) if prefix[-1] % 2 else set(range(1, V))


def plain_constrained(rows: np.ndarray, rule) -> list[int]:
    """Plain decoding under the grammar, one row at a time, by brute force."""
    out: list[int] = []
    for row in rows:
        ok = sorted(rule(tuple(out)))
        out.append(ok[int(np.argmax(row[ok]))])
    return out


def test_greedy_keeps_plain_constrained_decoding_and_rejects_forbidden_drafts():
    rng = np.random.default_rng(0)
    for _ in range(300):
        k = int(rng.integers(0, 6))
        rows = rng.normal(0, 2, (k + 1, V)).astype(np.float32)
        path = plain_constrained(rows, no_even_after_odd)
        # Drafts: the plain path up to a point, then anything (forbidden tokens included).
        cut = int(rng.integers(0, k + 1))
        drafts = path[:cut] + [int(t) for t in rng.integers(0, V, k - cut)]
        g = FakeGrammar(no_even_after_odd)
        n_acc, tok = verify_constrained_greedy(rows, drafts, g)
        expect = next((i for i in range(k) if drafts[i] != path[i]), k)
        assert (n_acc, tok) == (expect, path[expect])
        assert g.prefix == tuple(path[: expect + 1])  # only what was emitted entered the grammar


def test_greedy_rejects_the_unmasked_argmax_when_the_grammar_forbids_it():
    rows = np.array([[0.0, 5.0, 1.0, 2.0], [9.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    g = FakeGrammar(lambda prefix: {2, 3} if not prefix else {0}, vocab=4)
    assert verify_constrained_greedy(rows, [1], g) == (0, 3)
    g = FakeGrammar(lambda prefix: {2, 3} if not prefix else {0}, vocab=4)
    assert verify_constrained_greedy(rows, [3], g) == (1, 0)


def test_a_grammar_that_allows_nothing_ends_the_step():
    rows = np.zeros((2, V), dtype=np.float32)
    g = FakeGrammar(lambda prefix: {5} if not prefix else set())
    assert verify_constrained_greedy(rows, [5], g) == (1, None)
    p = probs_from_logits(rows, SamplingParams(temp=1.0))
    g = FakeGrammar(lambda prefix: {5} if not prefix else set())
    assert verify_constrained_sampled(p, rows, SamplingParams(temp=1.0), [5], g, np.random.default_rng(0)) == (1, None)


@pytest.mark.parametrize("vocab", [8, 100, 5000])
def test_best_allowed_is_the_masked_argmax_and_masks_the_vocabulary_only_when_it_must(vocab):
    rng = np.random.default_rng(vocab)
    full_masks = 0
    for trial in range(200):
        row = rng.normal(0, 3, vocab).astype(np.float32)
        if trial % 4 == 0:
            row = np.round(row)  # ties
        share = [0.5, 0.05, 0.002][trial % 3]
        ok = set(np.flatnonzero(rng.random(vocab) < share).tolist())
        g = FakeGrammar(lambda prefix, ok=ok: ok, vocab)
        masked = np.where(g.mask(), row, -np.inf)
        g.masks = 0
        expect = sorted(ok, key=lambda t: (-row[t], t))[:2]
        assert best_allowed(row, g) == expect[:1]
        if ok and int(np.argmax(row)) in ok:
            assert g.masks == 0
        assert best_allowed(row, g, 2) == expect
        full_masks += g.masks
        if len(expect) == 2:
            assert allowed_margin(row, g) == pytest.approx(masked[expect[0]] - masked[expect[1]])
        else:
            assert allowed_margin(row, g) == float("inf")
    if vocab > 64:
        assert full_masks < 200, "the candidate search never found the best allowed token without a full mask"


def masked(p: np.ndarray, ok: set[int]) -> np.ndarray:
    out = np.zeros_like(p)
    out[list(ok)] = p[list(ok)]
    return out / out.sum()


@pytest.mark.parametrize("draft", [0, 1, 3, 6])
def test_sampled_emits_the_masked_distribution_and_accepts_a_draft_at_its_probability(draft):
    """Token 0 is forbidden (and the target's favourite), 6 has no chance under
    top-k; each draft is accepted exactly as often as the masked target emits it."""
    logits = np.array([[3.0, 1.0, 0.5, 2.0, 0.0, 1.5, -4.0, 0.2], [0.0, 1.0, 2.0, 0.5, 0.1, 0.3, 0.0, 1.0]])
    sampling = SamplingParams(temp=0.9, top_k=7)
    p = probs_from_logits(logits.astype(np.float32), sampling)
    first_ok = {1, 2, 3, 5, 6, 7}

    def rule(prefix):
        return first_ok if not prefix else ({1, 3, 5, 7} if prefix[-1] % 2 else {0, 2, 4})

    rng = np.random.default_rng(draft)
    firsts, seconds, n_accs = [], [], []
    for _ in range(N // 4):
        g = FakeGrammar(rule)
        n_acc, tok = verify_constrained_sampled(p, logits, sampling, [draft], g, rng)
        n_accs.append(n_acc)
        firsts.append(draft if n_acc else tok)
        if n_acc:
            seconds.append(tok)
    target = masked(p[0], first_ok)
    assert_distributed_as(np.array(firsts), target, "first token")
    rate = target[draft]
    assert_distributed_as(np.array(n_accs), [1 - rate, rate], "acceptance")
    if draft % 2:
        assert_distributed_as(np.array(seconds), masked(p[1], {1, 3, 5, 7}), "the token after an accepted draft")


def test_draw_allowed_refilters_when_no_survivor_of_the_filters_is_allowed():
    logits = np.array([5.0, 4.0, 1.0, 0.5, 0.0, -1.0, -2.0, -3.0], dtype=np.float32)
    sampling = SamplingParams(temp=1.0, top_k=2)
    p = probs_from_logits(logits, sampling)
    ok = {2, 3, 7}
    rng = np.random.default_rng(5)
    got = np.array([draw_allowed(p, logits, sampling, FakeGrammar(lambda prefix: ok), rng) for _ in range(20_000)])
    # top-k over what the grammar left: 2 and 3, in the ratio of their probabilities.
    expect = probs_from_logits(np.where(np.isin(np.arange(V), list(ok)), logits, -np.inf), sampling)
    assert set(got.tolist()) == {2, 3}
    assert_distributed_as(got, expect, "refiltered draw")


def test_sampled_draws_need_no_whole_mask_when_the_draw_is_allowed():
    logits = np.zeros((1, V), dtype=np.float32)
    p = probs_from_logits(logits, SamplingParams(temp=1.0))
    g = FakeGrammar(lambda prefix: set(range(V)))
    for seed in range(50):
        verify_constrained_sampled(p, logits, SamplingParams(temp=1.0), [], g, np.random.default_rng(seed))
        g.prefix = ()
    assert g.masks == 0


def test_logprobs_greedy_is_the_softmax_and_sampled_the_filtered_distribution():
    rng = np.random.default_rng(3)
    rows = rng.normal(0, 2, (2, 50)).astype(np.float32)
    tokens = [int(np.argmax(rows[0])), 7]
    out = logprobs_at(rows, None, tokens, 5)
    for (lp, top), row, t in zip(out, rows, tokens):
        ref = row.astype(np.float64) - np.log(np.exp(row.astype(np.float64)).sum())
        assert lp == pytest.approx(ref[t])
        assert [a for a, _ in top] == list(np.argsort(-ref, kind="stable")[:5])
        assert [b for _, b in top] == pytest.approx(sorted(ref, reverse=True)[:5])
        assert all(x <= 0 for _, x in top)
    assert out[0][0] == out[0][1][0][1]  # at greedy the chosen token is the top one

    sampling = SamplingParams(temp=0.7, top_k=3)
    p = probs_from_logits(rows, sampling)
    kept = np.flatnonzero(p[0])
    out = logprobs_at(rows, p, [int(kept[0]), int(np.argmin(p[1]))], 10)
    assert out[0][0] == pytest.approx(np.log(p[0][kept[0]]))
    assert len(out[0][1]) == 3  # only what the filters kept is listed
    assert sum(np.exp(x) for _, x in out[0][1]) == pytest.approx(1.0)
    assert out[1][0] == float("-inf")


def test_logprobs_under_a_grammar_are_of_the_allowed_tokens_renormalised():
    rows = np.array([[3.0, 1.0, 0.0, 2.0, -1.0, 0.5, 0.0, 1.0], [0.0, 4.0, 1.0, 0.0, 0.0, 0.0, 2.0, 0.0]], np.float32)
    g = FakeGrammar(lambda prefix: {1, 3, 5} if not prefix else {2, 6})
    masks: list = []
    n_acc, tok = verify_constrained_greedy(rows, [3], g, masks=masks)
    assert (n_acc, tok) == (1, 6) and len(masks) == 2
    out = logprobs_at(rows, None, [3, 6], 8, masks)
    for (lp, top), row, ok in zip(out, rows.astype(np.float64), [[1, 3, 5], [2, 6]]):
        ref = row[ok] - np.log(np.exp(row[ok]).sum())
        assert sorted(t for t, _ in top) == ok  # only the allowed are listed
        assert sum(np.exp(x) for _, x in top) == pytest.approx(1.0)
        assert top[0][1] == lp == pytest.approx(ref.max())  # greedy under the grammar: the chosen is the top
    sampling = SamplingParams(temp=0.8)
    p = probs_from_logits(rows, sampling)
    g = FakeGrammar(lambda prefix: {1, 3, 5} if not prefix else {2, 6})
    masks = []
    verify_constrained_sampled(p[:1], rows[:1], sampling, [], g, np.random.default_rng(0), masks=masks)
    (lp, top), = logprobs_at(rows, p, [5], 3, masks, sampling)
    assert lp == pytest.approx(np.log(p[0][5] / p[0][[1, 3, 5]].sum()))
