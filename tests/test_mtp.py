"""Drafting with the target's own MTP head, end to end on a tiny Qwen3.5-style
model that the fixtures write (hybrid trunk: gated delta-net layers whose
recurrent state must be rolled back through llama.cpp's snapshots)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Sequence

import numpy as np
import pytest

import llama_cpp

from localspec.backend import Context, Model
from localspec.drafters.mtp import MtpDrafter
from localspec.engine import load_engine
from localspec.generate import GenerateOptions, Generation
from localspec.verify import SamplingParams

PROMPTS = [
    "def add(a, b):\n    return a + b\n",
    "The quick brown fox jumps over the lazy dog.",
    "List three planets.",
]
# F32 weights, F32 cache, no flash attention: batched and one-row evaluation
# agree to ~1e-5 (the same settings make test_kv_consistency sharp), while one
# stale cache entry moves this model's logits by whole units.
F32_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def engine(tiny_mtp_path):
    eng = load_engine(str(tiny_mtp_path), method="mtp", draft_max=4)
    yield eng
    eng.close()


def run(engine, method: str, prompt: str, draft_max: int = 4, max_tokens: int = 64, **sampling):
    engine.method = method
    engine.draft_max = draft_max
    gen = engine.complete(prompt, GenerateOptions(max_tokens=max_tokens, sampling=SamplingParams(**sampling)))
    events = list(gen)
    return gen.result, events


def test_target_with_heads_offers_mtp(engine):
    assert engine.mtp is not None and engine.mtp.n_heads == 1
    assert "mtp" in engine.methods and "auto" in engine.methods
    assert engine.target_ctx.max_rollback is not None  # hybrid: snapshots were asked for


@pytest.mark.parametrize("draft_max", [1, 3, 8])
def test_mtp_is_identical_to_plain(engine, draft_max):
    drafted = accepted = 0
    for prompt in PROMPTS:
        plain, _ = run(engine, "none", prompt)
        spec, events = run(engine, "mtp", prompt, draft_max)
        assert spec.tokens == plain.tokens
        assert spec.text == plain.text
        assert all(e.method == "mtp" for e in events if e.drafted)
        drafted += spec.counters.drafted
        accepted += spec.counters.accepted
    # The head is built to be right often but not always: both acceptance and
    # rollback (of attention KV and of recurrent state) were exercised.
    assert drafted > 0 and 0 < accepted < drafted


def test_mtp_acceptance_by_position_is_reported(engine):
    spec, _ = run(engine, "mtp", PROMPTS[0], draft_max=4)
    by_position = spec.counters.per_position_acceptance
    assert len(by_position) == 4
    assert by_position[0] > 0.5  # the fixture's head is mostly right one token ahead


def test_head_decodes_count_as_decode_time_not_overhead(engine):
    from localspec.bench.runner import decode_seconds

    before = engine.mtp.decode_s
    run(engine, "mtp", PROMPTS[0], draft_max=3, max_tokens=16)
    assert engine.mtp.decode_s > before
    assert decode_seconds(engine) == engine.target_ctx.decode_s + engine.mtp.decode_s


def test_mtp_sampling_runs_and_verifies(engine):
    spec, events = run(engine, "mtp", PROMPTS[1], draft_max=4, temp=0.8, seed=3)
    again, _ = run(engine, "mtp", PROMPTS[1], draft_max=4, temp=0.8, seed=3)
    assert spec.tokens == again.tokens  # seeded: reproducible
    assert spec.counters.drafted > 0 and spec.counters.accepted > 0


def test_auto_considers_mtp(engine):
    """With MTP's measured costs and acceptance the planner may or may not pick it on
    this machine; what it must do is keep the output the target's own."""
    for prompt in PROMPTS:
        plain, _ = run(engine, "none", prompt)
        auto, _ = run(engine, "auto", prompt)
        assert auto.tokens == plain.tokens
    assert "mtp" in engine.planner.acceptance


class RandomLengths:
    """A planner asking the MTP drafter for 0..8 tokens at random, so steps see
    every acceptance length, and the rollback every depth."""

    def __init__(self, drafter: MtpDrafter, seed: int):
        self.drafter = drafter
        self.rng = np.random.default_rng(seed)
        self.proposals = 0  # steps whose events say the heads ran

    def plan(self, context: Sequence[int]):
        return "mtp", self.drafter, int(self.rng.integers(0, 9))

    def record(self, event) -> None:
        self.proposals += event.ran and event.source == "mtp"


def mtp_logits(drafter: MtpDrafter, context: list[int]) -> np.ndarray:
    drafter.propose(context, 1, SamplingParams(), None)
    ptr = llama_cpp.llama_get_logits_ith(drafter.ptr, -1)
    return np.ctypeslib.as_array(ptr, shape=(drafter.n_vocab,)).copy()


def target_logits(ctx: Context, context: list[int]) -> np.ndarray:
    row = ctx.decode([context[-1]], logits="last")[-1].copy()
    ctx.truncate(len(context) - 1)
    return row


def fresh(path, context: list[int]):
    model = Model(path, load_mtp=True)
    ctx = Context(model, n_ctx=2048, kv_f32=True, flash_attn=False, rollback=8)
    drafter = MtpDrafter(ctx)
    ctx.decode(context[:-1], logits="none")
    return model, ctx, drafter


def test_state_stays_consistent_over_many_rollbacks(tiny_mtp_path):
    """After hundreds of draft/verify/rollback steps over three turns (one that
    extends the last, one that starts over), both the target's cache (attention
    and recurrent state) and the head's cache match a fresh evaluation."""
    model = Model(tiny_mtp_path, load_mtp=True)
    ctx = Context(model, n_ctx=2048, kv_f32=True, flash_attn=False, rollback=8)
    drafter = MtpDrafter(ctx)
    planner = RandomLengths(drafter, seed=0)
    first = model.tokenize(PROMPTS[0], add_special=True, parse_special=False)
    steps = 0
    context: list[int] = []
    for prompt in (first, None, model.tokenize(PROMPTS[2], add_special=True, parse_special=False)):
        if prompt is None:  # the next turn: everything so far plus a new line
            prompt = context + model.tokenize("\nmore:", add_special=False, parse_special=False)
        gen = Generation(ctx, prompt, planner, GenerateOptions(max_tokens=150))
        steps += sum(1 for _ in gen)
        context = prompt + gen.result.tokens
    assert steps > 100 and planner.proposals > 80

    ref_model, ref_ctx, ref_drafter = fresh(tiny_mtp_path, context)
    try:
        assert ctx.tokens == ref_ctx.tokens == context[:-1]
        assert np.abs(target_logits(ctx, context) - target_logits(ref_ctx, context)).max() < F32_TOLERANCE
        assert np.abs(mtp_logits(drafter, context) - mtp_logits(ref_drafter, context)).max() < F32_TOLERANCE
    finally:
        ref_drafter.close()
        ref_ctx.close()
        ref_model.close()
        drafter.close()
        ctx.close()
        model.close()


def test_hidden_states_kept_are_the_targets(tiny_mtp_path):
    """The ring of target hidden states after a decode longer than the ring, a
    rollback and a re-decode: every position it claims to know holds the state
    a fresh evaluation gives, and the positions it let go read as unknown."""
    from localspec.drafters.mtp import HIDDEN_HISTORY

    model = Model(tiny_mtp_path, load_mtp=True)
    ctx = Context(model, n_ctx=2048, kv_f32=True, flash_attn=False, rollback=8)
    drafter = MtpDrafter(ctx)
    tokens = model.tokenize(PROMPTS[1] * 40, add_special=True, parse_special=False)[:301]
    ctx.decode(tokens[:300], logits="none")
    ctx.truncate(295)
    ctx.prefill(tokens[:300])
    ref_model, ref_ctx, ref = fresh(tiny_mtp_path, tokens)
    known = [p for p in range(-1, 301) if drafter._h(p).any()]
    assert known == list(range(300 - HIDDEN_HISTORY, 300))
    for p in known:
        assert np.abs(drafter._h(p) - ref._h(p)).max() < F32_TOLERANCE
    for d in (ref, ref_ctx, ref_model, drafter, ctx, model):
        d.close()


def test_consistency_check_can_fail(tiny_mtp_path):
    """The comparison above must see a wrong head cache: feed one position with
    a wrong hidden state and the head's logits move well past the tolerance."""
    model = Model(tiny_mtp_path, load_mtp=True)
    ctx = Context(model, n_ctx=2048, kv_f32=True, flash_attn=False, rollback=8)
    context = model.tokenize(PROMPTS[1] * 3, add_special=True, parse_special=False)
    drafter = MtpDrafter(ctx)
    ctx.decode(context[:-1], logits="none")
    good = mtp_logits(drafter, context)
    drafter._hidden[(len(context) - 3) % len(drafter._hidden)] *= -1.0  # corrupt h of one position
    drafter.after_truncate(len(context) - 2)
    ctx.truncate(len(context) - 2)
    ctx.decode(context[len(context) - 2 : -1], logits="none")  # refeed the last cached position with it
    bad = mtp_logits(drafter, context)
    assert np.abs(good - bad).max() > 10 * F32_TOLERANCE
    drafter.close()
    ctx.close()
    model.close()


def localspec(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "localspec", *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_cli_run_mtp_json(tiny_mtp_path):
    common = ["run", "--target", str(tiny_mtp_path), "--raw", "--json", "--max-tokens", "48", "--prompt", PROMPTS[0]]
    spec = localspec(*common, "--method", "mtp")
    plain = localspec(*common, "--method", "none")
    assert spec.returncode == 0, spec.stderr
    out, ref = json.loads(spec.stdout), json.loads(plain.stdout)
    assert out["method"] == "mtp"
    assert out["tokens"] == ref["tokens"]
    assert out["stats"]["drafted"] > 0 and out["stats"]["accepted"] > 0
    assert len(out["stats"]["per_position_acceptance"]) == out["draft_max"]


def test_cli_mtp_without_heads_is_one_line(smollm2_path):
    r = localspec("run", "--target", str(smollm2_path), "--method", "mtp", "--prompt", "hi")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "MTP" in r.stderr and "Traceback" not in r.stderr


def test_doctor_and_models_name_mtp(tmp_path, tiny_mtp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / "models.toml").write_text(f"search_paths = [{json.dumps(str(tiny_mtp_path.parent))}]\n")
    env = dict(os.environ, LOCALSPEC_CONFIG_DIR=str(config))
    doctor = localspec("doctor", "--json", env=env)
    assert doctor.returncode == 0, doctor.stderr
    assert json.loads(doctor.stdout)["mtp"][str(tiny_mtp_path)] == 1
    text = localspec("doctor", env=env)
    assert f"{tiny_mtp_path}: 1 MTP layer(s), can self-draft" in text.stdout
    models = localspec("models", "--json", env=env)
    entry = next(m for m in json.loads(models.stdout)["models"] if m["path"] == str(tiny_mtp_path))
    assert entry["mtp_layers"] == 1 and entry["architecture"] == "qwen35"
