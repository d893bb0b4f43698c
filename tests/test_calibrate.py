"""The per-machine calibration cache: what is kept, and that it stays bounded."""

from __future__ import annotations

import json

from localspec import calibrate


def test_cache_keeps_the_least_disturbed_figure_and_the_newest_entries(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALSPEC_CACHE_DIR", str(tmp_path))
    keys = {"target": "verify:a", "draft": "draft:b"}
    calibrate.remember(keys, {1: 0.05, 2: 0.09}, {"draft": 0.02})
    calibrate.remember(keys, {1: 0.07, 3: 0.12}, {"draft": 0.01})
    saved = json.loads((tmp_path / "models" / "calibration.json").read_text())
    # A busy machine only makes steps slower: the minimum of the sessions stays.
    assert saved["verify:a"] == {"1": 0.05, "2": 0.09, "3": 0.12}
    assert saved["draft:b"] == {"1": 0.01}

    # Every new file (a re-download, a test fixture) gets a key; old ones go.
    for i in range(calibrate.KEEP + 10):
        calibrate.remember({"target": f"verify:f{i}"}, {1: 0.1}, {})
    calibrate.remember(keys, {1: 0.06}, {})  # used again: moves to the newest end
    saved = json.loads((tmp_path / "models" / "calibration.json").read_text())
    assert len(saved) == calibrate.KEEP
    assert "verify:a" in saved and "verify:f0" not in saved and f"verify:f{calibrate.KEEP + 9}" in saved
