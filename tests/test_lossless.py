"""Speculative output is the target's own: greedy runs of every method against
plain decoding (`none`) through the real engine and real models."""

from __future__ import annotations

import pytest

from localspec.engine import load_engine
from localspec.events import GenerationResult
from localspec.generate import GenerateOptions
from localspec.lossless import TIE_MARGIN, first_divergence

PROMPTS = [
    "Add type hints to this function and return the whole code:\n\n```python\ndef area(w, h):\n    return w * h\n\n\ndef perimeter(w, h):\n    return 2 * (w + h)\n```",
    "List the planets of the solar system, one per line, with one fact each.",
    'Return this record as YAML: {"name": "Ada", "langs": ["en", "fr"], "age": 36}',
]


def assert_lossless(plain: GenerationResult, spec: GenerationResult, tie_margin: float) -> None:
    i = first_divergence(plain.tokens, spec.tokens)
    if i is None:
        return
    assert i < len(plain.trace), f"speculative run went on past plain's end at token {i}"
    margin = plain.trace[i].margin
    assert margin is not None and margin < tie_margin, (
        f"diverged at token {i} where the target's margin was {margin:.4f} (tie threshold {tie_margin})"
    )


def generate(engine, method: str, prompt: str, max_tokens: int) -> GenerationResult:
    engine.method = method
    gen = engine.chat([{"role": "user", "content": prompt}], GenerateOptions(max_tokens=max_tokens, trace=True))
    for _ in gen:
        pass
    assert gen.result is not None
    return gen.result


@pytest.fixture(scope="module", params=["self", "other"])
def tiny_f32(request, tiny_f32_path, tiny_f32_draft_path):
    # Drafting for itself (all accepted) and with a different random model (mostly rejected).
    draft = tiny_f32_path if request.param == "self" else tiny_f32_draft_path
    engine = load_engine(str(tiny_f32_path), str(draft), method="draft", draft_max=5)
    yield engine
    engine.close()


@pytest.mark.parametrize("method", ["draft", "lookup", "draft+lookup", "auto"])
def test_tiny_f32_speculative_is_identical(tiny_f32, method):
    """In F32 batched and single-row logits agree to ~1e-5 and this model's
    margins are whole units, so anything short of identity is a bug."""
    for prompt in PROMPTS:
        plain = generate(tiny_f32, "none", prompt, 48)
        spec = generate(tiny_f32, method, prompt, 48)
        assert spec.tokens == plain.tokens
        assert spec.text == plain.text


@pytest.fixture(scope="module")
def smollm2_self(smollm2_path):
    # The model drafting for itself: drafts are nearly always right, so every
    # verify step is a full batch, the case where batched rounding shows most.
    engine = load_engine(str(smollm2_path), str(smollm2_path), method="draft", draft_max=5)
    yield engine
    engine.close()


@pytest.mark.parametrize("method", ["draft", "lookup", "draft+lookup"])
def test_smollm2_speculative_equals_plain(smollm2_self, method):
    for prompt in PROMPTS:
        plain = generate(smollm2_self, "none", prompt, 64)
        spec = generate(smollm2_self, method, prompt, 64)
        assert_lossless(plain, spec, TIE_MARGIN)
        assert spec.counters.steps <= plain.counters.steps


COPY_PROMPT = (
    "Repeat the following text exactly, word for word, then stop:\n\n"
    "The committee met on Tuesday to review the budget for the coming year. After a long discussion "
    "of the costs of the new library wing, the members agreed to delay the vote until the architects "
    "had sent their revised drawings, and to ask the treasurer for a second estimate of the heating bill."
)


@pytest.mark.parametrize("draft_max", [15, 31, 63])
def test_smollm2_long_lookup_drafts_equal_plain(smollm2_self, draft_max):
    """Lookup drafts of 15 to 63 tokens, the lengths a machine whose curve is
    cheap at 16, 32 and 64 rows verifies: the output is plain decoding's, and
    long drafts were verified and kept."""
    smollm2_self.draft_max = draft_max
    plain = generate(smollm2_self, "none", COPY_PROMPT, 96)
    spec = generate(smollm2_self, "lookup", COPY_PROMPT, 96)
    smollm2_self.draft_max = 5
    assert_lossless(plain, spec, TIE_MARGIN)
    kept = spec.counters.accepted_at
    assert len(spec.counters.drafted_at) >= 15 and kept[14] > 0, "no draft was kept to its 15th token"


@pytest.fixture(scope="module")
def qwen_pair(qwen_target_path, qwen_draft_path):
    engine = load_engine("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", method="draft", draft_max=4)
    yield engine
    engine.close()


@pytest.mark.qwen
@pytest.mark.parametrize("method", ["draft", "lookup"])
def test_qwen_pair_speculative_equals_plain(qwen_pair, method):
    drafted = 0
    for prompt in PROMPTS:
        plain = generate(qwen_pair, "none", prompt, 48)
        spec = generate(qwen_pair, method, prompt, 48)
        assert_lossless(plain, spec, TIE_MARGIN)
        drafted += spec.counters.drafted
    assert drafted > 0, "the drafter never proposed anything: nothing was verified"


def test_divergence_check_rejects_a_confident_mismatch():
    """The check above must be able to fail: a divergence where the target was sure."""
    from localspec.events import Counters, EmittedToken

    def result(tokens, margins):
        trace = [EmittedToken(t, "target", m) for t, m in zip(tokens, margins)]
        return GenerationResult("", tokens, "max_tokens", Counters(), trace)

    plain = result([1, 2, 3], [5.0, 4.0, 3.0])
    with pytest.raises(AssertionError):
        assert_lossless(plain, result([1, 2, 9], [5.0, 4.0, 3.0]), TIE_MARGIN)
    assert_lossless(result([1, 2, 3], [5.0, 0.01, 3.0]), result([1, 7, 3], [5.0, 0.01, 3.0]), TIE_MARGIN)


def test_margins_at_matches_the_margins_plain_decoding_saw(smollm2_self):
    """The bench's after-the-fact check evaluates the margin plain decoding had at a token."""
    from localspec.lossless import margins_at

    messages = [{"role": "user", "content": PROMPTS[1]}]
    plain = generate(smollm2_self, "none", PROMPTS[1], 24)
    prompt = smollm2_self.target.tokenize(smollm2_self.render_chat(messages), add_special=True, parse_special=True)
    positions = [0, 7, 23, len(plain.tokens)]
    got = margins_at(smollm2_self.target_ctx, prompt, plain.tokens, positions)
    assert sorted(got) == sorted(set(positions))
    for i in positions[:-1]:
        # The cache was filled by a batch here, by single decodes there: rounding apart, the same.
        assert got[i] == pytest.approx(plain.trace[i].margin, abs=0.05)
    assert got[len(plain.tokens)] >= 0.0  # where plain decoding stopped, its choice is judged too
    with pytest.raises(ValueError):
        margins_at(smollm2_self.target_ctx, prompt, plain.tokens, [len(plain.tokens) + 1])


WRITE_FILE = {"type": "function", "function": {"name": "write_file", "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
    "required": ["path", "content"]}}}  # fmt: skip


@pytest.mark.qwen
@pytest.mark.parametrize("method", ["draft", "lookup"])
def test_qwen_pair_forced_tool_call_equals_plain(qwen_pair, method):
    """tool_choice required: the call's grammar (localspec/server/toolgrammar.py)
    holds every drafted position, and greedy output stays plain constrained decoding's."""
    from localspec.server.toolgrammar import force_calls

    grammar = force_calls("hermes", [WRITE_FILE], None)
    messages = [{"role": "user", "content": PROMPTS[0] + "\n\nSave it as shapes.py with write_file."}]

    def run(m: str) -> GenerationResult:
        qwen_pair.method = m
        options = GenerateOptions(max_tokens=64, trace=True, grammar=grammar)
        gen = qwen_pair.chat(messages, options, rendered=qwen_pair.render_chat(messages, [WRITE_FILE]))
        for _ in gen:
            pass
        return gen.result

    plain, spec = run("none"), run(method)
    assert plain.text.startswith('<tool_call>\n{"name": "write_file", "arguments": {')
    assert_lossless(plain, spec, TIE_MARGIN)
    assert spec.counters.drafted > 0, "nothing was drafted under the grammar: nothing was verified"


RENAME_PROMPT = (
    "Rename the function `tot` to `total_price` everywhere and return the whole code:\n\n```python\n"
    "def tot(items):\n    return sum(i.price for i in items)\n\n\n"
    "def report(items):\n    print('total', tot(items))\n    return tot(items)\n\n\n"
    "def check(items):\n    assert tot(items) >= 0\n    return tot(items) > 100\n```"
)


@pytest.mark.qwen
def test_qwen_pair_lookup_with_a_rename_equals_plain(qwen_pair):
    """Lookup carries the reply's rename into its later copies (a changed
    proposal, localspec/substitutions.py): the output is still plain decoding's."""
    plain = generate(qwen_pair, "none", RENAME_PROMPT, 96)
    spec = generate(qwen_pair, "lookup", RENAME_PROMPT, 96)
    assert_lossless(plain, spec, TIE_MARGIN)
    assert "total_price" in plain.text, plain.text
    assert len(qwen_pair.lookup.substitutions) > 0, "the rename was not learned: the test checks nothing new"
