"""Prompt-lookup drafting: guess the continuation by copying from the context.

No second model and no extra memory traffic: the draft is whatever followed
the longest recent repeat of the context's last few tokens. It costs next
to nothing when it misses and wins big on text that quotes its input
(code edits, summaries with names, structured output).
"""

from __future__ import annotations

import copy
import json
from typing import Sequence

import numpy as np

from localspec.drafters import EMPTY_DRAFT, Draft
from localspec.ngram import NgramIndex
from localspec.substitutions import SPAN_MAX, Substitutions, behind_match
from localspec.verify import SamplingParams

# n_min=2: a single shared token (")", " the", a newline) recurs everywhere,
# so its continuation is close to a guess; llama.cpp only trusts 1-gram
# lookups behind frequency thresholds (common/ngram-cache.cpp), which a plain
# most-recent lookup does not have. n_max=8: the length of the match is the
# planner's confidence signal (an 8-token repeat is usually a quoted line whose
# continuation is right; a 2-token one often is not), so the index keeps keys
# that long; each extra size costs one dict update per token. Longer matches
# (a copy in progress, up to ngram.MATCH_MAX) are measured by comparing back.
DEFAULT_N_MIN = 2
DEFAULT_N_MAX = 8


_APART = -1  # between quoted sources: no token, so no match runs from one into the next


def quoted_forms(texts: Sequence[str]) -> list[str]:
    """Each text as it reads inside a JSON string (line breaks as \\n, quotes
    and backslashes escaped), where that differs from the text: what a tool
    call's arguments or a JSON reply copy from the prompt. Written as models
    write JSON: other characters as they are, not \\u escapes."""
    out = []
    for text in texts:
        escaped = json.dumps(text, ensure_ascii=False)[1:-1]
        if escaped != text:
            out.append(escaped)
    return out


class LookupDrafter:
    """Drafter that proposes the continuation of the longest suffix repeat.

    Its drafts are point masses (`probs=None`): the verifier treats each
    token as drawn with probability one, which keeps sampling lossless.
    A draft's `match_n` is the n-gram length behind it (0 when nothing
    matched), a confidence signal for choosing the draft length.
    """

    name = "lookup"

    def __init__(self, n_min: int = DEFAULT_N_MIN, n_max: int = DEFAULT_N_MAX):
        self.index = NgramIndex(n_min=n_min, n_max=n_max)
        self.quoted = NgramIndex(n_min=n_min, n_max=n_max)  # text a reply may copy that the context lacks as tokens
        self.substitutions = Substitutions()  # what the reply changes in what it copies (a rename)
        self._seen = 0  # context tokens already checked against the substitutions

    def quote(self, sources: Sequence[Sequence[int]]) -> None:
        """Token sequences the reply may copy that are not in the context as
        such (the prompt's texts as a JSON string writes them: `quoted_forms`),
        looked up after the context, for this reply only; [] for none."""
        seq: list[int] = []
        for source in sources:
            seq += [*source, _APART]
        self.quoted.sync(seq)

    def propose(
        self,
        context: Sequence[int],
        k: int,
        sampling: SamplingParams | None,
        rng: np.random.Generator | None,
        stop_below: float = 0.0,
    ) -> Draft:
        self.index.sync(context)
        seq = self.index.sequence
        self.substitutions.refute(seq[self._seen :])  # empty after a rollback past it
        self._seen = len(seq)
        # Past the k asked for: a substitution may write fewer tokens than it replaces.
        tokens, match_n, match_end = self.index.lookup_match(k + SPAN_MAX if k > 0 else 0)
        if tokens:
            found = behind_match(seq, match_end, match_n)
            if found:
                self.substitutions.learn(*found)
            tokens = self.substitutions.apply(tokens)[:k]
        if len(self.quoted):
            # The context's own repeat wins unless the quoted text matches longer.
            quoted, quoted_n = self.quoted.continuation(context, k)
            if _APART in quoted:
                quoted = quoted[: quoted.index(_APART)]
            if quoted and quoted_n > match_n:
                tokens, match_n = quoted, quoted_n
        return Draft(tokens=tokens, source=self.name, match_n=match_n) if tokens else EMPTY_DRAFT

    def learned(self) -> Substitutions:
        """A copy of what lookup has learned from the text it met (the renames);
        `restore` puts it back."""
        return copy.deepcopy(self.substitutions)

    def restore(self, learned: Substitutions) -> None:
        self.substitutions = copy.deepcopy(learned)

    def behind(self, context: Sequence[int]) -> int:
        return 0  # the index follows the context for a dict update per token

    def observe(self, context: Sequence[int], n_accepted: int) -> None:
        self.index.sync(context)

    def close(self) -> None:
        self.index.reset()
        self.quoted.reset()
        self.substitutions.clear()
        self._seen = 0
