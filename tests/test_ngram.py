from __future__ import annotations

import random

import numpy as np
import pytest

from localspec.drafters import EMPTY_DRAFT
from localspec.drafters.lookup import LookupDrafter, quoted_forms
from localspec.ngram import MATCH_MAX, NgramIndex, common_prefix_len
from localspec.verify import SamplingParams


def built(tokens, n_min=1, n_max=4) -> NgramIndex:
    index = NgramIndex(n_min=n_min, n_max=n_max)
    index.sync(tokens)
    return index


def reference_lookup(seq, k, n_min, n_max):
    """Brute force: scan backwards for the longest suffix's newest earlier
    occurrence, then copy forward through the growing output (so a match
    that overlaps the suffix repeats its period). The length reported is how
    far that occurrence agrees with the text going back, up to MATCH_MAX."""
    end = len(seq) - 1
    if k <= 0:
        return [], 0
    for n in range(n_max, n_min - 1, -1):
        if n > end:
            continue
        suffix = seq[end - n + 1 :]
        for start in range(end - n, -1, -1):
            if seq[start : start + n] == suffix:
                out = list(seq)
                for i in range(k):
                    out.append(out[start + n + i])
                agree = n
                while agree < MATCH_MAX and start + n - 1 - agree >= 0 and seq[start + n - 1 - agree] == seq[end - agree]:
                    agree += 1
                return out[len(seq) :], agree
    return [], 0


def test_a_copy_in_progress_reports_its_whole_length():
    # The index keys stop at 8 tokens; a 30-token repeat is still told from an
    # 8-token one (the planner drafts long only after long matches).
    passage = list(range(100, 140))
    seq = [1, 2] + passage + [3] + passage[:30]
    assert built(seq, n_max=8).lookup_with_n(4) == (passage[30:34], 30)
    assert built([5] * 200, n_max=8).lookup_with_n(2) == ([5, 5], MATCH_MAX)


def test_continues_the_longest_suffix_match():
    seq = [7, 8, 1, 5, 9, 1, 6, 7, 8, 1]
    # "7 8 1" last appeared at the start, followed by 5 9 1; the bare "1"
    # appeared more recently (followed by 6) but is a shorter match.
    assert built(seq).lookup_with_n(3) == ([5, 9, 1], 3)
    assert built(seq, n_max=1).lookup_with_n(3) == ([6, 7, 8], 1)


def test_uses_the_most_recent_earlier_occurrence():
    seq = [1, 2, 3, 1, 2, 4, 1, 2]
    assert built(seq, n_max=2).lookup(1) == [4]


def test_never_matches_the_suffix_itself():
    assert built([1, 2, 3, 4]).lookup_with_n(4) == ([], 0)
    assert built([5]).lookup_with_n(4) == ([], 0)
    assert built([]).lookup_with_n(4) == ([], 0)


def test_n_min_excludes_short_matches():
    seq = [1, 2, 9, 3, 2]  # only the 1-gram "2" repeats
    assert built(seq, n_min=1).lookup_with_n(2) == ([9, 3], 1)
    assert built(seq, n_min=2).lookup_with_n(2) == ([], 0)


def test_k_limits_and_overlapping_match_repeats_its_period():
    index = built([4, 1, 2, 1, 2])
    assert index.lookup(0) == []
    assert index.lookup(1) == [1]
    assert index.lookup_with_n(5) == ([1, 2, 1, 2, 1], 2)
    assert built([3, 3, 3]).lookup(4) == [3, 3, 3, 3]


def test_accepts_numpy_and_tuples():
    seq = [7, 8, 1, 5, 9, 1, 6, 7, 8, 1]
    expected = built(seq).lookup_with_n(4)
    assert built(np.array(seq, dtype=np.int32)).lookup_with_n(4) == expected
    assert built(tuple(seq)).lookup_with_n(4) == expected


def test_rejects_bad_sizes():
    with pytest.raises(ValueError):
        NgramIndex(n_min=0)
    with pytest.raises(ValueError):
        NgramIndex(n_min=3, n_max=2)


@pytest.mark.parametrize("a,b,expected", [
    ([], [1], 0), ([1, 2], [1, 2], 2), ([1, 2], [1, 2, 3], 2), ([1, 2, 3], [1, 2], 2),
    ([1, 2, 3], [1, 5, 3], 1), (list(range(2000)), list(range(1500)) + [0] * 600, 1500),
])
def test_common_prefix_len(a, b, expected):
    assert common_prefix_len(a, b) == expected
    assert common_prefix_len(b, a) == expected


@pytest.mark.parametrize("n_min,n_max", [(1, 4), (2, 4), (1, 1), (3, 6)])
def test_random_appends_and_rollbacks_match_a_fresh_index(n_min, n_max):
    rng = random.Random(n_min * 100 + n_max)
    for _trial in range(40):
        alphabet = rng.randint(2, 5)
        index = NgramIndex(n_min=n_min, n_max=n_max)
        seq: list[int] = []
        for _step in range(30):
            roll = rng.random()
            if roll < 0.5:
                seq = seq + [rng.randrange(alphabet) for _ in range(rng.randint(1, 6))]
            elif roll < 0.75:
                seq = seq[: rng.randint(0, len(seq))]
            elif roll < 0.9 and seq:  # edit in the middle: a different history
                cut = rng.randrange(len(seq))
                seq = seq[:cut] + [rng.randrange(alphabet) for _ in range(rng.randint(0, 8))]
            else:
                seq = [rng.randrange(alphabet) for _ in range(rng.randint(0, 40))]
            index.sync(seq)
            fresh = built(seq, n_min, n_max)
            assert index.tokens == seq
            assert index._last == fresh._last  # no stale entries left behind
            assert index._prev == fresh._prev
            for k in (1, 3, 7):
                got = index.lookup_with_n(k)
                assert got == fresh.lookup_with_n(k)
                assert got == reference_lookup(seq, k, n_min, n_max)


def test_syncing_one_token_at_a_time_does_work_per_new_token():
    rng = random.Random(0)
    phrases = [[rng.randrange(50_000) for _ in range(rng.randint(3, 30))] for _ in range(200)]
    seq: list[int] = []
    while len(seq) < 20_000:
        seq.extend(rng.choice(phrases))
    del seq[20_000:]

    index = NgramIndex(n_min=2, n_max=4)
    growing: list[int] = []
    for token in seq:
        growing.append(token)
        index.sync(growing)
        index.lookup(8)
    assert index.ops == sum(len(seq) - (n - 1) for n in (2, 3, 4))

    before = index.ops
    index.sync(seq[:-10])  # a rejected tail costs what it removes
    assert index.ops - before == 10 * 3
    index.sync(seq)
    assert index.ops - before == 20 * 3
    assert index.lookup_with_n(8) == built(seq, 2, 4).lookup_with_n(8)

    before = index.ops
    index.sync([1, 2, 3])  # a new conversation rebuilds instead of unwinding 20k tokens
    assert index.ops - before == 2 + 1
    assert index.tokens == [1, 2, 3]


# Drafter

CODE_LINE = [101, 17, 23, 42, 8, 13]  # e.g. "    total += price * qty\n"
GREEDY = SamplingParams()


def test_drafter_proposes_the_repeated_code_line():
    drafter = LookupDrafter()
    context = [5] + CODE_LINE + [60, 61, 13] + CODE_LINE[:3]
    draft = drafter.propose(context, 4, GREEDY, np.random.default_rng(0))
    assert draft.tokens == [42, 8, 13, 60]
    assert draft.probs is None
    assert draft.match_n == 3 and draft.source == "lookup" and not draft.ran

    short = drafter.propose(context, 2, GREEDY, np.random.default_rng(0))
    assert short.tokens == [42, 8]


def test_drafter_is_empty_without_a_match_or_budget():
    drafter = LookupDrafter()
    rng = np.random.default_rng(0)
    none = drafter.propose([1, 2, 3, 4, 5], 4, GREEDY, rng)
    assert none == EMPTY_DRAFT and none.match_n == 0
    assert drafter.propose(CODE_LINE * 2, 0, GREEDY, rng) == EMPTY_DRAFT


def test_drafter_follows_rollbacks_via_observe():
    drafter = LookupDrafter()
    rng = np.random.default_rng(0)
    context = CODE_LINE + [60, 61, 13] + CODE_LINE[:2]
    assert drafter.propose(context, 3, GREEDY, rng).tokens == [23, 42, 8]
    # The target rejected the draft and emitted 99 instead.
    drafter.observe(context + [99], 0)
    assert drafter.index.tokens == context + [99]
    assert drafter.propose(context + [99], 3, GREEDY, rng) == EMPTY_DRAFT
    drafter.close()
    assert len(drafter.index) == 0


# Quoted sources: text the reply copies in another form (JSON-escaped)


def test_continuation_follows_the_longest_tail_held_elsewhere():
    quoted = NgramIndex(n_min=2, n_max=4)
    quoted.sync([1, 2, 3, 4, 5, 6, 7, 2, 3, 9])
    assert quoted.continuation([50, 2, 3], 3) == ([9], 2)  # the newest occurrence of (2, 3)
    assert quoted.continuation([50, 1, 2, 3], 3) == ([4, 5, 6], 3)  # a longer tail wins
    assert quoted.continuation([50, 51], 3) == ([], 0)
    # Nothing follows the newest (3, 9)... the index's last tokens: the one before, if any.
    assert quoted.continuation([3, 9], 2) == ([], 0)
    long = list(range(100, 140))
    quoted.sync(long + [7])
    tokens, n = quoted.continuation([1] + long, 1)
    assert tokens == [7] and n == 40  # measured past n_max, as a copy in progress


def test_quoted_forms_are_the_texts_as_a_json_string_writes_them():
    assert quoted_forms(['a = "x"\nb\\c', "plain words", "naïve\tcafé"]) == ['a = \\"x\\"\\nb\\\\c', "naïve\\tcafé"]


def test_drafter_drafts_from_a_quoted_source_when_it_matches_longer():
    drafter = LookupDrafter()
    rng = np.random.default_rng(0)
    # The prompt's lines end in a real line break (13); the reply writes the escape (77).
    prompt, reply = [5, 42, 8, 13, 101, 17, 23, 13, 60], [2, 42, 8, 77, 101, 17, 23]
    context = prompt + reply
    drafter.quote([[42, 8, 77, 101, 17, 23, 77, 60], [90, 91, 92]])
    draft = drafter.propose(context, 4, GREEDY, rng)
    assert draft.tokens == [77, 60] and draft.match_n == 6  # cut where the next source begins
    # The context's own repeat wins a tie.
    drafter.quote([[17, 23, 77]])
    assert drafter.propose(context, 2, GREEDY, rng).tokens == [13, 60]
    drafter.quote([])
    assert drafter.propose(context, 2, GREEDY, rng).tokens == [13, 60] and len(drafter.quoted) == 0
