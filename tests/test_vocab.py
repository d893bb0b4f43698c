from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from localspec.errors import LocalspecError
from localspec.fetch import cached_path
from localspec.gguf_info import read_gguf_info
from localspec.registry import load_registry
from localspec.resolve import ensure_local, resolve_model
from localspec.vocab import VocabInfo, check_compatible, incompatibility, vocab_from_metadata


@pytest.fixture(scope="module")
def smollm2() -> Path:
    return ensure_local(resolve_model("smollm2-135m"), progress=False)


@pytest.fixture(scope="module")
def smol_vocab(smollm2) -> VocabInfo:
    return read_gguf_info(smollm2).vocab


def qwen_file(name: str) -> Path:
    """A Qwen GGUF already in the user cache; these tests never download 1.6 GB."""
    path = cached_path(load_registry().models[name])
    if path is None:
        pytest.skip(f"{name} is not in the local cache (localspec pull qwen2.5-coder)")
    return path


def test_same_vocab_is_compatible(smollm2, smol_vocab):
    check_compatible(smol_vocab, smol_vocab, smollm2, smollm2)


def expect(target: VocabInfo, draft: VocabInfo, reason: str) -> str:
    with pytest.raises(LocalspecError) as e:
        check_compatible(target, draft, "/m/target.gguf", "/m/draft.gguf")
    msg = str(e.value)
    assert msg.startswith("draft draft.gguf (")
    assert "is not vocabulary-compatible with target target.gguf (" in msg
    assert msg.endswith(reason), msg
    return msg


def test_size_difference(smol_vocab):
    bigger = dataclasses.replace(smol_vocab, n_tokens=smol_vocab.n_tokens + 129,
                                 tokens=smol_vocab.tokens + ("x",) * 129)  # fmt: skip
    msg = expect(smol_vocab, bigger, "sizes differ by more than 128")
    assert "(bpe, 49281 tokens)" in msg and "(bpe, 49152 tokens)" in msg
    near = dataclasses.replace(bigger, n_tokens=smol_vocab.n_tokens + 128, tokens=bigger.tokens[:-1])
    assert incompatibility(smol_vocab, near) is None  # 128 extra tokens is within llama.cpp's slack


def test_token_text_difference(smol_vocab):
    tokens = list(smol_vocab.tokens)
    tokens[1000] = "changed"
    changed = dataclasses.replace(smol_vocab, tokens=tuple(tokens))
    expect(smol_vocab, changed, f"token 1000 differs ('changed' vs {smol_vocab.tokens[1000]!r})")
    tokens = list(smol_vocab.tokens)
    tokens[4] = "ids below 5 are not compared"
    assert incompatibility(smol_vocab, dataclasses.replace(smol_vocab, tokens=tuple(tokens))) is None


def test_bos_difference(smol_vocab):
    adds = dataclasses.replace(smol_vocab, add_bos=True)
    expect(smol_vocab, adds, "BOS handling differs (add_bos True vs False, bos id 1 vs 1)")
    # a different BOS id only matters when BOS is added
    assert incompatibility(smol_vocab, dataclasses.replace(smol_vocab, bos_id=7)) is None
    expect(adds, dataclasses.replace(adds, bos_id=7), "BOS handling differs (add_bos True vs True, bos id 7 vs 1)")


def test_eos_difference(smol_vocab):
    adds = dataclasses.replace(smol_vocab, add_eos=True)
    expect(adds, dataclasses.replace(adds, eos_id=9), "EOS handling differs (add_eos True vs True, eos id 9 vs 2)")


def test_type_difference(smol_vocab):
    spm = dataclasses.replace(smol_vocab, type="spm")
    msg = expect(smol_vocab, spm, "vocab types differ (spm vs bpe)")
    assert "(spm, 49152 tokens)" in msg


def test_llama_cpp_defaults_when_keys_are_absent():
    spm = vocab_from_metadata({"tokenizer.ggml.model": "llama"}, ["<unk>", "<s>", "</s>"])
    assert (spm.type, spm.bos_id, spm.eos_id, spm.add_bos, spm.add_eos) == ("spm", 1, 2, True, False)
    llama3 = vocab_from_metadata({"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "llama-bpe"}, ["a"] * 20)
    assert (llama3.type, llama3.add_bos, llama3.bos_id) == ("bpe", True, 11)
    tiny = vocab_from_metadata({"tokenizer.ggml.model": "gpt2"}, ["a"] * 5)
    assert tiny.bos_id == -1  # default id 11 is outside a 5-token vocabulary
    with pytest.raises(ValueError, match="unknown tokenizer model"):
        vocab_from_metadata({"tokenizer.ggml.model": "mystery"}, [])


@pytest.mark.qwen
def test_qwen_coder_pair_is_compatible():
    big, small = qwen_file("qwen2.5-coder-1.5b"), qwen_file("qwen2.5-coder-0.5b")
    check_compatible(read_gguf_info(big).vocab, read_gguf_info(small).vocab, big, small)


@pytest.mark.qwen
def test_qwen_and_smollm2_are_not(smollm2, smol_vocab):
    qwen = qwen_file("qwen2.5-coder-1.5b")
    with pytest.raises(LocalspecError) as e:
        check_compatible(read_gguf_info(qwen).vocab, smol_vocab, qwen, smollm2)
    assert str(e.value) == (
        "draft smollm2-135m.gguf (bpe, 49152 tokens) is not vocabulary-compatible with target "
        "qwen2.5-coder-1.5b.gguf (bpe, 151936 tokens): sizes differ by more than 128"
    )


@pytest.mark.qwen
def test_models_inventory_offers_only_smaller_compatible_drafts(tmp_path, monkeypatch):
    from localspec.inventory import inventory

    for name in ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"):
        qwen_file(name)
    (tmp_path / "notes.gguf").write_bytes(b"not a model")
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "models.toml").write_text(f'search_paths = ["{tmp_path}"]\n')
    monkeypatch.setenv("LOCALSPEC_CONFIG_DIR", str(cfg))
    entries = {e.name: e for e in inventory(load_registry())}
    assert entries["qwen2.5-coder-1.5b"].drafts == ("qwen2.5-coder-0.5b",)
    assert entries["qwen2.5-coder-0.5b"].drafts == ()  # the bigger one is no draft for it
    assert entries["smollm2-135m"].drafts == ()
    broken = entries[str(tmp_path / "notes.gguf")]
    assert broken.origin == "disk" and broken.info is None and "not a GGUF file" in (broken.error or "")
