"""What a GGUF file is, read from its header without loading any weights.

A small reader of our own rather than `gguf.GGUFReader`: that one builds
numpy views for every field, which took 6.6 s on a 93 MB SmolLM2 file (and
importing `gguf` costs another 0.3-0.6 s); this one reads only the header
and keeps one big array, the token texts, for the vocabulary check.
Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (v2/v3,
little-endian).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localspec.errors import LocalspecError
from localspec.vocab import VocabInfo, vocab_from_metadata

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
# Arrays longer than this are skipped (merges, token types, scores) unless
# listed in _KEEP_ARRAYS: they are large and nothing here needs them.
_SMALL_ARRAY = 64
_KEEP_ARRAYS = {"tokenizer.ggml.tokens"}

# GGUF value type -> struct format for the fixed-size types
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
           10: "<Q", 11: "<q", 12: "<d"}  # fmt: skip
_STRING, _ARRAY = 8, 9

Q6_K = 14  # ggml's type id: llama.cpp repacks no Q6_K tensor on x86 (doctor's layout hint)

# ggml type -> (elements per block, bytes per block), from ggml's type traits
# (the same table as gguf.constants.GGML_QUANT_SIZES, which is slow to import).
_GGML_SIZES = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 40), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
    14: (256, 210), 15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98),
    19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82), 23: (256, 136),
    24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56),
    30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18),
}  # fmt: skip


@dataclass
class GGUFInfo:
    path: Path
    architecture: str
    name: str | None
    file_size: int
    n_params: int  # sum of tensor elements
    context_length: int | None  # the context the model was trained for
    nextn_predict_layers: int  # MTP heads; 0 when the file has none
    vocab: VocabInfo
    chat_template: str | None
    n_layers: int | None = None
    n_embd: int | None = None
    n_head_kv: int | None = None
    n_head: int | None = None
    key_length: int | None = None  # per-head K width, for KV cache estimates
    value_length: int | None = None
    elements_by_type: dict[int, int] = field(default_factory=dict)  # weights per ggml type id (Q6_K: 14)
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)  # scalars, small arrays

    def kv_bytes_per_token(self, bytes_per_value: int = 2) -> int | None:
        """KV cache size per context token at f16, or None if the header lacks the shape."""
        if not (self.n_layers and self.n_head_kv and (self.key_length or self.n_embd)):
            return None
        head_dim = (self.n_embd // self.n_head) if self.n_embd and self.n_head else None
        k = self.key_length or head_dim
        v = self.value_length or head_dim
        if not (k and v):
            return None
        return self.n_layers * self.n_head_kv * (k + v) * bytes_per_value


def read_gguf_info(path: Path | str) -> GGUFInfo:
    path = Path(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise LocalspecError(f"cannot read {path}: {e.strerror}") from None
    with f:
        size = path.stat().st_size
        if size < 8 or f.read(4) != MAGIC:
            raise LocalspecError(f"not a GGUF file: {path}")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                meta, tokens, data_end = _parse(buf)
            except (struct.error, IndexError, UnicodeDecodeError, ValueError, OverflowError) as e:
                raise LocalspecError(f"truncated or corrupt GGUF: {path} ({e})") from None
    if data_end > size:
        raise LocalspecError(
            f"truncated or corrupt GGUF: {path} (tensor data needs {data_end} bytes, file has {size})"
        )
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise LocalspecError(f"truncated or corrupt GGUF: {path} (no general.architecture)")
    try:
        vocab = vocab_from_metadata(meta, tokens)
    except ValueError as e:
        raise LocalspecError(f"unsupported GGUF vocabulary in {path}: {e}") from None

    def arch_int(key: str) -> int | None:
        value = meta.get(f"{arch}.{key}")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return GGUFInfo(
        path=path,
        architecture=arch,
        name=meta.get("general.name") if isinstance(meta.get("general.name"), str) else None,
        file_size=size,
        n_params=meta.pop("_n_params"),
        context_length=arch_int("context_length"),
        nextn_predict_layers=arch_int("nextn_predict_layers") or 0,
        vocab=vocab,
        chat_template=meta.get("tokenizer.chat_template"),
        n_layers=arch_int("block_count"),
        n_embd=arch_int("embedding_length"),
        n_head_kv=arch_int("attention.head_count_kv") or arch_int("attention.head_count"),
        n_head=arch_int("attention.head_count"),
        key_length=arch_int("attention.key_length"),
        value_length=arch_int("attention.value_length"),
        elements_by_type=meta.pop("_elements_by_type"),
        metadata=meta,
    )


def _parse(buf: mmap.mmap) -> tuple[dict[str, Any], list[str], int]:
    """Key/values, token texts, and the byte offset where tensor data ends."""
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
    if version not in (2, 3):
        raise ValueError(f"unsupported GGUF version {version}")
    pos = 24
    meta: dict[str, Any] = {}
    tokens: list[str] = []
    for _ in range(n_kv):
        key, pos = _string(buf, pos)
        (vtype,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if vtype == _ARRAY:
            etype, count = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            keep = key in _KEEP_ARRAYS or count <= _SMALL_ARRAY
            values, pos = _array(buf, pos, etype, count, keep)
            if key == "tokenizer.ggml.tokens":
                tokens = values
            elif keep:
                meta[key] = values
        else:
            meta[key], pos = _value(buf, pos, vtype)
    n_params = 0
    by_type: dict[int, int] = {}
    data_size = 0
    for _ in range(n_tensors):
        name, pos = _string(buf, pos)
        (n_dims,) = struct.unpack_from("<I", buf, pos)
        dims = struct.unpack_from(f"<{n_dims}Q", buf, pos + 4)
        ggml_type, offset = struct.unpack_from("<IQ", buf, pos + 4 + 8 * n_dims)
        pos += 4 + 8 * n_dims + 12
        n_elements = 1
        for d in dims:
            n_elements *= d
        n_params += n_elements
        by_type[ggml_type] = by_type.get(ggml_type, 0) + n_elements
        data_size = max(data_size, offset + _tensor_bytes(name, ggml_type, n_elements, dims))
    alignment = meta.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0:
        raise ValueError(f"bad general.alignment {alignment!r}")
    data_start = -(-pos // alignment) * alignment
    meta["_n_params"] = n_params
    meta["_elements_by_type"] = by_type
    return meta, tokens, data_start + data_size


def _tensor_bytes(name: str, ggml_type: int, n_elements: int, dims: tuple[int, ...]) -> int:
    sizes = _GGML_SIZES.get(ggml_type)
    if sizes is None:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

        try:
            sizes = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        except (ValueError, KeyError):
            raise ValueError(f"tensor {name}: unknown ggml type {ggml_type}") from None
    block, block_bytes = sizes
    return n_elements // block * block_bytes


def _string(buf: mmap.mmap, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<Q", buf, pos)
    end = pos + 8 + n
    if end > len(buf):
        raise IndexError(f"string at {pos} runs past the end of the file")
    return buf[pos + 8 : end].decode("utf-8", errors="surrogateescape"), end


def _value(buf: mmap.mmap, pos: int, vtype: int) -> tuple[Any, int]:
    if vtype == _STRING:
        return _string(buf, pos)
    fmt = _SCALAR.get(vtype)
    if fmt is None:
        raise ValueError(f"unknown GGUF value type {vtype} at {pos}")
    return struct.unpack_from(fmt, buf, pos)[0], pos + struct.calcsize(fmt)


def _array(buf: mmap.mmap, pos: int, etype: int, count: int, keep: bool) -> tuple[list[Any], int]:
    if etype == _STRING:
        # The one hot loop here: 150k token texts in a Qwen vocabulary.
        out: list[str] = []
        unpack, n_buf = struct.Struct("<Q").unpack_from, len(buf)
        for _ in range(count):
            (n,) = unpack(buf, pos)
            start, pos = pos + 8, pos + 8 + n
            if keep:
                out.append(buf[start:pos].decode("utf-8", errors="surrogateescape"))
        if pos > n_buf:
            raise IndexError("string array runs past the end of the file")
        return out, pos
    if etype == _ARRAY:
        raise ValueError("nested GGUF arrays are not supported")
    fmt = _SCALAR.get(etype)
    if fmt is None:
        raise ValueError(f"unknown GGUF array element type {etype} at {pos}")
    width = struct.calcsize(fmt)
    end = pos + width * count
    if end > len(buf):
        raise IndexError("array runs past the end of the file")
    if not keep:
        return [], end
    return list(struct.unpack_from(f"<{count}{fmt[1]}", buf, pos)), end
