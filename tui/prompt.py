"""The message input: Enter sends, a newline key that survives tmux adds a line.

Shift+Enter only reaches an app on terminals speaking the kitty keyboard
protocol, and tmux does not pass it on; Ctrl+J is a plain line feed that
every terminal and multiplexer delivers, and Alt+Enter arrives as ESC CR.
"""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea


class Prompt(TextArea):
    DEFAULT_CSS = """
    Prompt {
        height: auto;
        min-height: 3;
        max-height: 10;
        border: tall $primary 40%;
    }
    Prompt:focus {
        border: tall $primary;
    }
    """

    BINDINGS = [
        Binding("enter", "submit", "Send", id="send", tooltip="Send the message"),
        Binding("ctrl+j,alt+enter,shift+enter", "newline", "Newline", id="newline", tooltip="New line in the message"),
    ]

    class Submitted(Message):
        def __init__(self, prompt: Prompt, text: str):
            super().__init__()
            self.prompt = prompt
            self.text = text

    def __init__(self, **kwargs):
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus", **kwargs)

    async def _on_key(self, event: events.Key) -> None:
        # TextArea inserts Enter and printable keys itself; a key that an enabled
        # binding claims (Enter here; + and - of the app while the prompt is
        # empty) skips that (Textual runs every class's _on_key unless the default
        # is prevented) and bubbles on to its binding. Priority bindings would not
        # do: they run when a key arrives, ahead of keys typed before it that this
        # widget has not inserted yet.
        bound = self.screen.active_bindings.get(event.key)
        if bound is not None and bound.enabled:
            event.prevent_default()

    def action_submit(self) -> None:
        self.post_message(self.Submitted(self, self.text))

    def action_newline(self) -> None:
        self.insert("\n")
