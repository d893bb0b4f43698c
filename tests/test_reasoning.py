"""A thinking model's reply read into reasoning and answer (localspec/reasoning.py):
pure, no model. The grammar side runs through llama.cpp in test_grammar_reasoning.py."""

from __future__ import annotations

import random

import pytest

from localspec.reasoning import Reasoning, ReasoningSplit, reasoning_tokens

CASES = [
    # (prompt opens <think>, reply, reasoning, answer)
    (True, "Let me see.\n</think>\n\nThe answer is 4.", "Let me see.", "The answer is 4."),
    (True, "\nstep one\n\nstep two\n</think>4", "step one\n\nstep two", "4"),
    (True, "cut short while thin", "cut short while thin", ""),  # a reply cut inside the reasoning is all reasoning
    (True, "cut short at the tag </thi", "cut short at the tag </thi", ""),
    (True, "</think>\n\nno thoughts", "", "no thoughts"),
    (True, "a < b and </ b> too\n</think>ok", "a < b and </ b> too", "ok"),
    (True, "x</think> y </think> z", "x", "y </think> z"),  # the first end tag ends it
    (False, "<think>\nhmm\n</think>\n\nHello!", "hmm", "Hello!"),
    (False, "\n  <think>hmm</think>Hi", "hmm", "Hi"),
    (False, "Hello! <think>not at the start</think>", "", "Hello! <think>not at the start</think>"),
    (False, "<thing>is not a tag", "", "<thing>is not a tag"),
    (False, "<thi", "", "<thi"),  # a reply that ends where a tag could have begun
    (False, "  indented answer", "", "  indented answer"),
    (False, "", "", ""),
    (False, "<think>never closed", "never closed", ""),
    (True, "done\n</think>\n\n", "done", ""),  # nothing but space after the tag
    (True, "  \n", "", ""),
    (False, "  \n", "", "  \n"),
    (False, " <think></think> ", "", ""),
]


def read(split: ReasoningSplit, pieces: list[str]) -> tuple[str, str]:
    reasoning = answer = ""
    for piece in pieces:
        r, a = split.push(piece)
        reasoning, answer = reasoning + r, answer + a
    r, a = split.finish()
    return reasoning + r, answer + a


@pytest.mark.parametrize("open_, reply, reasoning, answer", CASES)
def test_a_reply_read_whole(open_, reply, reasoning, answer):
    assert read(Reasoning(open_).split(), [reply]) == (reasoning, answer)


@pytest.mark.parametrize("open_, reply, reasoning, answer", CASES)
def test_any_pieces_read_as_the_whole(open_, reply, reasoning, answer):
    # Every cut into two pieces, then random cuts into many (as tokens stream out).
    cuts = [[reply[:i], reply[i:]] for i in range(len(reply) + 1)]
    rng = random.Random(0)
    for _ in range(50):
        points = sorted(rng.sample(range(len(reply) + 1), min(len(reply) + 1, rng.randint(1, 8))))
        cuts.append([reply[a:b] for a, b in zip([0, *points], [*points, len(reply)])])
    for pieces in cuts:
        assert read(Reasoning(open_).split(), pieces) == (reasoning, answer), pieces


@pytest.mark.parametrize("open_, reply, reasoning, answer", CASES)
def test_the_answer_begins_where_the_split_reads_it(open_, reply, reasoning, answer):
    # A token per character: those before the answer are the reasoning's.
    assert reasoning_tokens(Reasoning(open_), list(reply)) == len(reply) - len(answer)


@pytest.mark.parametrize(
    "open_, pieces, n",
    [
        (True, ["hm", "m\n</", "think", ">\n\n", "\nThe", " end"], 5),  # the token carrying the space before the answer counts
        (True, ["hm", "m", "</think>", "The", " end"], 3),  # (a control token's piece is its tag)
        (True, ["still", " think", "", "ing\u00e9"], 4),  # never closed: every token, "" pieces (half a character) too
        (False, ["The", " answer"], 0),
        (False, ["<think>", "x", "</think>", "Hi"], 3),
        (True, [], 0),
    ],
)
def test_the_tokens_that_begin_before_the_answer_are_the_reasonings(open_, pieces, n):
    assert reasoning_tokens(Reasoning(open_), pieces) == n


def test_nothing_waits_that_cannot_be_a_tag_or_trimmed():
    split = ReasoningSplit(True)
    assert split.push("first thought, ") == ("first thought,", "")  # its space waits: the tag may follow
    assert split.push("second") == (" second", "")
    assert split.push(" </th") == ("", "")
    assert not split.answering
    assert split.push("ink>\n") == ("", "")
    assert split.answering
    assert split.push("answer") == ("", "answer")


def test_an_answer_at_once_is_given_out_at_once():
    split = ReasoningSplit(False)
    assert split.push("Hel") == ("", "Hel")
    assert split.answering
    assert split.push("lo <think>") == ("", "lo <think>")


def test_the_grammar_rules_let_the_reasoning_come_first():
    gbnf, root = Reasoning(open=True).around('root ::= "x"\n')
    assert root == "reasoning-root" and gbnf.startswith('root ::= "x"\n')
    assert 'reasoning-root ::= reasoning-text "</think>" reasoning-ws root' in gbnf
    gbnf, _ = Reasoning(open=False).around('root ::= "x"\n')
    assert 'reasoning-root ::= reasoning-ws "<think>" reasoning-text "</think>" reasoning-ws root | root' in gbnf


def test_the_added_rules_are_named_apart_from_the_grammars_own():
    schema_like = 'root ::= "{" reasoning-text "}"\nreasoning-text ::= [a-z]+\n'
    gbnf, root = Reasoning(open=True).around(schema_like)
    assert root == "reasoning1-root" and "reasoning-text ::= [a-z]+" in gbnf
    assert 'reasoning1-root ::= reasoning1-text "</think>" reasoning1-ws root' in gbnf
