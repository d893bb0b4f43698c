"""The changes a reply makes to what it copies, carried into later copies.

A code edit copies its source with the same change made again and again (a
class renamed throughout, `print(` written `logging.info(`). Lookup's
proposal copies the source as it was, so every proposal that runs across a
changed name fails there, however long the match behind it. When the reply
is back in step with its source after a stretch where the two differ, with
agreement on both sides, that stretch is a substitution; once the reply has
made it in two places (a fix is made once), a later proposal makes it
wherever the source has the old tokens again. Verification still
decides: a substitution the reply does not make again costs one rejected
draft, as a wrong copy did before.
"""

from __future__ import annotations

from typing import Sequence

SPAN_MAX = 6  # longest old or new stretch taken as a substitution (a name is a few tokens)
ANCHOR = 3  # agreeing tokens wanted on each side of it: fewer finds chance alignments in prose
KEEP = 16  # substitutions remembered; the newest wins where two start alike
REFUTED_MAX = 256  # pairs refuted or seen but not yet confirmed, kept at most
# Places the reply must have made a change before proposals make it: a fix is
# made once (`lo < hi` to `lo <= hi`, then `items[mid] < target` kept), a rename
# again and again.
CONFIRM = 2


def behind_match(tokens: Sequence[int], match_end: int, n: int) -> tuple[tuple[int, ...], tuple[int, ...], int] | None:
    """The substitution just before the reply's current match: the last `n`
    tokens of `tokens` equal the `n` ending at `match_end` (its source), and
    if the `ANCHOR` tokens before some old stretch of the source equal those
    before some new stretch of the reply, the reply wrote new where the
    source had old. (old, new, where new begins), the shortest such pair,
    or None."""
    if n < ANCHOR:
        return None
    s_stop = match_end - n + 1  # where the agreeing stretch begins, in the source
    r_stop = len(tokens) - n  # and in the reply
    # Both stretches non-empty: a token inserted or deleted once is a fix, not a rename.
    for total in range(2, 2 * SPAN_MAX + 1):
        for gs in range(max(1, total - SPAN_MAX), min(SPAN_MAX, total - 1) + 1):
            gr = total - gs
            s_a, r_a = s_stop - gs, r_stop - gr
            if s_a < ANCHOR or r_a - ANCHOR <= s_stop:  # the reply's anchor must come after the source
                continue
            if tokens[s_a - ANCHOR : s_a] != tokens[r_a - ANCHOR : r_a]:
                continue
            old, new = tuple(tokens[s_a:s_stop]), tuple(tokens[r_a:r_stop])
            if old != new:
                return old, new, r_a
    return None


def _contains(text: list[int], part: tuple[int, ...]) -> bool:
    m = len(part)
    return any(text[i] == part[0] and tuple(text[i : i + m]) == part for i in range(len(text) - m + 1))


class Substitutions:
    """The substitutions seen so far, newest first, applied to proposals."""

    def __init__(self) -> None:
        self._subs: dict[tuple[int, ...], tuple[int, ...]] = {}
        # Refuted pairs are not learned again from the same evidence still in the context.
        self._refuted: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
        self._places: dict[tuple[tuple[int, ...], tuple[int, ...]], set[int]] = {}  # where each was seen

    def __len__(self) -> int:
        return len(self._subs)

    def refute(self, written: Sequence[int]) -> None:
        """Forget each substitution whose old stretch the reply has just
        written itself (in `written`, its newest tokens): a paraphrase's
        chance alignment (" the" for " a") is written again soon, a rename
        is not."""
        if not self._subs or not written:
            return
        text = list(written)
        for old in [o for o in self._subs if _contains(text, o)]:
            if len(self._refuted) >= REFUTED_MAX:
                self._refuted.clear()
            pair = (old, self._subs.pop(old))
            self._refuted.add(pair)
            self._places.pop(pair, None)

    def learn(self, old: tuple[int, ...], new: tuple[int, ...], at: int) -> None:
        """Note that the reply wrote `new` for `old` at position `at`; from
        the `CONFIRM`-th place it did so, later proposals do it too."""
        if (old, new) in self._refuted:
            return
        if len(self._places) >= REFUTED_MAX:
            self._places.clear()
        places = self._places.setdefault((old, new), set())
        places.add(at)
        if len(places) < CONFIRM:
            return
        self._subs.pop(old, None)
        self._subs[old] = new
        if len(self._subs) > KEEP:
            del self._subs[next(iter(self._subs))]

    def apply(self, draft: list[int]) -> list[int]:
        """`draft` with every old stretch written as its new one (where two
        start at the same token, the longer, then the newer)."""
        if not self._subs:
            return draft
        subs = sorted(reversed(self._subs.items()), key=lambda s: -len(s[0]))
        out: list[int] = []
        i = 0
        while i < len(draft):
            for old, new in subs:
                if draft[i] == old[0] and tuple(draft[i : i + len(old)]) == old:
                    out += new
                    i += len(old)
                    break
            else:
                out.append(draft[i])
                i += 1
        return out

    def clear(self) -> None:
        self._subs.clear()
        self._refuted.clear()
        self._places.clear()
