"""Verifying a draft when a grammar constrains the reply.

The target's rows for every drafted position come from one batch, as
always. They are walked in order; at position i the grammar stands where
the accepted prefix left it, its mask removes the tokens it forbids there,
and the target's token is chosen from what is left:

- greedy: the best allowed token. A drafted token is accepted iff it is that
  token; so a token the grammar forbids is always rejected, and the output
  is token for token what plain decoding under the grammar writes.
- sampled: a draw x from the target's distribution restricted to allowed
  tokens (its sampling filters first, then the grammar, renormalised; when
  the grammar allows none of the filters' survivors, the filters are applied
  again to the grammar's survivors, as llama.cpp resamples). The draft token
  is accepted iff x equals it, and otherwise x is emitted.

That sampled rule is the speculative rule for a point-mass draft (accept d
with probability p(d), else draw from p with d removed, renormalised) in
another form: both emit y with probability p(y). It holds for any proposal,
so under a grammar a draft model's q is not used. The ratio test with q
would accept a little more often, but it needs p(d) exactly, and so the
mask's sum over the whole vocabulary at every row: 10-30 ms per row on a
152k vocabulary here (localspec/grammar.py), against microseconds for the
single-token checks the draw needs. The draw itself is exact without the
whole mask: draw x from the unmasked p and keep it if allowed, otherwise
draw from the masked p; then P(x) = p(x)·a(x) + (1 - Z)·p(x)·a(x)/Z =
p(x)·a(x)/Z, with a the mask and Z the allowed mass.

Tokens enter the grammar's state only when they are emitted: the accepted
drafts and the final token. A step ends at the first rejection, so nothing
is ever taken back; the KV cache is cut to the same prefix by the loop.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from localspec.verify import TINY, SamplingParams, draw, probs_from_logits

# How many of a row's best tokens the greedy search checks at once, before
# the whole vocabulary: the best one alone, then these.
_CANDIDATES = (64, 2048)


class TokenMask(Protocol):
    """A grammar's state as the verifier needs it (localspec.grammar.Grammar)."""

    def allowed(self, token: int) -> bool: ...

    def allowed_among(self, tokens: np.ndarray) -> np.ndarray: ...

    def mask(self) -> np.ndarray: ...

    def accept(self, token: int) -> None: ...


def best_allowed(row: np.ndarray, grammar: TokenMask, n_best: int = 1) -> list[int]:
    """The `n_best` highest-logit tokens the grammar allows, best first (lower
    id first among ties); fewer if it allows fewer. Checks as few as it can."""
    best = int(np.argmax(row))
    if n_best == 1 and grammar.allowed(best):
        return [best]
    n = row.shape[0]
    for m in _CANDIDATES:
        if m >= n:
            break
        top = np.argpartition(-row, m)[:m]
        top = top[np.lexsort((top, -row[top]))]  # by logit, then id
        ok = top[grammar.allowed_among(top)][:n_best]
        # Anything outside these m is no better than the m-th: these are the best
        # allowed, unless the m-th ties one left out (which may have a lower id).
        if len(ok) == n_best and row[ok[-1]] > row[top[-1]]:
            return [int(t) for t in ok]
    masked = np.where(grammar.mask(), row, -np.inf)
    order = np.lexsort((np.arange(n), -masked))[:n_best]
    return [int(t) for t in order if masked[t] > -np.inf]


def allowed_margin(row: np.ndarray, grammar: TokenMask) -> float:
    """Top-1 minus top-2 logit among the tokens the grammar allows (inf for
    fewer than two): the near-tie test of localspec/lossless.py, under a grammar."""
    two = best_allowed(row, grammar, 2)
    return float(row[two[0]] - row[two[1]]) if len(two) == 2 else float("inf")


def _note_row(row: np.ndarray, grammar: TokenMask, margins: list | None, masks: list | None) -> np.ndarray | None:
    """Append the row's allowed margin to `margins` and the grammar's mask to
    `masks`, each only where asked; return the mask (None when not asked)."""
    if margins is not None:
        margins.append(allowed_margin(row, grammar))
    if masks is None:
        return None
    masks.append(grammar.mask())
    return masks[-1]


def verify_constrained_greedy(
    rows: np.ndarray,
    draft_tokens: Sequence[int],
    grammar: TokenMask,
    margins: list | None = None,
    masks: list | None = None,
) -> tuple[int, int | None]:
    """(n_accepted, next_token) under the grammar, advancing it past both;
    next_token is None when the grammar allows nothing after the accepted drafts.
    With `margins`, each position's `allowed_margin` is appended to it; with
    `masks`, its whole mask (for logprobs: the costly call)."""
    k = len(draft_tokens)
    if rows.ndim != 2 or rows.shape[0] != k + 1:
        raise ValueError(f"need {k + 1} target rows for {k} draft tokens, got shape {rows.shape}")
    for i in range(k + 1):
        mask = _note_row(rows[i], grammar, margins, masks)
        if mask is not None:  # the whole mask is at hand: no need to search the best tokens first
            found = [int(np.argmax(np.where(mask, rows[i], -np.inf)))] if mask.any() else []
        else:
            found = best_allowed(rows[i], grammar)
        if not found:
            return i, None
        best = found[0]
        grammar.accept(best)
        if i == k or best != draft_tokens[i]:
            return i, best
    raise AssertionError("unreachable")


def draw_allowed(
    p: np.ndarray, logits: np.ndarray, sampling: SamplingParams, grammar: TokenMask, rng: np.random.Generator
) -> int | None:
    """A draw from `p` (the row's filtered target distribution) restricted to
    what the grammar allows; None if it allows nothing."""
    x = draw(np.add.accumulate(p), rng)
    if grammar.allowed(x):
        return x
    allowed = grammar.mask()
    kept = np.where(allowed, p, 0.0)
    cdf = np.add.accumulate(kept, out=kept)
    if cdf[-1] >= TINY:
        return draw(cdf, rng)
    if not allowed.any():
        return None
    refiltered = probs_from_logits(np.where(allowed, logits, -np.inf), sampling)
    return draw(np.add.accumulate(refiltered), rng)


def verify_constrained_sampled(
    p: np.ndarray,
    rows: np.ndarray,
    sampling: SamplingParams,
    draft_tokens: Sequence[int],
    grammar: TokenMask,
    rng: np.random.Generator,
    margins: list | None = None,
    masks: list | None = None,
) -> tuple[int, int | None]:
    """(n_accepted, next_token) by the rule above; p: (k+1, V) the target's
    filtered distributions, rows: the logits they came from; `margins` and
    `masks` as for the greedy rule."""
    k = len(draft_tokens)
    if p.ndim != 2 or p.shape[0] != k + 1 or rows.shape != p.shape:
        raise ValueError(f"need {k + 1} target rows for {k} draft tokens, got shapes {p.shape}, {rows.shape}")
    for i in range(k + 1):
        _note_row(rows[i], grammar, margins, masks)
        x = draw_allowed(p[i], rows[i], sampling, grammar, rng)
        if x is None:
            return i, None
        grammar.accept(x)
        if i == k or x != draft_tokens[i]:
            return i, x
    raise AssertionError("unreachable")
