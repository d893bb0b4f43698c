"""The drafter contract: every way of guessing the target's next tokens.

A drafter proposes up to `k` tokens that continue `context` (the whole token
sequence so far: prompt and generated text, the newest token last). With
sampling, it also returns the distribution q it drew each token from, so the
verifier can correct for it; `probs=None` means a point mass on each token
(greedy drafts, n-gram lookup). After each verify step the loop calls
`observe` with the new context and how many of the draft survived, which is
where a drafter rolls back its own state and learns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from localspec.verify import SamplingParams


@dataclass(frozen=True)
class Draft:
    tokens: list[int]
    probs: np.ndarray | None = None  # shape (len(tokens), n_vocab) when sampled


EMPTY_DRAFT = Draft(tokens=[])


class Drafter(Protocol):
    name: str

    def propose(
        self, context: Sequence[int], k: int, sampling: SamplingParams, rng: np.random.Generator
    ) -> Draft: ...

    def observe(self, context: Sequence[int], n_accepted: int) -> None: ...

    def close(self) -> None: ...
