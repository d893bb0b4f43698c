"""Every method x draft length x sampling combination of `localspec run`, on real models.

Each combination is a separate process, as a user runs it: exit 0, no
traceback, and a reply. SmolLM2 drafts for itself (so `draft` and
`draft+lookup` have a draft model); `mtp` runs on the tiny MTP fixture. Also:
stop strings as streamed equal `--json`'s text, and no `--n-ctx` aborts.
"""

from __future__ import annotations

import json

import pytest
from test_cli import assert_one_line_error, localspec

METHODS = ("none", "lookup", "draft", "draft+lookup", "auto")
DRAFT_MAX = ("1", "4", "auto")
TEMPS = ("0", "0.8")
# Repeats itself, so lookup has something to copy and every drafter is asked.
PROMPT = "Write the numbers from 1 to 10 separated by commas, twice."


def run_json(*args: str) -> dict:
    proc = localspec("run", "--json", "--max-tokens", "24", "--seed", "3", *args)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("temp", TEMPS)
@pytest.mark.parametrize("draft_max", DRAFT_MAX)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_length_and_temperature_runs(smollm2_path, method, draft_max, temp):
    out = run_json("--target", str(smollm2_path), "--draft", str(smollm2_path), "--method", method,
                   "--draft-max", draft_max, "--temp", temp, "--prompt", PROMPT)  # fmt: skip
    assert out["text"] and out["stats"]["n_generated"] == len(out["tokens"]) > 0
    assert out["stats"]["accepted"] <= out["stats"]["drafted"]
    if method == "none":
        assert out["stats"]["drafted"] == 0


@pytest.mark.parametrize("temp", TEMPS)
@pytest.mark.parametrize("draft_max", DRAFT_MAX)
def test_mtp_with_every_length_and_temperature(tiny_mtp_path, draft_max, temp):
    out = run_json("--target", str(tiny_mtp_path), "--method", "mtp", "--raw", "--draft-max", draft_max,
                   "--temp", temp, "--prompt", "one two three four")  # fmt: skip
    assert out["stats"]["n_generated"] == len(out["tokens"]) > 0


@pytest.mark.parametrize("stops", [["4"], [", 5"], ["5, 6, 7"], ["9, 10", "6,"], ["no such stop"]])
def test_streamed_text_equals_the_final_text_with_stop_strings(smollm2_path, stops):
    args = ["run", "--target", str(smollm2_path), "--method", "lookup", "--draft-max", "4", "--max-tokens", "48",
            "--prompt", PROMPT]  # fmt: skip
    for s in stops:
        args += ["--stop", s]
    streamed = localspec(*args)
    final = localspec(*args, "--json")
    assert streamed.returncode == final.returncode == 0, streamed.stderr + final.stderr
    text = json.loads(final.stdout)["text"]
    assert streamed.stdout == text + "\n"
    assert not any(s in text for s in stops)


def test_a_context_smaller_than_a_batch_works(smollm2_path, tmp_path):
    prompt = tmp_path / "long.txt"
    prompt.write_text(" ".join(f"w{i}" for i in range(100)))  # about 200 tokens
    out = run_json("--target", str(smollm2_path), "--n-ctx", "300", "--prompt-file", str(prompt))
    assert out["tokens"]


@pytest.mark.parametrize(
    "n_ctx, needle",
    [("1", "at least"), ("31", "at least"), ("64", "context holds"), ("150", "context holds"),
     ("2000000000", "lower --n-ctx")],
)  # fmt: skip
def test_no_context_size_aborts(smollm2_path, tmp_path, n_ctx, needle):
    prompt = tmp_path / "long.txt"
    prompt.write_text(" ".join(f"w{i}" for i in range(100)))
    proc = localspec("run", "--target", str(smollm2_path), "--n-ctx", n_ctx, "--prompt-file", str(prompt))
    assert_one_line_error(proc, needle)
