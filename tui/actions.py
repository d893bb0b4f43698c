"""What the keys of the chat app do (mixed into `tui.app.ChatApp`).

Every key is a binding with an id (remappable in keymap.toml); the help
screen and the command palette are built from the same bindings, so they
always show the keys in force.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from tui.pairs import LoadRequest
from tui.prompt import Prompt
from tui.reply import ReplyView, SystemNote
from tui.screens import ExportScreen, HelpScreen, HistoryScreen, PairPickerScreen, SettingsScreen
from tui.store import ChatSettings, to_markdown

if TYPE_CHECKING:
    from tui.app import ChatApp

    _Base = ChatApp
else:
    _Base = object

MAX_DRAFT = 16


class ChatActions(_Base):
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
            # The planner picks the length: the key sets the most it may pick.
            engine.auto_limit = max(0, min(engine.auto_ceiling, engine.auto_limit + delta))
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

    # -- help and the command palette ------------------------------------------------

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.key_rows()))

    def own_bindings(self) -> list[Binding]:
        return [b for b in (*Prompt.BINDINGS, *type(self).BINDINGS) if isinstance(b, Binding)]

    def binding_ids(self) -> set[str]:
        return {b.id for b in self.own_bindings() if b.id}

    def key_for(self, binding_id: str) -> str:
        """The first key bound to `binding_id`, as the footer shows it."""
        binding = next(b for b in self.own_bindings() if b.id == binding_id)
        key = self.keymap.get(binding_id, binding.key).split(",")[0].strip()
        return self.get_key_display(Binding(key, ""))

    def key_rows(self) -> list[tuple[str, str, str]]:
        """(keys as shown, what they do, binding id) for every key, remaps applied."""
        rows = []
        for b in self.own_bindings():
            keys = self.keymap.get(b.id or "", b.key)
            shown = ", ".join(self.get_key_display(Binding(k.strip(), "")) for k in keys.split(","))
            rows.append((shown, b.tooltip or b.description, b.id or ""))
        palette = self.get_key_display(Binding(self.COMMAND_PALETTE_BINDING, ""))
        return rows + [(palette, "Command palette", "")]

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for (keys, what, binding_id), b in zip(self.key_rows(), self.own_bindings()):
            target = self.prompt if b in Prompt.BINDINGS else self
            # Called directly: from the palette there is no typed character to protect.
            yield SystemCommand(what, f"{keys} · id {binding_id}", getattr(target, f"action_{b.action}"))
