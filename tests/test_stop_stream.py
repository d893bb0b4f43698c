"""Stop strings in a stream: what is released adds up to the final text, whatever the step boundaries."""

from __future__ import annotations

import random

import pytest

from localspec.events import EmittedToken
from localspec.generate import StopHoldback


def reference_cut(steps: list[list[str]], stops: tuple[str, ...]) -> tuple[str, bool]:
    """The text a reader should get: everything, or up to the first stop string
    (the earliest start among those complete at the first step where any is)."""
    text = ""
    for pieces in steps:
        text += "".join(pieces)
        hits = [text.find(s) for s in stops if s and s in text]
        if hits:
            return text[: min(hits)], True
    return text, False


def stream(steps: list[list[str]], stops: tuple[str, ...]):
    hold = StopHoldback(stops)
    released, seen_tokens = [], 0
    for i, pieces in enumerate(steps):
        tokens = [EmittedToken(seen_tokens + j, "target") for j in range(len(pieces))]
        seen_tokens += len(pieces)
        out_tokens, out_pieces, hit = hold.push(tokens, pieces, last=i == len(steps) - 1)
        assert len(out_tokens) == len(out_pieces)
        released.append("".join(out_pieces))
        if hit:
            break
    return hold, released, hit


def random_steps(rng: random.Random, alphabet: str) -> list[list[str]]:
    return [
        ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3))) for _ in range(rng.randint(1, 4))]
        for _ in range(rng.randint(1, 8))
    ]


@pytest.mark.parametrize("seed", range(400))
def test_released_text_adds_up_to_the_final_text(seed):
    rng = random.Random(seed)
    alphabet = "ab\n"
    stops = tuple("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(0, 3)))
    steps = random_steps(rng, alphabet)
    hold, released, hit = stream(steps, stops)
    assert ("".join(released), hit) == (hold.text, hit) == reference_cut(steps, stops)
    assert not any(s in hold.text for s in stops if s)


def test_a_stop_spanning_three_steps_never_reaches_the_reader():
    hold, released, hit = stream([["The end", " is "], ["<|", "st"], ["op|>", " more"]], ("<|stop|>",))
    assert hit and hold.text == "The end is "
    # The last 7 characters wait while they could begin "<|stop|>", in whole tokens.
    assert released == ["", "The end", " is "]


def test_without_stops_every_token_is_released_in_its_own_step():
    hold = StopHoldback(())
    tokens = [EmittedToken(1, "draft"), EmittedToken(2, "target")]
    assert hold.push(tokens, ["a", "b"], last=False) == (tokens, ["a", "b"], False)


def test_held_tokens_keep_their_origin_when_released_later():
    hold = StopHoldback(("xyz",))
    a, b = EmittedToken(1, "draft"), EmittedToken(2, "target")
    assert hold.push([a], ["hello"], last=False) == ([], [], False)  # its last 2 characters may begin "xyz"
    assert hold.push([b], ["!"], last=True) == ([a, b], ["hello", "!"], False)


def test_the_token_a_stop_starts_in_is_released_clipped():
    hold = StopHoldback(("STOP",))
    a, b = EmittedToken(1, "draft"), EmittedToken(2, "target")
    assert hold.push([a, b], ["ok", "!ST"], last=False) == ([a], ["ok"], False)
    assert hold.push([EmittedToken(3, "target")], ["OP now"], last=False) == ([b], ["!"], True)
    assert hold.text == "ok!"
