"""A short measurement of verify and draft costs at load, kept per machine.

The planner's first decisions would otherwise be guesses. The numbers depend
on the model file, the CPU, the thread count and GPU offload, so they are cached under
that key in the user cache and measured again only when one of them changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from localspec.backend import Context
from localspec.controller import K_MAX
from localspec.host import cpu_name
from localspec.verify import SamplingParams

# Every verify size up to K_MAX + 1: the planner weighs each of them (the curve
# is not a line: llama.cpp's CPU kernels batch rows in fours, so 4 rows can cost
# less than 3), and a size only interpolated is priced wrong until tried.
ROWS = tuple(range(1, K_MAX + 2))
# Long lookup drafts are priced at a few sizes on every machine: whole 16-row
# tiles of llama.cpp's repacked x86 kernels (16 rows can cost less than 12; 64
# verify like a small prefill), which is where a long right copy is cheapest.
TILE_ROWS = (16, 32, 64)
# Between them, the halfway size, measured only where the sizes around it pay.
FILL_ROWS = {12: (K_MAX + 1, 16), 24: (16, 32), 48: (32, 64)}
PAYS = 1.1
DRAFT_BATCH_ROWS = (1, 4, 8)  # catch-up batches of the draft model: a line through these
KEEP = 64  # calibrations kept: a model file that changes (re-download, a test fixture) gets a new key
PREFIX = 64  # positions already in the cache, like a short prompt
# Part of every key: entries stored before curves were kept whole (each size's
# least figure across sessions, see _less_disturbed) are measured again.
CURVES = "whole"
REPEATS = 2


def _cache_file() -> Path:
    # The test suite points this elsewhere: its fixtures and busy runs must not
    # become the figures a user's next session starts from.
    override = os.environ.get("LOCALSPEC_CALIBRATION_FILE")
    if override:
        return Path(override).expanduser()
    from localspec.fetch import cache_dir

    return cache_dir() / "calibration.json"


def _key(p: Path, n_threads: int, n_gpu_layers: int) -> str:
    # The CPU is part of the key: a home directory shared between machines (or
    # copied to a new one) must not price this CPU's steps with another's curve.
    st = p.stat()
    cpu = hashlib.sha256(cpu_name().encode()).hexdigest()[:8]
    return f"{p.name}:{st.st_size}:{int(st.st_mtime)}:t{n_threads}:ngl{n_gpu_layers}:cpu{cpu}:{CURVES}"


def seed_tokens(model, rows: int = max(TILE_ROWS), prefix: int = PREFIX) -> list[int]:
    """Tokens to time decodes with: code, enough for the prefix and `rows` rows
    (a slice that ran short would time fewer rows than it claims)."""
    unit = model.tokenize("def f(x):\n    return x * 2\n" * 20, add_special=False, parse_special=False)
    return unit * -(-(prefix + rows) // len(unit))


def time_rows(
    ctx: Context, rows: tuple[int, ...], tokens: list[int], repeats: int = REPEATS, prefix: int = PREFIX
) -> dict[int, float]:
    """Seconds to decode each row count after `prefix` tokens (a short prompt
    by default), the best of `repeats`: the least-disturbed measurement. The
    prefix is decoded once; the repeats go round all sizes so a slow moment
    does not fall on one size."""
    prefix = _prefix(ctx, max(rows), prefix)
    if len(tokens) < prefix + max(rows):
        raise ValueError(f"{len(tokens)} tokens cannot time {max(rows)} rows after a prefix of {prefix}")
    ctx.truncate(0)
    ctx.decode(tokens[:prefix], logits="none")
    best = {n: float("inf") for n in rows}
    for _ in range(repeats):
        for n in rows:
            t = time.perf_counter()
            ctx.decode(tokens[prefix : prefix + n], logits="all")
            best[n] = min(best[n], time.perf_counter() - t)
            ctx.truncate(prefix)
    ctx.truncate(0)
    return best


def _prefix(ctx: Context, rows: int, want: int = PREFIX) -> int:
    """`want`, or less where a small context must still hold it plus `rows`."""
    return max(1, min(want, ctx.n_ctx - rows))


def _could_pay(entry: dict, neighbours: tuple[int, int]) -> bool:
    """Whether a size between two measured ones is worth measuring: a right
    draft verified at either neighbour beats plain decoding by PAYS or more.
    Where neither does, rows there cost about a single step each, and the
    size between them is not worth its measurement."""
    one = entry.get("1")
    prices = {m: entry.get(str(m)) for m in neighbours}
    return bool(one) and any(p and m * one > PAYS * p for m, p in prices.items())


def _long_rows(entry: dict, most: int) -> tuple[int, ...]:
    """The long sizes not yet in `entry` that calibration should measure now:
    every tile that fits, then the fills that could pay (which needs the tiles)."""
    missing = [n for n in TILE_ROWS if n <= most and str(n) not in entry]
    if not missing:
        missing = [
            n for n, around in FILL_ROWS.items() if n <= most and str(n) not in entry and _could_pay(entry, around)
        ]
    return tuple(missing)


def _covers(entry: dict | None, rows: tuple[int, ...]) -> bool:
    """Whether a cached entry has every size asked for (older versions measured fewer)."""
    return entry is not None and all(str(n) in entry for n in rows)


def _load() -> dict:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _save(saved: dict) -> None:
    # The newest entries are last (see _touch); the oldest go first.
    saved = dict(list(saved.items())[-KEEP:])
    cache = _cache_file()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(saved, indent=1))
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only cache only costs a re-measurement next time


def _touch(saved: dict, key: str) -> dict:
    """Move an entry to the end, as most recently used, and return it."""
    saved[key] = saved.pop(key)
    return saved[key]


def keys_for(
    target: Context, draft: Context | None, n_threads: int, ngl: tuple[int, int], mtp: bool = False, rpc=None
) -> dict[str, str]:
    # Verify costs and draft costs are different measurements even of one file
    # (a model drafting for itself), so the role is part of the key.
    keys = {"target": "verify:" + _key(target.model.path, n_threads, ngl[0])}
    if rpc:
        # Over RPC a verify costs what those servers and the way to them cost: another curve.
        split = ",".join(f"{p:g}" for p in rpc.tensor_split)
        keys["target"] += f":rpc={','.join(rpc.endpoints)}" + (f":split={split}" if split else "")
    if draft is not None:
        keys["draft"] = "draft:" + _key(draft.model.path, n_threads, ngl[1])
    if mtp:
        keys["mtp"] = "mtp:" + _key(target.model.path, n_threads, ngl[0])
    return keys


def _time_mtp_token(mtp, target: Context, tokens: list[int]) -> float:
    """Seconds per MTP head decode, from a 4-token draft after a short prefix."""
    prefix = _prefix(target, 5)
    target.truncate(0)
    target.decode(tokens[:prefix], logits="none")
    best = float("inf")
    for _ in range(REPEATS):
        n, s = mtp.propose(tokens[: prefix + 1], 4, SamplingParams(), None).work.singles
        if n:
            best = min(best, s / n)
    target.truncate(0)
    return best if best < float("inf") else 0.0


def measure(target: Context, draft: Context | None, keys: dict[str, str], mtp=None) -> dict:
    """Verify seconds by row count for the target; seconds per token for the
    draft model and the MTP head (`draft_token_s`, by drafter name); seconds
    for a catch-up batch of n tokens of the draft model (`draft_batch_s`).

    Served from the cache when these models ran here with these settings before.
    """
    saved = _load()
    result: dict = {"draft_token_s": {}}
    tokens = seed_tokens(target.model)
    if not _covers(saved.get(keys["target"]), ROWS):
        saved[keys["target"]] = {str(n): s for n, s in time_rows(target, ROWS, tokens).items()}
    entry = saved[keys["target"]]
    most = min(target.n_batch, target.n_ctx - 1)  # a verify batch and its prefix must fit
    while rows := _long_rows(entry, most):
        entry.update({str(n): s for n, s in time_rows(target, rows, tokens).items()})
    result["verify_s"] = {int(n): s for n, s in _touch(saved, keys["target"]).items()}
    timers = {
        "draft": lambda: {str(n): s for n, s in time_rows(draft, DRAFT_BATCH_ROWS, tokens).items()},
        "mtp": lambda: {"1": _time_mtp_token(mtp, target, tokens)},
    }
    for name, timer in timers.items():
        if name not in keys:
            continue
        if not _covers(saved.get(keys[name]), DRAFT_BATCH_ROWS if name == "draft" else (1,)):
            saved[keys[name]] = timer()
        entry = _touch(saved, keys[name])
        result["draft_token_s"][name] = entry["1"]
        if name == "draft":
            result["draft_batch_s"] = {int(n): s for n, s in entry.items()}
    _save(saved)
    return result


def remember(keys: dict[str, str], verify_s: dict[int, float], draft_token_s: dict[str, float]) -> None:
    """Store what a session measured (seconds per verify size, per drafted
    token), so the next start begins from it: a calibration taken while the
    machine was busy does not stick."""
    saved = _load()
    old = {int(n): s for n, s in saved.pop(keys["target"], {}).items()}
    session = _less_disturbed(verify_s, old)
    keep, other = (verify_s, old) if session else (old, verify_s)
    saved[keys["target"]] = {str(n): s for n, s in sorted(_whole(keep, other).items())}
    for name, s in draft_token_s.items():
        if name in keys:
            entry = saved.pop(keys[name], {})
            # From the same session as the curve kept: the planner weighs the
            # two against each other, so they must share one machine's load.
            saved[keys[name]] = {**entry, "1": s} if session or "1" not in entry else entry
    _save(saved)


def _less_disturbed(session: dict[int, float], stored: dict[int, float]) -> bool:
    """Whether the session's curve is to be kept rather than the stored one:
    it prices one row lower (other load only ever makes a step slower).

    Curves are kept whole, because their shape is what the planner weighs.
    The least figure of each size across sessions mixes curves taken under
    other loads and context lengths, and each size keeps its luckiest one:
    that ratchet priced one row on the Zen 4 at 0.021 s against a measured
    0.030-0.032 while two rows kept 0.058, 2.7 single steps where 1.7 were
    measured, so no short draft could pay.
    """
    if not stored:
        return True
    return session.get(1, float("inf")) < stored.get(1, float("inf"))


def _whole(keep: dict[int, float], other: dict[int, float]) -> dict[int, float]:
    """`keep`, with the sizes only `other` has, scaled to it by their one-row costs."""
    scale = keep[1] / other[1] if 1 in keep and 1 in other else 1.0
    return {**{n: s * scale for n, s in other.items()}, **keep}


def cached_curve(path: Path, n_threads: int, n_gpu_layers: int) -> dict[int, float] | None:
    """The verify curve calibration keeps for this file and settings, if it ran here."""
    entry = _load().get("verify:" + _key(path, n_threads, n_gpu_layers))
    return {int(n): s for n, s in entry.items()} if entry else None
