"""Drafting with a second, smaller GGUF model that shares the target's vocabulary.

The draft keeps its own KV cache. Before each proposal it is brought in line
with the context by cutting its cache back to the common prefix and decoding
only what differs, which is at most the tokens of the last step: rollback on
rejection and catching up after acceptance are the same operation, and the
prompt is processed once.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from localspec.backend import Context, ContextFull
from localspec.drafters import EMPTY_DRAFT, Draft
from localspec.events import DraftWork
from localspec.verify import SamplingParams, probs_from_logits


def top_probability(logits: np.ndarray) -> float:
    """Softmax probability of the argmax, without materialising the softmax."""
    m = float(logits.max())
    return 1.0 / float(np.exp(logits - m, dtype=np.float32).sum(dtype=np.float64))


class DraftModelDrafter:
    name = "draft"

    def __init__(self, ctx: Context, p_min: float = 0.0):
        self.ctx = ctx
        # llama.cpp's `p_min`: stop drafting once the draft's own top token is less
        # likely than this; such tokens are mostly rejected and cost a draft step each.
        self.p_min = p_min

    def behind(self, context: Sequence[int]) -> int:
        """Context tokens the draft cache would have to decode before drafting."""
        return len(context) - min(self.ctx.common_prefix(context), len(context) - 1)

    def _catch_up(self, context: Sequence[int]) -> np.ndarray:
        common = self.ctx.common_prefix(context)
        # The next-token logits need the last context token decoded in this call.
        common = self.ctx.truncate(min(common, len(context) - 1))
        return self.ctx.decode(context[common:], logits="last")[-1]

    def propose(
        self,
        context: Sequence[int],
        k: int,
        sampling: SamplingParams,
        rng: np.random.Generator,
        stop_below: float = 0.0,
    ) -> Draft:
        """`stop_below`: stop once the product of the top probabilities so far (a
        stand-in for the chance that the whole draft survives) falls below it."""
        if k <= 0:
            return EMPTY_DRAFT
        t0 = time.perf_counter()
        n_behind = self.behind(context)
        try:
            logits = self._catch_up(context)
        except ContextFull:
            return EMPTY_DRAFT
        t1 = time.perf_counter()
        n_singles = 0
        tokens: list[int] = []
        probs: list[np.ndarray] = []
        cum_p = 1.0
        while True:
            p_top = top_probability(logits)
            cum_p *= p_top
            if p_top < self.p_min or cum_p < stop_below:
                break
            if sampling.greedy:
                tok = int(logits.argmax())
            else:
                q = probs_from_logits(logits, sampling)
                tok = int(np.searchsorted(np.cumsum(q), rng.random() * q.sum(), side="right"))
                tok = min(tok, q.size - 1)
                probs.append(q)
            tokens.append(tok)
            if len(tokens) >= k:
                break
            try:
                logits = self.ctx.decode([tok], logits="last")[-1]
            except ContextFull:
                break
            n_singles += 1
        work = DraftWork(catch_up=(n_behind, t1 - t0), singles=(n_singles, time.perf_counter() - t1))
        return Draft(tokens=tokens, probs=np.stack(probs) if probs else None, source=self.name, ran=True, work=work)

    def observe(self, context: Sequence[int], n_accepted: int) -> None:
        # Nothing to do eagerly: the next propose() cuts the cache to the common prefix.
        pass

    def close(self) -> None:
        self.ctx.close()
