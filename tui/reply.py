"""The conversation's messages: what the user sent and what the model replied.

A reply has two faces. As token text (tui.tokenlog) every token is coloured
by its origin: accepted from a draft, or produced by the target itself; it
appends, drawing only the rows new tokens touched. As Markdown it streams its
deltas through MarkdownStream, which re-parses only the last block, and is
rendered once more, whole, when it ends (a code fence split across deltas is
only right in the full render). Steps arrive in batches (tui.app flushes a
few times a second), each batch one append. The Markdown face is kept up to
date only while on show and rebuilt when it is toggled in; the token text
always takes the text (it wraps and draws only while shown).
"""

from __future__ import annotations

from typing import Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from localspec.events import Counters, StepEvent
from localspec.reasoning import Reasoning, ReasoningSplit
from tui.store import Runs, StoredMessage
from tui.thought import reasoning_in, split_reply, stats_of
from tui.tokenlog import DRAFT, TARGET, TokenLog

# A streaming reply's height grows a page at a time (see tui.tokenlog): the
# conversation's height less the note line and KEEP_ROWS rows of what came
# before, so its last lines stay in view when the page turns; MIN_PAGE rows at least.
KEEP_ROWS = 4
MIN_PAGE = 3


class UserMessage(Static):
    DEFAULT_CSS = """
    UserMessage {
        margin: 1 8 0 0;
        padding: 0 1;
        background: $boost;
        border-left: thick $primary;
    }
    """

    def __init__(self, text: str, message_id: int | None = None):
        super().__init__(Content(text), markup=False)
        self.text = text
        self.message_id = message_id


class MemoryMark(Static):
    """Where the model's memory begins: the turns above it have left its
    context (the rolling window, tui.window); they stay here and in the history."""

    DEFAULT_CSS = """
    MemoryMark {
        margin: 1 0 0 0;
        color: $text-muted;
        text-align: center;
    }
    """

    def __init__(self) -> None:
        text = "── the model's memory begins here: the turns above have left its context ──"
        super().__init__(text, markup=False)


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


class Notice(Static):
    """What the chat itself has to say (the history is not being saved, the
    context is full …), in the conversation where it happened, not in a toast."""

    DEFAULT_CSS = """
    Notice {
        margin: 1 8 0 0;
        padding: 0 1;
        color: $text-warning;
        border-left: thick $warning;
    }
    """

    def __init__(self, text: str):
        super().__init__(Content(text), markup=False)
        self.text = text


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
    ReplyView > #thinking {
        margin: 0 1 1 1;
        border-left: outer $foreground 20%;
        color: $text-muted;
    }
    ReplyView > #note {
        color: $text-muted;
        padding: 0 1;
    }
    ReplyView.-cancelled > #note {
        color: $text-warning;
    }
    """

    def __init__(self, show_sources: bool, message: StoredMessage | None = None, reasoning: Reasoning | None = None):
        """`reasoning`: how a new reply may reason (a stored one's is in its stats)."""
        super().__init__()
        self.show_sources = show_sources
        self.message_id: int | None = message.id if message else None
        self.text = message.content if message else ""
        self.reasoning = reasoning_in(message.stats) if message else reasoning
        self._split: ReasoningSplit | None = None  # while it streams, its reasoning told from its answer
        self.runs: list[list[str]] = []
        self.stop_reason: str | None = message.stop_reason if message else None
        self.stats: dict | None = message.stats if message else None
        self.streaming = message is None
        self.prefix = ""  # the text it had when a continuation began (resume)
        self.hint = ""  # what to do next, on the note line (a full context: the key that continues)
        self.methods: list[str] = []  # drafting methods the steps used, in order of first use
        if message is not None:
            self._runs_from_stored(message.content, message.sources)
        self._stream: MarkdownStream | None = None
        self._thinking_stream: MarkdownStream | None = None
        # Held, not queried: a reply that ends while the app quits still takes its last steps.
        self._tokens = TokenLog((text, origin) for text, origin in self.runs)
        self._tokens.block = MIN_PAGE if self.streaming else 1
        thinking, answer = self._parts() if not show_sources else ("", "")
        # Only a reply that reasons has the block, mounted when its reasoning first shows.
        self._thinking: Markdown | None = Markdown(thinking, id="thinking") if thinking else None
        self._markdown = Markdown(answer)
        self._note_line = Static(self._note(), id="note", markup=False)

    def compose(self) -> ComposeResult:
        if self._thinking is not None:
            yield self._thinking
        yield self._markdown
        yield self._tokens
        yield self._note_line

    def on_mount(self) -> None:
        self._show(self.show_sources)
        self.set_class(self.stop_reason == "cancelled", "-cancelled")

    def absorb(self, events: Sequence[StepEvent]) -> str:
        """Take a batch of steps into the text, its origins and the token face;
        return the text they added."""
        pieces = []
        for event in events:
            if event.method not in self.methods:
                self.methods.append(event.method)
            for token, piece in zip(event.tokens, event.pieces):
                if piece:
                    origin = DRAFT if token.source == "draft" else TARGET
                    self._append(piece, origin)
                    pieces.append((piece, origin))
        delta = "".join(event.text for event in events)
        self.text += delta
        if self.streaming:
            self._size_page()  # before the first rows, and again after a resize
        self._tokens.append(pieces)
        return delta

    async def add_steps(self, events: Sequence[StepEvent]) -> None:
        before = self.text
        delta = self.absorb(events)
        thinking = ""
        if self.reasoning is not None and delta:
            if self._split is None:
                self._split = self.reasoning.split()
                self._split.push(before)  # (a continued reply: where its text had got to)
            thinking, delta = self._split.push(delta)
        if self.show_sources:
            return
        if thinking:
            if self._thinking_stream is None:
                self._thinking_stream = Markdown.get_stream(await self._thinking_face())
            await self._thinking_stream.write(thinking)
        if delta:
            if self._stream is None:
                self._stream = Markdown.get_stream(self._markdown)
            await self._stream.write(delta)

    async def resume(self) -> None:
        """Stream again, after its text: a reply the full context stopped, continued."""
        self._split = None
        self.prefix = self.text
        ended = self._parts()
        self.streaming = True
        self._tokens.block = MIN_PAGE
        self.set_hint("")
        if not self.show_sources and self._parts() != ended:
            await self._render_whole()  # a cut tag ("</th") is held back again: the rest of it may come

    def set_hint(self, hint: str) -> None:
        self.hint = hint
        self._note_line.update(self._note())

    async def finish(self, text: str, stop_reason: str, counters: Counters | None, hint: str = "") -> None:
        """The reply has ended (`counters`: of this generation; None keeps the stats it had)."""
        self.streaming = False
        self._tokens.block = 1
        self.text = text
        self.stop_reason = stop_reason
        self.hint = hint
        if counters is not None:
            self.stats = self.stats_from(counters)
        self._split = None
        await self._stop_stream()
        if not self.show_sources:
            await self._render_whole()
        self.set_class(stop_reason == "cancelled", "-cancelled")
        self._note_line.update(self._note())

    async def set_show_sources(self, show: bool) -> None:
        if show == self.show_sources:
            return
        self.show_sources = show
        await self._stop_stream()
        if not show:
            await self._render_whole()
        self._show(show)

    def stats_from(self, counters: Counters) -> dict:
        """What is stored with the reply: its generation's counters, methods and how it reasoned."""
        return counters.to_dict() | {"methods": self.methods} | stats_of(self.reasoning)

    def _parts(self) -> tuple[str, str]:
        """The Markdown face's texts: the reasoning, the answer."""
        return split_reply(self.text, self.reasoning, ended=not self.streaming)

    async def _render_whole(self) -> None:
        thinking, answer = self._parts()
        if thinking or self._thinking is not None:
            face = await self._thinking_face()
            face.display = bool(thinking)
            await face.update(thinking)
        await self._markdown.update(answer)

    async def _thinking_face(self) -> Markdown:
        if self._thinking is None:
            self._thinking = Markdown(id="thinking")
            await self.mount(self._thinking, before=self._markdown)
        self._thinking.display = True
        return self._thinking

    def _size_page(self) -> None:
        view = self.parent.scrollable_content_region.height if isinstance(self.parent, Widget) else 0
        self._tokens.block = max(MIN_PAGE, view - 1 - KEEP_ROWS)

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
        self._markdown.display = not sources
        if self._thinking is not None:
            self._thinking.display = not sources and bool(self._thinking.source)
        tokens = self._tokens
        tokens.display = sources
        tokens.refresh(layout=True)

    async def _stop_stream(self) -> None:
        for stream in (self._stream, self._thinking_stream):
            if stream is not None:
                await stream.stop()
        self._stream = self._thinking_stream = None

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
        if self.hint:  # right after why it stopped: what to do about it
            parts.append(self.hint)
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
