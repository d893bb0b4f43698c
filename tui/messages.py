"""What the worker threads tell the UI thread.

Workers never touch a widget: they post these messages (thread-safe, and
never blocking the engine on the UI) and the app's handlers, on the UI
thread, change the screen. A generation's steps do not come as messages
(one per step would wake the UI per step): they go into the app's StepFeed,
which the UI drains on a timer; only the end of a reply is a message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

from localspec.events import GenerationResult

if TYPE_CHECKING:
    from tui.reply import ReplyView


class LoadProgress(Message):
    def __init__(self, stage: str, fraction: float):
        super().__init__()
        self.stage = stage  # "fetch NAME", "load NAME", "calibrate"
        self.fraction = fraction


class EngineReady(Message):
    pass


class LoadFailed(Message):
    def __init__(self, error: str):
        super().__init__()
        self.error = error


class ReplyDone(Message):
    def __init__(self, reply: ReplyView, result: GenerationResult):
        super().__init__()
        self.reply = reply
        self.result = result


class RoundTrips(Message):
    """After a reply over RPC: seconds of one request-reply to each rpc-server."""

    def __init__(self, seconds: dict[str, float]):
        super().__init__()
        self.seconds = seconds


class ReplyFailed(Message):
    def __init__(self, reply: ReplyView, error: str):
        super().__init__()
        self.reply = reply
        self.error = error


class WindowMoved(Message):
    """The oldest turns left the model's context: it now begins at history[start]."""

    def __init__(self, start: int):
        super().__init__()
        self.start = start


class TooLong(Message):
    """The turn does not fit the context, so no reply was asked for."""

    def __init__(self, reply: ReplyView, n_prompt: int, n_ctx: int):
        super().__init__()
        self.reply = reply
        self.n_prompt = n_prompt
        self.n_ctx = n_ctx
