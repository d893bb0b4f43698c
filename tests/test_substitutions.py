"""Lookup carries the reply's own substitutions (a rename) into its later copies."""

from localspec.drafters.lookup import LookupDrafter
from localspec.substitutions import Substitutions, behind_match

# A source that names the same thing (7) three times, each inside agreeing text.
SOURCE = [1, 2, 3, 7, 4, 5, 6, 10, 11, 12, 7, 13, 14, 15, 16, 17, 7, 18, 19]


def propose(context, k):
    return LookupDrafter().propose(context, k, None, None).tokens


def test_a_rename_made_once_is_made_in_the_next_proposal():
    # The reply copies the source with 7 written as 8 8 (one token renamed to two).
    reply = [1, 2, 3, 8, 8, 4, 5, 6]
    context = SOURCE + [0] + reply
    assert behind_match(context, SOURCE.index(6), 3) == ((7,), (8, 8))
    # Plain lookup would propose the source's 7 again; the drafter writes the new name.
    assert propose(context, 8) == [10, 11, 12, 8, 8, 13, 14, 15]


def test_without_a_rename_the_proposal_is_the_copy():
    context = SOURCE + [0] + [1, 2, 3, 7, 4, 5, 6]
    assert propose(context, 5) == [10, 11, 12, 7, 13]


def test_the_old_name_written_again_retracts_the_substitution():
    drafter = LookupDrafter()
    reply = [1, 2, 3, 8, 8, 4, 5, 6]
    assert drafter.propose(SOURCE + [0] + reply, 4, None, None).tokens == [10, 11, 12, 8]
    # The reply wrote the old name after all: the copy goes back to the source.
    reply += [10, 11, 12, 7, 13]
    assert drafter.propose(SOURCE + [0] + reply, 3, None, None).tokens == [14, 15, 16]
    assert len(drafter.substitutions) == 0


def test_longer_and_newer_substitutions_win():
    subs = Substitutions()
    subs.learn((7,), (8,))
    subs.learn((7, 9), (5,))
    subs.learn((7,), (6,))
    assert subs.apply([1, 7, 9, 7, 2]) == [1, 5, 6, 2]


def test_no_substitution_without_agreement_on_both_sides():
    context = SOURCE + [0] + [9, 9, 9, 8, 4, 5, 6]  # nothing before the change agrees
    assert behind_match(context, SOURCE.index(6), 3) is None
