"""From run records to the numbers in the report; pure arithmetic, no engine.

A record is one generation: the dict `runner.run_once` makes (prompt_id,
category, mode, stats from Counters.to_dict(), drafting_steps, decode_s,
overhead_s, matches_plain, and tie_margin where it parted from plain).

Rates are pooled, not averaged per prompt: tokens/s is total tokens over
total generation seconds, acceptance is total accepted over total drafted.
A mean of per-prompt rates would weigh a 5-token reply like a 128-token one.

With repeated runs (`--repeats`), only the fastest run of each mode on
each prompt counts: the text is the same every time, and what makes a run
slower than its twin is the machine (other processes, clock changes), never
the method, so the fastest is the least disturbed measurement.

Speedup is the exception, and is computed per prompt: the mode's tokens/s
over plain decoding's tokens/s on the same prompt, in the same minute, then
the geometric mean over prompts. Pairing cancels what differs between
prompts (reply length, how much of it is boilerplate); the geometric mean is
the right mean of ratios: 2x on one prompt and 0.5x on another average to
1x, as they should, where the arithmetic mean would claim 1.25x.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable

from localspec.lossless import TIE_MARGIN

PLAIN = "plain"


@dataclass(frozen=True)
class ModeSummary:
    mode: str
    runs: int
    tokens: int
    gen_s: float
    tokens_per_s: float  # total tokens / total generation seconds
    speedup: float | None  # geometric mean over prompts of tok/s vs plain; None without plain runs
    speedup_prompts: int  # prompts the speedup is over (both runs produced tokens)
    acceptance_rate: float | None  # accepted / drafted; None when nothing was drafted
    accepted_per_step: float  # draft tokens kept per verify step
    tokens_per_step: float
    zero_accept_share: float | None  # of the steps that drafted, the share that kept nothing
    overhead_ms_per_step: float | None  # time per step outside llama_decode
    overhead_share: float | None  # that time as a share of generation time
    lossless_matches: int  # runs whose tokens equal the plain run's on the same prompt
    lossless_ties: int  # runs that parted from it where the target's top two logits were nearly tied
    lossless_unchecked: int  # runs that parted from it with no margin recorded (results of older versions)
    lossless_compared: int

    def to_dict(self) -> dict:
        return asdict(self)


def _rate(tokens: int, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else 0.0


def geometric_mean(values: Iterable[float]) -> float | None:
    logs = [math.log(v) for v in values]
    return math.exp(sum(logs) / len(logs)) if logs else None


def per_prompt_speedups(records: list[dict], mode: str) -> list[float]:
    """tok/s of `mode` over tok/s of plain, for each prompt that has both runs
    with tokens (a reply ending at once has no rate to compare)."""
    plain = {r["prompt_id"]: r for r in records if r["mode"] == PLAIN}
    out = []
    for r in records:
        p = plain.get(r["prompt_id"])
        if r["mode"] != mode or p is None:
            continue
        mine, base = r["stats"]["tokens_per_s"], p["stats"]["tokens_per_s"]
        if mine > 0 and base > 0:
            out.append(mine / base)
    return out


def summarize_mode(records: list[dict], mode: str) -> ModeSummary:
    """One mode's numbers over `records` (any subset: one category, or all)."""
    runs = [r for r in records if r["mode"] == mode]
    s = [r["stats"] for r in runs]
    tokens = sum(x["n_generated"] for x in s)
    gen_s = sum(x["gen_s"] for x in s)
    steps = sum(x["steps"] for x in s)
    drafted = sum(x["drafted"] for x in s)
    accepted = sum(x["accepted"] for x in s)
    drafting_steps = sum(r["drafting_steps"] for r in runs)
    overhead = [r["overhead_s"] for r in runs if r.get("overhead_s") is not None]
    has_plain = any(r["mode"] == PLAIN for r in records)
    speedups = per_prompt_speedups(records, mode) if has_plain else []
    compared = [r for r in runs if r.get("matches_plain") is not None]
    parted = [r for r in compared if not r["matches_plain"]]
    return ModeSummary(
        mode=mode,
        runs=len(runs),
        tokens=tokens,
        gen_s=gen_s,
        tokens_per_s=_rate(tokens, gen_s),
        speedup=geometric_mean(speedups) if has_plain else None,
        speedup_prompts=len(speedups),
        acceptance_rate=accepted / drafted if drafted else None,
        accepted_per_step=accepted / steps if steps else 0.0,
        tokens_per_step=tokens / steps if steps else 0.0,
        zero_accept_share=sum(x["zero_accept_steps"] for x in s) / drafting_steps if drafting_steps else None,
        overhead_ms_per_step=1000 * sum(overhead) / steps if steps and overhead else None,
        overhead_share=sum(overhead) / gen_s if gen_s > 0 and overhead else None,
        lossless_matches=len(compared) - len(parted),
        lossless_ties=sum(1 for r in parted if r.get("tie_margin") is not None and r["tie_margin"] < TIE_MARGIN),
        lossless_unchecked=sum(1 for r in parted if r.get("tie_margin") is None),
        lossless_compared=len(compared),
    )


def modes_in(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["mode"] for r in records))


def categories_in(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["category"] for r in records))


def fastest(records: list[dict]) -> list[dict]:
    """Of repeated runs of one mode on one prompt, the one with the highest tok/s."""
    best: dict[tuple[str, str], dict] = {}
    for r in records:
        key = (r["prompt_id"], r["mode"])
        if key not in best or r["stats"]["tokens_per_s"] > best[key]["stats"]["tokens_per_s"]:
            best[key] = r
    return [r for r in records if best[(r["prompt_id"], r["mode"])] is r]


def summarize(records: list[dict]) -> list[ModeSummary]:
    # Mode order is the order they first ran, not the order of their fastest runs.
    modes = modes_in(records)
    records = fastest(records)
    return [summarize_mode(records, m) for m in modes]


def by_category(records: list[dict]) -> dict[str, list[ModeSummary]]:
    modes = modes_in(records)
    records = fastest(records)
    out = {}
    for cat in categories_in(records):
        subset = [r for r in records if r["category"] == cat]
        out[cat] = [summarize_mode(subset, m) for m in modes if any(r["mode"] == m for r in subset)]
    return out
