"""`localspec bench`: aggregation arithmetic on hand-made records, mode and
prompt selection, and one small real run of the whole machinery on SmolLM2."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from localspec.bench import aggregate, modes, prompts, report, runner
from localspec.cli import main
from localspec.controller import K_MAX
from localspec.errors import LocalspecError
from test_calibrate import priced_sizes


def rec(prompt_id, mode, *, tokens=10, gen_s=1.0, steps=10, drafted=0, accepted=0, zero=0, drafting=0, cat="c"):
    return {
        "prompt_id": prompt_id,
        "category": cat,
        "mode": mode,
        "stats": {
            "n_generated": tokens,
            "gen_s": gen_s,
            "tokens_per_s": tokens / gen_s if gen_s else 0.0,
            "steps": steps,
            "drafted": drafted,
            "accepted": accepted,
            "zero_accept_steps": zero,
        },
        "drafting_steps": drafting,
        "decode_s": gen_s * 0.9,
        "overhead_s": gen_s * 0.1,
        "matches_plain": None,
    }


# --- aggregation -----------------------------------------------------------


def test_speedup_is_the_geometric_mean_of_per_prompt_ratios():
    records = [
        rec("a", "plain", tokens=10, gen_s=1.0),
        rec("a", "draft", tokens=10, gen_s=0.5),  # 2x on a
        rec("b", "plain", tokens=100, gen_s=10.0),
        rec("b", "draft", tokens=100, gen_s=20.0),  # 0.5x on b
    ]
    s = aggregate.summarize_mode(records, "draft")
    assert s.speedup == pytest.approx(1.0)  # the arithmetic mean would say 1.25
    assert s.speedup_prompts == 2
    # tok/s is pooled: 110 tokens over 20.5 s, not the mean of 20 and 5.
    assert s.tokens_per_s == pytest.approx(110 / 20.5)
    assert aggregate.summarize_mode(records, "plain").speedup == pytest.approx(1.0)


def test_repeated_runs_count_by_their_fastest():
    records = [
        rec("a", "plain", gen_s=1.0),
        rec("a", "auto", gen_s=1.25),
        rec("a", "plain", gen_s=1.25),  # the second rotation: plain disturbed, auto not
        rec("a", "auto", gen_s=0.8),
    ]
    kept = aggregate.fastest(records)
    assert [r["stats"]["gen_s"] for r in kept] == [1.0, 0.8]
    overall = {s.mode: s for s in aggregate.summarize(records)}
    assert overall["auto"].speedup == pytest.approx(1.25) and overall["auto"].runs == 1
    assert aggregate.by_category(records)["c"][1].speedup == pytest.approx(1.25)


def test_speedup_skips_prompts_without_tokens_and_needs_plain_runs():
    records = [
        rec("a", "plain", tokens=10, gen_s=1.0),
        rec("a", "lookup", tokens=10, gen_s=0.25),
        rec("b", "plain", tokens=0, gen_s=0.01),  # the reply ended at once: no rate
        rec("b", "lookup", tokens=0, gen_s=0.01),
    ]
    s = aggregate.summarize_mode(records, "lookup")
    assert s.speedup == pytest.approx(4.0)
    assert s.speedup_prompts == 1
    assert aggregate.summarize_mode([r for r in records if r["mode"] != "plain"], "lookup").speedup is None


def test_geometric_mean():
    assert aggregate.geometric_mean([]) is None
    assert aggregate.geometric_mean([2.0, 8.0]) == pytest.approx(4.0)
    assert aggregate.geometric_mean([3.0]) == pytest.approx(3.0)


def test_zero_accept_share_is_over_steps_that_drafted():
    records = [
        rec("a", "lookup", steps=20, drafted=12, accepted=6, zero=3, drafting=8),
        rec("b", "lookup", steps=10, drafted=4, accepted=0, zero=2, drafting=2),
    ]
    s = aggregate.summarize_mode(records, "lookup")
    assert s.zero_accept_share == pytest.approx(5 / 10)  # not 5 / 30 steps
    assert s.acceptance_rate == pytest.approx(6 / 16)
    assert s.accepted_per_step == pytest.approx(6 / 30)
    assert s.overhead_ms_per_step == pytest.approx(1000 * 0.2 / 30)
    assert s.overhead_share == pytest.approx(0.1)


def test_nothing_drafted_gives_no_acceptance_rather_than_zero():
    s = aggregate.summarize_mode([rec("a", "plain")], "plain")
    assert s.acceptance_rate is None and s.zero_accept_share is None
    assert s.accepted_per_step == 0.0 and s.tokens_per_step == 1.0


def test_by_category_keeps_mode_order_and_splits_prompts():
    records = [rec("a", "plain", cat="x"), rec("a", "lookup", cat="x"), rec("b", "plain", cat="y")]
    cats = aggregate.by_category(records)
    assert list(cats) == ["x", "y"]
    assert [s.mode for s in cats["x"]] == ["plain", "lookup"]
    assert [s.mode for s in cats["y"]] == ["plain"]


def test_tables_list_modes_in_the_order_they_ran_not_by_their_fastest_run():
    slow_plain = rec("a", "plain")
    slow_plain["stats"]["tokens_per_s"] = 1.0
    records = [slow_plain, rec("a", "lookup"), rec("a", "plain")]
    assert [s.mode for s in aggregate.summarize(records)] == ["plain", "lookup"]
    assert [s.mode for s in aggregate.by_category(records)["c"]] == ["plain", "lookup"]


def test_mark_lossless_finds_where_a_run_diverges():
    records = [
        {"mode": "lookup", "tokens": [1, 2, 3]},
        {"mode": "plain", "tokens": [1, 2, 3]},
        {"mode": "draft-k3", "tokens": [1, 2, 9, 4]},
    ]
    runner.mark_lossless(records)
    assert [r["matches_plain"] for r in records] == [True, True, False]
    assert records[2]["diverges_at"] == 2 and records[0]["diverges_at"] is None
    alone = [{"mode": "lookup", "tokens": [1]}]
    runner.mark_lossless(alone)
    assert alone[0]["matches_plain"] is None


def test_rotation_puts_every_mode_in_every_position():
    ms = modes.MODES[:4]
    orders = [runner.rotated(ms, i) for i in range(len(ms))]
    for pos in range(len(ms)):
        assert {o[pos].name for o in orders} == {m.name for m in ms}
    assert all(sorted(m.name for m in o) == sorted(m.name for m in ms) for o in orders)


def test_table_renders_missing_values_as_dashes():
    text = report.table(aggregate.summarize([rec("a", "lookup")]), overhead=True)
    assert text.splitlines()[2].startswith("| lookup | 10.0 | – | – |")


def test_no_plot_without_a_plain_baseline(tmp_path):
    assert not report.plot([rec("a", "lookup"), rec("b", "draft-k3")], tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def test_json_only_writes_results_and_prints_the_summary(tmp_path, capsys):
    from argparse import Namespace

    from localspec.commands import bench

    records = [rec("a", "plain"), rec("a", "lookup", gen_s=0.5, steps=5, drafted=8, accepted=5, drafting=5)]
    meta = {"settings": {"prompts": 2}, "notes": []}
    assert bench._finish(records, meta, False, Namespace(json_only=True), tmp_path) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [s["mode"] for s in printed["overall"]] == ["plain", "lookup"]
    assert printed["overall"][1]["speedup"] == pytest.approx(2.0)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"] == printed and len(saved["runs"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    assert saved["meta"]["interrupted"] and saved["meta"]["prompts_done"] == 1  # 1 of the 2 planned


def test_without_matplotlib_bench_says_so_before_measuring(tmp_path):
    # matplotlib is the [bench] extra: hidden here as if `pip install localspec` had left it out.
    saved = tmp_path / "results.json"
    saved.write_text(json.dumps({"meta": {"settings": {"prompts": 1}, "notes": []}, "runs": [rec("a", "plain")]}))
    code = "import sys; sys.modules['matplotlib'] = None; from localspec.cli import main; sys.exit(main(sys.argv[1:]))"
    for args in (["--from-json", str(saved)], ["--target", "/no/model/needed.gguf"]):
        proc = subprocess.run([sys.executable, "-c", code, "bench", *args], capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            "localspec: error: localspec bench draws its plot with matplotlib, which is not installed: "
            "pip install 'localspec[bench]' (or give --json-only)"
        ]
    proc = subprocess.run([sys.executable, "-c", code, "bench", "--from-json", str(saved), "--json-only"],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


# --- modes and prompts -----------------------------------------------------


def test_default_modes_skip_what_the_engine_cannot_run():
    chosen, notes = modes.choose_modes(None, ("lookup", "none"))
    assert [m.name for m in chosen] == ["plain", "lookup", "plain-rerun"]
    assert any("draft-k1" in n for n in notes) and any("auto" in n for n in notes)
    chosen, notes = modes.choose_modes(None, ("auto", "draft", "lookup", "draft+lookup", "none"))
    assert [m.name for m in chosen] == [m.name for m in modes.MODES if m.name != "mtp"]
    assert notes == ["skipped mtp: needs a target with MTP heads"]
    chosen, _ = modes.choose_modes(None, ("auto", "mtp", "lookup", "none"))
    assert [m.name for m in chosen] == ["plain", "lookup", "mtp", "auto", "plain-rerun"]


def test_named_modes_are_checked():
    with pytest.raises(LocalspecError, match="draft model"):
        modes.choose_modes("plain,draft-k3", ("lookup", "none"))
    with pytest.raises(LocalspecError, match="unknown mode warp"):
        modes.choose_modes("plain,warp", ("lookup", "none"))
    chosen, _ = modes.choose_modes("lookup, plain,lookup", ("lookup", "none"))
    assert [m.name for m in chosen] == ["lookup", "plain"]


def test_fixed_k_modes_do_not_stop_early():
    for m in modes.MODES:
        if m.name.startswith("draft-k"):
            assert m.p_min == 0.0 and m.draft_max == int(m.name[len("draft-k") :])


def test_every_category_ships_prompts():
    got = prompts.all_prompts()
    for cat in prompts.CATEGORIES:
        n = sum(p.category == cat for p in got)
        assert 1 <= n <= 10, cat
    assert len({p.id for p in got}) == len(got)
    he = next(p for p in got if p.category == prompts.CODE_GENERATION)
    assert "def " in he.text and he.text.startswith("Complete the following Python function")


def test_select_is_round_robin_and_capped():
    chosen = prompts.select(("qa", "code-edit"), 2)
    assert [p.category for p in chosen] == ["qa", "code-edit", "qa", "code-edit"]
    assert len(prompts.select(("code-edit",), 50)) == 6


def test_parse_categories():
    assert prompts.parse_categories(None) == prompts.CATEGORIES
    assert prompts.parse_categories("rag, qa,rag") == ("rag", "qa")
    with pytest.raises(LocalspecError, match="unknown category poetry"):
        prompts.parse_categories("qa,poetry")


def test_bad_flags_fail_before_any_model_loads(capsys):
    assert main(["bench", "--target", "nonexistent-model", "--modes", "plain,warp"]) == 2
    assert "unknown mode warp" in capsys.readouterr().err
    assert main(["bench", "--target", "nonexistent-model", "--draft-max", "3"]) == 2


# --- the whole machinery on a real model -----------------------------------


def test_bench_smoke_on_smollm2(smollm2_path, tmp_path, capsys):
    out = tmp_path / "bench"
    rc = main(
        [
            "bench",
            "--target", str(smollm2_path),
            "--draft", str(smollm2_path),  # the model drafts for itself: acceptance is all but certain
            "--modes", "plain,lookup,draft-k3",
            "--categories", "writing,code-edit",
            "--per-category", "1",
            "--max-tokens", "16",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "## Overall" in stdout and "### code-edit" in stdout

    data = json.loads((out / "results.json").read_text())
    runs = data["runs"]
    assert sorted((r["category"], r["mode"]) for r in runs) == sorted(
        (c, m) for c in ("writing", "code-edit") for m in ("plain", "lookup", "draft-k3")
    )
    for r in runs:
        assert set(r["stats"]) >= {"tokens_per_s", "acceptance_rate", "zero_accept_steps", "per_position_acceptance"}
        assert r["stats"]["n_prompt"] == 0  # the prompt was in the cache before the timed run
        assert 1 <= r["stats"]["n_generated"] <= 16 and len(r["tokens"]) == r["stats"]["n_generated"]
        assert r["text_chars"] == len(r["text"])
        assert 0 < r["decode_s"] < r["stats"]["gen_s"]
        assert math.isclose(r["overhead_s"], r["stats"]["gen_s"] - r["decode_s"])
        assert r["matches_plain"] is not None
    assert all(r["matches_plain"] for r in runs if r["mode"] == "plain")
    drafted = [r for r in runs if r["mode"] == "draft-k3"]
    assert all(r["stats"]["drafted"] > 0 for r in drafted)
    assert [s["mode"] for s in data["summary"]["overall"]] == ["plain", "lookup", "draft-k3"]
    assert data["meta"]["models"]["target"]["sha256"] == data["meta"]["models"]["draft"]["sha256"]

    md = (out / "benchmarks.md").read_text()
    for heading in ("## Machine and software", "## Models", "## Overall", "### writing (1 prompt)", "### code-edit"):
        assert heading in md
    assert "| mode | tok/s | speedup |" in md and "| draft-k3 |" in md
    assert "![speedup by category and mode](speedup.png)" in md
    assert (out / "speedup.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The costs behind the planner's choices are part of the record: calibrated
    # at load for every size it may verify, and as learned by the end.
    costs = data["meta"]["costs"]
    calibrated = costs["calibrated"]["verify_s"]
    assert sorted(int(n) for n in calibrated) == priced_sizes({int(n): s for n, s in calibrated.items()}, 512)
    assert {16, 32, 64} <= {int(n) for n in calibrated} and K_MAX + 1 in {int(n) for n in calibrated}
    assert all(s > 0 for s in costs["end_of_run"]["verify_s"].values())
    assert "## Costs measured in this run" in md and "Draft model:" in md
    # Plain runs carry their prompt's tokens and the costs learned on it, from
    # which the hindsight bound is computed.
    assert all(r["prompt_tokens"] for r in runs if r["mode"] == "plain")
    assert all(r["costs"]["verify_s"]["1"] > 0 for r in runs if r["mode"] == "plain")
    assert "## What hindsight allows" in md and "| code-edit |" in md.split("## What hindsight allows")[1]
    assert "any copy from the context, hindsight" in md
    # Every run that parted from plain decoding was judged by the lossless rule.
    assert all(r["tie_margin"] >= 0 for r in runs if r["diverges_at"] is not None)

    # The report can be written again from the JSON alone, without a model.
    again = tmp_path / "again"
    assert main(["bench", "--from-json", str(out / "results.json"), "--out", str(again)]) == 0
    assert (again / "speedup.png").exists()
    assert (again / "benchmarks.md").read_text() == md
    assert not data["meta"]["interrupted"]


def test_bench_runs_mtp_on_a_target_with_heads(tiny_mtp_path, tmp_path, capsys):
    out = tmp_path / "bench"
    rc = main(
        [
            "bench",
            "--target", str(tiny_mtp_path),
            "--modes", "plain,mtp,auto",
            "--categories", "writing",
            "--per-category", "1",
            "--max-tokens", "24",
            "--repeats", "2",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert sorted((r["mode"], r["repeat"]) for r in runs) == sorted((m, i) for m in ("plain", "mtp", "auto") for i in (0, 1))
    assert "ran 2 times" in (out / "benchmarks.md").read_text()
    mtp = next(r for r in runs if r["mode"] == "mtp")
    assert mtp["stats"]["drafted"] > 0 and mtp["matches_plain"]
    assert 0 < mtp["decode_s"] < mtp["stats"]["gen_s"]
    assert "| mtp |" in (out / "benchmarks.md").read_text()


def test_runs_that_part_at_a_near_tie_count_as_lossless_and_others_are_named():
    plain = dict(rec("p", "plain"), matches_plain=True, diverges_at=None)
    tie = dict(rec("p", "lookup"), matches_plain=False, diverges_at=5, tie_margin=0.01)
    sure = dict(rec("p", "draft-k3"), matches_plain=False, diverges_at=7, tie_margin=3.2)
    old = dict(rec("p", "auto"), matches_plain=False, diverges_at=2)  # a result without margins
    rows = {s.mode: s for s in aggregate.summarize([plain, tie, sure, old])}
    assert (rows["lookup"].lossless_matches, rows["lookup"].lossless_ties) == (0, 1)
    assert (rows["draft-k3"].lossless_matches, rows["draft-k3"].lossless_ties) == (0, 0)
    assert rows["auto"].lossless_unchecked == 1
    table = report.table(list(rows.values()), overhead=False)
    assert "| 0/1 | 1/1 |" in table and "| 0/1 | 0/1 |" in table and "0/1 (1 unchecked)" in table
    text = "\n".join(report.divergences([plain, tie, sure, old]))
    assert "3 of 3 runs" in text and "0.0100 to 3.2000" in text
    assert "Not lossless: 1 run(s)" in text and "| p | draft-k3 | 7 | 3.200 |" in text
    assert "Not lossless" not in "\n".join(report.divergences([plain, tie]))


def test_every_run_of_a_prompt_meets_it_as_new(smollm2_path, monkeypatch):
    """Runs of one prompt do not teach each other: each starts from the planner's
    estimates from before the prompt, and the next prompt starts from what the
    first auto run left. The warm-up runs on a prompt that is not timed."""
    from localspec.engine import load_engine

    engine = load_engine(str(smollm2_path), method="lookup")
    seen: list[tuple[str, str, dict, dict]] = []  # prompt, mode, estimates at the start and at the end
    real_run_once = runner.run_once

    def run_once(engine, prompt, mode, options, prompt_id=None):
        start = engine.planner.estimates()
        rec = real_run_once(engine, prompt, mode, options, prompt_id)
        seen.append((prompt.id, mode.name, start, engine.planner.estimates()))
        return rec

    def survival(estimates: dict) -> list:
        return [a.total.tolist() + a.weight.tolist() for k, a in sorted(estimates["acceptance"].items()) if k.startswith("lookup")]

    monkeypatch.setattr(runner, "run_once", run_once)
    try:
        chosen = prompts.select(["code-edit"], 2)
        wanted = [modes.BY_NAME["plain"], modes.BY_NAME["auto"]]
        list(runner.iter_benchmark(engine, chosen, wanted, max_tokens=24, warmup=1, repeats=2))
    finally:
        engine.close()
    assert [p for p, *_ in seen[:2]] == [prompts.WARM_UP.id] * 2  # the warm-up, on its own prompt
    timed = seen[2:]
    for prompt in chosen:
        runs = [(mode, start, end) for p, mode, start, end in timed if p == prompt.id]
        assert len(runs) == 4
        assert all(survival(start) == survival(runs[0][1]) for _, start, _ in runs)
        # The runs did learn (a code edit copies its input): what they learned was put back.
        assert any(survival(end) != survival(start) for _, start, end in runs)
    first, second = chosen
    first_auto_end = next(end for p, mode, _, end in timed if p == first.id and mode == "auto")
    second_start = next(start for p, _, start, _ in timed if p == second.id)
    assert survival(second_start) == survival(first_auto_end)


def test_the_engine_puts_back_the_renames_lookup_learned(smollm2_path):
    from localspec.engine import load_engine
    from localspec.substitutions import CONFIRM

    engine = load_engine(str(smollm2_path), method="lookup")
    try:
        saved = engine.learned()
        for at in range(CONFIRM):
            engine.lookup.substitutions.learn((5, 6), (7,), at)
        assert len(engine.lookup.substitutions) == 1
        engine.restore_learned(saved)
        assert len(engine.lookup.substitutions) == 0
    finally:
        engine.close()


def test_check_ties_judges_a_run_that_parted_where_plain_decoding_chose(smollm2_path):
    from localspec.engine import load_engine
    from localspec.lossless import margins_at

    engine = load_engine(str(smollm2_path))
    try:
        prompt = prompts.select(["writing"], 1)[0]
        prompt_tokens = runner.prime(engine, prompt, 12)
        plain = runner.run_once(engine, prompt, modes.BY_NAME["plain"], runner.GenerateOptions(max_tokens=12))
        other = dict(plain, mode="lookup", tokens=plain["tokens"][:3] + [plain["tokens"][3] + 1])
        group = [plain, other]
        runner.mark_lossless(group)
        runner.check_ties(engine, prompt_tokens, group)
        assert "tie_margin" not in plain and other["diverges_at"] == 3
        expected = margins_at(engine.target_ctx, prompt_tokens, plain["tokens"], [3])[3]
        assert other["tie_margin"] == pytest.approx(expected, abs=1e-4)
    finally:
        engine.close()


def test_sampled_bench_runs_every_mode_once_per_seed(smollm2_path, tmp_path, capsys):
    out = tmp_path / "sampled"
    rc = main(
        [
            "bench", "--target", str(smollm2_path), "--modes", "plain,auto", "--categories", "code-edit",
            "--per-category", "1", "--max-tokens", "12", "--temp", "0.8", "--top-p", "0.95", "--seeds", "2",
            "--warmup", "0", "--out", str(out),
        ]
    )  # fmt: skip
    assert rc == 0
    data = json.loads((out / "results.json").read_text())
    runs = data["runs"]
    assert sorted((r["seed"], r["mode"]) for r in runs) == [(1, "auto"), (1, "plain"), (2, "auto"), (2, "plain")]
    assert len({r["prompt_id"] for r in runs}) == 2 and all(r["prompt_id"].endswith(f"@seed{r['seed']}") for r in runs)
    assert all("matches_plain" not in r for r in runs)  # sampled texts are not compared token by token
    assert data["meta"]["settings"]["sampling"] == {"temp": 0.8, "top_p": 0.95, "seeds": 2}
    assert data["meta"]["prompts_done"] == data["meta"]["settings"]["prompts"] == 2
    assert "Sampling at temperature 0.8" in (out / "benchmarks.md").read_text()
    # Same seed, same mode: the same reply (the draws are reproducible).
    again = main(["bench", "--target", str(smollm2_path), "--modes", "plain", "--categories", "code-edit",
                  "--per-category", "1", "--max-tokens", "12", "--temp", "0.8", "--top-p", "0.95", "--seeds", "2",
                  "--warmup", "0", "--out", str(tmp_path / "again"), "--json-only"])  # fmt: skip
    assert again == 0
    capsys.readouterr()
    second = json.loads((tmp_path / "again" / "results.json").read_text())["runs"]
    first_plain = {r["seed"]: r["tokens"] for r in runs if r["mode"] == "plain"}
    assert {r["seed"]: r["tokens"] for r in second} == first_plain


def test_seeds_without_temperature_is_a_one_line_error(smollm2_path, capsys):
    assert main(["bench", "--target", str(smollm2_path), "--seeds", "2"]) == 2
    assert "--temp" in capsys.readouterr().err
