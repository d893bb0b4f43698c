"""The key bar: Textual's Footer, without a re-mount when only enabled keys change.

Textual's Footer mounts all its keys again whenever the screen's bindings are
refreshed, and a mount lays out the whole screen (as dear as a dozen frames of
a streaming reply). The chat refreshes bindings as a reply starts and ends,
when only whether "Stop" is enabled changes; this footer then enables or
dims the keys in place, a repaint of the keys that changed. Any other change
(a key added, removed or renamed) re-mounts as before. A FooterKey keeps that
state where its own __init__ puts it (`_disabled`, the class `-disabled`); a
Textual whose keys lack it re-mounts, as it would anyway.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets._footer import FooterKey


class KeyFooter(Footer):
    def bindings_changed(self, screen: Screen) -> None:
        if self._bindings_ready and self.is_attached and screen is self.screen and self.app.app_focus:
            # After the refresh, as Footer's own re-mount: the state that asked for it is settled by then.
            self.call_after_refresh(self._update_keys)
        else:
            super().bindings_changed(screen)

    async def _update_keys(self) -> None:
        keys = [key for key in self.query(FooterKey) if not key.has_class("-command-palette")]
        shown: dict[str, tuple[str, bool]] = {}  # action -> (description, enabled), the first binding as compose picks
        for _, binding, enabled, _ in self.screen.active_bindings.values():
            if binding.show:
                shown.setdefault(binding.action, (binding.description, enabled))
        same = [(k.action, k.description) for k in keys] == [(a, d) for a, (d, _) in shown.items()]
        if keys and same and all(hasattr(k, "_disabled") for k in keys):
            for key in keys:
                off = not shown[key.action][1]
                key._disabled = off  # what a click reads (a bell when disabled)
                key.set_class(off, "-disabled")  # how it looks
        else:
            await self.recompose()
