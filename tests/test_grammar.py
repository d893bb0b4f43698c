"""Constrained output through the real engine: llama.cpp's grammar sampler on
SmolLM2-135M's vocabulary, greedy speculative runs against plain decoding
under the same grammar, replies checked with `jsonschema`."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from localspec.backend import Model
from localspec.engine import load_engine
from localspec.errors import LocalspecError
from localspec.generate import GenerateOptions
from localspec.grammar import JSON_OBJECT_GBNF, Grammar, LazyGrammar, schema_to_gbnf
from localspec.lossless import TIE_MARGIN
from localspec.verify import SamplingParams
from test_lossless import assert_lossless

jsonschema = pytest.importorskip("jsonschema")

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer"},
        "languages": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
    },
    "required": ["name", "age", "languages"],
    "additionalProperties": False,
}
EXTRACT = (
    "Return the person in this note as JSON.\n\n"
    "Note: Ada Lovelace, aged 36, reads English and French and writes to Charles Babbage every week."
)


@pytest.fixture(scope="module")
def vocab_model(smollm2_path):
    model = Model(smollm2_path)
    yield model
    model.close()


@pytest.mark.parametrize(
    "gbnf, reason",
    [
        ("root ::= foo", "Undefined rule identifier 'foo'"),
        ('start ::= "a"', "grammar does not contain a 'root' symbol"),
        ('root ::= root "a"', "left recursion"),
        ("root ::= [a-", "unexpected end of input"),
        ("   ", "the grammar is empty"),
    ],
)
def test_a_grammar_llama_cpp_refuses_is_one_line_with_its_reason(vocab_model, gbnf, reason):
    with pytest.raises(LocalspecError) as e:
        Grammar(vocab_model, gbnf)
    assert reason in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "schema, reason",
    [
        ({"type": "strin"}, "Unrecognized schema"),
        ({"$ref": "#/definitions/missing"}, "Error resolving ref"),
        ({"type": "string", "pattern": "[a-z]+"}, 'Pattern must start with "^"'),
        ([{"type": "string"}], "must be an object"),
    ],
)
def test_a_schema_the_converter_refuses_is_a_localspec_error(schema, reason):
    with pytest.raises(LocalspecError) as e:
        schema_to_gbnf(schema)
    assert reason in str(e.value)


def test_strings_refuse_raw_control_characters_and_space_may_break_lines(vocab_model):
    """The two rules brought up to llama.cpp's C++ converter: JSON forbids a raw
    newline inside a string, and models lay JSON out over lines."""
    g = Grammar(vocab_model, schema_to_gbnf({"type": "object", "properties": {"a": {"type": "string"}}}))
    newline = vocab_model.tokenize("\n", add_special=False, parse_special=False)
    assert len(newline) == 1 and not g.allowed(newline[0])  # nothing comes before the "{"
    brace = vocab_model.tokenize("{", add_special=False, parse_special=False)[0]
    g.accept(brace)
    assert g.allowed(newline[0])  # after it, a line break is space
    for t in vocab_model.tokenize('"a": "x', add_special=False, parse_special=False):
        assert g.allowed(t)
        g.accept(t)
    assert not g.allowed(newline[0])
    assert g.allowed(vocab_model.tokenize("\\n", add_special=False, parse_special=False)[0])


def test_mask_agrees_with_single_checks_and_the_state_follows_accepts(vocab_model):
    g = Grammar(vocab_model, JSON_OBJECT_GBNF)
    mask = g.mask()
    assert mask.shape == (vocab_model.n_vocab,)
    brace = vocab_model.tokenize("{", add_special=False, parse_special=False)[0]
    assert mask[brace] and 0 < mask.sum() < vocab_model.n_vocab / 100
    sample = np.random.default_rng(0).integers(0, vocab_model.n_vocab, 500)
    assert (g.allowed_among(sample) == mask[sample]).all()
    g.accept(brace)
    assert not g.allowed(brace)  # a key or "}" now, not another object
    g.reset()
    assert g.allowed(brace)


def test_a_lazy_grammar_allows_anything_until_its_trigger_then_holds(vocab_model):
    """As llama-server's tool-call grammars under tool_choice auto: free text,
    then, from where the text matches the trigger on, only what the grammar allows."""
    tok = lambda s: vocab_model.tokenize(s, add_special=False, parse_special=False)  # noqa: E731
    g = LazyGrammar(vocab_model, JSON_OBJECT_GBNF, re.escape('{"'))
    assert g.mask().all()
    for t in tok("Here is the person as JSON: {"):
        g.accept(t)
    assert not g.held and g.mask().all()
    for t in tok('"name'):  # the match starts inside the first token's text
        g.accept(t)
    assert g.held
    mask = g.mask()  # inside a key: no end, and no raw line break
    assert not mask.all() and not mask[vocab_model.eos] and not mask[tok("\n")[0]]
    assert g.allowed(tok('":')[0])
    g.reset()
    assert not g.held and g.mask().all()


def test_a_lazy_grammar_that_refuses_its_trigger_leaves_the_reply_free(vocab_model):
    g = LazyGrammar(vocab_model, 'root ::= "{" [a-z]+ "}"', r"\{\d")
    for t in vocab_model.tokenize("so {1 and", add_special=False, parse_special=False):
        g.accept(t)  # (a held grammar would abort the process on " and")
    assert g.state == "free" and g.mask().all()


@pytest.fixture(scope="module")
def smollm2_pair(smollm2_path):
    engine = load_engine(str(smollm2_path), str(smollm2_path), method="draft", draft_max=5)
    yield engine
    engine.close()


def constrained(
    engine, method: str, prompt: str, grammar: str, temp: float = 0.0, seed: int = 0, logprobs=None, trigger=None
):
    engine.method = method
    options = GenerateOptions(
        max_tokens=100,
        trace=True,
        grammar=grammar,
        grammar_trigger=trigger,
        sampling=SamplingParams(temp=temp, seed=seed),
        logprobs=logprobs,
    )
    gen = engine.chat([{"role": "user", "content": prompt}], options)
    for _ in gen:
        pass
    assert gen.result is not None
    return gen.result


@pytest.mark.parametrize("method", ["draft", "lookup", "draft+lookup"])
def test_greedy_constrained_speculation_equals_plain_constrained_decoding(smollm2_pair, method):
    grammar = schema_to_gbnf(PERSON)
    plain = constrained(smollm2_pair, "none", EXTRACT, grammar)
    spec = constrained(smollm2_pair, method, EXTRACT, grammar)
    assert_lossless(plain, spec, TIE_MARGIN)
    assert spec.counters.accepted > 0 and spec.counters.steps < plain.counters.steps
    for result in (plain, spec):
        assert result.stop_reason == "eog"
        jsonschema.validate(json.loads(result.text), PERSON)


@pytest.mark.parametrize("method", ["draft", "lookup"])
def test_a_lazy_grammar_holds_the_reply_from_its_trigger_on_and_stays_exact(smollm2_pair, method):
    """The grammar starts where the model, left alone, first writes the trigger
    token, and from there holds it to an object that validates; speculation
    under it writes what plain decoding under it writes."""
    free = constrained(smollm2_pair, "none", EXTRACT, None)
    ids = [t.id for t in free.trace]
    at = len(ids) // 3
    model = smollm2_pair.target
    opening = model.piece(ids[at]).decode()
    person = schema_to_gbnf(PERSON).replace("root ::=", "person ::=")
    grammar = f"root ::= {json.dumps(opening)} [ \\n]* person\n{person}"
    prefix = model.detokenize(ids[:at])
    assert opening not in prefix  # (the trigger first matches at the chosen token)
    plain = constrained(smollm2_pair, "none", EXTRACT, grammar, trigger=re.escape(opening))
    spec = constrained(smollm2_pair, method, EXTRACT, grammar, trigger=re.escape(opening))
    assert_lossless(plain, spec, TIE_MARGIN)
    held = [t.id for t in plain.trace]
    assert held[: at + 1] == ids[: at + 1] and held != ids  # free until the trigger, held after
    # (past the object the grammar allows space only, which this model writes to max_tokens)
    jsonschema.validate(json.loads(model.detokenize(held[at + 1 :])), PERSON)
    assert spec.counters.accepted > 0


def test_sampled_constrained_replies_validate(smollm2_pair):
    grammar = schema_to_gbnf(PERSON)
    for seed in range(4):
        result = constrained(smollm2_pair, "draft+lookup", EXTRACT, grammar, temp=0.8, seed=seed)
        # (Past the closing brace the grammar still allows a little space, which at
        # this temperature the model may write until max_tokens: still the same JSON.)
        jsonschema.validate(json.loads(result.text), PERSON)


def test_unconstrained_output_would_not_have_validated(smollm2_pair):
    """The grammar is what makes the replies above valid: left alone, this model
    nests made-up keys until max_tokens."""
    result = constrained(smollm2_pair, "none", EXTRACT, None)
    with pytest.raises((ValueError, jsonschema.ValidationError)):
        jsonschema.validate(json.loads(result.text), PERSON)


def test_logprobs_ride_on_every_emitted_token(smollm2_pair):
    result = constrained(smollm2_pair, "draft", EXTRACT, None, logprobs=3)
    assert result.counters.accepted > 0  # drafted tokens got theirs from the verify rows too
    for t in result.trace:
        assert t.logprob is not None and t.logprob <= 0
        assert len(t.top_logprobs) == 3
        assert [lp for _, lp in t.top_logprobs] == sorted((lp for _, lp in t.top_logprobs), reverse=True)
        assert t.top_logprobs[0] == (t.id, t.logprob)  # greedy: the chosen token is the most likely
    assert result.released == result.trace


def test_logprobs_under_a_grammar_are_the_share_of_the_allowed_tokens(smollm2_pair):
    result = constrained(smollm2_pair, "lookup", EXTRACT, schema_to_gbnf(PERSON), logprobs=2)
    jsonschema.validate(json.loads(result.text), PERSON)
    for t in result.trace:
        # Greedy under the grammar: the chosen token is the best allowed, so it leads
        # (with logprobs of the unmasked softmax it often would not: the grammar forces tokens).
        assert t.top_logprobs[0] == (t.id, t.logprob) and t.logprob <= 0
