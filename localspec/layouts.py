"""Weight layouts: the same model's tensors stored as other quantization types.

What verifying n rows costs on a CPU depends on the kernel llama.cpp picks
for each tensor's type (ggml-cpu): on x86, Q4_K is repacked into 8x8
interleaved blocks and multiplied in 16-row then 4-row tiles; Q4_0 and
IQ4_NL are repacked to a gemm that uses VNNI; Q8_0 goes to llamafile's
tinyBLAS for two rows or more; Q6_K is never repacked and costs every row in
full. A Q4_K_M file keeps its output matrix and half of attn_v/ffn_down in
Q6_K, so on a CPU whose per-row cost is high those tensors decide the curve.

A layout is made from the user's own file by llama.cpp's quantizer
(`llama_model_quantize` with `allow_requantize`): each tensor is dequantized
and quantized again, so a layout is at best as faithful as the file it came
from and usually a little less (`localspec bench` measures how much, as the
share of positions where greedy top-1 agrees with the source file).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from pathlib import Path

from localspec.errors import LocalspecError


@dataclass(frozen=True)
class Layout:
    name: str
    ftype: str  # llama_ftype, as in llama_cpp's LLAMA_FTYPE_MOSTLY_* names
    pure: bool = True  # every quantizable tensor in the ftype's type, not its mixture
    output: str | None = None  # ggml type for the output matrix and token embeddings
    # Source tensor type -> type it becomes; with a remap every other tensor keeps its own type.
    remap: dict[str, str] = field(default_factory=dict)
    about: str = ""


LAYOUTS = {
    layout.name: layout
    for layout in (
        Layout("q4_0", "Q4_0", about="every matrix Q4_0: repacked to llama.cpp's VNNI gemm on x86"),
        Layout("q4_0-q8out", "Q4_0", output="Q8_0", about="Q4_0, with the output matrix and embeddings in Q8_0"),
        Layout("iq4_nl", "IQ4_NL", about="every matrix IQ4_NL: non-linear 4-bit, repacked like Q4_0"),
        Layout("q4_k", "Q4_K_M", about="every matrix Q4_K: no Q6_K, so every tensor is repacked on x86"),
        Layout("q4_k-q8", "Q4_K_M", pure=False, remap={"Q6_K": "Q8_0"},
               about="the file's own mixture, its Q6_K tensors in Q8_0 (tinyBLAS for 2+ rows)"),  # fmt: skip
        Layout("q8_0", "Q8_0", about="every matrix Q8_0: tinyBLAS for 2+ rows, twice the bytes of 4-bit"),
    )
}


def _ggml_type(name: str) -> int:
    import llama_cpp

    return getattr(llama_cpp, f"GGML_TYPE_{name}")


def _pinned_types(src: Path, remap: dict[str, str]) -> list[tuple[str, str]]:
    """(tensor name, type) for every quantized tensor of `src`: its own type,
    or what `remap` makes of it. Pinning all of them keeps the file's mixture
    (llama.cpp's quantizer would otherwise choose its own for the ftype)."""
    from gguf import GGUFReader

    reader = GGUFReader(src)
    kinds = ((t.name, t.tensor_type.name) for t in reader.tensors)
    return [(name, remap.get(kind, kind)) for name, kind in kinds if kind not in ("F32", "F16", "BF16")]


def requantize(src: Path, dst: Path, layout: Layout, n_threads: int) -> None:
    """Write `src`'s weights to `dst` in `layout`, with llama.cpp's quantizer."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = n_threads
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{layout.ftype}")
    params.allow_requantize = True
    params.pure = layout.pure
    if layout.output:
        params.output_tensor_type = params.token_embedding_type = _ggml_type(layout.output)
    overrides = _pinned_types(src, layout.remap) if layout.remap else []
    if overrides:
        # Exact names, as anchored regexes: llama.cpp matches overrides with std::regex_search.
        table = (llama_cpp.llama_model_tensor_override * (len(overrides) + 1))()
        for entry, (name, kind) in zip(table, overrides):
            entry.pattern = f"^{name.replace('.', '[.]')}$".encode()
            entry.type = _ggml_type(kind)
        table[len(overrides)].pattern = None
        params.tt_overrides = ctypes.cast(table, ctypes.POINTER(llama_cpp.llama_model_tensor_override))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".partial")
    status = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if status != 0:
        tmp.unlink(missing_ok=True)
        raise LocalspecError(f"llama.cpp could not write {src.name} as {layout.name} (status {status})")
    tmp.replace(dst)
