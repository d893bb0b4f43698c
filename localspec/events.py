"""What the generation loop tells its consumers (CLI, TUI, benchmark).

The engine yields one `StepEvent` per verify step and returns a
`GenerationResult` at the end; consumers never reach into the engine.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

Source = Literal["draft", "target"]
StopReason = Literal["eog", "max_tokens", "stop", "cancelled", "context_full"]


@dataclass(frozen=True)
class EmittedToken:
    """One generated token. `source` is "draft" when a drafter proposed it and
    the target agreed, "target" when the target produced it itself (the
    correction/bonus token of a verify step). `margin` is the target's top-1
    minus top-2 logit at that position, filled only when tracing. `logprob`
    and `top_logprobs` ((token, logprob) pairs, most likely first) are filled
    only when asked for (GenerateOptions.logprobs; localspec/generate.py says
    which distribution they come from)."""

    id: int
    source: Source
    margin: float | None = None
    logprob: float | None = None
    top_logprobs: tuple[tuple[int, float], ...] = ()


@dataclass
class Counters:
    """Running totals of one generation; every rate is derived, never stored."""

    n_prompt: int = 0  # prompt tokens evaluated (cached prefix excluded)
    n_prompt_cached: int = 0  # prompt tokens whose KV was reused
    n_generated: int = 0
    steps: int = 0  # target verify passes
    drafted: int = 0
    accepted: int = 0
    zero_accept_steps: int = 0  # steps that drafted something and kept none of it
    prompt_s: float = 0.0
    gen_s: float = 0.0  # generation only: no load, no prompt processing
    draft_s: float = 0.0
    verify_s: float = 0.0
    drafted_at: list[int] = field(default_factory=list)  # index i: drafts with a token at position i+1
    accepted_at: list[int] = field(default_factory=list)  # index i: of those, position i+1 accepted

    def record_step(self, drafted: int, accepted: int) -> None:
        self.steps += 1
        self.drafted += drafted
        self.accepted += accepted
        if drafted and not accepted:
            self.zero_accept_steps += 1
        while len(self.drafted_at) < drafted:
            self.drafted_at.append(0)
            self.accepted_at.append(0)
        for i in range(drafted):
            self.drafted_at[i] += 1
            if i < accepted:
                self.accepted_at[i] += 1

    @property
    def tokens_per_s(self) -> float:
        return self.n_generated / self.gen_s if self.gen_s > 0 else 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def mean_accepted_per_step(self) -> float:
        """Draft tokens kept per verify step (the target's own token not counted)."""
        return self.accepted / self.steps if self.steps else 0.0

    @property
    def tokens_per_step(self) -> float:
        return self.n_generated / self.steps if self.steps else 0.0

    @property
    def per_position_acceptance(self) -> list[float]:
        """Share of drafts reaching position i whose token i was accepted."""
        return [a / d if d else 0.0 for a, d in zip(self.accepted_at, self.drafted_at)]

    def snapshot(self) -> Counters:
        return copy.deepcopy(self)

    def to_dict(self) -> dict:
        return {
            "n_prompt": self.n_prompt,
            "n_prompt_cached": self.n_prompt_cached,
            "n_generated": self.n_generated,
            "prompt_s": self.prompt_s,
            "gen_s": self.gen_s,
            "tokens_per_s": self.tokens_per_s,
            "steps": self.steps,
            "drafted": self.drafted,
            "accepted": self.accepted,
            "acceptance_rate": self.acceptance_rate,
            "mean_accepted_per_step": self.mean_accepted_per_step,
            "tokens_per_step": self.tokens_per_step,
            "zero_accept_steps": self.zero_accept_steps,
            "per_position_acceptance": self.per_position_acceptance,
            "draft_s": self.draft_s,
            "verify_s": self.verify_s,
        }


@dataclass(frozen=True)
class DraftWork:
    """What a model drafter ran for one proposal; the planner learns draft costs from it."""

    catch_up: tuple[int, float] = (0, 0.0)  # context tokens decoded first (one batch), seconds
    singles: tuple[int, float] = (0, 0.0)  # one-token draft decodes after it, seconds


@dataclass(frozen=True)
class StepEvent:
    """One verify step: the tokens it released to the reader and what it cost.

    Without stop strings those are exactly the tokens the step emitted. With
    them, a token whose text could still begin a stop string is held back and
    released by a later step (or clipped where the stop string starts), so the
    `text` of all events always adds up to the result's text.
    """

    tokens: tuple[EmittedToken, ...]
    pieces: tuple[str, ...]  # text each token added, in order (a piece may be "" mid-UTF-8)
    text: str  # "".join(pieces)
    method: str  # drafter used for this step: "none", "draft", "lookup", "mtp", ...
    k: int  # draft length asked for
    drafted: int
    accepted: int
    draft_s: float
    verify_s: float
    wall_s: float
    counters: Counters  # totals after this step (a snapshot, safe to keep)
    source: str = ""  # the drafter that made the draft ("" when none was asked)
    ran: bool = False  # a model ran to draft: `work` is what it cost, even if it proposed nothing
    work: DraftWork = DraftWork()


@dataclass
class GenerationResult:
    text: str
    tokens: list[int]
    stop_reason: StopReason
    counters: Counters
    trace: list[EmittedToken]  # every token generated
    released: list[EmittedToken] = field(default_factory=list)  # those whose text is in `text` (stop strings cut)
    pieces: list[str] = field(default_factory=list)  # the text each of `released` added: they join to `text`
