"""scripts/chat_speed.py as a smoke test: the real chat in tmux beside `localspec
run`, on SmolLM2. Only that both rates come out and the texts agree; how
fast is measured by hand on a quiet machine (docs/tui.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_chat_speed_reports_chat_and_run_on_the_same_reply(smollm2_path):
    cmd = [
        sys.executable, str(ROOT / "scripts" / "chat_speed.py"), "--target", "smollm2-135m", "--method", "lookup",
        "--max-tokens", "32", "--prompt", "Write the numbers from 1 to 10 separated by commas.",
        "--plain", "--json", "--require-same-text",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    [row] = json.loads(done.stdout)["rows"]
    assert row["run"][0] > 0 and row["chat"][0] > 0 and row["plain_run"][0] > 0
    assert row["chat_plain"][0] > 0  # the panel's plain rate, stored with the reply
    assert 0 < row["ui_share"][0] <= 1.0  # the share of a core the UI thread used while the reply streamed
    assert row["same_text"] and row["chat_text"] == row["run_text"] != ""
    n_run, n_chat = row["tokens"]
    assert n_run == n_chat > 0
