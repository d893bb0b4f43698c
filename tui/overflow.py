"""What the chat does when a conversation outgrows the context (mixed into
`tui.app.ChatApp`; which turns the model sees is tui.window's).

Under the rolling window a marker shows where the model's memory begins and
a reply the full context stopped can be continued (F5); under "stop", and
when even the newest message does not fit, the chat says in the
conversation what to do.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from tui.messages import TooLong, WindowMoved
from tui.reply import MemoryMark, ReplyView, UserMessage
from tui.window import ROLLING

if TYPE_CHECKING:
    from tui.app import ChatApp

    _Base = ChatApp
else:
    _Base = object


class OverflowActions(_Base):
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

    async def on_too_long(self, message: TooLong) -> None:
        await self._drop_reply(message.reply)
        n, n_ctx = message.n_prompt, message.n_ctx
        if self.settings.overflow == ROLLING:
            what = "This message" + (" and the system prompt" if self.settings.system else "")
            await self.say(
                f"{what} take {n} tokens and the context holds {n_ctx}: no room for a reply. "
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
