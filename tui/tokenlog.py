"""A reply's text coloured by token origin, drawn a row at a time (Textual's line API).

A streamed reply only ever grows at its end, so this widget never renders
what has not changed. Text is kept as logical lines with the offsets where
the origin changes; each line's rows come from a resumable word wrap
(tui.wrap), and each row's strip is built once, when it is first drawn,
and kept. An append re-wraps only the words it added (and the word still
open), rebuilds only the rows whose span changed (normally the last one)
and marks only those dirty; the widget asks for a layout only when its
row count changes. A new width (a resize, the scrollbar appearing) is the
one thing that wraps every line again, once.

While a reply streams, its height grows `block` rows at a time (the rows
not written yet are blank). A change of height is the one expensive event:
Textual lays the screen out again and, the conversation being anchored to
its end, redraws every visible row, since each moved. tui.reply sets the
block to about a page of the conversation, so that happens once a page, not
once every few rows (see tui.reply).

Each piece's look (the Rich style that a Static's Content and Visual
pipeline gives it on this widget) is worked out once through that pipeline;
a row is then built from its pieces directly, with the offsets that pipeline
gives, so colours, wrapping and mouse selection are what the whole reply
rendered at once gives, at about a quarter of the cost. A row that a mouse
selection touches goes through Content whole.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import ClassVar, Iterable

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style as RichStyle
from textual.content import Content
from textual.geometry import Region, Size
from textual.selection import Selection
from textual.strip import Strip
from textual.style import Style
from textual.visual import Visual
from textual.widget import Widget

from tui.wrap import LineWrap

TAB = 8  # Content's tab size
DRAFT, TARGET = "d", "t"  # a piece's origin: an accepted draft token, or the target's own


class TokenLog(Widget):
    COMPONENT_CLASSES: ClassVar[set[str]] = {"token--draft", "token--target"}
    DEFAULT_CSS = """
    TokenLog {
        height: auto;
        padding: 0 1;
    }
    TokenLog > .token--draft {
        color: $text-success;
        background: $success 12%;
    }
    TokenLog > .token--target {
        color: $foreground;
    }
    """

    def __init__(self, runs: Iterable[tuple[str, str]] = ()):
        super().__init__()
        self._lines: list[str] = [""]  # logical lines, tabs expanded; the last one is open
        self._origins: list[list[tuple[int, str]]] = [[]]  # per line: (offset, origin) where the origin changes
        self._width = 0  # the width the rows below were wrapped at (0: not yet)
        self._wraps: list[LineWrap] = []  # per line, at _width
        self._rows: list[tuple[int, int, int, bool]] = []  # (line, start, end, last row of its line)
        self._first_row: list[int] = []  # per line: index of its first row
        self._strips: list[Strip | None] = []  # per row, built on first draw
        self._style_key: tuple | None = None
        self._looks: dict[Style, RichStyle] = {}  # a piece's style -> its Rich style on a row, at _style_key
        self._block = 1
        # What the tests count: strips built, full re-wraps, changes of height from an append.
        self.rows_rendered = 0
        self.rewraps = 0
        self.growths = 0
        self.append(runs)

    # -- text in ---------------------------------------------------------------------

    def append(self, pieces: Iterable[tuple[str, str]]) -> None:
        """Add (text, origin) pieces at the end; redraw only what they changed."""
        n_lines = len(self._lines)
        for text, origin in pieces:
            for i, part in enumerate(text.replace("\r", "").split("\n")):
                if i:
                    self._lines.append("")
                    self._origins.append([])
                if part:
                    self._add(part, origin)
        if self._width and self.display:
            self._rewrap_from(n_lines - 1)
        elif self._width:
            self._width = 0  # hidden: wrap again when shown

    def _add(self, part: str, origin: str) -> None:
        line = self._lines[-1]
        if "\t" in part:
            part = _expand_tabs(part, cell_len(line))
        origins = self._origins[-1]
        if not origins or origins[-1][1] != origin:
            origins.append((len(line), origin))
        self._lines[-1] = line + part

    @property
    def text(self) -> str:
        return "\n".join(self._lines)

    # -- rows ------------------------------------------------------------------------

    def _rewrap_from(self, first: int, notify: bool = True) -> None:
        """Re-wrap lines `first`.. (the ones the last append touched); lines
        before it are finished and keep their rows. `notify`: mark the rows
        that changed dirty (not while Textual is laying out or drawing)."""
        row0 = self._first_row[first] if first < len(self._first_row) else len(self._rows)
        del self._wraps[first + 1 :]
        del self._first_row[first:]
        last_line = len(self._lines) - 1
        rows: list[tuple[int, int, int, bool]] = []
        for i in range(first, last_line + 1):
            if i == len(self._wraps):
                self._wraps.append(LineWrap(self._width))
            self._first_row.append(row0 + len(rows))
            spans = self._wraps[i].rows(self._lines[i], closed=i < last_line)
            rows += [(i, a, b, j == len(spans) - 1) for j, (a, b) in enumerate(spans)]
        old = self._rows[row0:]
        kept = [k < len(old) and old[k] == row for k, row in enumerate(rows)]
        strips = self._strips[row0:]
        self._rows[row0:] = rows
        self._strips[row0:] = [strips[k] if same else None for k, same in enumerate(kept)]
        changed = [row0 + k for k, same in enumerate(kept) if not same]
        resized = self._height(row0 + len(rows)) != self._height(row0 + len(old))
        if not notify:
            return
        self.growths += resized
        if changed:
            top = changed[0]
            self.refresh(Region(0, top, self._width, changed[-1] - top + 1), layout=resized)
        elif resized:
            self.refresh(layout=True)

    def _rewrap_all(self, width: int) -> None:
        self.rewraps += 1
        self._width = width
        self._wraps, self._rows, self._first_row, self._strips = [], [], [], []
        self._rewrap_from(0, notify=False)  # called from layout or drawing, which redraw anyway

    @property
    def block(self) -> int:
        return self._block

    @block.setter
    def block(self, rows: int) -> None:
        """Rows the height grows by at a time (1: exactly the text's)."""
        if rows != self._block:
            self._block = rows
            self.refresh(layout=True)

    def _height(self, rows: int) -> int:
        return -(-rows // self._block) * self._block

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if width != self._width:
            self._rewrap_all(width)
        return self._height(len(self._rows))

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return max((cell_len(line) for line in self._lines), default=0)

    # -- rows out --------------------------------------------------------------------

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        return selection.extract(self.text), "\n"

    def selection_updated(self, selection: Selection | None) -> None:
        self._strips = [None] * len(self._rows)
        self.refresh()

    def render_lines(self, crop: Region) -> list[Strip]:
        self._check_styles()  # once per draw, not once per row
        return super().render_lines(crop)

    def _check_styles(self) -> None:
        styles = (
            self.visual_style,
            self.get_visual_style("token--draft", partial=True),
            self.get_visual_style("token--target", partial=True),
        )
        if styles != self._style_key:  # a theme, or the reply's focus background
            self._style_key = styles
            self._strips = [None] * len(self._rows)
            self._looks = {}

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if not width:
            return Strip.blank(0)
        if width != self._width:
            self._rewrap_all(width)
        if self._style_key is None:
            self._check_styles()
        if y >= len(self._rows):
            return Strip.blank(width, self.visual_style.rich_style)
        strip = self._strips[y]
        if strip is None:
            strip = self._strips[y] = self._render_row(y, self._style_key)
        return strip

    def _render_row(self, y: int, styles: tuple) -> Strip:
        self.rows_rendered += 1
        base, draft, target = styles
        line, start, end, last = self._rows[y]
        text = self._lines[line]
        if not last:
            end = start + len(text[start:end].rstrip())  # as Rich: a broken row loses its trailing spaces
        origins = self._origins[line]
        at = max(bisect_right(origins, (start, "\uffff")) - 1, 0)
        parts = []
        while at < len(origins) and origins[at][0] < end:
            a = max(origins[at][0], start)
            b = min(origins[at + 1][0], end) if at + 1 < len(origins) else end
            parts.append((text[a:b], draft if origins[at][1] == DRAFT else target))
            at += 1
        selection = self.text_selection
        span = selection.get_span(line) if selection is not None else None
        if parts and span is None:
            return self._strip_of(parts, start, line, base)
        content = Content.assemble(*parts) if parts else Content(text[start:end])
        if span is not None:
            a, b = max(span[0] - start, 0), (end if span[1] == -1 else min(span[1], end)) - start
            if a < b:
                content = content.stylize(Style.from_styles(self.screen.get_component_styles("screen--selection")), a, b)
        strips = Visual.to_strips(self, content, self._width, 1, base, apply_selection=False)
        strip = strips[0] if strips else Strip.blank(self._width, base.rich_style)
        return strip.apply_offsets(start, line)  # where mouse selection finds the text

    def _strip_of(self, parts: list[tuple[str, Style]], start: int, line: int, base: Style) -> Strip:
        """A row's strip from its pieces: the segments Content would give, each
        with its piece's look and the offset mouse selection reads."""
        looks = self._looks
        segments = []
        x = start
        for text, style in parts:
            look = looks.get(style)
            if look is None:
                look = looks[style] = _look_of(self, style, base)
            segments.append(Segment(text, look + RichStyle.from_meta({"offset": (x, line)})))
            x += len(text)
        return Strip(segments)


def _look_of(widget: Widget, style: Style, base: Style) -> RichStyle:
    """The Rich style a piece in `style` gets on `widget`, through Textual's own pipeline."""
    [strip] = Visual.to_strips(widget, Content.assemble(("x", style)), 1, 1, base, apply_selection=False)
    [segment] = list(strip)
    return segment.style.clear_meta_and_links()


def _expand_tabs(part: str, column: int) -> str:
    out = []
    for ch in part:
        if ch == "\t":
            n = TAB - column % TAB
            out.append(" " * n)
            column += n
        else:
            out.append(ch)
            column += cell_len(ch)
    return "".join(out)
