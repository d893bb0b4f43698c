"""The chat's screen: Textual's, asking each widget only for the rows a frame changes.

A frame of a streaming reply changes one or two rows of text. Textual's
compositor (8.2) asks every widget whose container reaches those rows for
its whole visible area and then keeps the changed rows: the header, the key
bar, the panel and each container around the reply, over their full height,
on every frame. Each ask walks the widget's styles and every line of its
cache; on a 2-core machine, where the UI thread's time comes out of
decoding, that was about a fifth of the UI's time in a streaming reply.

`RowCompositor` asks only the widgets whose visible area reaches the frame's
box, front to back, only for the rows of that box, and stops at the first
that covers the box: the compositor keeps the front-most piece at each
place (it does not blend), so nothing behind that one would show. A frame
of new text asks the token text alone. The bytes written
to the terminal are the same (tests/test_tui_stream.py compares them frame
by frame with Textual's own).
"""

from __future__ import annotations

from typing import Iterable

from textual._compositor import Compositor
from textual.geometry import Region
from textual.screen import Screen
from textual.strip import Strip


class RowCompositor(Compositor):
    def _get_renders(self, crop: Region | None = None) -> Iterable[tuple[Region, Region, list[Strip]]]:
        if crop is None:
            crop = self.size.region
        top, bottom = crop.y, crop.bottom
        # A piece starting just right of the box is still placed (with nothing written).
        reach = crop.grow((0, 1, 0, 0))
        for widget, (region, clip) in self.visible_widgets.items():  # front to back
            visible = region.intersection(clip)
            if not visible.overlaps(crop):
                continue
            x, y, width, height = visible
            y1, y2 = max(y, top), min(y + height, bottom)
            # The rows asked for, as the clip: _render_chops zips them with the strips.
            rows = Region(x, y1, width, y2 - y1)
            yield region, rows, widget.render_lines(Region(x - region.x, y1 - region.y, width, y2 - y1))
            if visible.contains_region(reach):
                return  # the first piece drawn at a place wins: nothing behind this one shows


class ChatScreen(Screen):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._compositor = RowCompositor()
