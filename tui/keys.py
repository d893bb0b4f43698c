"""An app whose every key is a binding with an id, remappable in keymap.toml.

The help screen and the command palette are built from the same bindings (the
app's own and those of the widgets named in KEYED_WIDGETS), so they always
show the keys in force. Nothing here knows what a key does: that is the app's.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget

from tui.keymap import load_keymap
from tui.screens import HelpScreen


class KeyedApp(App[None]):
    # Widgets (one of each in the app) whose bindings are keys of the app too.
    KEYED_WIDGETS: ClassVar[tuple[type[Widget], ...]] = ()

    keymap: dict[str, str]
    keymap_file: Path | None = None  # None: the user's keymap.toml

    def apply_keymap(self) -> None:
        """Read the keymap file; a mistake in it is a notification, never a failure."""
        self.keymap, problems = load_keymap(self.binding_ids(), self.keymap_file)
        self.set_keymap(self.keymap)
        for problem in problems:
            self.notify(problem, title="keymap.toml", severity="warning", timeout=15)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.key_rows()))

    def own_bindings(self) -> list[Binding]:
        owners = (*self.KEYED_WIDGETS, type(self))
        return [b for owner in owners for b in owner.BINDINGS if isinstance(b, Binding)]

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
            owner = next((w for w in self.KEYED_WIDGETS if b in w.BINDINGS), None)
            target = self.query_one(owner) if owner is not None else self
            # Called directly: from the palette there is no typed character to protect.
            yield SystemCommand(what, f"{keys} · id {binding_id}", getattr(target, f"action_{b.action}"))
