"""A scripted engine for the TUI tests: the `localspec.engine.Engine` surface
the app uses, replaying replies written in the test, with fixed timings so
that numbers on screen (and snapshots) are deterministic.

No tests live here; the TUI test modules import it.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from dataclasses import dataclass, field

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from localspec.errors import LocalspecError
from localspec.events import Counters, EmittedToken, GenerationResult, StepEvent
from tui.pairs import LoadRequest

VERIFY_S = 0.05
DRAFT_TOKEN_S = 0.01


def step(*pieces: str, drafted: int | None = None) -> tuple[tuple[str, ...], int]:
    """One verify step: every piece but the last came from an accepted draft
    token, the last is the target's own; `drafted` counts proposed tokens
    (default: the accepted ones plus one rejected)."""
    accepted = len(pieces) - 1
    return pieces, accepted + 1 if drafted is None else drafted


@dataclass
class ScriptedEngine:
    replies: list[list[tuple[tuple[str, ...], int]]]
    target_name: str = "scripted-target"
    draft_name: str | None = "scripted-draft"
    methods: tuple[str, ...] = ("auto", "draft", "lookup", "draft+lookup", "none")
    method: str = "draft"
    draft_max: int = 4
    auto_draft: bool = False
    auto_limit: int = 8
    auto_ceiling: int = 8  # the longest draft the planner could pick (Engine.auto_ceiling)
    long_lengths: tuple[int, ...] = ()  # lengths past 8 it could pick (measured verify sizes less one)
    plain_tokens_per_s: float | None = 10.0
    n_ctx: int = 4096
    warnings: list[str] = field(default_factory=list)
    fail_with: Exception | None = None  # raised by chat()
    final_stop: str | None = None  # stop reason when the script runs out (default "eog")
    pause_after: int | None = None  # steps after which iteration waits for `resume`
    gate: threading.Semaphore | None = None  # when set, each step waits to acquire it (tests pace steps)
    calls: list[list[dict[str, str]]] = field(default_factory=list)
    options: list = field(default_factory=list)
    steps_seen: list[tuple[str, int]] = field(default_factory=list)  # (method, k) of every step
    continuations: list[tuple[str, int]] = field(default_factory=list)  # (continuation, cut) of every chat()
    closed: bool = False
    chat_template: str | None = None  # a thinking model's shows its reasoning apart (tui.thought)

    def __post_init__(self) -> None:
        self.paused = threading.Event()
        self.resume = threading.Event()

    def render_chat(self, messages) -> str:
        if not self.chat_template:
            raise LocalspecError(f"{self.target_name} has no chat template")
        return Jinja2ChatFormatter(template=self.chat_template, eos_token="", bos_token="", add_generation_prompt=True)(
            messages=messages
        ).prompt

    def single_tokens(self, markers) -> frozenset[int]:
        return frozenset(range(len(markers)))  # stand-in ids, one per marker

    def chat_tokens(self, messages, continuation: str = "") -> list[int]:
        """A stand-in tokenizer: a token per word, three per message for the
        template, one to begin (what tui.window counts)."""
        n = 1 + sum(3 + len(m["content"].split()) for m in messages) + len(continuation.split())
        return list(range(n))

    def chat(
        self, messages, options, cancel: threading.Event | None = None, *, continuation: str = "", cut: int = 0
    ) -> ScriptedGeneration:
        if self.closed:
            raise AssertionError("chat() on a closed engine")
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append([dict(m) for m in messages])
        self.options.append(options)
        self.continuations.append((continuation, cut))
        script = self.replies[min(len(self.calls) - 1, len(self.replies) - 1)]
        return ScriptedGeneration(self, script, cancel or threading.Event())

    @property
    def auto_limits(self) -> list[int]:
        """As Engine.auto_limits: 0, every length up to 8 (or the ceiling), then the long ones."""
        return [k for k in range(self.auto_ceiling + 1) if k <= 8 or not self.long_lengths] + [
            k for k in self.long_lengths if k <= self.auto_ceiling
        ]

    def round_trips(self) -> dict[str, float] | None:
        return None  # a local target

    def close(self) -> None:
        self.closed = True


class ScriptedGeneration:
    def __init__(self, engine: ScriptedEngine, script, cancel: threading.Event):
        self.engine = engine
        self.script = script
        self.cancel = cancel
        self.result: GenerationResult | None = None

    def __iter__(self):
        eng = self.engine
        counters = Counters(n_prompt=7)
        text, tokens, trace = "", [], []
        stop = eng.final_stop or "eog"
        for i, (pieces, drafted) in enumerate(self.script):
            if self.cancel.is_set():
                stop = "cancelled"
                break
            if eng.pause_after is not None and i == eng.pause_after:
                eng.paused.set()
                while not eng.resume.wait(0.01):
                    if self.cancel.is_set():
                        break
                if self.cancel.is_set():
                    stop = "cancelled"
                    break
            if eng.gate is not None:
                while not eng.gate.acquire(timeout=0.01):
                    if self.cancel.is_set():
                        break
                if self.cancel.is_set():
                    stop = "cancelled"
                    break
            method = "lookup" if eng.method == "auto" else eng.method
            k = eng.auto_limit if eng.method == "auto" or eng.auto_draft else eng.draft_max
            eng.steps_seen.append((eng.method, k))
            accepted = len(pieces) - 1
            emitted = tuple(
                EmittedToken(len(tokens) + j, "draft" if j < accepted else "target") for j in range(len(pieces))
            )
            draft_s, wall_s = DRAFT_TOKEN_S * drafted, DRAFT_TOKEN_S * drafted + VERIFY_S
            counters.record_step(drafted, accepted)
            counters.n_generated += len(pieces)
            counters.draft_s += draft_s
            counters.verify_s += VERIFY_S
            counters.gen_s += wall_s
            tokens += [t.id for t in emitted]
            trace += emitted
            text += "".join(pieces)
            yield StepEvent(
                emitted, tuple(pieces), "".join(pieces), method, k, drafted, accepted,
                draft_s, VERIFY_S, wall_s, counters.snapshot(),
            )  # fmt: skip
        self.result = GenerationResult(text, tokens, stop, counters, trace)


def scripted_loader(engines: dict[str | None, ScriptedEngine] | ScriptedEngine, loads: list | None = None):
    """A loader for ChatApp: the engine for the request's pair or target name;
    an unknown name fails as load_engine would."""

    def load(request: LoadRequest, progress) -> ScriptedEngine:
        if loads is not None:
            loads.append(request)
        name = request.pair or request.target
        progress(f"load {name}", 0.0)
        engine = engines if isinstance(engines, ScriptedEngine) else engines.get(name)
        if engine is None:
            raise LocalspecError(f"unknown model {name!r}")
        progress(f"load {name}", 1.0)
        return engine

    return load


def async_test(fn):
    """Run an async test on a fresh event loop (no pytest async plugin needed)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        asyncio.run(fn(*args, **kwargs))

    return run
