"""The engine's one thread: requests run one at a time, in arrival order.

The engine is not thread-safe, so every call into it happens here. The event
loop submits a `Job` (a function that starts a Generation) and reads what the
thread posts back onto the job's asyncio queue with `call_soon_threadsafe`:

    ("step", text, tokens)              a text delta and its EmittedTokens (streaming jobs only)
    ("done", result, methods, n_prompt)  GenerationResult, steps per drafter, prompt tokens
    ("invalid", LocalspecError)         the request cannot be served (400)
    ("unavailable", RemoteLost)         the target's rpc-servers are gone (503, until they are back)
    ("error", Exception)                a bug (500)

Setting `job.cancel` stops a running generation at its next step (the
Generation checks it between steps, so the KV cache stays consistent) and makes
a job still waiting in the queue be skipped.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from localspec.engine import Engine
from localspec.errors import LocalspecError
from localspec.generate import Generation
from localspec.rpc import RemoteLost
from localspec.server.stats import Metrics

Start = Callable[[Engine, threading.Event], Generation]


class QueueFull(Exception):
    """More requests are waiting than the queue holds."""


@dataclass
class Job:
    start: Start
    loop: asyncio.AbstractEventLoop
    stream: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)
    out: asyncio.Queue = field(default_factory=asyncio.Queue)

    def post(self, *item: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)
        except RuntimeError:
            pass  # the event loop is gone: the server is shutting down


class Worker:
    """Owns the engine; `max_waiting` requests may wait behind the running one."""

    def __init__(self, engine: Engine, max_waiting: int, metrics: Metrics | None = None):
        self.engine = engine
        self.max_waiting = max_waiting
        self.metrics = metrics or Metrics()
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._pending = 0  # submitted and not finished, the running one included
        self._current: Job | None = None
        self._thread = threading.Thread(target=self._run, name="localspec-engine", daemon=True)

    @property
    def running(self) -> int:
        return 1 if self._current is not None else 0

    @property
    def waiting(self) -> int:
        with self._lock:
            return max(0, self._pending - self.running)

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._pending > self.max_waiting:
                raise QueueFull
            self._pending += 1
        self._jobs.put(job)

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel what runs, drop what waits, close the engine (in its thread)."""
        current = self._current
        if current is not None:
            current.cancel.set()
        self._jobs.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while (job := self._jobs.get()) is not None:
                try:
                    if job.cancel.is_set():
                        self.metrics.add(requests_cancelled=1)
                        job.post("invalid", LocalspecError("the client went away before its turn"))
                    else:
                        with self._lock:
                            self._current = job
                        self._serve(job)
                finally:
                    with self._lock:
                        self._current = None
                        self._pending -= 1
            # Shutting down: whoever still waits is told so.
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job.post("error", RuntimeError("the server is shutting down"))
        finally:
            self.engine.close()

    def _serve(self, job: Job) -> None:
        methods: Counter[str] = Counter()
        try:
            gen = job.start(self.engine, job.cancel)
            for event in gen:
                methods[event.method] += 1
                if job.stream and (event.text or event.tokens):
                    job.post("step", event.text, event.tokens)
            result = gen.result
            assert result is not None
        except RemoteLost as e:
            self.metrics.add(errors=1)
            job.post("unavailable", e)
            return
        except LocalspecError as e:
            job.post("invalid", e)
            return
        except Exception as e:  # a bug: say so in the log, answer 500, keep serving
            traceback.print_exc(file=sys.stderr)
            self.metrics.add(errors=1)
            job.post("error", e)
            return
        self.metrics.record(result, len(gen.prompt))
        job.post("done", result, dict(methods), len(gen.prompt))
