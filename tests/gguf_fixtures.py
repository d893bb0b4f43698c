"""Tiny GGUF models written by the tests themselves, with the `gguf` package.

All weights are F32 so that llama.cpp's CPU path has no quantised kernels
whose rounding depends on the batch size; the vocabulary is copied from a
real GGUF (SmolLM2's 49,152-token BPE) so the tokenizer and chat template
are real and the tiny models are vocabulary-compatible with SmolLM2.
"""

from __future__ import annotations

import functools
from pathlib import Path

import gguf
import numpy as np

_TOKENIZER_KEYS = (
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.chat_template",
)


@functools.lru_cache(maxsize=None)
def _tokenizer_fields(src: Path) -> tuple[tuple[str, str, object], ...]:
    """(key, kind, value) of the tokenizer metadata; read once, GGUFReader is slow."""
    reader = gguf.GGUFReader(src)
    out = []
    for key in _TOKENIZER_KEYS:
        field = reader.get_field(key)
        if field is None:
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            values = [field.parts[i] for i in field.data]
            if field.types[-1] == gguf.GGUFValueType.STRING:
                values = [bytes(v).decode("utf-8") for v in values]
            else:
                values = [v.tolist()[0] for v in values]
            out.append((key, "array", values))
        elif vtype == gguf.GGUFValueType.STRING:
            out.append((key, "string", bytes(field.parts[field.data[0]]).decode("utf-8")))
        elif vtype == gguf.GGUFValueType.BOOL:
            out.append((key, "bool", bool(field.parts[field.data[0]][0])))
        else:
            out.append((key, "uint32", int(field.parts[field.data[0]][0])))
    return tuple(out)


def _copy_tokenizer(src: Path, writer: gguf.GGUFWriter) -> int:
    n_vocab = 0
    for key, kind, value in _tokenizer_fields(src):
        getattr(writer, f"add_{kind}")(key, value)
        if key == "tokenizer.ggml.tokens":
            n_vocab = len(value)
    return n_vocab


def write_tiny_llama(
    path: Path,
    *,
    vocab_from: Path,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    n_ctx: int = 2048,
    seed: int = 0,
) -> Path:
    """A random F32 llama-architecture model; output tied to the embedding."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(f"tiny-llama-f32-s{seed}")
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    n_vocab = _copy_tokenizer(vocab_from, writer)

    def w(*shape: int, scale: float) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    head_dim = n_embd // n_head
    # Embeddings large enough that logits are spread out (a softmax with clear
    # winners), so greedy ties are rare and exact-identity checks are meaningful.
    writer.add_tensor("token_embd.weight", w(n_vocab, n_embd, scale=1.0))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    for i in range(n_layer):
        s = 1.0 / np.sqrt(n_embd)
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", w(n_head * head_dim, n_embd, scale=s))
        writer.add_tensor(f"blk.{i}.attn_k.weight", w(n_head_kv * head_dim, n_embd, scale=s))
        writer.add_tensor(f"blk.{i}.attn_v.weight", w(n_head_kv * head_dim, n_embd, scale=s))
        writer.add_tensor(f"blk.{i}.attn_output.weight", w(n_embd, n_head * head_dim, scale=s))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", w(n_ff, n_embd, scale=s))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", w(n_ff, n_embd, scale=s))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", w(n_embd, n_ff, scale=1.0 / np.sqrt(n_ff)))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_tiny_qwen35_mtp(
    path: Path,
    *,
    vocab_from: Path,
    n_layer: int = 4,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    n_ctx: int = 4096,
    trunk_scale: float = 0.9,
    seed: int = 0,
) -> Path:
    """A random F32 Qwen3.5-architecture model with one MTP (NextN) block.

    Qwen3.5 is what `Qwen3.6-*-MTP` GGUFs use: a hybrid trunk (three gated
    delta-net layers, whose recurrent state cannot simply be cut back, then one
    attention layer) plus a NextN block that llama.cpp runs in an MTP context.

    Random weights would make the MTP head's guesses worthless, and a test
    would then only ever see rejections. So the model is built to be mostly a
    fixed bigram walk: the output matrix is the embedding with its rows
    permuted (token t is followed by sigma^-1(t)), the trunk adds a context-
    dependent perturbation of size `trunk_scale` that sometimes changes the
    winner, and the NextN block passes the token embedding through, so it
    predicts the bigram successor. Drafts are then often but not always right.
    """
    rng = np.random.default_rng(seed)
    arch = "qwen35"
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(f"tiny-qwen35-mtp-f32-s{seed}")
    head_dim = n_embd // n_head
    d_state, n_group, n_v_heads, d_conv = 16, 2, 4, 4
    d_inner = d_state * n_v_heads
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer + 1)
    writer.add_uint32(f"{arch}.nextn_predict_layers", 1)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_array(f"{arch}.rope.dimension_sections", [3, 3, 2, 0])
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_uint32(f"{arch}.ssm.conv_kernel", d_conv)
    writer.add_uint32(f"{arch}.ssm.inner_size", d_inner)
    writer.add_uint32(f"{arch}.ssm.state_size", d_state)
    writer.add_uint32(f"{arch}.ssm.time_step_rank", n_v_heads)
    writer.add_uint32(f"{arch}.ssm.group_count", n_group)
    writer.add_uint32(f"{arch}.full_attention_interval", 4)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    n_vocab = _copy_tokenizer(vocab_from, writer)

    def w(*shape: int, scale: float) -> np.ndarray:
        return (rng.standard_normal(shape) * scale / np.sqrt(shape[-1])).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    embd = rng.standard_normal((n_vocab, n_embd)).astype(np.float32)
    writer.add_tensor("token_embd.weight", embd)
    writer.add_tensor("output.weight", embd[rng.permutation(n_vocab)])
    writer.add_tensor("output_norm.weight", ones(n_embd))

    def attention_block(i: int, scale: float) -> None:
        writer.add_tensor(f"blk.{i}.attn_q.weight", w(2 * n_head * head_dim, n_embd, scale=scale))
        writer.add_tensor(f"blk.{i}.attn_k.weight", w(n_head_kv * head_dim, n_embd, scale=scale))
        writer.add_tensor(f"blk.{i}.attn_v.weight", w(n_head_kv * head_dim, n_embd, scale=scale))
        writer.add_tensor(f"blk.{i}.attn_output.weight", w(n_embd, n_head * head_dim, scale=scale))
        writer.add_tensor(f"blk.{i}.attn_q_norm.weight", ones(head_dim))
        writer.add_tensor(f"blk.{i}.attn_k_norm.weight", ones(head_dim))

    def common(i: int, scale: float) -> None:
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones(n_embd))
        writer.add_tensor(f"blk.{i}.post_attention_norm.weight", ones(n_embd))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", w(n_ff, n_embd, scale=scale))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", w(n_ff, n_embd, scale=scale))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", w(n_embd, n_ff, scale=scale))

    for i in range(n_layer):
        common(i, trunk_scale)
        if (i + 1) % 4 == 0:
            attention_block(i, trunk_scale)
            continue
        key_dim, value_dim = d_state * n_group, d_inner
        writer.add_tensor(f"blk.{i}.attn_qkv.weight", w(2 * key_dim + value_dim, n_embd, scale=1.0))
        writer.add_tensor(f"blk.{i}.attn_gate.weight", w(value_dim, n_embd, scale=1.0))
        writer.add_tensor(f"blk.{i}.ssm_conv1d.weight", w(2 * key_dim + value_dim, d_conv, scale=1.0))
        writer.add_tensor(f"blk.{i}.ssm_dt.bias", np.zeros(n_v_heads, dtype=np.float32))
        # A = -exp(A_log): every head decays its state, as in trained models.
        writer.add_tensor(f"blk.{i}.ssm_a", -np.exp(rng.standard_normal(n_v_heads) * 0.5).astype(np.float32))
        writer.add_tensor(f"blk.{i}.ssm_beta.weight", w(n_v_heads, n_embd, scale=1.0))
        writer.add_tensor(f"blk.{i}.ssm_alpha.weight", w(n_v_heads, n_embd, scale=1.0))
        writer.add_tensor(f"blk.{i}.ssm_norm.weight", ones(d_state))
        writer.add_tensor(f"blk.{i}.ssm_out.weight", w(n_embd, value_dim, scale=trunk_scale))

    mtp = n_layer
    common(mtp, 0.3)
    attention_block(mtp, 0.3)
    # [identity | small]: the head sees the token it is given, plus a little of
    # the target's hidden state, so the hidden-state plumbing is exercised.
    eh_proj = np.concatenate([np.eye(n_embd, dtype=np.float32), w(n_embd, n_embd, scale=0.3)], axis=1)
    writer.add_tensor(f"blk.{mtp}.nextn.eh_proj.weight", eh_proj)
    writer.add_tensor(f"blk.{mtp}.nextn.enorm.weight", ones(n_embd))
    writer.add_tensor(f"blk.{mtp}.nextn.hnorm.weight", ones(n_embd))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
