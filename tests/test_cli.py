"""`localspec run` as a user calls it: a separate process, JSON out, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def localspec(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "localspec", *args], capture_output=True, text=True, input=stdin, timeout=600
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def json_run(smollm2_path):
    proc = localspec(
        "run", "--target", str(smollm2_path), "--draft", str(smollm2_path), "--method", "draft",
        "--temp", "0", "--max-tokens", "24", "--json", "--trace",
        "--prompt", "Write the numbers from 1 to 10 separated by commas.",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_json_contract(json_run):
    out = json_run
    assert isinstance(out["text"], str) and out["text"]
    assert all(isinstance(t, int) for t in out["tokens"])
    stats = out["stats"]
    for key in (
        "n_generated", "prompt_s", "gen_s", "tokens_per_s", "steps", "drafted", "accepted",
        "acceptance_rate", "mean_accepted_per_step", "per_position_acceptance", "draft_s", "verify_s",
    ):  # fmt: skip
        assert key in stats, key
    assert stats["n_generated"] == len(out["tokens"])
    assert stats["tokens_per_s"] == pytest.approx(stats["n_generated"] / stats["gen_s"])
    assert stats["accepted"] <= stats["drafted"]
    assert stats["drafted"] > 0 and stats["accepted"] > 0, "a model drafting for itself must be accepted"


def test_trace_has_one_entry_per_token(json_run):
    trace = json_run["trace"]
    assert [t["token"] for t in trace] == json_run["tokens"]
    assert {t["source"] for t in trace} <= {"draft", "target"}
    assert sum(t["source"] == "draft" for t in trace) == json_run["stats"]["accepted"]
    assert all(t["margin"] >= 0 for t in trace)


def test_prompt_file_and_stdin(smollm2_path, tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("Say hi.")
    a = localspec("run", "--target", str(smollm2_path), "--method", "none", "--max-tokens", "8", "--json", "--prompt-file", str(f))
    b = localspec("run", "--target", str(smollm2_path), "--method", "none", "--max-tokens", "8", "--json", stdin="Say hi.")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert json.loads(a.stdout)["tokens"] == json.loads(b.stdout)["tokens"]


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--target", "/no/such/model.gguf"], ["not found", "/no/such/model.gguf"]),
        (["--target", "smollm2-13"], ["unknown model", "smollm2-135m"]),
        (["--temp", "-1"], ["--temp"]),
        (["--top-p", "1.5"], ["--top-p"]),
        (["--draft-max", "many"], ["--draft-max"]),
        (["--max-tokens", "0"], ["--max-tokens"]),
        (["--p-min", "2"], ["--p-min"]),
        (["--method", "telepathy"], ["--method"]),
        (["--method", "draft"], ["--draft"]),
        (["--prompt-file", "/no/such/prompt.txt"], ["prompt file not found"]),
    ],
)
def test_bad_input_is_one_line_exit_2(smollm2_path, args, needles):
    base = ["run", "--max-tokens", "4"] + ([] if "--target" in args else ["--target", str(smollm2_path)])
    if "--prompt-file" not in args:
        base += ["--prompt", "hi"]
    assert_one_line_error(localspec(*base, *args), *needles)


def test_not_a_gguf_and_truncated(smollm2_path, tmp_path):
    text = tmp_path / "notes.gguf"
    text.write_text("these are my notes, not a model\n")
    assert_one_line_error(localspec("run", "--target", str(text), "--prompt", "hi"), "not a GGUF", str(text))
    cut = tmp_path / "cut.gguf"
    with open(smollm2_path, "rb") as src:
        cut.write_bytes(src.read(4_000_000))
    assert_one_line_error(localspec("run", "--target", str(cut), "--prompt", "hi"), "truncated", str(cut))


@pytest.mark.qwen
def test_incompatible_draft_names_both_vocabularies(qwen_target_path, smollm2_path):
    proc = localspec("run", "--target", "qwen2.5-coder-1.5b", "--draft", "smollm2-135m", "--prompt", "hi")
    assert_one_line_error(proc, "151936", "49152", Path(qwen_target_path).name, Path(smollm2_path).name)
