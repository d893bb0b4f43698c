"""Word wrap for a line that keeps growing, resumed where it stopped.

The rule is Rich's `divide_line`, the one Textual wraps Content with, so a
streamed reply breaks exactly where the same text in a Static would. That
rule is greedy, word by word: where a word goes depends only on the words
before it. So once a word is complete (text follows its trailing space),
its placement never changes, and the wrapper keeps its state after the last
complete word instead of starting the line again on every append. Only the
word still being written is placed afresh each time: an append costs the
new words, not the line so far.
"""

from __future__ import annotations

import re

from rich._loop import loop_last
from rich.cells import cell_len, chop_cells

_WORD = re.compile(r"\s*\S+\s*")  # as rich._wrap.words: a word with the spaces after it


class LineWrap:
    """Row breaks of one logical line (no newlines in it) at one width."""

    def __init__(self, width: int):
        self.width = max(width, 1)
        self.words_placed = 0  # complete words processed so far (tests check appends stay cheap)
        self._breaks: list[int] = []  # offsets where rows start, from complete words only
        self._pos = 0  # offset after the last complete word
        self._cells = 0  # cells taken on the current row after it

    def rows(self, text: str, closed: bool = False) -> list[tuple[int, int]]:
        """(start, end) offsets of every row of `text`, which must extend the
        text of the previous call. `closed`: the line has ended, so its last
        word is complete too."""
        tentative: list[int] = []
        end = len(text)
        for match in _WORD.finditer(text, self._pos):
            start, stop = match.span()
            if stop == end and not closed:
                # The last word may still grow: place it on a copy of the state.
                self._place(match.group(), start, self._cells, tentative)
                break
            self._cells = self._place(match.group(), start, self._cells, self._breaks)
            self._pos = stop
            self.words_placed += 1
        starts = [0, *self._breaks, *tentative]
        return [(a, b) for a, b in zip(starts, [*starts[1:], end])]

    def _place(self, word: str, start: int, cells: int, breaks: list[int]) -> int:
        """Rich's divide_line for one word; returns the cells used after it."""
        width = self.width
        length = cell_len(word.rstrip())
        if width - cells >= length:
            return cells + cell_len(word)
        if length > width:  # longer than a row: folded over several
            for last, piece in loop_last(chop_cells(word, width)):
                if start:
                    breaks.append(start)
                if last:
                    return cell_len(piece)
                start += len(piece)
        if cells and start:
            breaks.append(start)
            return cell_len(word)
        return cells
