"""`localspec chat`: a chat that shows speculative decoding at work.

Threads: the engine loads and generates in thread workers; they never touch
a widget and never wait for the UI. A generation puts its steps in a
`StepFeed` (a deque: an append, nothing more) and posts one message when it
ends; loading posts messages (tui.messages). On the UI thread a timer takes
whatever steps have arrived FLUSH_S apart and draws them as one batch: one
append to the reply; or, every STATS_S, the stats panel (see `_flush`). The UI's
work per second is then bounded whatever the engine's speed, and on a CPU
whose cores llama.cpp's threads keep busy every ms of it is a ms taken from
decoding. `_engine_lock` is held by whoever uses the engine (a generation,
a swap, the shutdown), so the engine is never closed under a step in progress.

What crosses between the threads (the feed, the loader) is tui.engine_thread's;
the key plumbing (ids, remaps, help, palette) is tui.keys's KeyedApp; what
each key does is ChatApp's own, in its last section.
"""

from __future__ import annotations

import re
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Header, Label, ProgressBar

from localspec.errors import LocalspecError
from localspec.events import StepEvent
from localspec.generate import GenerateOptions
from localspec.reasoning import Reasoning
from localspec.verify import SamplingParams
from tui.engine_thread import Loader, StepFeed, heap_frozen, load_with_engine
from tui.footer import KeyFooter
from tui.keys import KeyedApp
from tui.messages import (
    EngineReady,
    LoadFailed,
    LoadProgress,
    ReplyDone,
    ReplyFailed,
    RoundTrips,
    TooLong,
    WindowMoved,
)
from tui.pairs import LoadRequest, PairChoice, pair_choices
from tui.prompt import Prompt
from tui.reply import MemoryMark, Notice, ReplyView, SystemNote, UserMessage
from tui.screen import ChatScreen
from tui.screens import ExportScreen, HistoryScreen, PairPickerScreen, SettingsScreen
from tui.stats import StatsPanel
from tui.store import ChatSettings, ChatStore, Conversation, title_for, to_markdown
from tui.thought import reasoning_of, shown_tags
from tui.window import ROLLING, Turn, choose

if TYPE_CHECKING:
    from localspec.engine import Engine

STAGES = {"fetch": "fetching", "load": "loading", "calibrate": "measuring decode speed"}
MAX_DRAFT = 16


class ChatApp(KeyedApp):
    TITLE = "localspec"
    CSS_PATH = "chat.tcss"
    FLUSH_S = 1 / 10  # a tick draws the reply's text or the panel: text 8-10 times a second
    STATS_S = 0.5  # the panel: twice a second is enough to watch
    KEYED_WIDGETS = (Prompt,)
    BINDINGS = [
        Binding("escape", "cancel", "Stop", id="cancel", tooltip="Stop the reply (kept, marked)"),
        # While the prompt holds text, check_action disables these and the
        # prompt takes + and - as characters (see Prompt._on_key).
        Binding("plus", "draft_more", "k+1", id="draft_more", tooltip="Draft one token more per step"),
        Binding("minus", "draft_less", "k−1", id="draft_less", tooltip="Draft one token less per step"),
        Binding("ctrl+g", "auto_draft", "Auto k", id="auto_draft", tooltip="Toggle automatic draft length"),
        Binding("ctrl+f", "cycle_method", "Method", id="cycle_method", tooltip="Cycle the drafting method"),
        Binding("ctrl+t", "toggle_sources", "Colours", id="toggle_sources", tooltip="Colour tokens by origin / Markdown"),
        Binding("ctrl+n", "new_chat", "New", id="new_chat", show=False, tooltip="Start a new chat"),
        Binding("f5", "continue_reply", "Continue", id="continue_reply", show=False, tooltip="Continue a reply the full context stopped"),
        Binding("ctrl+r", "regenerate", "Regenerate", id="regenerate", show=False, tooltip="Regenerate the last reply"),
        Binding("ctrl+o", "copy_reply", "Copy", id="copy_reply", show=False, tooltip="Copy the focused or last reply"),
        Binding("ctrl+s", "export", "Export", id="export", show=False, tooltip="Export the chat to Markdown"),
        Binding("f2", "chats", "Chats", id="chats", show=False, tooltip="Open a past chat"),
        Binding("f3", "pairs", "Pairs", id="pairs", show=False, tooltip="Load another model pair"),
        Binding("f4", "settings", "Settings", id="settings", show=False, tooltip="System prompt, temperature, top-p"),
        Binding("f1", "help", "Help", id="help", tooltip="Show every key"),
        Binding("ctrl+q", "quit", "Quit", id="quit", show=False, priority=True, tooltip="Quit"),
    ]

    def __init__(
        self,
        request: LoadRequest,
        *,
        loader: Loader = load_with_engine,
        store: ChatStore | None = None,
        choices: Callable[[str | None], list[PairChoice]] = pair_choices,
        keymap_file: Path | None = None,
    ):
        super().__init__()
        self.request = request
        self.loader = loader
        self.store = store or ChatStore()
        self.choices = choices
        self.keymap_file = keymap_file
        self.keymap: dict[str, str] = {}
        self.engine: Engine | None = None
        self.reasoning: Reasoning | None = None  # how the loaded model's replies may reason (tui.thought)
        self._think_tags: frozenset[int] = frozenset()  # their tags' ids, shown in the reply
        self.loading = False
        self.settings = ChatSettings()
        self.conversation: Conversation | None = None
        self.reply: ReplyView | None = None  # the one streaming, if any
        self.show_sources = True
        self._engine_lock = threading.Lock()
        self._cancel = threading.Event()
        self._closing = False
        self._feed = StepFeed()
        self._unshown: list[StepEvent] = []  # taken from the feed, not drawn yet
        self._text_last = False  # whether the last tick drew text (then the panel's turn)
        self._stats_at = 0.0
        self.clock = time.monotonic
        self.flushes = 0  # batches drawn (the tests count them)
        self._blink = True
        self._history_ids: list[int] = []  # the messages of the turn being answered, by index
        self._ui_cpu_at = self._ui_wall_at = 0.0  # this (the UI) thread's CPU time, and the clock, when the reply began

    def get_default_screen(self) -> ChatScreen:
        return ChatScreen(id="_default")

    def compose(self) -> ComposeResult:
        self.chat_view = VerticalScroll(id="conversation")
        self.prompt = Prompt(id="prompt")
        self.stats = StatsPanel(id="stats")
        yield Header(show_clock=False)
        with Horizontal(id="body"):
            with Vertical(id="chat"):
                yield self.chat_view
                with Horizontal(id="loadbar"):
                    yield Label(id="load-stage")
                    yield ProgressBar(total=1.0, show_eta=False, id="load-progress")
                yield self.prompt
            yield self.stats
        yield KeyFooter(compact=True)

    async def on_mount(self) -> None:
        self.apply_keymap()
        keys = {b: self.key_for(b) for b in ("send", "newline", "help")}
        self.prompt.placeholder = f"Message · {keys['send']} sends · {keys['newline']} new line · {keys['help']} keys"
        self.chat_view.anchor()
        self._flusher = self.set_interval(self.FLUSH_S, self._flush, pause=True)
        # The most recent chat, unless another running chat has it open: then this one starts anew.
        elsewhere = self.store.open_elsewhere()
        recent = next((c for c in self.store.conversations() if c.id not in elsewhere), None)
        if recent is not None:
            await self._open_conversation(recent.id)
        self.say_store_notices()
        self._start_load(self.request)
        self.prompt.focus()

    def on_unmount(self) -> None:
        self._cancel.set()
        with self._engine_lock:  # waits for a step in progress to end
            self._closing = True
            engine, self.engine = self.engine, None
        if self.reply is not None:
            self.reply.absorb(self._unshown + self._feed.take())
            if self.reply.text:
                self._save_reply(self.reply, "cancelled", self.stats.latest_counters)
        if engine is not None:
            engine.close()
        self.store.close()

    # -- the engine: load, generate -------------------------------------------------

    def _start_load(self, request: LoadRequest) -> None:
        self.loading = True
        self.sub_title = f"loading {request.describe()}…"
        self.on_load_progress(LoadProgress("load", 0.0))
        self._load(request)

    @work(thread=True, group="engine", exit_on_error=False)
    def _load(self, request: LoadRequest) -> None:
        with self._engine_lock:
            old, self.engine = self.engine, None
        if old is not None:
            old.close()
        try:
            engine = self.loader(request, lambda stage, f: self.post_message(LoadProgress(stage, f)))
        except LocalspecError as e:
            self.post_message(LoadFailed(str(e)))
            return
        except Exception as e:  # a loader bug is shown, not a crash of the whole app
            self.log.error(traceback.format_exc())
            self.post_message(LoadFailed(f"{type(e).__name__}: {e}"))
            return
        reasoning = reasoning_of(engine)
        tags = shown_tags(engine, reasoning)
        with self._engine_lock:
            if self._closing:
                engine.close()
                return
            self.engine, self.reasoning, self._think_tags = engine, reasoning, tags
        self.post_message(EngineReady())

    @work(thread=True, group="generate", exit_on_error=False)
    def _generate(self, turn: Turn, options: GenerateOptions, reply: ReplyView, feed: StepFeed) -> None:
        cancel = self._cancel
        with self._engine_lock:
            engine = self.engine
            if engine is None:
                self.post_message(ReplyFailed(reply, "no model loaded"))
                return
            try:
                # Which turns the model sees (tui.window): tokenizing the conversation
                # a few times, here rather than on the UI thread.
                window = choose(engine, turn)
                if window.n_prompt >= engine.n_ctx:
                    self.post_message(TooLong(reply, window.n_prompt, engine.n_ctx))
                    return
                if window.start != turn.start:
                    self.post_message(WindowMoved(window.start))
                messages = turn.messages(window.start)
                with heap_frozen():
                    generation = engine.chat(messages, options, cancel, continuation=turn.continuation, cut=window.cut)
                    for event in generation:
                        feed.put(event)
                assert generation.result is not None
                self.post_message(ReplyDone(reply, generation.result))
                # Measured after the reply, outside its timings: the panel's network line.
                if (seconds := engine.round_trips()) is not None:
                    self.post_message(RoundTrips(seconds))
            except LocalspecError as e:
                self.post_message(ReplyFailed(reply, str(e)))
            except Exception as e:
                self.log.error(traceback.format_exc())
                self.post_message(ReplyFailed(reply, f"{type(e).__name__}: {e}"))

    def on_load_progress(self, message: LoadProgress) -> None:
        verb, _, what = message.stage.partition(" ")
        self.query_one("#load-stage", Label).update(" ".join(filter(None, (STAGES.get(verb, verb), what))) + "…")
        bar = self.query_one(ProgressBar)
        # The engine reports stage starts (0) and ends (1): in between, a pulse,
        # except while it times decoding: an animation then would be measured too.
        pulse = message.fraction == 0 and verb != "calibrate"
        bar.update(total=None if pulse else 1.0, progress=message.fraction)
        self.query_one("#loadbar").display = True

    def on_engine_ready(self, _: EngineReady) -> None:
        self.loading = False
        self.query_one("#loadbar").display = False
        for warning in getattr(self.engine, "warnings", ()):
            self.notify(warning, title="Set-up", severity="warning", timeout=15)
        self._show_settings()

    def on_load_failed(self, message: LoadFailed) -> None:
        self.loading = False
        self.query_one("#loadbar").display = False
        self.sub_title = f"no model loaded · {self.key_for('pairs')} picks a pair"
        self.notify(message.error, title="Model failed to load", severity="error", timeout=20)

    async def _flush(self, final: bool = False) -> None:
        """Draw what arrived since the last tick: the reply's new text, or the panel.

        Never both in one tick: Textual redraws the box around everything dirty
        in a frame, and the reply's last row (bottom left) with the panel (top
        right) is nearly the whole screen; apart, each is a strip. When both
        are due they take turns, so neither waits more than a tick.
        """
        reply = self.reply
        if reply is None:
            return
        steps = self._feed.take()
        self.stats.add_steps(steps)  # counted now, drawn below
        self._unshown += steps
        now = self.clock()
        panel = self.stats.pending and (final or now - self._stats_at >= self.STATS_S)
        text = bool(self._unshown) and (final or not (panel and self._text_last))
        with self.batch_update():  # one frame per tick
            if text:
                steps, self._unshown = self._unshown, []
                self.flushes += 1
                await reply.add_steps(steps)
            if panel and (final or not text):
                self._stats_at = now
                self.stats.draw_steps(self._plain_rate(), now)
        self._text_last = text

    def _streaming(self, on: bool) -> None:
        """The flush timer runs only while a reply streams. The prompt's cursor
        does not blink meanwhile: each blink is a screen update, as dear as a flush."""
        if on:
            self._ui_cpu_at, self._ui_wall_at = time.thread_time(), time.monotonic()
            self._flusher.resume()
            self._blink, self.prompt.cursor_blink = self.prompt.cursor_blink, False
        else:
            self._flusher.pause()
            self.prompt.cursor_blink = self._blink

    def _plain_rate(self) -> float | None:
        return self.engine.plain_tokens_per_s if self.engine is not None else None

    async def on_reply_done(self, message: ReplyDone) -> None:
        result, reply = message.result, message.reply
        if reply is self.reply:
            await self._flush(final=True)
        self._streaming(False)
        full = result.stop_reason == "context_full"
        hint = self.continue_hint() if full else ""
        # A continuation cancelled before its first token keeps what the reply was.
        stop = result.stop_reason if result.text or not reply.prefix else reply.stop_reason or result.stop_reason
        await reply.finish(reply.prefix + result.text, stop, result.counters, hint)
        plain = self._plain_rate()
        if reply.stats is not None:
            # What the panel compared with, and the share of a core the UI thread
            # took from decoding while the reply streamed (scripts/chat_speed.py reads both).
            reply.stats["plain_tokens_per_s"] = plain
            wall = time.monotonic() - self._ui_wall_at
            reply.stats["ui_cpu_share"] = (time.thread_time() - self._ui_cpu_at) / wall if wall > 0 else None
        self.stats.show_counters(result.counters, plain)
        if result.stop_reason == "cancelled" and not reply.text:
            await reply.remove()
            self.reply = None
        else:
            self._save_reply(reply, stop, None)
        if full and not hint:
            await self.say_context_full()
        self.refresh_bindings()

    def on_round_trips(self, message: RoundTrips) -> None:
        self.stats.show_round_trips(message.seconds)

    async def on_reply_failed(self, message: ReplyFailed) -> None:
        await self._drop_reply(message.reply)
        self.notify(message.error, title="Reply failed", severity="error", timeout=15)

    async def _drop_reply(self, reply: ReplyView) -> None:
        """A reply that never started: gone, or a continuation back as it was."""
        self._streaming(False)
        self._feed.take()
        self._unshown = []
        if reply.prefix:
            await reply.finish(reply.prefix, reply.stop_reason or "context_full", None)
        else:
            await reply.remove()
        self.reply = None
        self.refresh_bindings()

    async def say(self, text: str) -> None:
        """A line from the chat itself, in the conversation (not a toast)."""
        await self.chat_view.mount(Notice(text))
        self.chat_view.anchor()

    def _save_reply(self, reply: ReplyView, stop_reason: str, counters) -> None:
        if self.conversation is not None and (reply.message_id is None or reply.prefix):
            stats = reply.stats or (reply.stats_from(counters) if counters else None)
            if reply.message_id is None:
                stored = self.store.add_message(
                    self.conversation.id, "assistant", reply.text,
                    stop_reason=stop_reason, sources=reply.sources(), stats=stats,
                )  # fmt: skip
                reply.message_id = stored.id
            else:  # a continuation: the same message, grown
                self.store.update_message(
                    reply.message_id, reply.text, stop_reason=stop_reason, sources=reply.sources(), stats=stats
                )
            self.say_store_notices()
        if reply is self.reply:
            self.reply = None

    def say_store_notices(self) -> None:
        """What the store has to tell (history moved aside, not being saved), once,
        at the end of the conversation. The reply stays on screen whatever the file did."""
        while self.store.notices and not self._closing:
            self.chat_view.mount(Notice(self.store.notices.pop(0)))

    # -- past the context (which turns the model sees: tui.window) ------------------

    async def on_too_long(self, message: TooLong) -> None:
        await self._drop_reply(message.reply)
        n, n_ctx = message.n_prompt, message.n_ctx
        if self.settings.overflow == ROLLING:
            what = "This message and the system prompt take" if self.settings.system else "This message takes"
            await self.say(
                f"{what} {n} tokens and the context holds {n_ctx}: no room for a reply. "
                "Shorten it, or start localspec chat with a larger --n-ctx."
            )
        else:
            await self.say(
                f"The conversation takes {n} tokens and the context holds {n_ctx}: the model cannot take "
                f"another turn. {self._ways_on()}"
            )

    async def say_context_full(self) -> None:
        n_ctx = getattr(self.engine, "n_ctx", None)
        size = f" ({n_ctx} tokens)" if n_ctx else ""
        await self.say(f"The context{size} is full; the reply stopped there. {self._ways_on()}")

    def _ways_on(self) -> str:
        return (
            f"{self.key_for('new_chat')} starts a new chat; a larger --n-ctx holds more; "
            f"the rolling window ({self.key_for('settings')}) lets the oldest turns go."
        )

    def continue_hint(self) -> str:
        """For the note of a reply the full context stopped, under the rolling window."""
        return f"{self.key_for('continue_reply')} continues" if self.settings.overflow == ROLLING else ""

    async def on_window_moved(self, message: WindowMoved) -> None:
        if self.conversation is None or message.start >= len(self._history_ids):
            return
        first = self._history_ids[message.start] if message.start > 0 else None
        self.store.set_memory_from(self.conversation.id, first)
        self.conversation = replace(self.conversation, memory_from=first)
        await self._place_mark(first)

    async def _place_mark(self, message_id: int | None) -> None:
        """The thin line above the first message the model still sees."""
        await self.chat_view.query(MemoryMark).remove()
        for widget in self.chat_view.query(UserMessage):
            if message_id is not None and widget.message_id == message_id:
                await self.chat_view.mount(MemoryMark(), before=widget)
                return

    # -- chatting ---------------------------------------------------------------

    async def on_prompt_submitted(self, message: Prompt.Submitted) -> None:
        text = message.text.strip()
        if not text or not self._can_generate():
            return
        self.prompt.clear()
        if self.conversation is None:
            self.conversation = self.store.create(title_for(text), self._model_label(), self.settings)
            self.store.claim(self.conversation.id)
        stored = self.store.add_message(self.conversation.id, "user", text)
        await self.chat_view.mount(UserMessage(text, stored.id))
        self.say_store_notices()
        await self._start_reply()

    def _can_generate(self) -> bool:
        if self.reply is not None:
            self.notify(f"A reply is still streaming; {self.key_for('cancel')} stops it.", severity="warning")
        elif self.engine is None:
            self.say_no_engine()
        else:
            return True
        return False

    async def _start_reply(self, continuing: ReplyView | None = None) -> None:
        """Ask for a reply to the conversation; or, `continuing` a reply the full
        context stopped (the last message), for the rest of it."""
        assert self.conversation is not None
        s = self.settings
        history = self.store.messages(self.conversation.id)
        if continuing is not None:
            history = history[:-1]
        self._history_ids = ids = [m.id for m in history]
        start = ids.index(self.conversation.memory_from) if self.conversation.memory_from in ids else 0
        turn = Turn(
            s.system, [{"role": m.role, "content": m.content} for m in history], start, s.overflow, s.max_tokens,
            continuation=continuing.text if continuing is not None else "",
        )  # fmt: skip
        for old in self.chat_view.query(ReplyView):
            if old.hint and old is not continuing:  # what it said to do is past
                old.set_hint("")
        if continuing is not None:
            reply = continuing
            await reply.resume()
        else:
            reply = ReplyView(self.show_sources, reasoning=self.reasoning)
            await self.chat_view.mount(reply)
        self.chat_view.anchor()
        self.reply = reply
        self._cancel = threading.Event()
        self._feed, self._unshown = StepFeed(), []
        self.stats.start_reply()
        self.refresh_bindings()
        sampling = SamplingParams(temp=s.temperature, top_p=s.top_p)
        options = GenerateOptions(max_tokens=s.max_tokens, sampling=sampling, shown_specials=self._think_tags)
        self._streaming(True)
        self._generate(turn, options, reply, self._feed)

    async def _open_conversation(self, conversation_id: int) -> None:
        conversation = self.store.get(conversation_id)
        if conversation is None:
            return
        self.conversation = conversation
        self.store.claim(conversation.id)
        self.settings = conversation.settings
        await self.chat_view.remove_children()
        widgets = [SystemNote(self.settings.system)]
        for m in self.store.messages(conversation.id):
            widgets.append(UserMessage(m.content, m.id) if m.role == "user" else ReplyView(self.show_sources, m))
        await self.chat_view.mount_all(widgets)
        await self._place_mark(conversation.memory_from)
        self.chat_view.anchor()
        self.stats.start_reply()

    def _model_label(self) -> str:
        e = self.engine
        if e is None:
            return self.request.describe()
        return f"{e.target_name} + {e.draft_name}" if e.draft_name else e.target_name

    def _show_settings(self) -> None:
        e = self.engine
        if e is not None:
            self.stats.show_settings(e.method, e.draft_max, e.auto_draft, e.auto_limit, e.plain_tokens_per_s)
            self.sub_title = f"{self._model_label()} · {e.method}"
        self.refresh_bindings()

    # -- what the keys do ------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("draft_more", "draft_less"):
            # None: shown disabled, and the prompt takes the key as a character.
            return None if self.focused is self.prompt and self.prompt.text else True
        if action == "cancel":
            # None when idle: shown disabled, so the key bar keeps its keys (tui.footer).
            return True if self.reply is not None else None
        if action == "auto_draft":
            return self.engine is not None and "auto" in self.engine.methods
        return True

    # -- tuning the engine live ---------------------------------------------------

    def action_cancel(self) -> None:
        self._cancel.set()

    def action_draft_more(self) -> None:
        self._change_draft_max(+1)

    def action_draft_less(self) -> None:
        self._change_draft_max(-1)

    def _change_draft_max(self, delta: int) -> None:
        engine = self._engine_or_say()
        if engine is None:
            return
        if engine.method == "auto" or engine.auto_draft:
            # The planner picks the length: the key sets the most it may pick,
            # stepping through the lengths it can choose (past 8, the measured sizes).
            limits, now = engine.auto_limits, engine.auto_limit
            nearer = [k for k in limits if (k - now) * delta > 0]
            engine.auto_limit = (min(nearer) if delta > 0 else max(nearer)) if nearer else now
        else:
            engine.draft_max = max(0, min(MAX_DRAFT, engine.draft_max + delta))
        self._show_settings()

    def action_auto_draft(self) -> None:
        engine = self._engine_or_say()
        if engine is not None and "auto" in engine.methods:
            engine.auto_draft = not engine.auto_draft
            self._show_settings()

    def action_cycle_method(self) -> None:
        engine = self._engine_or_say()
        if engine is not None:
            methods = engine.methods
            at = methods.index(engine.method) if engine.method in methods else -1
            engine.method = methods[(at + 1) % len(methods)]
            self._show_settings()

    def _engine_or_say(self):
        if self.engine is None:
            self.say_no_engine()
        return self.engine

    def say_no_engine(self) -> None:
        loading = "The model is still loading."
        self.notify(loading if self.loading else f"No model loaded: {self.key_for('pairs')} picks a pair.")

    # -- the conversation -----------------------------------------------------------

    async def action_toggle_sources(self) -> None:
        self.show_sources = not self.show_sources
        self.stats.set_show_sources(self.show_sources)
        for reply in self.chat_view.query(ReplyView):
            await reply.set_show_sources(self.show_sources)

    async def action_new_chat(self) -> None:
        if self._busy("start a new chat"):
            return
        self.conversation = None
        self.store.claim(None)
        await self.chat_view.remove_children()
        await self.chat_view.mount(SystemNote(self.settings.system))
        self.stats.start_reply()
        self.prompt.focus()

    async def action_regenerate(self) -> None:
        if self.conversation is None or not self._can_generate():
            return
        history = self.store.messages(self.conversation.id)
        if history and history[-1].role == "assistant":
            self.store.delete_message(history[-1].id)
            replies = self.chat_view.query(ReplyView)
            if replies:
                await replies.last().remove()
            history.pop()
        if not history:
            self.notify("Nothing to regenerate.")
            return
        await self._start_reply()

    async def action_continue_reply(self) -> None:
        """Go on with a reply that filled the context, in the window freed by
        letting the oldest turns go (tui.window)."""
        if self.conversation is None or not self._can_generate():
            return
        history = self.store.messages(self.conversation.id)
        replies = self.chat_view.query(ReplyView)
        last = replies.last() if replies else None
        if not (history and last is not None and history[-1].id == last.message_id
                and history[-1].stop_reason == "context_full"):  # fmt: skip
            self.notify("Only the last reply, stopped by a full context, can be continued.")
            return
        await self._start_reply(continuing=last)

    def action_copy_reply(self) -> None:
        reply = self.focused if isinstance(self.focused, ReplyView) else None
        if reply is None:
            replies = self.chat_view.query(ReplyView)
            reply = replies.last() if replies else None
        if reply is None or not reply.text:
            self.notify("No reply to copy yet.")
            return
        self.copy_to_clipboard(reply.text)
        self.notify(f"Copied the reply ({len(reply.text)} characters).")

    def action_export(self) -> None:
        if self.conversation is None:
            self.notify("Nothing to export yet.")
            return
        slug = re.sub(r"[^a-z0-9]+", "-", self.conversation.title.lower()).strip("-")[:40] or "chat"
        self.push_screen(ExportScreen(Path.cwd() / f"{slug}.md"), self._export_to)

    def _export_to(self, path: Path | None) -> None:
        if path is None or self.conversation is None:
            return
        try:
            path.write_text(to_markdown(self.conversation, self.store.messages(self.conversation.id)), encoding="utf-8")
        except OSError as e:
            self.notify(f"Cannot write {path}: {e}", severity="error")
            return
        self.notify(f"Exported to {path}")

    def action_chats(self) -> None:
        if not self._busy("switch chats"):
            elsewhere = frozenset(self.store.open_elsewhere())
            self.push_screen(HistoryScreen(self.store.conversations(), self._delete_chat, elsewhere), self._chat_chosen)

    async def _chat_chosen(self, conversation_id: int | None) -> None:
        if conversation_id is None:
            return
        if conversation_id in self.store.open_elsewhere():
            # Allowed (a claim may outlive a chat that was killed), but each chat
            # then adds to the same history without seeing the other's turns.
            self.notify("This chat is open in another localspec chat too; replies there will not show here.")
        await self._open_conversation(conversation_id)

    def _delete_chat(self, conversation_id: int) -> None:
        self.store.delete(conversation_id)
        if self.conversation is not None and self.conversation.id == conversation_id:
            self.call_later(self.action_new_chat)

    def action_pairs(self) -> None:
        if self._busy("load another pair"):
            return
        if self.loading:
            self.notify("A model is loading; wait for it first.")
            return
        target = self.engine.target_name if self.engine is not None else None
        current = self._model_label() if self.engine is not None else "nothing loaded"
        self.push_screen(PairPickerScreen(lambda: self.choices(target), current), self._pair_chosen)

    def _pair_chosen(self, request: LoadRequest | None) -> None:
        if request is not None:
            self.request = replace(request, extra=self.request.extra)
            self._start_load(self.request)

    def action_settings(self) -> None:
        self.push_screen(SettingsScreen(self.settings), self._settings_chosen)

    async def _settings_chosen(self, settings: ChatSettings | None) -> None:
        if settings is None:
            return
        self.settings = settings
        if self.conversation is not None:
            self.store.update_settings(self.conversation.id, settings)
            self.conversation = replace(self.conversation, settings=settings)
        notes = self.chat_view.query(SystemNote)
        if notes:
            notes.first().show(settings.system)
        else:
            await self.chat_view.mount(SystemNote(settings.system), before=0)

    def _busy(self, what: str) -> bool:
        if self.reply is not None:
            self.notify(f"A reply is streaming; {self.key_for('cancel')} stops it, then {what}.", severity="warning")
        return self.reply is not None
