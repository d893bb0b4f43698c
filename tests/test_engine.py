"""Engine behaviour on a real model: multi-turn cache reuse, stops, cancel, sampling."""

from __future__ import annotations

import threading

import pytest

from localspec.engine import load_engine
from localspec.generate import GenerateOptions
from localspec.verify import SamplingParams


@pytest.fixture(scope="module")
def engine(smollm2_path):
    eng = load_engine(str(smollm2_path), str(smollm2_path), method="draft", draft_max=4)
    yield eng
    eng.close()


def reply(engine, messages, **opts):
    gen = engine.chat(messages, GenerateOptions(**opts))
    events = list(gen)
    return gen.result, events


def test_second_turn_reuses_the_cached_history(engine):
    first = [{"role": "user", "content": "Name three colours."}]
    r1, _ = reply(engine, first, max_tokens=24)
    assert r1.counters.n_prompt > 0
    second = first + [
        {"role": "assistant", "content": r1.text},
        {"role": "user", "content": "And three animals?"},
    ]
    r2, _ = reply(engine, second, max_tokens=8)
    # Everything up to the first reply was in the cache; only the new turn is evaluated.
    assert r2.counters.n_prompt_cached >= r1.counters.n_prompt
    assert r2.counters.n_prompt < r2.counters.n_prompt_cached


def test_max_tokens_and_stop_strings(engine):
    msgs = [{"role": "user", "content": "Count from 1 to 30, one number per line."}]
    r, events = reply(engine, msgs, max_tokens=5)
    assert len(r.tokens) == 5 and r.stop_reason == "max_tokens"
    assert "".join(e.text for e in events) == r.text
    full, _ = reply(engine, msgs, max_tokens=60)
    assert "4" in full.text
    stopped, _ = reply(engine, msgs, max_tokens=60, stop=("4",))
    assert stopped.stop_reason == "stop"
    assert stopped.text == full.text[: full.text.index("4")]


def test_cancel_between_steps_leaves_the_cache_consistent(engine):
    msgs = [{"role": "user", "content": "Write a long story about a lighthouse."}]
    cancel = threading.Event()
    gen = engine.chat(msgs, GenerateOptions(max_tokens=200), cancel)
    for i, _ in enumerate(gen):
        if i == 3:
            cancel.set()
    assert gen.result.stop_reason == "cancelled"
    assert 0 < len(gen.result.tokens) < 200
    # The cache holds exactly prompt + reply minus the pending token: a plain run
    # of the same request still matches an uninterrupted one.
    engine.method = "none"
    plain, _ = reply(engine, msgs, max_tokens=20)
    engine.method = "draft"
    again, _ = reply(engine, msgs, max_tokens=20)
    assert plain.tokens == again.tokens


def test_seeded_sampling_is_reproducible_and_speculation_runs(engine):
    msgs = [{"role": "user", "content": "Invent a name for a cat."}]
    params = SamplingParams(temp=0.8, top_p=0.95, seed=7)
    a, _ = reply(engine, msgs, max_tokens=24, sampling=params)
    b, _ = reply(engine, msgs, max_tokens=24, sampling=params)
    assert a.tokens == b.tokens
    assert a.counters.drafted > 0 and a.counters.accepted > 0


def test_events_carry_origin_and_counters(engine):
    _, events = reply(engine, [{"role": "user", "content": "Say the alphabet."}], max_tokens=30)
    assert events
    for i, e in enumerate(events[:-1]):  # the last step may be cut by a stop
        assert len(e.tokens) == len(e.pieces) == e.accepted + 1
        assert [t.source for t in e.tokens] == ["draft"] * e.accepted + ["target"]
        assert e.counters.steps == i + 1
    assert events[-1].counters.n_generated == sum(len(e.tokens) for e in events)


def test_setup_warnings(smollm2_path):
    eng = load_engine(str(smollm2_path), str(smollm2_path), n_ctx=9000)
    try:
        assert any("trained for" in w for w in eng.warnings)
        assert any("half the size" in w for w in eng.warnings)
    finally:
        eng.close()
