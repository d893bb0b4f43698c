"""What every tool-call reader is made of (localspec/server/toolparse.py):
a call's openings, matched as the reply streams, and the two ways reading
a call's body can stop short, for more text or for good."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

WS = None  # in an opening: any run of whitespace, none included


class Incomplete(Exception):
    """The call's text stops before the call does (more may come)."""


class Malformed(Exception):
    """The text opened a call that does not parse, or names no declared function.
    `end`: where its text ends, when that is known."""

    def __init__(self, reason: str, end: int | None = None):
        super().__init__(reason)
        self.end = end


Found = list[tuple[str, str, str | None]]  # (name, arguments text, the model's own id or None)
# A body parser reads the call(s) after an opening: the text, where the opening
# starts and ends, and whether the reply has ended. It returns the calls and
# where their text ends, or raises Incomplete or Malformed.
BodyParser = Callable[[str, int, int, bool], tuple[Found, int]]


@dataclass(frozen=True)
class Opening:
    """A way a call can begin: literals, with WS for optional whitespace."""

    parts: tuple[str | None, ...]
    body: BodyParser


def match(parts: Sequence[str | None], text: str, pos: int) -> int | bool | None:
    """Where `parts` matched from `pos` end; True if `text` ends while they
    still could match; None if they cannot."""
    for part in parts:
        if part is WS:
            pos = skip(text, pos)
            if pos == len(text):
                return True
        elif text.startswith(part, pos):
            pos += len(part)
        elif part.startswith(text[pos:]):
            return True
        else:
            return None
    return pos


def skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def past(text: str, pos: int, final: bool, closers: Sequence[str]) -> int:
    """Past the optional closing markers after a call (a model that omits one still called)."""
    for closer in closers:
        m = match((WS, closer), text, pos)
        if m is True:  # (not an int here: True is also 1)
            if not final:
                raise Incomplete
        elif m is not None:
            pos = m
    return pos
