"""scripts/cuda/zeroed_gguf.py: a model's header travels alone and comes back
as the same file with its tensor bytes zero, which llama.cpp still loads and
runs (the GPU curve of docs/h200-cuda/ was measured on such files)."""

import importlib.util
from pathlib import Path

import gguf
import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "cuda" / "zeroed_gguf.py"


def _zeroed_gguf():
    spec = importlib.util.spec_from_file_location("zeroed_gguf", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_header_travels_alone_and_the_weights_come_back_zero(tiny_f32_path, tmp_path):
    from localspec.backend import Context, Model

    z = _zeroed_gguf()
    head, zeroed = tmp_path / "tiny.head.gz", tmp_path / "tiny-zeroed.gguf"
    z.pack(str(tiny_f32_path), str(head))
    assert head.stat().st_size < tiny_f32_path.stat().st_size / 4
    z.unpack(str(head), str(zeroed))

    original, copy = gguf.GGUFReader(tiny_f32_path), gguf.GGUFReader(zeroed)
    assert zeroed.stat().st_size == tiny_f32_path.stat().st_size
    assert zeroed.read_bytes()[: original.data_offset] == tiny_f32_path.read_bytes()[: original.data_offset]
    assert [t.name for t in copy.tensors] == [t.name for t in original.tensors]
    assert all(not np.any(t.data) for t in copy.tensors)
    assert any(np.any(t.data) for t in original.tensors)

    model = Model(zeroed)
    try:
        ctx = Context(model, n_ctx=64, n_threads=1)
        rows = ctx.decode([1, 2, 3, 4], logits="all")
        assert rows.shape == (4, model.n_vocab) and not np.any(rows)  # zero weights, zero logits
        ctx.close()
    finally:
        model.close()
