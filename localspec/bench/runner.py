"""Running the benchmark: every mode on every prompt, Spec-Bench style.

Greedy, batch 1, fixed max_tokens, a warm-up first. Modes are interleaved
per prompt (all modes back to back on one prompt, the order rotated from
one prompt to the next), so slow drift of the machine (thermal state, other
load) hits every mode alike instead of whichever ran last.

Every run starts from the same cache state. Before a prompt's runs, its
tokens (minus the last, which the first verify step feeds) are put in the
target's and the draft model's caches; each later run finds them there
again, because both caches keep the longest common prefix between calls.
So no run pays for the prompt inside its timed generation, the draft model
included, and the first step of every mode decodes the same single token
on the draft side.

Every run of a prompt meets it as new: what the engine has learned from
text (the planner's estimates, lookup's renames; Engine.learned) is put back
before each run to what it was before the prompt's first run (what the
earlier prompts taught it), so no run learns from another run of the same
text, and after the prompt the engine carries on with what its first auto
run left, as a chat that met the prompt once. (Replayed on 38 earlier runs,
letting the runs of one text teach each other read 2.9% above one pass per
text: docs/benchmarks.md, "What the bench's repeats give auto".) The
warm-up runs on a prompt of its own (prompts.WARM_UP), for the same reason.

After a prompt's runs, every run whose tokens part from plain decoding's is
checked against the lossless rule (localspec/lossless.py): the target's
margin where plain decoding chose its token is evaluated there, outside
every timing, and recorded as the run's `tie_margin`.

Sampled protocol (`seeds`): every prompt runs once per seed, all modes with
that seed, and each (prompt, seed) counts as a prompt of its own
(`<id>@seed<N>`). Sampled replies differ between modes by design (the same
distribution, other draws), so no run is compared with plain decoding's
tokens; the speed ratios compare the same prompts at the same settings.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Sequence

from localspec.bench.modes import Mode, apply
from localspec.bench.prompts import WARM_UP, Prompt
from localspec.errors import LocalspecError
from localspec.generate import GenerateOptions
from localspec.lossless import first_divergence, margins_at
from localspec.verify import SamplingParams

Progress = Callable[[int, int, Prompt, Mode, dict], None]


def decode_seconds(engine) -> float:
    """Seconds every model context (target, draft, MTP head) has spent inside llama_decode so far."""
    total = engine.target_ctx.decode_s
    if engine.draft_model is not None:
        total += engine.draft_model.ctx.decode_s
    if engine.mtp is not None:
        total += engine.mtp.decode_s
    return total


def _messages(prompt: Prompt) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt.text}]


def prime(engine, prompt: Prompt, max_tokens: int) -> list[int]:
    """Put the prompt (all but its last token) in the target's and the draft's caches; return its tokens."""
    tokens = engine.target.tokenize(engine.render_chat(_messages(prompt)), add_special=True, parse_special=True)
    if len(tokens) + max_tokens > engine.target_ctx.n_ctx:
        # A reply cut short by a full context would not be comparable across modes.
        raise LocalspecError(
            f"prompt {prompt.id} is {len(tokens)} tokens; with --max-tokens {max_tokens} it needs "
            f"--n-ctx {len(tokens) + max_tokens} or more (have {engine.target_ctx.n_ctx})"
        )
    engine.target_ctx.prefill(tokens[:-1])
    if engine.draft_model is not None:
        engine.draft_model.ctx.prefill(tokens[:-1])
    return tokens


def rotated(modes: Sequence[Mode], i: int) -> list[Mode]:
    s = i % len(modes)
    return list(modes[s:]) + list(modes[:s])


def run_once(engine, prompt: Prompt, mode: Mode, options: GenerateOptions, prompt_id: str | None = None) -> dict:
    apply(engine, mode)
    gen = engine.chat(_messages(prompt), options)
    decode_before = decode_seconds(engine)
    for _ in gen:
        pass
    result = gen.result
    assert result is not None
    c = result.counters
    decode_s = decode_seconds(engine) - decode_before
    return {
        "prompt_id": prompt_id or prompt.id,
        "category": prompt.category,
        "mode": mode.name,
        "stop_reason": result.stop_reason,
        "text": result.text,
        "text_chars": len(result.text),
        "tokens": result.tokens,
        "stats": c.to_dict(),
        # Steps that drafted at least one token (zero-accept share is over these).
        "drafting_steps": c.drafted_at[0] if c.drafted_at else 0,
        # The prefill decodes nothing after prime(), so every timed decode is a step's.
        "decode_s": decode_s,
        "overhead_s": c.gen_s - decode_s,
    }


def mark_lossless(records: list[dict]) -> None:
    """Compare each run's tokens with the plain run's on the same prompt."""
    plain = next((r["tokens"] for r in records if r["mode"] == "plain"), None)
    for r in records:
        if plain is None:
            r["matches_plain"] = r["diverges_at"] = None
            continue
        r["diverges_at"] = first_divergence(r["tokens"], plain)
        r["matches_plain"] = r["diverges_at"] is None


def check_ties(engine, prompt_tokens: list[int], group: list[dict]) -> None:
    """Record, for each run of `group` that parted from its plain run, the
    target's margin at the first differing token (after mark_lossless)."""
    plain = next((r["tokens"] for r in group if r["mode"] == "plain"), None)
    parted = [r for r in group if r.get("diverges_at") is not None]
    if plain is None or not parted:
        return
    margins = margins_at(engine.target_ctx, prompt_tokens, plain, [r["diverges_at"] for r in parted])
    for r in parted:
        r["tie_margin"] = margins[r["diverges_at"]]


def iter_benchmark(
    engine,
    prompts: Sequence[Prompt],
    modes: Sequence[Mode],
    *,
    max_tokens: int,
    warmup: int = 1,
    repeats: int = 1,
    progress: Progress | None = None,
    sampling: SamplingParams = SamplingParams(),
    seeds: Sequence[int] = (),
) -> Iterator[list[dict]]:
    """Yield the records of one prompt's runs (one per mode and repeat) at a time.

    The warm-up runs every mode `warmup` times on a prompt that is not
    timed (WARM_UP) and keeps nothing: the first decodes of a context, and
    the planner's first estimates, are not what a running chat sees. With
    `repeats` > 1 the rotation over the modes is run that many times per
    prompt, each time starting one mode further on; every run of a prompt
    starts from what the engine had learned before the prompt (module
    docstring).
    """
    sampled = bool(seeds)
    runs = [(p, seed) for p in prompts for seed in seeds] if sampled else [(p, None) for p in prompts]
    if prompts and warmup:
        prime(engine, WARM_UP, max_tokens)
        options = GenerateOptions(max_tokens=max_tokens, sampling=dataclasses.replace(sampling, seed=runs[0][1]))
        for _ in range(warmup):
            for mode in modes:
                run_once(engine, WARM_UP, mode, options)
    for i, (prompt, seed) in enumerate(runs):
        options = GenerateOptions(max_tokens=max_tokens, sampling=dataclasses.replace(sampling, seed=seed))
        prompt_id = f"{prompt.id}@seed{seed}" if sampled else prompt.id
        prompt_tokens = prime(engine, prompt, max_tokens)
        records, groups = [], []
        before, carried = engine.learned(), None
        for rep in range(repeats):
            group = []
            for order, mode in enumerate(rotated(modes, i * repeats + rep)):
                engine.restore_learned(before)
                rec = run_once(engine, prompt, mode, options, prompt_id)
                if carried is None and (mode.name == "auto" or not any(m.name == "auto" for m in modes)):
                    carried = engine.learned()
                rec["order"], rec["repeat"] = order, rep
                if sampled:
                    rec["seed"] = seed
                group.append(rec)
                if progress:
                    progress(i, len(runs), prompt, mode, rec)
            if not sampled:
                mark_lossless(group)
            groups.append(group)
            records += group
        engine.restore_learned(carried if carried is not None else before)
        for group in groups if not sampled else ():
            check_ties(engine, prompt_tokens, group)
        # For bench/hindsight.py: what lookup could copy from, and the costs the
        # planner learned on this prompt (a machine's speed drifts over a long run).
        costs = engine.planner.costs.snapshot()
        for r in records:
            if r["mode"] == "plain":
                r["prompt_tokens"], r["costs"] = prompt_tokens, costs
        yield records

