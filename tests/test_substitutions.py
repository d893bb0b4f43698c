"""Lookup carries the reply's own substitutions (a rename) into its later copies."""

from localspec.drafters.lookup import LookupDrafter
from localspec.substitutions import Substitutions, behind_match

# A source that names the same thing (7) four times, each inside agreeing text.
SOURCE = [1, 2, 3, 7, 4, 5, 6, 10, 11, 12, 7, 13, 14, 15, 16, 17, 7, 18, 19, 20, 21, 7, 22, 23]
RENAMED = [1, 2, 3, 8, 8, 4, 5, 6, 10, 11, 12, 8, 8, 13, 14, 15, 16, 17]  # 7 written 8 8, twice


def propose(context, k):
    return LookupDrafter().propose(context, k, None, None).tokens


def written(reply, start=8):
    """A drafter that proposed after each token of `reply` from its `start`-th, as in a reply."""
    drafter = LookupDrafter()
    for n in range(start, len(reply) + 1):
        drafter.propose(SOURCE + [0] + reply[:n], 4, None, None)
    return drafter


def test_a_rename_made_twice_is_made_in_the_next_proposal():
    # The reply copies the source with 7 written as 8 8 (one token renamed to two).
    context = SOURCE + [0] + RENAMED[:8]
    assert behind_match(context, SOURCE.index(6), 3) == ((7,), (8, 8), len(SOURCE) + 4)
    # Made once, it may be a fix: the proposal is still the source's.
    assert propose(context, 5) == [10, 11, 12, 7, 13]
    # Made twice, it is a rename: plain lookup would propose the source's 7 again.
    assert written(RENAMED).propose(SOURCE + [0] + RENAMED, 6, None, None).tokens == [8, 8, 18, 19, 20, 21]


def test_without_a_rename_the_proposal_is_the_copy():
    context = SOURCE + [0] + [1, 2, 3, 7, 4, 5, 6]
    assert propose(context, 5) == [10, 11, 12, 7, 13]


def test_the_old_name_written_again_retracts_the_substitution():
    drafter = written(RENAMED)
    assert drafter.propose(SOURCE + [0] + RENAMED, 3, None, None).tokens == [8, 8, 18]
    # The reply wrote the old name after all: the copy goes back to the source.
    reply = RENAMED + [7, 18, 19]
    assert drafter.propose(SOURCE + [0] + reply, 3, None, None).tokens == [20, 21, 7]
    assert len(drafter.substitutions) == 0


def test_longer_and_newer_substitutions_win():
    subs = Substitutions()
    for at in (10, 20):  # each seen at two places
        subs.learn((7,), (8,), at)
        subs.learn((7, 9), (5,), at)
        subs.learn((7,), (6,), at)
    assert subs.apply([1, 7, 9, 7, 2]) == [1, 5, 6, 2]


def test_no_substitution_without_agreement_on_both_sides():
    context = SOURCE + [0] + [9, 9, 9, 8, 4, 5, 6]  # nothing before the change agrees
    assert behind_match(context, SOURCE.index(6), 3) is None
