"""The per-machine calibration cache: what is kept, and that it stays bounded."""

from __future__ import annotations

import json

import pytest

from localspec import calibrate


def test_cache_keeps_the_least_disturbed_figure_and_the_newest_entries(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALSPEC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("LOCALSPEC_CALIBRATION_FILE", raising=False)
    keys = {"target": "verify:a", "draft": "draft:b"}
    calibrate.remember(keys, {1: 0.05, 2: 0.09}, {"draft": 0.02})
    calibrate.remember(keys, {1: 0.07, 2: 0.08, 4: 0.14}, {"draft": 0.01})
    saved = json.loads((tmp_path / "models" / "calibration.json").read_text())
    # A busy machine only makes steps slower: the curve that prices one row
    # lower stays, whole (2 rows stay 0.09, not the other session's 0.08), and
    # a size only the other measured joins it at the kept curve's scale. The
    # draft model's cost comes from the same session as the curve.
    assert saved["verify:a"] == pytest.approx({"1": 0.05, "2": 0.09, "4": 0.10})
    assert saved["draft:b"] == {"1": 0.02}
    calibrate.remember(keys, {1: 0.04, 2: 0.07}, {"draft": 0.03})
    saved = json.loads((tmp_path / "models" / "calibration.json").read_text())
    assert saved["verify:a"] == pytest.approx({"1": 0.04, "2": 0.07, "4": 0.08})
    assert saved["draft:b"] == {"1": 0.03}

    # Every new file (a re-download, a test fixture) gets a key; old ones go.
    for i in range(calibrate.KEEP + 10):
        calibrate.remember({"target": f"verify:f{i}"}, {1: 0.1}, {})
    calibrate.remember(keys, {1: 0.06}, {})  # used again: moves to the newest end
    saved = json.loads((tmp_path / "models" / "calibration.json").read_text())
    assert len(saved) == calibrate.KEEP
    assert "verify:a" in saved and "verify:f0" not in saved and f"verify:f{calibrate.KEEP + 9}" in saved


def test_sessions_never_ratchet_the_curve_out_of_shape(tmp_path, monkeypatch):
    """Many sessions, each measuring the same machine with noise: the stored
    curve is always one session's own (scaled), never each size's luckiest
    figure, so its ratio of 2 rows to 1 stays a ratio some session measured."""
    import random

    monkeypatch.setenv("LOCALSPEC_CALIBRATION_FILE", str(tmp_path / "calibration.json"))
    rng = random.Random(0)
    ratios = []
    for _ in range(40):
        one, two = 0.030 * rng.uniform(0.8, 1.2), 0.057 * rng.uniform(0.8, 1.2)
        ratios.append(two / one)
        calibrate.remember({"target": "verify:q"}, {1: one, 2: two}, {})
    saved = json.loads((tmp_path / "calibration.json").read_text())["verify:q"]
    assert any(abs(saved["2"] / saved["1"] - r) < 1e-9 for r in ratios)
    assert 0.030 * 0.8 <= saved["1"] and saved["2"] / saved["1"] >= min(ratios)


def priced_sizes(verify_s: dict, most: int) -> list[int]:
    """The sizes calibration should have measured, given what it measured:
    1..K_MAX+1, the tiles that fit in `most` rows, and the fills between
    them where the sizes around pay."""
    entry = {str(n): s for n, s in verify_s.items()}
    tiles = [n for n in calibrate.TILE_ROWS if n <= most]
    fills = [n for n, around in calibrate.FILL_ROWS.items() if n <= most and calibrate._could_pay(entry, around)]
    return sorted([*calibrate.ROWS, *tiles, *fills])


def test_calibration_prices_every_size_the_planner_can_choose(tmp_path, monkeypatch, smollm2_path):
    """On a real model: every verify size 1..K_MAX+1 is measured (none
    interpolated), the long tiles and the fills that can pay, the draft
    model's catch-up batches too, and an entry of an older version that
    measured fewer sizes is measured again."""
    from localspec.backend import Context, Model
    from localspec.controller import K_MAX

    monkeypatch.setenv("LOCALSPEC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("LOCALSPEC_CALIBRATION_FILE", raising=False)
    model = Model(smollm2_path)
    target, draft = Context(model, n_ctx=256), Context(model, n_ctx=256)
    keys = calibrate.keys_for(target, draft, 2, (0, 0))
    stale = {keys["target"]: {"1": 0.5, "2": 0.6, "3": 0.7, "5": 0.8, "9": 0.9}, keys["draft"]: {"1": 0.5}}
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "calibration.json").write_text(json.dumps(stale))

    m = calibrate.measure(target, draft, keys)
    assert sorted(m["verify_s"]) == priced_sizes(m["verify_s"], most=255)
    assert calibrate.ROWS == tuple(range(1, K_MAX + 2))
    assert {16, 32, 64} <= set(m["verify_s"])  # the long tiles, on every machine
    assert all(0 < s < 0.5 for s in m["verify_s"].values()), "the stale entry was served"
    assert sorted(m["draft_batch_s"]) == list(calibrate.DRAFT_BATCH_ROWS)
    assert m["draft_token_s"]["draft"] == m["draft_batch_s"][1]
    assert target.tokens == [] and draft.tokens == []  # calibration leaves the caches empty

    again = calibrate.measure(target, draft, keys)  # now served from the cache
    assert again["verify_s"] == m["verify_s"] and again["draft_batch_s"] == m["draft_batch_s"]
