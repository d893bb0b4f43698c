"""A GGUF's vocabulary as llama.cpp will see it, and whether two can share drafts.

Speculative decoding with a draft model passes token ids between the two
models, so the ids must mean the same text in both. `check_compatible`
applies llama.cpp's own test (common/speculative.cpp,
`common_speculative_are_compatible`) before any weights are loaded, so a bad
pair fails in milliseconds with both files named instead of after loading
two models.

The vocab type, special ids and add_bos/add_eos flags are derived the way
llama.cpp's vocab loader (src/llama-vocab.cpp, `llama_vocab::impl::load`)
derives them: defaults by tokenizer model and pre-tokenizer, then the
`tokenizer.ggml.*` keys override them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localspec.errors import LocalspecError

# common/speculative.cpp
SPEC_VOCAB_MAX_SIZE_DIFFERENCE = 128
SPEC_VOCAB_CHECK_START_TOKEN_ID = 5

NULL_TOKEN = -1

# tokenizer.ggml.model -> (llama vocab type, default bos, default eos, add_bos, add_eos)
_TOKENIZER_MODELS: dict[str, tuple[str, int, int, bool, bool]] = {
    "no_vocab": ("none", NULL_TOKEN, NULL_TOKEN, False, False),
    "none": ("none", NULL_TOKEN, NULL_TOKEN, False, False),
    "llama": ("spm", 1, 2, True, False),
    "bert": ("wpm", 101, NULL_TOKEN, True, False),
    "gpt2": ("bpe", 11, 11, False, False),
    "hybriddna": ("bpe", 11, 11, False, False),
    "whitespace": ("bpe", 11, 11, False, False),
    "gemma4": ("bpe", NULL_TOKEN, NULL_TOKEN, True, False),
    "t5": ("ugm", NULL_TOKEN, 1, False, True),
    "rwkv": ("rwkv", NULL_TOKEN, NULL_TOKEN, False, False),
    "plamo2": ("plamo2", 1, 2, False, False),
    "test": ("test", NULL_TOKEN, NULL_TOKEN, False, False),
}
# BPE pre-tokenizers for which llama.cpp turns add_bos on by default.
_BOS_PRETOKENIZERS = {
    "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
    "lfm2", "jina-v5-nano", "tekken", "chameleon",
}  # fmt: skip
# BPE pre-tokenizers for which llama.cpp has no BOS token by default.
_NO_BOS_PRETOKENIZERS = {"chatglm-bpe", "glm4", "glm5"}


@dataclass(frozen=True)
class VocabInfo:
    type: str  # llama.cpp's vocab type, lowercase: spm, bpe, wpm, ugm, rwkv, plamo2, none
    tokenizer_model: str  # tokenizer.ggml.model as written in the file
    pre: str | None  # tokenizer.ggml.pre
    n_tokens: int
    bos_id: int  # -1 when there is none
    eos_id: int
    add_bos: bool
    add_eos: bool
    tokens: tuple[str, ...]  # token text by id

    def describe(self) -> str:
        return f"{self.type}, {self.n_tokens} tokens"


def vocab_from_metadata(meta: dict[str, Any], tokens: list[str]) -> VocabInfo:
    """Build VocabInfo from GGUF key/values (scalars) and the token text list."""
    model = meta.get("tokenizer.ggml.model")
    if not isinstance(model, str):
        raise ValueError("no tokenizer.ggml.model key")
    if model not in _TOKENIZER_MODELS:
        raise ValueError(f"unknown tokenizer model {model!r}")
    vtype, bos, eos, add_bos, add_eos = _TOKENIZER_MODELS[model]
    pre = meta.get("tokenizer.ggml.pre")
    if vtype == "bpe" and pre in _BOS_PRETOKENIZERS:
        add_bos = True
    if vtype == "bpe" and pre in _NO_BOS_PRETOKENIZERS:
        bos = NULL_TOKEN
    n = len(tokens)
    # llama.cpp disables default ids outside the vocabulary, then takes the
    # file's id when it is in range.
    bos = _special_id(meta.get("tokenizer.ggml.bos_token_id"), bos, n)
    eos = _special_id(meta.get("tokenizer.ggml.eos_token_id"), eos, n)
    add_bos = _flag(meta.get("tokenizer.ggml.add_bos_token"), add_bos)
    add_eos = _flag(meta.get("tokenizer.ggml.add_eos_token"), add_eos)
    if model == "gemma4":
        add_bos = True  # llama.cpp forces it for Gemma 4 whatever the file says
    return VocabInfo(vtype, model, pre if isinstance(pre, str) else None, n, bos, eos,
                     add_bos, add_eos, tuple(tokens))  # fmt: skip


def _special_id(from_file: Any, default: int, n_tokens: int) -> int:
    if default >= n_tokens:
        default = NULL_TOKEN
    if isinstance(from_file, int) and not isinstance(from_file, bool) and 0 <= from_file < n_tokens:
        return from_file
    return default


def _flag(from_file: Any, default: bool) -> bool:
    return from_file if isinstance(from_file, bool) else default


def incompatibility(target: VocabInfo, draft: VocabInfo) -> str | None:
    """Why llama.cpp would refuse this draft for this target, or None if it would not."""
    if target.type != draft.type:
        return f"vocab types differ ({draft.type} vs {target.type})"
    if target.add_bos != draft.add_bos or (target.add_bos and target.bos_id != draft.bos_id):
        return (f"BOS handling differs (add_bos {draft.add_bos} vs {target.add_bos}, "
                f"bos id {draft.bos_id} vs {target.bos_id})")  # fmt: skip
    if target.add_eos != draft.add_eos or (target.add_eos and target.eos_id != draft.eos_id):
        return (f"EOS handling differs (add_eos {draft.add_eos} vs {target.add_eos}, "
                f"eos id {draft.eos_id} vs {target.eos_id})")  # fmt: skip
    if abs(target.n_tokens - draft.n_tokens) > SPEC_VOCAB_MAX_SIZE_DIFFERENCE:
        return f"sizes differ by more than {SPEC_VOCAB_MAX_SIZE_DIFFERENCE}"
    end = min(target.n_tokens, draft.n_tokens)
    t_tok, d_tok = target.tokens, draft.tokens
    if t_tok[SPEC_VOCAB_CHECK_START_TOKEN_ID:end] != d_tok[SPEC_VOCAB_CHECK_START_TOKEN_ID:end]:
        i = next(i for i in range(SPEC_VOCAB_CHECK_START_TOKEN_ID, end) if t_tok[i] != d_tok[i])
        return f"token {i} differs ({d_tok[i]!r} vs {t_tok[i]!r})"
    return None


def check_compatible(target: VocabInfo, draft: VocabInfo, target_path: Path | str,
                     draft_path: Path | str) -> None:  # fmt: skip
    """Raise LocalspecError naming both files unless `draft` can draft for `target`."""
    reason = incompatibility(target, draft)
    if reason is not None:
        raise LocalspecError(
            f"draft {Path(draft_path).name} ({draft.describe()}) is not vocabulary-compatible "
            f"with target {Path(target_path).name} ({target.describe()}): {reason}"
        )
