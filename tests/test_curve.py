"""`localspec curve` and weight layouts, on real files through real llama.cpp."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from localspec.cli import main
from localspec.commands.curve import table


def test_curve_measures_each_file_side_by_side(smollm2_path, capsys):
    assert main(["curve", str(smollm2_path), "smollm2-135m", "--rows", "4,16", "--repeats", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["threads"] >= 1 and out["repeats"] == 1
    assert [m["name"] for m in out["models"]] == ["smollm2-135m", str(smollm2_path)]  # the same file twice
    for m in out["models"]:
        assert sorted(int(n) for n in m["verify_s"]) == [1, 4, 16]  # one row is always measured
        assert all(s > 0 for s in m["verify_s"].values())

    assert main(["curve", str(smollm2_path), "--rows", "1,2", "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "2 threads" in lines[0] or "threads" in lines[0]
    assert lines[1].startswith("rows | smollm2-135m")
    assert [line.split()[0] for line in lines[3:]] == ["1", "2"]


def test_rows_are_timed_after_as_many_tokens_as_asked(smollm2_path, capsys):
    """--after puts that many tokens in the cache first, as a long prompt would:
    every timed decode starts there."""
    from localspec import calibrate
    from localspec.backend import Context, Model

    assert main(["curve", str(smollm2_path), "--rows", "1,4", "--repeats", "1", "--after", "300", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["after"] == 300 and sorted(out["models"][0]["verify_s"]) == ["1", "4"]

    model = Model(smollm2_path)
    ctx = Context(model, n_ctx=512)
    decoded: list[tuple[int, int]] = []

    class Record:
        def after_decode(self, tokens, pos0):
            decoded.append((len(tokens), pos0))

        def after_truncate(self, n):
            pass

    ctx.listeners.append(Record())
    calibrate.time_rows(ctx, (1, 4), calibrate.seed_tokens(model, 4, 300), repeats=1, prefix=300)
    assert decoded == [(300, 0), (1, 300), (4, 300)]
    ctx.close()
    model.close()


def test_the_table_gives_each_size_its_multiple_and_ceiling():
    lines = table(["a", "b"], [{1: 0.030, 16: 0.255}, {1: 0.028, 16: 0.204}])
    one, sixteen = lines[2].split(), lines[3].split()
    assert one == ["1", "|", "30.0", "1.0", "1.00x", "|", "28.0", "1.0", "1.00x"]
    # 16 rows for 8.5 single steps: a right 15-token draft is worth 1.88x.
    assert sixteen == ["16", "|", "255.0", "8.5", "1.88x", "|", "204.0", "7.3", "2.20x"]


@pytest.mark.parametrize("argv, says", [
    (["curve", "--rows", "0,4"], "row counts must be 1 to 512"),
    (["curve", "--rows", "4,x"], "expected row counts"),
    (["curve", "/etc/hostname"], "not a GGUF file"),
    (["curve", "no-such-model"], "unknown model"),
    (["curve", "--after", "0"], "--after must be 1 to 32768"),
    (["curve", "--after", "lots"], "expected a number of tokens"),
])  # fmt: skip
def test_bad_input_is_one_line(argv, says, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err


def tensor_types(path) -> Counter:
    from gguf import GGUFReader

    return Counter(t.tensor_type.name for t in GGUFReader(path).tensors)


def test_a_layout_rewrites_the_weights_and_still_runs(smollm2_path, tmp_path):
    """SmolLM2 (Q4_1 with a Q8_0 embedding) written as all-Q4_0 and as its own
    mixture with Q8_0 remapped to Q4_0; both load and decode."""
    from localspec.backend import Context, Model
    from localspec.layouts import LAYOUTS, Layout, requantize

    q4_0 = tmp_path / "q4_0.gguf"
    requantize(smollm2_path, q4_0, LAYOUTS["q4_0"], 2)
    assert set(tensor_types(q4_0)) == {"Q4_0", "F32"}
    remapped = tmp_path / "remapped.gguf"
    requantize(smollm2_path, remapped, Layout("test", "Q4_K_M", pure=False, remap={"Q8_0": "Q4_0"}), 2)
    # The one Q8_0 tensor (the embedding) remapped, every other one kept as it was
    # (not the Q4_K_M mixture the quantizer would choose by itself).
    assert tensor_types(remapped) == {"Q4_1": 210, "Q4_0": 1, "F32": 61}
    for path in (q4_0, remapped):
        model = Model(path)
        ctx = Context(model, n_ctx=64)
        logits = ctx.decode(model.tokenize("The capital of France is", add_special=True, parse_special=False))
        assert logits.shape == (1, model.n_vocab)
        ctx.close()
        model.close()
    assert not list(tmp_path.glob("*.partial"))


def test_the_layout_command_writes_the_file_and_compares_it_here(smollm2_path, tmp_path, capsys):
    out = tmp_path / "small.q4_0.gguf"
    assert main(["layout", str(smollm2_path), "--to", "q4_0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert set(tensor_types(out)) == {"Q4_0", "F32"}
    assert f"rows | {smollm2_path.name}" in printed and "small.q4_0.gguf" in printed
    agree = next(line for line in printed.splitlines() if line.startswith("top-1 agreement"))
    got, total = agree.split(": ")[1].split(" ")[0].split("/")
    assert int(total) == 3 * 48 and 0 < int(got) <= int(total)
    assert f"localspec run --target {out}" in printed
    assert main(["layout", str(smollm2_path), "--to", "q5_x"]) == 2


def test_long_row_counts_are_timed_in_full(smollm2_path, capsys):
    """Rows past what calibration needs get seed tokens enough for all of them
    (time_rows refuses a slice that would run short rather than time fewer)."""
    from localspec import calibrate
    from localspec.backend import Context, Model

    assert main(["curve", str(smollm2_path), "--rows", "400", "--repeats", "1", "--json"]) == 0
    assert "400" in json.loads(capsys.readouterr().out)["models"][0]["verify_s"]
    model = Model(smollm2_path)
    ctx = Context(model, n_ctx=512)
    with pytest.raises(ValueError):
        calibrate.time_rows(ctx, (1, 300), calibrate.seed_tokens(model, 64))
    ctx.close()
    model.close()
