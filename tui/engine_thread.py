"""What passes between the engine's threads and the chat's UI thread.

The engine loads and generates in thread workers (tui.app); they never touch
a widget. Steps cross in a StepFeed, the loader is a plain function, and
while a reply streams the garbage collector leaves alone the heap that existed
before it. Nothing here knows the app.
"""

from __future__ import annotations

import gc
from collections import deque
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable

from localspec.events import StepEvent
from tui.pairs import LoadRequest

if TYPE_CHECKING:
    from localspec.engine import Engine

Progress = Callable[[str, float], None]
Loader = Callable[[LoadRequest, Progress], "Engine"]


class StepFeed:
    """Steps on their way from the engine thread to the UI thread.

    deque.append and popleft are atomic, so the engine appends without a
    lock or a wake-up, and the UI takes what is there when its timer fires.
    """

    def __init__(self) -> None:
        self._steps: deque[StepEvent] = deque()
        self.put = self._steps.append

    def __len__(self) -> int:
        return len(self._steps)

    def take(self) -> list[StepEvent]:
        steps = []
        while self._steps:
            steps.append(self._steps.popleft())
        return steps


@contextmanager
def heap_frozen():
    """Keep the cyclic garbage collector off what existed before a reply.

    A full collection walks every object in the process (the model's, Textual's,
    the conversation's): on a 2-core machine about 60 ms of the UI thread, or of
    the generation thread, whichever allocates when one falls due, once or twice
    a reply. While a reply streams, collections look only at what it creates;
    afterwards everything is collected as usual (freeze and unfreeze only move
    lists, so a cycle made garbage meanwhile is freed at a later collection).
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def load_with_engine(request: LoadRequest, progress: Progress) -> Engine:
    from localspec.engine import load_engine

    return load_engine(**request.load_kwargs(), progress=progress)
