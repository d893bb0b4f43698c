"""The drafter contract: every way of guessing the target's next tokens.

A drafter proposes up to `k` tokens that continue `context` (the whole token
sequence so far: prompt and generated text, the newest token last). With
sampling, it also returns the distribution q it drew each token from, so the
verifier can correct for it; `probs=None` means a point mass on each token
(greedy drafts, n-gram lookup). A model drafter stops early once the running
product of its top probabilities falls below `stop_below` (the planner sets
it per step from the costs). The draft says which drafter made it, whether a
model ran for it and what that cost: the loop puts this in the step's event,
and the planner learns from the event. After each verify step the loop calls
`observe` with the new context and how many of the draft survived, which is
where a drafter rolls back its own state and learns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol, Sequence

import numpy as np

from localspec.events import DraftWork
from localspec.verify import SamplingParams


@dataclass(frozen=True)
class Draft:
    tokens: list[int]
    probs: np.ndarray | None = None  # shape (len(tokens), n_vocab) when sampled
    source: str = ""  # the drafter that made it (a member's name, under a combined drafter)
    ran: bool = False  # a model ran for it: `work` is real, even when it proposed nothing
    work: DraftWork = DraftWork()
    match_n: int = 0  # lookup: length of the n-gram match it continues (its confidence)


EMPTY_DRAFT = Draft(tokens=[])


class Drafter(Protocol):
    name: str

    def propose(
        self,
        context: Sequence[int],
        k: int,
        sampling: SamplingParams,
        rng: np.random.Generator,
        stop_below: float = 0.0,
    ) -> Draft: ...

    def behind(self, context: Sequence[int]) -> int:
        """Context tokens it would decode before drafting (0 for none)."""
        ...

    def observe(self, context: Sequence[int], n_accepted: int) -> None: ...

    def close(self) -> None: ...


class StepPlan(NamedTuple):
    """The planner's word for one step: which drafter, how many tokens, when to stop early."""

    method: str
    drafter: Drafter | None
    k: int
    stop_below: float = 0.0
