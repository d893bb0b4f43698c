"""The benchmark's outputs: Markdown tables, the Markdown report, the plot."""

from __future__ import annotations

from pathlib import Path

from localspec.bench import hindsight
from localspec.bench.modes import BY_NAME
from localspec.bench.aggregate import PLAIN, ModeSummary, by_category, categories_in, modes_in, summarize
from localspec.errors import LocalspecError
from localspec.lossless import TIE_MARGIN

AUTO = "auto"


def _num(v: float | None, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def _pct(v: float | None, fmt: str = ".0f") -> str:
    return "–" if v is None else format(100 * v, fmt) + "%"


def _same(s: ModeSummary) -> str:
    return "–" if not s.lossless_compared else f"{s.lossless_matches}/{s.lossless_compared}"


def _lossless(s: ModeSummary) -> str:
    if not s.lossless_compared:
        return "–"
    cell = f"{s.lossless_matches + s.lossless_ties}/{s.lossless_compared}"
    return cell + (f" ({s.lossless_unchecked} unchecked)" if s.lossless_unchecked else "")


def table(rows: list[ModeSummary], *, overhead: bool) -> str:
    head = ["mode", "tok/s", "speedup", "acceptance", "accepted/step", "tokens/step"]
    head += ["zero-accept steps", "same as plain", "lossless"]
    if overhead:
        head += ["overhead ms/step", "overhead"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in rows:
        cells = [
            s.mode,
            _num(s.tokens_per_s, ".1f"),
            _num(s.speedup, ".2f") + ("x" if s.speedup is not None else ""),
            _pct(s.acceptance_rate),
            _num(s.accepted_per_step, ".2f"),
            _num(s.tokens_per_step, ".2f"),
            _pct(s.zero_accept_share),
            _same(s),
            _lossless(s),
        ]
        if overhead:
            cells += [
                _num(s.overhead_ms_per_step, ".2f"),
                _pct(s.overhead_share, ".1f"),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables(records: list[dict]) -> str:
    """Overall table, then one per category: what the command prints."""
    parts = ["## Overall\n", table(summarize(records), overhead=True)]
    for cat, rows in by_category(records).items():
        n = len({r["prompt_id"] for r in records if r["category"] == cat})
        parts += [f"\n### {cat} ({n} prompt{'s' if n != 1 else ''})\n", table(rows, overhead=False)]
    return "\n".join(parts) + "\n"


COLUMNS = """\
Columns: **tok/s** is total generated tokens over total generation time
(prompt processing excluded), pooled over the prompts. **speedup** is
computed per prompt (this mode's tok/s over plain decoding's on the same
prompt, measured minutes apart) and then averaged with the geometric mean,
the mean that treats 2x and 0.5x as cancelling. **acceptance** is accepted
over drafted tokens; **accepted/step** is draft tokens kept per target
verify pass (the target's own token not counted); **tokens/step** counts it.
**zero-accept steps** is the share of steps that drafted something and kept
none of it. **same as plain**: runs whose tokens equal the plain run's on
the same prompt. **lossless**: those plus the runs that part from it where
the target's top two logits were within the tie margin (greedy decoding is
lossless, but a batched and a one-row forward pass round differently, so a
near-tie may tip the other way; the margin is evaluated after the prompt's
runs, outside every timing).
**overhead** is generation time spent outside `llama_decode` (sampling,
verification, drafter bookkeeping, Python), per verify step and as a share
of generation time; draft-model decodes count as decode time, not overhead.
**plain-rerun** is plain decoding run a second time on each prompt: its
speedup differs from 1.00x only by the machine's run-to-run noise, which
bounds how far any other ratio can be trusted.
"""


def _ngl(v) -> str:
    return "as in models.toml" if v is None else str(v)


def _header(meta: dict) -> list[str]:
    m, lib, s = meta["machine"], meta["libraries"], meta["settings"]
    out = [
        "# localspec benchmark",
        "",
        f"Run {meta['started']}"
        + (
            f", stopped after {meta['prompts_done']} of {s['prompts']} prompts: partial results"
            if meta["interrupted"]
            else ""
        )
        + ".",
        "",
        "## Machine and software",
        "",
        f"- CPU: {m['cpu']}; {m['usable_cpus']} of {m['logical_cpus']} logical CPUs usable; RAM {m['ram_gib']} GiB",
        f"- OS: {m['os']}; Python {m['python']}",
        f"- load average (1 min) at start {meta['load_average_start']}, at end {meta['load_average_end']} "
        "(the benchmark's own load included at the end)",
        f"- llama-cpp-python {lib['llama_cpp_python']}, ggml {lib['ggml']}, numpy {lib['numpy']}",
        f"- llama.cpp system info: `{lib['llama_system_info']}`",
        f"- threads: {s['threads']}; GPU layers: "
        f"target {_ngl(s['n_gpu_layers'])}, draft {_ngl(s['n_gpu_layers_draft'])}",
        "",
        "## Models",
        "",
    ]
    for role, f in meta["models"].items():
        out.append(f"- {role}: {f['name']} (`{f['file']}`, {f['size'] / 2**20:.0f} MiB, sha256 {f['sha256']}…)")
    out += [
        "",
        "## Protocol",
        "",
        f"{_decoding(s)}, batch 1, {s['max_tokens']} new tokens at most, context {s['n_ctx']}, "
        f"{s['warmup']} warm-up pass{'es' if s['warmup'] != 1 else ''} over every mode before measuring"
        + (" (on a prompt of its own); " if s.get("runs_meet_prompt_as_new") else "; ")
        + f"up to {s['per_category']} prompt{'s' if s['per_category'] != 1 else ''} per category, first turn only, "
        "sent through the chat template.",
        "Modes run interleaved: all modes back to back on each prompt, the order rotated by one from prompt to "
        "prompt, so drift of the machine spreads over every mode."
        + (
            f" Each prompt's rotation ran {s['repeats']} times (starting one mode further on each time); per "
            "prompt and mode the fastest run counts, since the text is the same every time and only the machine "
            "makes one run slower than another."
            if s.get("repeats", 1) > 1
            else ""
        ),
        "Every run starts from the same state: the prompt is in the target's and the draft model's KV caches "
        "before the timed generation (the engine keeps the common prefix between calls), so prompt processing "
        "is outside every timing. "
        + (
            "The adaptive planner (`auto`) and lookup learn across prompts, as across the replies of a chat, but "
            "every run of a prompt starts from what they had learned before that prompt (the planner's estimates, "
            "lookup's renames), so no run learns from another run of the same text; after the prompt they keep "
            "what its first `auto` run taught them."
            if s.get("runs_meet_prompt_as_new")
            else "The adaptive planner (`auto`) keeps its running estimates across runs, as it does across the "
            "replies of a chat; they are also fed by the other modes' steps, the earlier runs of the same prompt "
            "included."
        ),
        "",
        "| mode | setting |",
        "|---|---|",
    ]
    out += [f"| {name} | {desc} |" for name, desc in meta["modes"].items()]
    out += ["", *[f"Note: {n}" for n in meta.get("notes", [])]]
    return out


def _latest_costs(meta: dict) -> dict | None:
    """The planner's costs as learned by the end of the run, else as calibrated at load."""
    c = meta.get("costs") or {}
    return c.get("end_of_run") or c.get("calibrated")


def costs(meta: dict) -> list[str]:
    """The planner's cost estimates, and what they allow at best: the ceiling
    any drafter can reach here, whatever it proposes."""
    c = meta.get("costs")
    if not c or "calibrated" not in c:
        return []
    cal, end = c["calibrated"], c.get("end_of_run")
    rows = sorted(int(n) for n in cal["verify_s"])

    def t(snap: dict, n: int) -> float:
        return snap["verify_s"].get(n, snap["verify_s"].get(str(n)))

    head = "| rows verified in one decode (k+1) | " + " | ".join(str(n) for n in rows) + " |"
    out = [
        "## Costs measured in this run",
        "",
        "Seconds per verify step by rows, as the planner priced them: calibrated at load on a 64-token "
        "context, and learned from every step by the end of the run (the run's own contexts and load). "
        "The ceiling is the speedup of a free drafter whose every token is accepted.",
        "",
        head,
        "|---|" + "---|" * len(rows),
    ]
    snaps = [("calibrated at load", cal)] + ([("learned by the end of the run", end)] if end else [])
    for label, snap in snaps:
        out.append(f"| seconds, {label} | " + " | ".join(f"{t(snap, n):.3f}" for n in rows) + " |")
    for label, snap in snaps:
        ceiling = [n * t(snap, 1) / t(snap, n) for n in rows]
        out.append(f"| ceiling (k+1)·t(1)/t(k+1), {label} | " + " | ".join(f"{x:.2f}" for x in ceiling) + " |")
    snap = _latest_costs(meta)
    draft = snap.get("draft_token_s", {}).get("draft")
    if draft:
        from localspec.controller import K_MAX
        from localspec.costs import CostModel

        # Priced as the planner prices a draft (catch-up, single decodes, verify), every token accepted.
        c = CostModel.from_snapshot(snap)
        rate, k = max(((k + 1) / (c.draft("draft", k) + c.verify(k + 1)), k) for k in range(1, K_MAX + 1))
        out += [
            "",
            f"Draft model: {draft:.3f} s per token ({draft / t(snap, 1):.2f} of a one-row target step). "
            f"With every draft accepted it would reach at best {rate:.1f} tok/s (k = {k}), "
            f"against {1 / t(snap, 1):.1f} tok/s for plain decoding.",
        ]
    return out + [""]


def hindsight_table(meta: dict, records: list[dict]) -> list[str]:
    """Measured speedups beside the best any planner could have reached on the same texts."""
    snap = _latest_costs(meta)
    if not snap:
        return []
    with_draft = "draft" in snap.get("draft_token_s", {})
    bounds = hindsight.by_category(records, snap, with_draft)
    if not bounds:
        return []  # no plain run recorded its prompt tokens (results of older versions)
    measured = {cat: {s.mode: s.speedup for s in rows} for cat, rows in by_category(records).items()}
    measured["overall"] = {s.mode: s.speedup for s in summarize(records)}
    # Fixed drafting modes: not auto, and not plain decoding under either name.
    others = [m for m in modes_in(records) if m != AUTO and m in BY_NAME and BY_NAME[m].method != "none"]
    head = ["category", "auto, measured", "best other mode, measured", "lookup, best k per match length"]
    head += ["lookup, hindsight", "auto's share of it", "any copy from the context, hindsight"]
    head += ["lookup + an always-right draft model, hindsight"] if with_draft else []
    out = [
        "## What hindsight allows",
        "",
        "The fastest any planner could have produced each plain run's text, knowing it in advance "
        "(localspec/bench/hindsight.py): lookup drafts exactly where its proposal agrees with the text, "
        "for as many tokens as pay"
        + (", and a draft model that is never wrong covers the rest wherever that pays" if with_draft else "")
        + ". Each prompt is priced with the verify and draft costs the planner had learned by the end of "
        "its runs (for older results, by the end of the run); geometric mean over "
        "prompts, like the measured speedups. A target above the hindsight column is out of reach for "
        "these drafters on this machine, whatever the planner does. "
        "**best k per match length** is what the planner's own signal allows: before a step it knows "
        "the length of the n-gram match behind lookup's proposal, and this column drafts the k for "
        "each match length that is best for the row's texts, chosen knowing them (a search over such "
        "rules). What the hindsight column has beyond it needs foresight of the single proposal. "
        "**auto's share** is auto's measured speedup over lookup's hindsight bound. "
        "**any copy from the context** drafts, at every position, the longest run of what follows that "
        "the prompt or the reply so far already holds, wherever it is: the bound for any drafter that "
        "copies (lookup finds a copy only once the context's last tokens repeat, and picks one place).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for cat, b in bounds.items():
        got = measured.get(cat, {})
        best = max(((got[m], m) for m in others if got.get(m) is not None), default=None)
        cells = [
            cat,
            _num(got.get(AUTO), ".2f") + ("x" if got.get(AUTO) is not None else ""),
            f"{best[0]:.2f}x ({best[1]})" if best else "–",
            f"{b.by_match_length:.2f}x",
            f"{b.lookup:.2f}x",
            _share(got.get(AUTO), b.lookup),
            f"{b.copy:.2f}x",
        ] + ([_num(b.with_draft, ".2f") + "x"] if with_draft else [])
        out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def _share(speedup: float | None, bound: float) -> str:
    return f"{speedup / bound:.0%}" if speedup is not None and bound > 0 else "–"


def divergences(records: list[dict]) -> list[str]:
    """Every run (repeats included) that parted from plain decoding, judged by the lossless rule."""
    compared = [r for r in records if r.get("matches_plain") is not None and r["mode"] != PLAIN]
    parted = [r for r in compared if r.get("diverges_at") is not None]
    if not parted:
        return []
    margins = sorted(r["tie_margin"] for r in parted if r.get("tie_margin") is not None)
    out = ["## Where runs parted from plain decoding", ""]
    if not margins:
        return out + [f"{len(parted)} of {len(compared)} runs parted from plain decoding; no margins recorded.", ""]
    out.append(
        f"{len(parted)} of {len(compared)} runs, repeats included, parted from the plain run on the same prompt. "
        f"At the first differing token the target's top-two margin was {margins[0]:.4f} to {margins[-1]:.4f} "
        f"(median {margins[len(margins) // 2]:.4f}); the tie margin is {TIE_MARGIN}."
    )
    broken = [r for r in parted if r.get("tie_margin") is not None and r["tie_margin"] >= TIE_MARGIN]
    if broken:
        out += [
            "",
            f"**Not lossless: {len(broken)} run(s) parted where the target was sure.**",
            "",
            "| prompt | mode | token | margin |",
            "|---|---|---|---|",
        ]
        out += [f"| {r['prompt_id']} | {r['mode']} | {r['diverges_at']} | {r['tie_margin']:.3f} |" for r in broken]
    return out + [""]


def markdown(meta: dict, records: list[dict], plot_name: str | None) -> str:
    lines = _header(meta) + ["", COLUMNS]
    if plot_name:
        lines += [f"![speedup by category and mode]({plot_name})", ""]
    lines.append(tables(records))
    lines += ["", *costs(meta), *hindsight_table(meta, records), *divergences(records)]
    return "\n".join(lines)


def require_matplotlib() -> None:
    """Fail before an hour of measuring, not at its end, if the plot cannot be drawn."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise LocalspecError(
            "localspec bench draws its plot with matplotlib, which is not installed: "
            "pip install 'localspec[bench]' (or give --json-only)"
        )


def plot(records: list[dict], path: Path) -> bool:
    """Grouped bars: speedup over plain per category (and overall), one bar per mode.

    Returns False, writing nothing, when there is no plain run to compare with.
    """
    modes = [m for m in modes_in(records) if m != PLAIN]
    if not modes or not any(r["mode"] == PLAIN for r in records):
        return False
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt

    groups = categories_in(records) + ["overall"]
    per_cat = by_category(records)
    overall = {s.mode: s.speedup for s in summarize(records)}

    def speedup(group: str, mode: str) -> float:
        rows = {s.mode: s.speedup for s in per_cat[group]} if group != "overall" else overall
        return rows.get(mode) or 0.0

    width = 0.8 / len(modes)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.7 * len(groups) * max(1, len(modes) / 3)), 4.8))
    for j, mode in enumerate(modes):
        xs = [i + (j - (len(modes) - 1) / 2) * width for i in range(len(groups))]
        ax.bar(xs, [speedup(g, mode) for g in groups], width, label=mode)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(groups)), groups, rotation=35, ha="right")
    ax.set_ylabel("speedup over plain decoding (geometric mean)")
    ax.legend(ncol=min(4, len(modes)), fontsize="small")
    ax.set_title("localspec: speedup by category and mode")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _decoding(settings: dict) -> str:
    sampled = settings.get("sampling")
    if not sampled:
        return "Greedy decoding"
    return (f"Sampling at temperature {sampled['temp']}, top-p {sampled['top_p']}, seeds 1..{sampled['seeds']} "
            "(each prompt once per seed, every mode with that seed; a (prompt, seed) counts as one prompt, and "
            "sampled replies are not compared token by token with plain decoding's)")  # fmt: skip
