"""The conversation's messages: what the user sent and what the model replied.

A reply has two faces. As Markdown it streams its deltas and is rendered
once more, whole, when it ends (a code fence split across deltas is only
right in the full render). As token text every token is coloured by its
origin: accepted from a draft, or produced by the target itself. Only the
face on show is kept up to date; the other is rebuilt when it is toggled in.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from localspec.events import Counters, StepEvent
from tui.store import Runs, StoredMessage

DRAFT, TARGET = "d", "t"


class UserMessage(Static):
    DEFAULT_CSS = """
    UserMessage {
        margin: 1 8 0 0;
        padding: 0 1;
        background: $boost;
        border-left: thick $primary;
    }
    """

    def __init__(self, text: str):
        super().__init__(Content(text), markup=False)
        self.text = text


class SystemNote(Static):
    """The chat's system prompt, above the first message; hidden when there is none."""

    DEFAULT_CSS = """
    SystemNote {
        margin: 1 8 0 0;
        padding: 0 1;
        color: $text-muted;
        border-left: thick $warning 50%;
    }
    """

    def __init__(self, system: str):
        super().__init__(markup=False)
        self.show(system)

    def show(self, system: str) -> None:
        self.update(Content.assemble(("system  ", "bold"), system))
        self.display = bool(system)


class TokenText(Widget):
    """Reply text with each token styled by where it came from."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"token--draft", "token--target"}
    DEFAULT_CSS = """
    TokenText {
        height: auto;
        padding: 0 1;
    }
    TokenText > .token--draft {
        color: $text-success;
        background: $success 12%;
    }
    TokenText > .token--target {
        color: $foreground;
    }
    """

    def __init__(self, runs: list[list[str]]):
        super().__init__()
        self.runs = runs  # [text, DRAFT|TARGET], adjacent runs of one origin merged; shared with the reply

    def render(self) -> Content:
        styles = {
            DRAFT: self.get_visual_style("token--draft", partial=True),
            TARGET: self.get_visual_style("token--target", partial=True),
        }
        return Content.assemble(*((text, styles[origin]) for text, origin in self.runs))


class ReplyView(Vertical, can_focus=True):
    """One assistant reply; focus it (click or Tab) to make it the one copied."""

    DEFAULT_CSS = """
    ReplyView {
        height: auto;
        margin: 1 0 0 0;
        border-left: thick $success 40%;
    }
    ReplyView:focus {
        border-left: thick $success;
        background: $boost;
    }
    ReplyView Markdown {
        margin: 0;
        padding: 0 1;
    }
    ReplyView > #note {
        color: $text-muted;
        padding: 0 1;
    }
    ReplyView.-cancelled > #note {
        color: $text-warning;
    }
    """

    def __init__(self, show_sources: bool, message: StoredMessage | None = None):
        super().__init__()
        self.show_sources = show_sources
        self.message_id: int | None = message.id if message else None
        self.text = message.content if message else ""
        self.runs: list[list[str]] = []
        self.stop_reason: str | None = message.stop_reason if message else None
        self.stats: dict | None = message.stats if message else None
        self.streaming = message is None
        self.methods: list[str] = []  # drafting methods the steps used, in order of first use
        if message is not None:
            self._runs_from_stored(message.content, message.sources)
        self._stream: MarkdownStream | None = None

    def compose(self) -> ComposeResult:
        yield Markdown(self.text if not self.show_sources else "")
        yield TokenText(self.runs)
        yield Static(self._note(), id="note", markup=False)

    def on_mount(self) -> None:
        self._show(self.show_sources)
        self.set_class(self.stop_reason == "cancelled", "-cancelled")

    async def add_step(self, event: StepEvent) -> None:
        if event.method not in self.methods:
            self.methods.append(event.method)
        for token, piece in zip(event.tokens, event.pieces):
            self._append(piece, DRAFT if token.source == "draft" else TARGET)
        self.text += event.text
        if self.show_sources:
            self.query_one(TokenText).refresh(layout=True)
        elif event.text:
            if self._stream is None:
                self._stream = Markdown.get_stream(self.query_one(Markdown))
            await self._stream.write(event.text)

    async def finish(self, text: str, stop_reason: str, counters: Counters) -> None:
        self.streaming = False
        self.text = text
        self.stop_reason = stop_reason
        self.stats = counters.to_dict() | {"methods": self.methods}
        await self._stop_stream()
        if not self.show_sources:
            await self.query_one(Markdown).update(self.text)
        self.query_one(TokenText).refresh(layout=True)
        self.set_class(stop_reason == "cancelled", "-cancelled")
        self.query_one("#note", Static).update(self._note())

    async def set_show_sources(self, show: bool) -> None:
        if show == self.show_sources:
            return
        self.show_sources = show
        await self._stop_stream()
        if not show:
            await self.query_one(Markdown).update(self.text)
        self._show(show)

    def sources(self) -> Runs:
        return tuple((len(text), origin) for text, origin in self.runs)

    def _append(self, piece: str, origin: str) -> None:
        if not piece:
            return
        if self.runs and self.runs[-1][1] == origin:
            self.runs[-1][0] += piece
        else:
            self.runs.append([piece, origin])

    def _runs_from_stored(self, text: str, sources: Runs | None) -> None:
        at = 0
        for n, origin in sources or ():
            self._append(text[at : at + n], origin)
            at += n
        self._append(text[at:], TARGET)  # no sources stored: all the target's

    def _show(self, sources: bool) -> None:
        self.query_one(Markdown).display = not sources
        token_text = self.query_one(TokenText)
        token_text.display = sources
        token_text.refresh(layout=True)

    async def _stop_stream(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await stream.stop()

    def _note(self) -> str:
        if self.streaming:
            return "…"
        parts = []
        if self.stop_reason == "cancelled":
            parts.append("⏹ cancelled")
        elif self.stop_reason == "context_full":
            parts.append("context full")
        elif self.stop_reason == "max_tokens":
            parts.append("max tokens reached")
        if not self.text:
            parts.append("empty reply")
        if self.stats:
            s = self.stats
            parts.append(f"{s['n_generated']} tokens · {s['tokens_per_s']:.1f} tok/s")
            if s.get("drafted"):
                parts.append(f"{s['acceptance_rate']:.0%} of drafts accepted")
            if s.get("methods"):
                parts.append(" + ".join(s["methods"]))
        return " · ".join(parts)
