"""Tests for localspec.verify: greedy and sampled verification, logit processing.

The sampling tests are statistical: they run the real `verify_sampled` 100k
times with a fixed seed and compare what it emits to the target distribution
with Pearson's chi-square test at p = 1e-4. `test_statistic_rejects_wrong_rules`
shows the same statistic fails plausible wrong rules by a wide margin.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from localspec.errors import LocalspecError
from localspec.verify import (
    SamplingParams,
    probs_from_logits,
    top2_margin,
    verify_greedy,
    verify_sampled,
)

N = 100_000
V = 8
Z_UPPER_1E4 = 3.719016485455709  # standard normal quantile at 1 - 1e-4


def chi2_critical(df: int) -> float:
    """Upper 1e-4 quantile of chi-square(df), Wilson-Hilferty approximation."""
    h = 2.0 / (9.0 * df)
    return df * (1.0 - h + Z_UPPER_1E4 * math.sqrt(h)) ** 3


def chi2_statistic(samples: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    """Pearson's statistic and degrees of freedom; inf if a sample falls where
    probs is 0. Cells expected under 5 times are pooled, smallest first."""
    probs = np.asarray(probs, dtype=np.float64).ravel()
    counts = np.bincount(np.asarray(samples), minlength=probs.size)
    if counts[probs == 0].any():
        return math.inf, 1
    expected = probs * len(samples) / probs.sum()
    cells = np.argsort(expected)
    cells = cells[expected[cells] > 0]
    n_pooled = 0
    if expected[cells[0]] < 5:  # pool the smallest cells until the pool expects >= 5
        n_pooled = min(int(np.searchsorted(np.cumsum(expected[cells]), 5.0)) + 1, len(cells))
    obs = [counts[cells[n_pooled:]]]
    exp = [expected[cells[n_pooled:]]]
    if n_pooled:
        obs.append([counts[cells[:n_pooled]].sum()])
        exp.append([expected[cells[:n_pooled]].sum()])
    o, e = np.concatenate(obs), np.concatenate(exp)
    if len(e) < 2:  # a point mass: the support check above was the whole test
        return 0.0, 1
    return float(((o - e) ** 2 / e).sum()), len(e) - 1


def assert_distributed_as(samples: np.ndarray, probs: np.ndarray, what: str) -> None:
    stat, df = chi2_statistic(samples, probs)
    crit = chi2_critical(df)
    assert stat < crit, f"{what}: chi2 {stat:.1f} >= {crit:.1f} (df {df}, {len(samples)} samples)"


def draw_many(probs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n independent draws from probs: the drafter's job, not under test."""
    cdf = np.cumsum(probs)
    return np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")


def make_case(k: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Target p (k+1, V) and draft q (k, V): the draft's logits are the
    target's plus noise, as a small model's resemble a big one's; random
    temperatures; all three filters, chosen so that row 0 has tokens only the
    target allows and tokens only the draft allows."""
    rng = np.random.default_rng(seed)
    target = SamplingParams(temp=rng.uniform(0.5, 1.5), top_k=6, top_p=0.97, min_p=0.02)
    draft = SamplingParams(temp=rng.uniform(0.5, 1.5), top_k=5, top_p=0.95, min_p=0.05)
    logits = rng.normal(0, 1.5, (3, V))  # fixed shape: make_case(1) is a prefix of make_case(2)
    draft_logits = logits[:2] + rng.normal(0, 1.0, (2, V))
    p = probs_from_logits(logits[: k + 1].astype(np.float32), target)
    q = probs_from_logits(draft_logits[:k].astype(np.float32), draft)
    assert ((p[0] == 0) & (q[0] > 0)).any() and ((q[0] == 0) & (p[0] > 0)).any()
    return p, q


def run_verify(p, q, drafts: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    out = np.array([verify_sampled(p, q, d, rng) for d in drafts.tolist()])
    return out[:, 0], out[:, 1]


def check_emitted(p: np.ndarray, drafts: np.ndarray, n_acc: np.ndarray, tok: np.ndarray) -> None:
    """Row-independent target: the first token, the second (when the first was
    accepted) and the bonus (when all were) each follow their row of p."""
    k = drafts.shape[1]
    first = np.where(n_acc == 0, tok, drafts[:, 0])
    assert_distributed_as(first, p[0], "first token")
    second = np.where(n_acc >= 2, drafts[:, 1], tok)[n_acc >= 1]
    assert len(second) > 20_000
    assert_distributed_as(second, p[1], "second token after an accepted first")
    bonus = tok[n_acc == k]
    assert len(bonus) > 10_000
    assert_distributed_as(bonus, p[k], "bonus token")


def test_sampled_draft_emits_target_distribution():
    k = 2
    p, q = make_case(k)
    rng = np.random.default_rng(1)
    drafts = np.stack([draw_many(q[i], N, rng) for i in range(k)], axis=1)
    n_acc, tok = run_verify(p, q, drafts, rng)
    check_emitted(p, drafts, n_acc, tok)
    accept_rate = np.minimum(p[0], q[0]).sum()
    assert_distributed_as((n_acc >= 1).astype(int), [1 - accept_rate, accept_rate], "acceptance")


def test_point_mass_draft_emits_target_distribution():
    """q=None: the drafter proposed each token with certainty, whatever its
    reasons; here it picks the target's favourite 80% of the time and a
    uniformly random token (often one the target forbids) otherwise."""
    k = 2
    p, _ = make_case(k)
    rng = np.random.default_rng(2)
    proposal = 0.2 / V + 0.8 * (p == p.max(axis=1, keepdims=True))[:k]
    drafts = np.stack([draw_many(proposal[i], N, rng) for i in range(k)], axis=1)
    n_acc, tok = run_verify(p, None, drafts, rng)
    check_emitted(p, drafts, n_acc, tok)
    accept_rate = proposal[0] @ p[0]
    assert_distributed_as((n_acc >= 1).astype(int), [1 - accept_rate, accept_rate], "acceptance")


def test_point_mass_of_forbidden_token_is_always_rejected():
    p, _ = make_case(1)
    forbidden = int(np.flatnonzero(p[0] == 0)[0])
    rng = np.random.default_rng(3)
    n_acc, tok = run_verify(p, None, np.full((2000, 1), forbidden), rng)
    assert (n_acc == 0).all() and (p[0][tok] > 0).all()


class ContextModel:
    """A toy language model whose next-token distribution depends on the
    whole context, as real ones do; `noise_seed` makes a drafter that
    resembles the model with the same seed. Rows are drawn once and cached."""

    def __init__(self, seed: int, params: SamplingParams, noise_seed: int | None = None):
        self.seed, self.params, self.noise_seed = seed, params, noise_seed
        self.rows: dict[tuple[int, ...], np.ndarray] = {}
        self.cdfs: dict[tuple[int, ...], np.ndarray] = {}
        self.stacks: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}

    def __call__(self, ctx: tuple[int, ...]) -> np.ndarray:
        if ctx not in self.rows:
            logits = np.random.default_rng([self.seed, len(ctx), *ctx]).normal(0, 1.5, V)
            if self.noise_seed is not None:
                logits += np.random.default_rng([self.noise_seed, len(ctx), *ctx]).normal(0, 1.0, V)
            self.rows[ctx] = probs_from_logits(logits.astype(np.float32), self.params)
            self.cdfs[ctx] = np.cumsum(self.rows[ctx])
        return self.rows[ctx]

    def draw(self, ctx: tuple[int, ...], rng: np.random.Generator) -> int:
        cdf = self.cdfs.get(ctx)
        if cdf is None:
            self(ctx)
            cdf = self.cdfs[ctx]
        return int(cdf.searchsorted(rng.random() * cdf[-1], side="right"))

    def stack(self, seq: tuple[int, ...], n: int) -> np.ndarray:
        """The n rows after seq[:-n+1], ..., seq: what a verify pass computes."""
        stacked = self.stacks.get((n, seq))
        if stacked is None:
            stacked = self.stacks[n, seq] = np.stack([self(seq[: len(seq) - n + 1 + i]) for i in range(n)])
        return stacked


def spec_step(target, drafter, ctx, k, rng) -> list[int]:
    """One speculative step from ctx: draft k tokens, verify, return emitted."""
    seq = ctx
    for _ in range(k):
        seq += (drafter.draw(seq, rng),)
    draft = list(seq[len(ctx) :])
    n_acc, tok = verify_sampled(target.stack(seq, k + 1), drafter.stack(seq[:-1], k), draft, rng)
    return draft[:n_acc] + [tok]


@pytest.mark.parametrize("same_model", [False, True], ids=["q!=p", "q==p"])
def test_joint_of_emitted_tokens_with_context(same_model):
    """The first tokens emitted by repeated steps have the target's joint
    distribution p(a) p(b|a) [p(c|a,b)], with rows that depend on the prefix.
    With q == p every draft is accepted and the bonus follows p(.|a,b)."""
    k, n_tokens = 2, (3 if same_model else 2)
    target = ContextModel(11, SamplingParams(temp=0.9, top_k=5, min_p=0.03))
    drafter = target if same_model else ContextModel(11, SamplingParams(temp=1.2, top_p=0.9), noise_seed=12)
    rng = np.random.default_rng(4)
    seqs = []
    for _ in range(N):
        out = spec_step(target, drafter, (), k, rng)
        assert not same_model or len(out) == k + 1
        if len(out) < n_tokens:
            out += spec_step(target, drafter, tuple(out), k, rng)
        seqs.append(out[0] * V + out[1] if n_tokens == 2 else (out[0] * V + out[1]) * V + out[2])
    joint = target(())
    for depth in range(1, n_tokens):
        rows = np.stack([target(ctx) for ctx in np.ndindex(*(V,) * depth)])
        joint = (joint.reshape(-1, 1) * rows).ravel()
    assert_distributed_as(np.array(seqs), joint, f"joint of {n_tokens} tokens")


def test_statistic_rejects_wrong_rules():
    """Plausible bugs, simulated on the same case: each must fail the test."""
    p, q = make_case(1)
    rng = np.random.default_rng(5)
    d = draw_many(q[0], N, rng)
    u = rng.random(N)
    ratio_accept = u * q[0][d] < p[0][d]
    residual = np.maximum(p[0] - q[0], 0)
    wrong = {
        "always accept": d,
        "resample p on reject": np.where(ratio_accept, d, draw_many(p[0], N, rng)),
        "accept w.p. p(d)": np.where(u < p[0][d], d, draw_many(residual, N, rng)),
        "residual of the next row": np.where(ratio_accept, d, draw_many(np.maximum(p[1] - q[0], 0), N, rng)),
    }
    for name, samples in wrong.items():
        stat, df = chi2_statistic(samples, p[0])
        assert stat > 3 * chi2_critical(df), f"{name}: chi2 {stat:.1f} only"


def test_verify_sampled_edge_cases():
    rng = np.random.default_rng(13)
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    q = np.array([[0.0, 0.4, 0.6]])
    # q(d) = 0 (no drafter could have proposed d): rejected without dividing by zero.
    outcomes = {verify_sampled(p, q, [0], rng) for _ in range(300)}
    assert outcomes == {(0, 0), (0, 1)}  # residual max(0, p - q) = [0.5, 0.1, 0]
    # p == q and d impossible under both: the residual is empty, the correction comes from p.
    same = np.array([[0.0, 0.4, 0.6], [1.0, 0.0, 0.0]])
    outcomes = {verify_sampled(same, same[:1], [0], rng) for _ in range(300)}
    assert outcomes == {(0, 1), (0, 2)}
    # k = 0: a plain target step.
    assert {verify_sampled(p[1:], None, [], rng)[1] for _ in range(300)} == {0, 1, 2}
    assert verify_sampled(p[:1], np.zeros((0, 3)), [], rng) in {(0, 0), (0, 1)}


class FixedUniform:
    """Stands in for np.random.Generator, always returning the same u."""

    def __init__(self, u: float):
        self.u = u

    def random(self) -> float:
        return self.u


def test_draws_at_the_ends_of_the_unit_interval_avoid_zero_probability_tokens():
    p = np.array([[0.0, 0.25, 0.0, 0.75, 0.0]])
    assert verify_sampled(p, None, [], FixedUniform(0.0)) == (0, 1)
    assert verify_sampled(p, None, [], FixedUniform(np.nextafter(1.0, 0.0))) == (0, 3)
    # u = 0.9 rejects d (p_d = 0.8); the residual p with d zeroed has one token left.
    two = np.array([[0.0, 0.2, 0.0, 0.8], [0.0, 0.0, 1.0, 0.0]])
    assert verify_sampled(two, None, [3], FixedUniform(0.9)) == (0, 1)


def test_verify_sampled_validates_shapes():
    p, q = make_case(2)
    with pytest.raises(ValueError):
        verify_sampled(p, q, [1], np.random.default_rng(0))
    with pytest.raises(ValueError):
        verify_sampled(p, q[:1], [1, 2], np.random.default_rng(0))


def test_verify_greedy_follows_argmax_path():
    rng = np.random.default_rng(6)
    for _ in range(500):
        k = int(rng.integers(0, 9))
        logits = rng.normal(0, 3, (k + 1, 50)).astype(np.float32)
        path = np.argmax(logits, axis=1)
        agree = int(rng.integers(0, k + 1))
        draft = [int(t) for t in path[:agree]]
        if agree < k:
            draft.append(int((path[agree] + rng.integers(1, 50)) % 50))
            draft += rng.integers(0, 50, k - agree - 1).tolist()
        assert verify_greedy(logits, draft) == (agree, int(path[agree]))
        # The sampled rule at temperature 0 with point-mass drafts is the same thing.
        p = probs_from_logits(logits, SamplingParams(temp=0.0))
        assert verify_sampled(p, None, draft, rng) == (agree, int(path[agree]))
    with pytest.raises(ValueError):
        verify_greedy(np.zeros((2, 5)), [])


def test_greedy_k0_and_numpy_token_ids():
    logits = np.array([[0.1, 3.0, 2.0], [5.0, 0.0, 1.0]], dtype=np.float32)
    assert verify_greedy(logits[:1], []) == (0, 1)
    assert verify_greedy(logits, np.array([1])) == (1, 0)


def reference_support(logits: np.ndarray, params: SamplingParams) -> set[int]:
    """Surviving tokens computed the slow, obvious way with full sorts."""
    order = np.argsort(-logits.astype(np.float64), kind="stable")
    if params.top_k:
        order = order[: params.top_k]
    w = np.exp(logits[order].astype(np.float64) - logits[order].max())
    w /= w.sum()
    if params.top_p < 1:
        n = int(np.searchsorted(np.cumsum(w), params.top_p)) + 1
        order, w = order[:n], w[:n]
    return set(order[w >= params.min_p * w.max()].tolist())


@pytest.mark.parametrize("vocab", [20, 3000, 30000])
def test_probs_filters_match_reference(vocab):
    rng = np.random.default_rng(8)
    for i in range(42):
        # The spread decides how many candidates top-p must look at: peaked
        # rows stay within its first candidate set, flat ones sort everything.
        logits = rng.normal(0, (1.0, 3.0, 5.0)[i % 3], vocab).astype(np.float32)
        params = SamplingParams(
            temp=float(rng.uniform(0.2, 2.0)),
            top_k=int(rng.choice([0, rng.integers(1, vocab)])),
            top_p=float(rng.choice([1.0, rng.uniform(0.3, 0.99)])),
            min_p=float(rng.choice([0.0, rng.uniform(0.01, 0.5)])),
        )
        probs = probs_from_logits(logits, params)
        assert probs.dtype == np.float64 and abs(probs.sum() - 1) < 1e-12
        kept = np.array(sorted(reference_support(logits, params)))
        expected = np.exp((logits[kept] - logits[kept].max()) / params.temp)
        expected /= expected.sum()
        # exp runs in float32: weights below ~1e-45 of the top may become 0.
        support = set(np.flatnonzero(probs).tolist())
        assert set(kept[expected > 1e-30].tolist()) <= support <= set(kept.tolist()), params
        np.testing.assert_allclose(probs[kept], expected, rtol=1e-5, atol=1e-30)


def test_top_p_on_wide_rows_at_every_candidate_stage():
    """Supports of ~17, ~1.8k and ~12k tokens out of 30k: top-p settles in its
    first candidate set, in its second, and only after sorting the row."""
    rng = np.random.default_rng(14)
    sizes = []
    for spread in (6.0, 3.0, 1.5):
        logits = rng.normal(0, spread, 30_000).astype(np.float32)
        params = SamplingParams(temp=1.0, top_p=0.9)
        support = set(np.flatnonzero(probs_from_logits(logits, params)).tolist())
        assert support == reference_support(logits, params)
        sizes.append(len(support))
    assert sizes[0] < 256 < sizes[1] < 4096 < sizes[2]


def test_top_k_keeps_exactly_k():
    rng = np.random.default_rng(12)
    for k in (1, 5, 40, 999):
        logits = rng.normal(0, 2, 1000).astype(np.float32)
        probs = probs_from_logits(logits, SamplingParams(temp=1.0, top_k=k))
        assert set(np.flatnonzero(probs).tolist()) == set(np.argsort(-logits)[:k].tolist())
    tied = np.array([3.0, 2.0, 2.0, 2.0, 1.0], dtype=np.float32)
    assert np.count_nonzero(probs_from_logits(tied, SamplingParams(temp=1.0, top_k=2))) == 2


def test_probs_greedy_is_one_hot_and_low_temperature_approaches_it():
    logits = np.array([0.5, 2.0, 1.9, -1.0], dtype=np.float32)
    assert probs_from_logits(logits, SamplingParams()).tolist() == [0, 1, 0, 0]
    tops = [probs_from_logits(logits, SamplingParams(temp=t))[1] for t in (1.0, 0.1, 0.01, 0.001)]
    assert all(a < b for a, b in zip(tops, tops[1:])) and tops[-1] > 1 - 1e-12


def test_probs_batch_equals_rows_and_handles_masked_logits():
    rng = np.random.default_rng(9)
    logits = rng.normal(0, 2, (5, 300)).astype(np.float32)
    logits[:, :7] = -np.inf
    for params in (
        SamplingParams(),
        SamplingParams(temp=0.7),
        SamplingParams(temp=0.7, min_p=0.1),
        SamplingParams(temp=1.3, top_k=40, top_p=0.8, min_p=0.02),
        SamplingParams(temp=1.0, top_p=0.5),
    ):
        batch = probs_from_logits(logits, params)
        rows = np.stack([probs_from_logits(row, params) for row in logits])
        np.testing.assert_allclose(batch, rows, rtol=1e-12, atol=0)
        assert np.isfinite(batch).all() and (batch[:, :7] == 0).all()
        np.testing.assert_allclose(batch.sum(axis=1), 1.0, rtol=1e-12)


def test_top2_margin():
    rng = np.random.default_rng(10)
    for _ in range(50):
        row = rng.normal(0, 3, 1000).astype(np.float32)
        top = np.sort(row)[-2:]
        assert top2_margin(row) == pytest.approx(float(top[1] - top[0]))
    assert top2_margin(np.array([1.0, 3.0, 3.0])) == 0.0
    assert top2_margin(np.array([1.0])) == math.inf


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"temp": -0.1}, "--temp"),
        ({"temp": float("nan")}, "--temp"),
        ({"top_k": -1}, "--top-k"),
        ({"top_k": 2.5}, "--top-k"),
        ({"top_p": 0.0}, "--top-p"),
        ({"top_p": 1.5}, "--top-p"),
        ({"min_p": 1.0}, "--min-p"),
        ({"min_p": -0.01}, "--min-p"),
        ({"seed": -3}, "--seed"),
    ],
)
def test_sampling_params_validation(kwargs, flag):
    with pytest.raises(LocalspecError, match=flag):
        SamplingParams(**kwargs)


def test_sampling_params_defaults():
    assert SamplingParams().greedy and not SamplingParams(temp=0.8).greedy
    SamplingParams(temp=0.8, top_k=np.int64(40), top_p=1.0, min_p=0.0, seed=0)
