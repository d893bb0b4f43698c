"""Turning target logits into probabilities and checking a draft against them.

The rule (Leviathan et al. 2023, "Fast Inference from Transformers via
Speculative Decoding"; Chen et al. 2023, "Accelerating Large Language Model
Decoding with Speculative Sampling"):

    The drafter proposed d ~ q; the target's distribution at that position is p.
    Accept d with probability min(1, p(d)/q(d)). On rejection, emit a sample of
    r = max(0, p - q) / sum(max(0, p - q)) and end the step.

Why it is lossless: let beta = sum_y min(p(y), q(y)), the chance of accepting.
Then sum_y max(0, p(y) - q(y)) = 1 - beta, so

    P(emit x) = q(x) * min(1, p(x)/q(x)) + (1 - beta) * r(x)
              = min(p(x), q(x))           + max(0, p(x) - q(x))  = p(x).

Each position is conditioned on the prefix already emitted, so by induction the
whole sequence has the target's distribution. When all k drafts are accepted,
row k of the target is exactly the next-token distribution given the accepted
prefix, so sampling it is an ordinary target step (the "bonus" token).

A point-mass draft (n-gram lookup, greedy drafter: q = delta_d) is the special
case q(d) = 1: accept with probability p(d); the residual is p with d zeroed.
Greedy decoding is the temperature -> 0 limit: p is the one-hot of the argmax,
so a draft token is accepted iff it is the argmax and the correction is the
argmax, which `verify_greedy` does directly on logits.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from localspec.errors import LocalspecError

# How many best candidates top-p sorts, in turn, before sorting the whole row.
_TOP_P_CANDIDATES = (256, 4096)
TINY = np.finfo(np.float64).tiny


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings with llama.cpp's meanings, checked on construction."""

    temp: float = 0.0  # <= 0 means greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    min_p: float = 0.0  # 0 = off
    seed: int | None = None

    def __post_init__(self) -> None:
        # `not (x >= 0)` rather than `x < 0` so that NaN is rejected too.
        if not self.temp >= 0:
            raise LocalspecError(f"--temp must be >= 0, got {self.temp}")
        if not _is_int(self.top_k) or self.top_k < 0:
            raise LocalspecError(f"--top-k must be an integer >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise LocalspecError(f"--top-p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.min_p < 1:
            raise LocalspecError(f"--min-p must be in [0, 1), got {self.min_p}")
        if self.seed is not None and (not _is_int(self.seed) or self.seed < 0):
            raise LocalspecError(f"--seed must be an integer >= 0, got {self.seed}")

    @property
    def greedy(self) -> bool:
        return self.temp <= 0


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def probs_from_logits(logits: np.ndarray, params: SamplingParams) -> np.ndarray:
    """Target/draft distribution(s) for `logits` of shape (V,) or (n, V).

    Filters run in llama.cpp's order on the raw (temperature 1) logits: top-k,
    then top-p over the softmax of the top-k survivors, then min-p (keep
    p >= min_p * p_max); temperature is applied last to the survivors. Greedy
    params give the one-hot of the argmax.
    """
    logits = np.asarray(logits)
    if logits.ndim not in (1, 2) or logits.shape[-1] == 0:
        raise ValueError(f"logits must have shape (V,) or (n, V), got {logits.shape}")
    rows = logits.reshape(1, -1) if logits.ndim == 1 else logits
    n, vocab = rows.shape

    if params.greedy:
        out = np.zeros((n, vocab), dtype=np.float64)
        out[np.arange(n), np.argmax(rows, axis=1)] = 1.0
    elif params.top_p >= 1 and (params.top_k == 0 or params.top_k >= vocab):
        out = _softmax_rows(rows, params.temp, params.min_p)
    else:
        out = np.zeros((n, vocab), dtype=np.float64)
        for row, out_row in zip(rows, out):
            _filtered_row(row, params, out_row)
    return out.reshape(logits.shape)


# Speed notes for 152k-wide rows: every fresh 1 MB array costs page faults
# that can exceed the arithmetic, so the hot paths allocate as little as
# possible; and exp runs in float32 (4-5x faster than float64; its ~1e-6
# relative error is below the precision of the float32 logits), with sums and
# normalisation in float64. Weights under ~1e-45 of the top one become 0.


def _softmax_rows(rows: np.ndarray, temp: float, min_p: float) -> np.ndarray:
    """Softmax at `temp` with only min-p filtering: one pass, one allocation."""
    out = np.empty(rows.shape, dtype=np.float64)
    np.subtract(rows, rows.max(axis=1, keepdims=True), out=out)
    if min_p > 0:
        # p_i >= min_p * p_max  <=>  logit_i - logit_max >= log(min_p), at temperature 1.
        below = out < math.log(min_p)
    out *= 1.0 / temp
    np.exp(out, out=out, dtype=np.float32, casting="same_kind")
    if min_p > 0:
        out[below] = 0.0
    out /= out.sum(axis=1, keepdims=True)
    return out


def _filtered_row(row: np.ndarray, params: SamplingParams, out: np.ndarray) -> None:
    """One row through top-k and/or top-p (at least one narrows it), then
    min-p and temperature on the survivors only, written into the zeroed `out`."""
    vocab = row.shape[0]
    keep = None  # survivors, as indices into row; None until a filter narrows them
    vals = row
    if 0 < params.top_k < vocab:
        keep = _top_positions(row, params.top_k)
        vals = row[keep]
    if params.top_p < 1:
        picked = _top_p_positions(vals, params.top_p)
        keep = picked if keep is None else keep[picked]
        vals = vals[picked]
    shifted = vals.astype(np.float64)
    shifted -= shifted.max()
    if params.min_p > 0:
        survive = shifted >= math.log(params.min_p)
        keep, shifted = keep[survive], shifted[survive]
    shifted *= 1.0 / params.temp
    np.exp(shifted, out=shifted, dtype=np.float32, casting="same_kind")
    out[keep] = shifted / shifted.sum()


def _top_positions(vals: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest `vals` (ties at the cut broken by position),
    in no particular order. Partitions values, not indices: half the memory."""
    n = vals.shape[0]
    edge = np.partition(vals, n - k)[n - k]
    above = np.flatnonzero(vals > edge)
    ties = np.flatnonzero(vals == edge)[: k - above.shape[0]]
    return np.concatenate([above, ties])


def _top_p_positions(vals: np.ndarray, top_p: float) -> np.ndarray:
    """Positions in `vals` of the smallest highest-first set whose softmax mass
    is >= top_p (ties at the cut broken by position), in no particular order."""
    n = vals.shape[0]
    weights = vals.astype(np.float32)  # a copy: turned into exp(vals - max) in place
    weights -= weights.max()
    np.exp(weights, out=weights)
    target = top_p * weights.sum(dtype=np.float64)
    # Peaked rows: the best few hundred candidates nearly always hold the mass,
    # and sorting just those is far cheaper than sorting the row.
    for m in _TOP_P_CANDIDATES:
        if n <= m:
            break
        cand = _top_positions(weights, m)
        order = cand[np.argsort(-weights[cand], kind="stable")]
        cut = int(np.searchsorted(np.cumsum(weights[order], dtype=np.float64), target))
        if cut < m:
            return order[: cut + 1]
    # Flat rows (or short ones): sort values only, find the weight at the cut,
    # keep everything above it plus enough ties.
    desc = np.sort(weights)[::-1]
    cum = desc.astype(np.float64)  # contiguous: cumsum on it is 4x faster than on the view
    np.cumsum(cum, out=cum)
    cut = min(int(np.searchsorted(cum, target)), n - 1)
    edge = desc[cut]
    above = np.flatnonzero(weights > edge)
    ties = np.flatnonzero(weights == edge)[: cut + 1 - above.shape[0]]
    return np.concatenate([above, ties])


def top2_margin(logits_row: np.ndarray) -> float:
    """Top-1 minus top-2 logit: how sure the model was. inf for a 1-token row."""
    row = np.asarray(logits_row)
    if row.shape[0] < 2:
        return math.inf
    top2 = np.partition(row, row.shape[0] - 2)[-2:]
    return float(top2[1] - top2[0])


def logprobs_at(
    rows: np.ndarray,
    p: np.ndarray | None,
    tokens: Sequence[int],
    top_n: int,
    masks: Sequence[np.ndarray] | None = None,
    sampling: SamplingParams | None = None,
) -> list[tuple[float, tuple[tuple[int, float], ...]]]:
    """For each tokens[i], its log-probability in row i and the `top_n` most
    likely tokens of that row with theirs, best first.

    With `p` (sampled), the rows' filtered distributions are used, and a
    token they give 0 gets -inf and is never among the alternatives; without
    (greedy), the softmax of the logits `rows` at temperature 1. With
    `masks` (what a grammar allowed at each position), the distribution is
    restricted to the allowed tokens and renormalised, as the verifier drew
    from it (localspec/constrain.py; `sampling` for its fallback).
    """
    out = []
    for i, token in enumerate(tokens):
        mask = masks[i] if masks is not None else None
        if p is None:
            row = rows[i].astype(np.float64)
            if mask is not None:
                row[~mask] = -np.inf
            row -= row.max()
            row -= math.log(np.exp(row).sum())
        else:
            dist = p[i]
            if mask is not None:
                dist = np.where(mask, dist, 0.0)
                if not dist.sum() >= TINY:  # none of the filters' survivors allowed: drawn after refiltering
                    dist = probs_from_logits(np.where(mask, rows[i], -np.inf), sampling or SamplingParams(temp=1.0))
                dist /= dist.sum()
            with np.errstate(divide="ignore"):
                row = np.log(dist)
        top: tuple[tuple[int, float], ...] = ()
        if top_n > 0:
            m = min(top_n, row.shape[0])
            best = np.argpartition(-row, m - 1)[:m]
            best = best[np.lexsort((best, -row[best]))]
            top = tuple((int(t), float(row[t])) for t in best if row[t] > -math.inf)
        out.append((float(row[token]), top))
    return out


def verify_greedy(target_logits: np.ndarray, draft_tokens: Sequence[int]) -> tuple[int, int]:
    """(n_accepted, next_token): the longest draft prefix equal to the target's
    argmax path, and the target's argmax right after it (correction or bonus)."""
    k = len(draft_tokens)
    if target_logits.ndim != 2 or target_logits.shape[0] != k + 1:
        raise ValueError(f"need {k + 1} target rows for {k} draft tokens, got shape {target_logits.shape}")
    for i, token in enumerate(draft_tokens):
        best = int(np.argmax(target_logits[i]))
        if best != token:
            return i, best
    return k, int(np.argmax(target_logits[k]))


def verify_sampled(
    p: np.ndarray,
    q: np.ndarray | None,
    draft_tokens: Sequence[int],
    rng: np.random.Generator,
) -> tuple[int, int]:
    """(n_accepted, next_token) by the speculative sampling rule above.

    p: (k+1, V) processed target probabilities; q: (k, V) draft probabilities,
    or None when every draft token was a point mass (q(d_i) = 1).
    """
    k = len(draft_tokens)
    if p.ndim != 2 or p.shape[0] != k + 1:
        raise ValueError(f"need {k + 1} target rows for {k} draft tokens, got shape {p.shape}")
    if q is not None and q.shape != (k, p.shape[1]):
        raise ValueError(f"draft probabilities must have shape {(k, p.shape[1])}, got {q.shape}")
    for i, token in enumerate(draft_tokens):
        p_d = p.item(i, token)
        q_d = 1.0 if q is None else q.item(i, token)
        # u * q_d < p_d  <=>  u < p_d / q_d, with u uniform on [0, 1). A token
        # the drafter could not have drawn (q_d == 0) is rejected, not divided by.
        if q_d > 0 and rng.random() * q_d < p_d:
            continue
        if q is None:
            residual = p[i].copy()
            residual[token] = 0.0
        else:
            residual = p[i] - q[i]
            np.maximum(residual, 0.0, out=residual)
        # Ufunc and method calls below rather than np.cumsum/np.searchsorted:
        # their wrappers cost more than the work on short rows.
        cdf = np.add.accumulate(residual, out=residual)
        # Empty only when p == q: then rejection had probability 0 and any choice
        # is lossless; p is the natural one. (>= tiny also keeps draw's
        # argument below safe from subnormal totals.)
        if not cdf[-1] >= TINY:
            cdf = np.add.accumulate(p[i])
        return i, draw(cdf, rng)
    return k, draw(np.add.accumulate(p[k]), rng)


def draw(cdf: np.ndarray, rng: np.random.Generator) -> int:
    """Inverse-CDF draw given the running sum of non-negative weights, whose
    total cdf[-1] is a normal float. u <= 1 - 2**-53 makes u * total round
    strictly below total, so the index found is a real token; side="right"
    skips zero weights, because cdf[i] > x >= cdf[i-1] means weight i > 0."""
    return int(cdf.searchsorted(rng.random() * cdf[-1], side="right"))
