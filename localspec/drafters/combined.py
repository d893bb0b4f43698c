"""Several drafters tried in order; the first that proposes anything wins.

"draft+lookup" puts the n-gram lookup first: when the context repeats itself
its proposal is free and usually long, and the draft model only runs when
the lookup has nothing to say.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from localspec.drafters import EMPTY_DRAFT, Draft, Drafter
from localspec.verify import SamplingParams


class FirstOfDrafter:
    def __init__(self, name: str, drafters: Sequence[Drafter]):
        self.name = name
        self.drafters = list(drafters)
        self.members = tuple(d.name for d in self.drafters)  # the planner weighs these in this order

    def propose(
        self,
        context: Sequence[int],
        k: int,
        sampling: SamplingParams,
        rng: np.random.Generator,
        stop_below: float = 0.0,
    ) -> Draft:
        ran = None
        for d in self.drafters:
            draft = d.propose(context, k, sampling, rng, stop_below)
            if draft.tokens:
                return draft
            ran = draft if draft.ran else ran
        return ran or EMPTY_DRAFT  # a member that ran and proposed nothing still cost its work

    def behind(self, context: Sequence[int]) -> int:
        return max(d.behind(context) for d in self.drafters)

    def observe(self, context: Sequence[int], n_accepted: int) -> None:
        # The members are observed by the generation loop directly; observing
        # them again here would count every step twice.
        pass

    def close(self) -> None:
        pass
