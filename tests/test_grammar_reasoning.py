"""A grammar that holds a thinking model's answer leaves its reasoning free:
llama.cpp's grammar sampler on SmolLM2-135M's vocabulary (localspec/reasoning.py,
localspec/grammar.py)."""

from __future__ import annotations

import re

import pytest

from localspec.backend import Model
from localspec.engine import load_engine
from localspec.generate import GenerateOptions
from localspec.grammar import Grammar, LazyGrammar, schema_to_gbnf
from localspec.lossless import TIE_MARGIN
from localspec.reasoning import Reasoning
from test_lossless import assert_lossless

YES_NO = 'root ::= "yes" | "no"\n'
CALL = 'root ::= "<tool_call>" [a-z]+ "</tool_call>"\n'


@pytest.fixture(scope="module")
def model(smollm2_path):
    m = Model(smollm2_path)
    yield m
    m.close()


def forced(model: Model, open_: bool) -> Grammar:
    return Grammar(model, *Reasoning(open_).around(YES_NO))


def walk(model: Model, grammar, text: str) -> bool:
    """Feeds `text`'s tokens while the grammar allows them; whether it allowed all."""
    for t in model.tokenize(text, add_special=False, parse_special=False):
        if not grammar.allowed(t):
            return False
        grammar.accept(t)
    return True


@pytest.mark.parametrize(
    "open_, reply, takes_it, may_end",
    [
        (True, "Is it? <tool_call> maybe yes.\n</think>\n\nyes", True, True),
        (True, "</think>no", True, True),
        (True, "yes", True, False),  # still reasoning: the answer must follow its end tag
        (True, "hmm</think>maybe", False, False),
        (False, "<think>\nhmm, no.\n</think>\n\nno", True, True),
        (False, "no", True, True),  # no reasoning at all
        (False, "maybe", False, False),
        (False, "hmm</think>no", False, False),  # not open: an end tag alone is no reasoning
    ],
)
def test_a_forced_grammar_holds_only_the_answer_after_the_reasoning(model, open_, reply, takes_it, may_end):
    g = forced(model, open_)
    assert walk(model, g, reply) is takes_it
    if takes_it:
        assert g.allowed(model.eos) is may_end


def test_a_lazy_grammar_is_not_triggered_by_the_reasoning(model):
    g = LazyGrammar(model, CALL, re.escape("<tool_call>"), reasoning=Reasoning(open=True))
    assert walk(model, g, "I could write <tool_call> here, or not.\n")
    assert not g.held and g.mask().all()
    assert walk(model, g, "</think>\n\nSo: <tool_call>")
    assert g.held and not g.allowed(model.eos)
    g.reset()
    assert walk(model, g, "done</think><tool_call>") and g.held  # the answer begins inside the end tag's token


def test_a_lazy_grammar_without_reasoning_in_the_reply_holds_from_its_trigger(model):
    g = LazyGrammar(model, CALL, re.escape("<tool_call>"), reasoning=Reasoning(open=False))
    assert walk(model, g, "<tool_call>") and g.held
    g.reset()
    assert walk(model, g, "<think><tool_call></think>") and not g.held
    assert walk(model, g, " <tool_call>") and g.held
    g.reset()
    assert walk(model, g, "</think><tool_call>") and g.held  # no reasoning began, so nothing of it is cut


@pytest.fixture(scope="module")
def smollm2_pair(smollm2_path):
    engine = load_engine(str(smollm2_path), str(smollm2_path), method="draft", draft_max=5)
    yield engine
    engine.close()


@pytest.mark.parametrize("method", ["draft", "draft+lookup"])
def test_speculation_under_a_reasoning_grammar_writes_what_plain_decoding_writes(smollm2_pair, method):
    """The whole engine path: the grammar compiles with the reasoning rules and
    the verifier masks every row with it, through free reasoning text."""

    def run(m: str):
        smollm2_pair.method = m
        options = GenerateOptions(max_tokens=60, trace=True, grammar=YES_NO, reasoning=Reasoning(open=True))
        gen = smollm2_pair.chat([{"role": "user", "content": "Is water wet? Think, then say yes or no."}], options)
        for _ in gen:
            pass
        return gen.result

    plain, spec = run("none"), run(method)
    assert_lossless(plain, spec, TIE_MARGIN)
    assert plain.text and spec.counters.drafted > 0


def test_a_schema_whose_rules_share_the_reasoning_names_still_holds_the_answer(model):
    # The converter names rules after properties: here reasoning, reasoning-text, ...
    schema = {"type": "object", "properties": {"reasoning": {"type": "object", "properties": {
        "text": {"type": "object", "properties": {"a": {"type": "integer"}}}}}}}  # fmt: skip
    gbnf = schema_to_gbnf(schema)
    assert "\nreasoning-text ::=" in gbnf
    g = Grammar(model, *Reasoning(open=True).around(gbnf))
    assert walk(model, g, 'I think {"a": 1} fits.</think>\n{"reasoning": {"text": {"a": 1}}}')
    assert g.allowed(model.eos)
    g.reset()
    assert not walk(model, g, '</think>{"reasoning": {"text": "free"}}')
