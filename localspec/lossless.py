"""What "lossless" means for greedy speculative decoding, and how to check it.

Batched and one-row evaluation of the same position differ in float rounding
(quantised matmuls take other paths for other batch sizes), so a greedy run
that verifies drafts in batches may pick another token than plain decoding
wherever the target's top two logits are nearly tied; from there on the texts
part. A divergence is therefore lossless when it happens at such a near-tie,
and a bug in the decoding loop anywhere else.
"""

from __future__ import annotations

from typing import Sequence

from localspec.ngram import common_prefix_len
from localspec.verify import top2_margin

# Measured on Qwen 2.5-Coder 1.5B Q4_K_M over 360 positions (6 Spec-Bench
# prompts, 60 greedy tokens each, 5-row batches vs single-token decodes): the
# worst single logit moved by 0.79 and the top-1 minus top-2 margin by at most
# 0.44; the one argmax flip seen was at a margin of 0.0027. So the target itself
# may legitimately pick another token wherever its margin is below ~0.44; a
# divergence at a margin of 0.5 or more cannot come from rounding.
TIE_MARGIN = 0.5


def first_divergence(a: Sequence[int], b: Sequence[int]) -> int | None:
    """Index of the first token where a and b differ (one ending first counts); None if equal."""
    n = common_prefix_len(list(a), list(b))
    return None if n == len(a) == len(b) else n


def margins_at(ctx, prompt: Sequence[int], reference: Sequence[int], positions: Sequence[int]) -> dict[int, float]:
    """The target's top-1 minus top-2 logit where it chose `reference[i]`, for each i in positions.

    Each is evaluated as plain decoding evaluates it: the context holds the
    prompt and reference[:i], and one row is decoded (the one that predicts
    reference[i]). Positions are visited in order so the cache grows by
    reuse; i may be len(reference), where the reference ended (its stop).
    """
    full = list(prompt) + list(reference)
    out = {}
    for i in sorted(set(positions)):
        if not 0 <= i <= len(reference):
            raise ValueError(f"position {i} is outside a reference of {len(reference)} tokens")
        last = len(prompt) + i - 1  # the row whose logits choose reference[i]
        ctx.prefill(full[:last])
        out[i] = top2_margin(ctx.decode([full[last]], logits="last")[0])
    return out
