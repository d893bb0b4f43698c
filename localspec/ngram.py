"""Incremental n-gram index over a growing token sequence, for prompt lookup.

The index answers one question cheaply at every decode step: "the last few
tokens appeared before; what came after them last time?". Chat output often
repeats its input (code being edited, quoted passages, names, boilerplate),
and those repeats are drafts the target accepts almost for free.

Layout, borrowed from zlib's hash chains: for every n-gram size and every
position p, `prev[n][p]` is the end position of the previous occurrence of
the n-gram that ends at p (-1 if none), and `last[(gram)]` is the end of the
newest occurrence. Appending a token is one dict update per size; rolling
back is the same in reverse; a lookup reads `prev` at the final position and
needs no hashing at all.

The most recent earlier occurrence is used, not the most frequent
continuation: repetition in a conversation is local (the function being
rewritten, the list being continued), and this is what llama.cpp's
ngram-simple and prompt-lookup decoding do too.
"""

from __future__ import annotations

from typing import Sequence

_BLOCK = 512  # slice size when hunting for the first differing token


def _as_list(tokens: Sequence[int]) -> list[int]:
    if isinstance(tokens, list):
        return tokens
    tolist = getattr(tokens, "tolist", None)  # numpy arrays: C-speed conversion
    return tolist() if tolist is not None else list(tokens)


def common_prefix_len(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix, compared in C-speed slices."""
    if len(a) > len(b):
        a, b = b, a
    m = len(a)
    # The common case is b extending a: one comparison, slicing only b.
    if a == (b if len(b) == m else b[:m]):
        return m
    start = 0
    while a[start : start + _BLOCK] == b[start : start + _BLOCK]:
        start += _BLOCK
    i = start
    while a[i] == b[i]:
        i += 1
    return i


# How far back a match is measured (lookup_with_n's n): the planner's
# longest match-length group starts at 24 (controller.LOOKUP_BUCKETS).
MATCH_MAX = 64


class NgramIndex:
    """Index of every n-gram (n_min <= n <= n_max) of the synced sequence.

    `ops` counts n-gram insertions and removals since construction, so tests
    and benchmarks can check the work done is proportional to the tokens
    that changed rather than to the whole sequence.
    """

    def __init__(self, n_min: int = 1, n_max: int = 4):
        if not 1 <= n_min <= n_max:
            raise ValueError(f"need 1 <= n_min <= n_max, got n_min={n_min}, n_max={n_max}")
        self.n_min = n_min
        self.n_max = n_max
        self.ops = 0
        self._tokens: list[int] = []
        self._last: dict[tuple[int, ...], int] = {}  # gram -> end position of newest occurrence
        self._prev: dict[int, list[int]] = {n: [] for n in self._sizes()}

    def __len__(self) -> int:
        return len(self._tokens)

    @property
    def tokens(self) -> list[int]:
        """A copy of the sequence the index currently describes."""
        return list(self._tokens)

    @property
    def sequence(self) -> list[int]:
        """The sequence itself, not a copy, for reading only."""
        return self._tokens

    def _sizes(self) -> range:
        return range(self.n_min, self.n_max + 1)

    def reset(self) -> None:
        self._tokens = []
        self._last.clear()
        for chain in self._prev.values():
            chain.clear()

    def sync(self, tokens: Sequence[int]) -> None:
        """Make the index describe `tokens`, touching only what changed.

        Extending the indexed sequence costs one update per size per new
        token. A divergence (rollback, edited history, another conversation)
        unindexes the positions past the common prefix, or rebuilds from
        scratch when the surviving prefix is shorter than what would have
        to be removed.
        """
        seq = _as_list(tokens)
        old_len = len(self._tokens)
        keep = common_prefix_len(self._tokens, seq)
        if keep < old_len:
            if keep < old_len - keep:
                self.reset()
                keep = 0
            else:
                self._truncate(keep)
        self._extend(seq, keep)

    def _truncate(self, new_len: int) -> None:
        toks = self._tokens
        # Newest first, so each gram's `last` is the position being removed
        # and its chain predecessor becomes the newest again.
        for p in range(len(toks) - 1, new_len - 1, -1):
            for n in self._sizes():
                before = self._prev[n].pop()
                if p < n - 1:
                    continue
                gram = tuple(toks[p - n + 1 : p + 1])
                if before < 0:
                    del self._last[gram]
                else:
                    self._last[gram] = before
                self.ops += 1
        del toks[new_len:]

    def _extend(self, seq: list[int], start: int) -> None:
        toks = self._tokens
        last = self._last
        for p in range(start, len(seq)):
            toks.append(seq[p])
            for n in self._sizes():
                if p < n - 1:
                    self._prev[n].append(-1)  # keeps chains indexed by position
                    continue
                gram = tuple(toks[p - n + 1 : p + 1])
                self._prev[n].append(last.get(gram, -1))
                last[gram] = p
                self.ops += 1

    def continuation(self, suffix: Sequence[int], k: int) -> tuple[list[int], int]:
        """Up to `k` tokens that followed the newest occurrence, in this
        index's sequence, of the longest tail of `suffix` (another sequence)
        it holds, and that tail's length (measured up to MATCH_MAX); ([], 0)
        when it holds none. For a second source a reply may copy from."""
        toks = self._tokens
        tail = _as_list(suffix)[-MATCH_MAX:]
        for n in range(min(self.n_max, len(tail)), self.n_min - 1, -1):
            match_end = self._last.get(tuple(tail[len(tail) - n :]), -1)
            if match_end == len(toks) - 1:  # nothing follows the newest: the one before it
                match_end = self._prev[n][match_end]
            if match_end < 0:
                continue
            if n == self.n_max:
                while n < len(tail) and match_end - n >= 0 and toks[match_end - n] == tail[len(tail) - 1 - n]:
                    n += 1
            return toks[match_end + 1 : match_end + 1 + k], n
        return [], 0

    def lookup(self, k: int) -> list[int]:
        return self.lookup_with_n(k)[0]

    def lookup_with_n(self, k: int) -> tuple[list[int], int]:
        """`k` tokens predicted to follow the indexed sequence (none when no
        suffix repeats), and the n of the match they come from (0 if none)."""
        draft, n, _ = self.lookup_match(k)
        return draft, n

    def lookup_match(self, k: int) -> tuple[list[int], int, int]:
        """`lookup_with_n`, and where the match ends in the sequence (-1 if none).

        The longest suffix with an earlier occurrence wins. When that
        occurrence is so recent that its continuation runs into the current
        position, the copy carries on through the tokens it has just
        produced, LZ77-style: a suffix that recurs after d tokens implies
        a period of d, so a repeating run yields a full-length draft
        rather than one period of it.
        """
        toks = self._tokens
        end = len(toks) - 1
        if k <= 0 or end < 1:
            return [], 0, -1
        for n in range(min(self.n_max, end), self.n_min - 1, -1):
            match_end = self._prev[n][end]
            if match_end < 0:
                continue
            src = match_end + 1
            period = end - match_end
            draft = toks[src : src + min(k, period)]
            while len(draft) < k:
                draft.append(draft[len(draft) - period])
            if n == self.n_max:
                # Past the index's longest key the match is measured by
                # comparing backwards: a 24-token repeat is a copy in
                # progress, which the index would need 16 more dict
                # updates per token to tell from an 8-token one.
                while n < MATCH_MAX and match_end - n >= 0 and toks[match_end - n] == toks[end - n]:
                    n += 1
            return draft, n, match_end
        return [], 0, -1
