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
        # Stop once the product of those probabilities (a stand-in for the chance
        # that the whole draft so far survives) falls below this; set per step by
        # the adaptive planner, 0 otherwise.
        self.cum_p_min = 0.0
        # What the last proposal cost: catching up on context tokens (a batch) and
        # the single-token decodes after it. The planner learns draft costs from it.
        self.last_catch_up = (0, 0.0)  # (tokens, seconds)
        self.last_singles = (0, 0.0)
        self.proposals = 0  # proposals that ran the model, so observers can tell a new one

    def behind(self, context: Sequence[int]) -> int:
        """Context tokens the draft cache would have to decode before drafting."""
        return len(context) - min(self.ctx.common_prefix(context), len(context) - 1)

    def _catch_up(self, context: Sequence[int]) -> np.ndarray:
        common = self.ctx.common_prefix(context)
        # The next-token logits need the last context token decoded in this call.
        common = self.ctx.truncate(min(common, len(context) - 1))
        return self.ctx.decode(context[common:], logits="last")[-1]

    def propose(
        self, context: Sequence[int], k: int, sampling: SamplingParams, rng: np.random.Generator
    ) -> Draft:
        if k <= 0:
            return EMPTY_DRAFT
        t0 = time.perf_counter()
        n_behind = self.behind(context)
        try:
            logits = self._catch_up(context)
        except ContextFull:
            return EMPTY_DRAFT
        t1 = time.perf_counter()
        self.last_catch_up = (n_behind, t1 - t0)
        self.proposals += 1
        n_singles = 0
        tokens: list[int] = []
        probs: list[np.ndarray] = []
        cum_p = 1.0
        while True:
            p_top = top_probability(logits)
            cum_p *= p_top
            if p_top < self.p_min or cum_p < self.cum_p_min:
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
        self.last_singles = (n_singles, time.perf_counter() - t1)
        return Draft(tokens=tokens, probs=np.stack(probs) if probs else None)

    def observe(self, context: Sequence[int], n_accepted: int) -> None:
        # Nothing to do eagerly: the next propose() cuts the cache to the common prefix.
        pass

    def close(self) -> None:
        self.ctx.close()
