"""The speculative decoding loop: draft, verify in one batch, keep the agreed prefix.

Invariant between steps: the target's KV cache holds every context token but
the newest one (`pending`), which is fed as row 0 of the next verify batch.
A step therefore evaluates [pending, d_1..d_k] in one `llama_decode`; row i
holds the target's distribution for the position after d_i (row 0: after
`pending`), which is exactly what the verifier compares draft token d_{i+1}
against. Plain decoding is the same step with k = 0, so the baseline and the
speculative runs share every line of code but the drafter.

Two options change what a step reads from those rows:

- `grammar`: GBNF text (a `root` rule; localspec.grammar makes it from a JSON
  schema). Every row is masked by the grammar as it stands after the tokens
  before it, and only emitted tokens advance it (localspec/constrain.py), so
  drafting goes on inside constrained output and stays exact. With
  `grammar_trigger` (a regex) the grammar holds the reply only from where its
  text first matches (tool calls under tool_choice auto; localspec.grammar's
  LazyGrammar). With `reasoning` (a thinking model's reply), either holds
  only the answer after the reasoning (localspec/reasoning.py).
- `logprobs`: None for none; n >= 0 puts on every emitted token the target's
  log-probability of it and of its n most likely alternatives, read from the
  same rows (no extra decode). The distribution is the one the token was
  chosen from: greedy, the softmax of the logits (at temperature 1), so the
  chosen token is always the first alternative; sampled, the filtered,
  tempered distribution the verifier draws from (a token the filters removed
  has -inf and is not listed). Under a grammar either is restricted to the
  tokens the grammar allowed there and renormalised; that needs the grammar's
  mask over the whole vocabulary at every emitted token, which the verifier
  otherwise avoids, so logprobs under a grammar cost 10-30 ms more per token
  on a 152k vocabulary (measured on a 2-core EPYC).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

import numpy as np

from localspec.backend import Context, ContextFull, TextStream
from localspec.drafters import EMPTY_DRAFT, Drafter, StepPlan
from localspec.constrain import verify_constrained_greedy, verify_constrained_sampled
from localspec.events import Counters, EmittedToken, GenerationResult, StepEvent, StopReason
from localspec.grammar import Grammar, LazyGrammar
from localspec.reasoning import Reasoning
from localspec.verify import SamplingParams, logprobs_at, probs_from_logits, top2_margin, verify_greedy, verify_sampled


@dataclass
class GenerateOptions:
    max_tokens: int = 512
    sampling: SamplingParams = SamplingParams()
    stop: tuple[str, ...] = ()
    trace: bool = False
    shown_specials: frozenset[int] = frozenset()  # control tokens whose text the reply shows
    grammar: str | None = None  # GBNF the reply must match (None or "": unconstrained)
    grammar_trigger: str | None = None  # a regex: the grammar holds the reply from where it first matches
    logprobs: int | None = None  # alternatives per token to report with its logprob (None: no logprobs)
    reasoning: Reasoning | None = None  # the reply may think first: a grammar holds only its answer


class StepPlanner(Protocol):
    """Chooses, before each step, which drafter to ask and for how many tokens."""

    def plan(self, context: Sequence[int]) -> StepPlan | tuple[str, Drafter | None, int]: ...

    def record(self, event: StepEvent) -> None: ...


class Generation:
    """Iterate to run the generation; one StepEvent per verify step.

    `result` is set once iteration ends (normally, by a stop condition, or by
    `cancel` being set, which is checked between steps so the cache stays
    consistent).
    """

    def __init__(
        self,
        target: Context,
        prompt: Sequence[int],
        planner: StepPlanner,
        options: GenerateOptions,
        cancel: threading.Event | None = None,
        drafters: Sequence[Drafter] = (),
    ):
        if not prompt:
            raise ValueError("empty prompt")
        self.target = target
        self.prompt = list(prompt)
        self.planner = planner
        self.options = options
        self.cancel = cancel or threading.Event()
        self.drafters = drafters
        self.result: GenerationResult | None = None
        # Compiled here, so a grammar llama.cpp refuses is a LocalspecError before any work.
        self.grammar: Grammar | LazyGrammar | None = None
        reasoning = options.reasoning
        if options.grammar and options.grammar_trigger:
            self.grammar = LazyGrammar(target.model, options.grammar, options.grammar_trigger, reasoning=reasoning)
        elif options.grammar and reasoning:
            self.grammar = Grammar(target.model, *reasoning.around(options.grammar))
        elif options.grammar:
            self.grammar = Grammar(target.model, options.grammar)

    def __iter__(self) -> Iterator[StepEvent]:
        opts = self.options
        model = self.target.model
        counters = Counters()
        rng = np.random.default_rng(opts.sampling.seed)
        text_stream = TextStream(model, opts.shown_specials)

        grammar = self.grammar
        if grammar:
            grammar.reset()
        t0 = time.perf_counter()
        context = list(self.prompt)
        try:
            counters.n_prompt_cached = self.target.prefill(context[:-1])
        except ContextFull:
            self.result = GenerationResult("", [], "context_full", counters, [])
            return
        counters.n_prompt = len(context) - 1 - counters.n_prompt_cached
        counters.prompt_s = time.perf_counter() - t0
        for d in self.drafters:
            d.observe(context, 0)

        generated: list[int] = []
        trace: list[EmittedToken] = []
        released: list[EmittedToken] = []
        released_pieces: list[str] = []
        release = StopHoldback(opts.stop)
        stop_reason: StopReason | None = None
        gen_start = time.perf_counter()

        while stop_reason is None:
            if self.cancel.is_set():
                stop_reason = "cancelled"
                break
            remaining = opts.max_tokens - len(generated)
            room = self.target.n_ctx - len(self.target.tokens)
            if remaining <= 0:
                stop_reason = "max_tokens"
                break
            if room < 1:
                stop_reason = "context_full"
                break

            step_start = time.perf_counter()
            method, drafter, k, stop_below = StepPlan(*self.planner.plan(context))
            k = max(0, min(k, remaining - 1, room - 1))
            if self.target.max_rollback is not None:
                k = min(k, self.target.max_rollback)
            draft = drafter.propose(context, k, opts.sampling, rng, stop_below) if drafter and k else EMPTY_DRAFT
            draft_tokens = draft.tokens[:k]
            verify_start = time.perf_counter()

            rows = self.target.decode([context[-1], *draft_tokens], logits="all")
            p = None
            # Under a grammar a margin is taken among the allowed tokens, as the walk goes.
            margins: list = [] if opts.trace and grammar else None
            masks: list = [] if opts.logprobs is not None and grammar else None
            if opts.sampling.greedy and grammar:
                n_acc, next_token = verify_constrained_greedy(rows, draft_tokens, grammar, margins, masks)
            elif opts.sampling.greedy:
                n_acc, next_token = verify_greedy(rows, draft_tokens)
            elif grammar:
                p = probs_from_logits(rows, opts.sampling)
                n_acc, next_token = verify_constrained_sampled(
                    p, rows, opts.sampling, draft_tokens, grammar, rng, margins, masks
                )
            else:
                p = probs_from_logits(rows, opts.sampling)
                q = draft.probs[: len(draft_tokens)] if draft.probs is not None else None
                n_acc, next_token = verify_sampled(p, q, draft_tokens, rng)
            chosen = [*draft_tokens[:n_acc], *([] if next_token is None else [next_token])]
            if margins is None:
                margins = [top2_margin(rows[i]) for i in range(len(chosen))] if opts.trace else [None] * len(chosen)
            if opts.logprobs is not None:
                lps = logprobs_at(rows, p, chosen, opts.logprobs, masks, opts.sampling)
            else:
                lps = [(None, ())] * len(chosen)
            step_end = time.perf_counter()

            new = [
                EmittedToken(t, "draft" if i < n_acc else "target", m, lp, top)
                for i, (t, m, (lp, top)) in enumerate(zip(chosen, margins, lps))
            ]
            if next_token is None:  # the grammar allows nothing more: it has ended the reply
                stop_reason = "eog"
            emitted: list[EmittedToken] = []
            for tok in new:
                if model.is_eog(tok.id):
                    stop_reason = "eog"
                    break
                emitted.append(tok)
                if len(generated) + len(emitted) >= opts.max_tokens:
                    stop_reason = "max_tokens"
                    break

            context.extend(t.id for t in emitted)
            generated.extend(t.id for t in emitted)
            trace.extend(emitted)
            # Back to the invariant: the cache holds the context minus its newest token.
            # (A cut that recurrent state cannot make empties the cache; prefill refills it.)
            self.target.prefill(context[:-1])
            for d in self.drafters:
                d.observe(context, n_acc)

            # The loop ends after this step on these; a held-back tail is released now.
            last = (
                stop_reason is not None
                or len(generated) >= opts.max_tokens
                or len(self.target.tokens) >= self.target.n_ctx
            )
            shown, pieces, hit = release.push(emitted, [text_stream.push(t.id) for t in emitted], last)
            released.extend(shown)
            released_pieces.extend(pieces)
            if hit:
                stop_reason = "stop"
            delta = "".join(pieces)

            counters.record_step(len(draft_tokens), n_acc)
            counters.n_generated = len(generated)
            counters.draft_s += verify_start - step_start
            counters.verify_s += step_end - verify_start
            counters.gen_s = time.perf_counter() - gen_start
            event = StepEvent(
                tokens=tuple(shown),
                pieces=tuple(pieces),
                text=delta,
                method=method,
                k=k,
                drafted=len(draft_tokens),
                accepted=n_acc,
                draft_s=verify_start - step_start,
                verify_s=step_end - verify_start,
                wall_s=time.perf_counter() - step_start,
                counters=counters.snapshot(),
                source=draft.source,
                ran=draft.ran,
                work=draft.work,
            )
            self.planner.record(event)
            yield event

        counters.gen_s = time.perf_counter() - gen_start
        self.result = GenerationResult(release.text, generated, stop_reason, counters, trace, released, released_pieces)


class StopHoldback:
    """Releases generated text to the reader, holding back what a stop string may still claim.

    A stop string can start in one step and end in a later one, and text once
    streamed cannot be taken back. So the last `max(len(stop)) - 1` characters
    wait until the next step decides them (no stop strings: nothing waits).
    Tokens are released whole, with their text; the token a stop string starts
    in is released clipped, and nothing after it. On the last step everything
    left is released, so the streamed pieces always add up to `text`.
    """

    def __init__(self, stops: Sequence[str]):
        self.stops = tuple(s for s in stops if s)
        self.keep = max((len(s) for s in self.stops), default=1) - 1
        self.full = ""  # every character generated
        self.shown = 0  # characters released
        self.checked = 0  # characters already searched for stops
        self.held: list[tuple[EmittedToken, str]] = []

    @property
    def text(self) -> str:
        return self.full[: self.shown]

    def push(
        self, tokens: Sequence[EmittedToken], pieces: Sequence[str], last: bool
    ) -> tuple[list[EmittedToken], list[str], bool]:
        """Add a step's tokens; return the tokens and text released now, and whether a stop string hit."""
        self.held.extend(zip(tokens, pieces))
        self.full += "".join(pieces)
        cut = _first_stop(self.full, self.checked, self.stops) if self.stops else None
        self.checked = len(self.full)
        limit = cut if cut is not None else len(self.full) if last else len(self.full) - self.keep
        out_tokens: list[EmittedToken] = []
        out_pieces: list[str] = []
        while self.held:
            token, piece = self.held[0]
            if self.shown + len(piece) > limit:
                if cut is not None and self.shown < limit:
                    out_tokens.append(token)
                    out_pieces.append(piece[: limit - self.shown])
                    self.shown = limit
                break
            out_tokens.append(token)
            out_pieces.append(piece)
            self.shown += len(piece)
            self.held.pop(0)
        if cut is not None:
            self.held.clear()
        return out_tokens, out_pieces, cut is not None


def _first_stop(full: str, checked: int, stops: Sequence[str]) -> int | None:
    """Where the earliest stop string starts in `full`, looking only at matches
    that end after `checked` (earlier text was searched in earlier steps)."""
    hits = []
    for s in stops:
        if s:
            h = full.find(s, max(0, checked - len(s) + 1))
            if h >= 0:
                hits.append(h)
    return min(hits) if hits else None
