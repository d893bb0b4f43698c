"""Lookup inside JSON on the real 1.5B target: a reply held to a schema copies
a file from the prompt into a JSON string, line breaks written as \\n, so
the prompt's own tokens stop matching at every line; the prompt's text in
its JSON-escaped form (Engine.chat quotes it when a grammar holds the reply)
lets the drafts run on. Output unchanged, fewer verify steps."""

from __future__ import annotations

import json

import pytest

from localspec.bench.agent_requests import SHAPES
from localspec.engine import load_engine
from localspec.generate import GenerateOptions
from localspec.grammar import schema_to_gbnf
from localspec.lossless import TIE_MARGIN
from test_lossless import assert_lossless

pytestmark = [pytest.mark.qwen, pytest.mark.models]

# The agent benchmark's file, its first three functions.
CODE = SHAPES[: SHAPES.index("\n\n\ndef describe")] + "\n"
ASK = [{"role": "user", "content": f'Put this file in JSON, under the key "content", exactly as it is.\n\n{CODE}'}]
FILE = {"type": "object", "properties": {"content": {"type": "string"}}, "required": ["content"], "additionalProperties": False}


@pytest.fixture(scope="module")
def engine(qwen_target_path):
    engine = load_engine(str(qwen_target_path), None, method="lookup")
    yield engine
    engine.close()


def run(gen):
    for _ in gen:
        pass
    assert gen.result is not None
    return gen.result


def test_the_prompt_quoted_as_json_drafts_the_copy_on_through_its_line_breaks(engine):
    options = GenerateOptions(max_tokens=150, grammar=schema_to_gbnf(FILE), trace=True)
    unquoted = run(engine.generate(engine.chat_tokens(ASK), options))  # the prompt's tokens only
    quoted = run(engine.chat(ASK, options))
    assert_lossless(unquoted, quoted, TIE_MARGIN)
    assert "def perimeter(w, h):" in json.loads(quoted.text)["content"]
    assert quoted.counters.accepted > 1.3 * unquoted.counters.accepted
    assert quoted.counters.steps < 0.85 * unquoted.counters.steps
    # Unconstrained, nothing is quoted: the same request without a grammar drafts as before.
    free = GenerateOptions(max_tokens=40)
    a, b = run(engine.generate(engine.chat_tokens(ASK), free)), run(engine.chat(ASK, free))
    assert (a.counters.steps, a.counters.accepted) == (b.counters.steps, b.counters.accepted)
