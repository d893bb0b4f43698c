"""A thin layer over llama-cpp-python's low-level API.

Why not `llama_cpp.Llama`: it keeps logits for every position once drafting is
on (`logits_all`), which on a 150k vocabulary costs 600 kB per token and time
we cannot spare. Here each batch row asks for logits only where the caller
needs them, and the KV cache is rolled back with `llama_memory_seq_rm`.

`Context.tokens` is always exactly the token sequence whose KV entries are in
the cache (sequence 0, positions 0..len-1); every method keeps that true, so
callers reason about the cache as a plain list.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Literal, Protocol, Sequence

import numpy as np

import llama_cpp

from localspec.errors import LocalspecError

_backend_ready = False


GGML_LOG_LEVEL_ERROR = 4  # ggml.h: NONE, DEBUG, INFO, WARN, ERROR, CONT


# While `llama_errors` runs on a thread, that thread's error log goes here instead.
_error_sinks: dict[int, list[str]] = {}


@llama_cpp.llama_log_callback
def _quiet_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    # Load chatter goes nowhere; errors still reach stderr. Silencing through the
    # log callback rather than redirecting fds 1/2 keeps a running TUI intact.
    sink = _error_sinks.get(threading.get_ident())
    if sink is not None and level == GGML_LOG_LEVEL_ERROR:
        sink.append(text.decode("utf-8", errors="replace"))
    elif level == GGML_LOG_LEVEL_ERROR or os.environ.get("LOCALSPEC_LLAMA_VERBOSE"):
        sys.stderr.write(text.decode("utf-8", errors="replace"))


@contextlib.contextmanager
def llama_errors():
    """Collect what llama.cpp reports as errors during a short call, as lines.

    Most errors come through the log callback, but the grammar parser
    fprintf's its reason straight to stderr, so fd 2 is borrowed too. Whatever
    another thread writes to stderr meanwhile lands in the lines as well, so
    keep the call brief (a grammar compiles in milliseconds).
    """
    lines: list[str] = []
    me = threading.get_ident()
    _error_sinks[me] = lines
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            del _error_sinks[me]
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            lines[:0] = text.splitlines()


def _init_backend() -> None:
    global _backend_ready, _avoid_amx
    if not _backend_ready:
        llama_cpp.llama_log_set(_quiet_log, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        from localspec import llama_build

        _avoid_amx = llama_build.crashes_here(llama_cpp.llama_print_system_info().decode(errors="replace"))
        if _avoid_amx:
            sys.stderr.write(
                "localspec: warning: this llama-cpp-python was built with AMX by GCC < 13 and would crash on this "
                "CPU; loading without llama.cpp's extra CPU kernels (slower). Rebuild: make install\n"
            )
        _backend_ready = True


# A GCC < 13 build with AMX faults at its first AMX matmul (localspec/llama_build.py).
# Weights kept out of llama.cpp's extra CPU buffer types never reach that kernel.
_avoid_amx = False


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class ContextFull(Exception):
    """The KV cache has no room for the tokens asked for."""


def check_decode(ctx, tokens: Sequence[int], logits: str) -> None:
    """What every cache (local or remote) refuses before decoding `tokens`."""
    if not tokens:
        raise ValueError("decode needs at least one token")
    if len(ctx.tokens) + len(tokens) > ctx.n_ctx:
        raise ContextFull(f"context of {ctx.n_ctx} tokens is full")
    if logits == "all" and len(tokens) > ctx.n_batch:
        raise ValueError("logits for every row need the tokens to fit one batch")


class Model:
    """A loaded GGUF: weights, vocabulary, chat template."""

    def __init__(
        self,
        path: str | Path,
        *,
        n_gpu_layers: int = 0,
        load_mtp: bool = False,
        vocab_only: bool = False,
        devices: Sequence[int] | None = None,
        tensor_split: Sequence[float] | None = None,
        progress: Callable[[float], None] | None = None,
    ):
        """`devices`: ggml_backend_dev_t pointers to offload to (llama.cpp's own choice when None);
        `tensor_split`: their shares of the layers; `progress`: called with 0..1 while loading."""
        _init_backend()
        self.ptr = None
        self.path = Path(path)
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        params.load_mtp = load_mtp
        params.vocab_only = vocab_only
        if _avoid_amx:
            params.use_extra_bufts = False
        # ctypes objects the loader reads through pointers: alive until it returns.
        keep = []
        if devices is not None:
            keep.append((ctypes.c_void_p * (len(devices) + 1))(*devices, None))  # NULL-terminated
            params.devices = ctypes.cast(keep[-1], ctypes.c_void_p)
        if tensor_split:
            keep.append((ctypes.c_float * llama_cpp.LLAMA_MAX_DEVICES)(*tensor_split))
            params.tensor_split = keep[-1]
        if progress is not None:
            keep.append(llama_cpp.llama_progress_callback(lambda f, _user: progress(f) or True))
            params.progress_callback = keep[-1]
        model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), params)
        if not model:
            raise LocalspecError(f"llama.cpp could not load model: {self.path}")
        self.ptr = model
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = llama_cpp.llama_model_n_ctx_train(model)
        self.n_layer_nextn = llama_cpp.llama_model_n_layer_nextn(model)
        self.n_embd = llama_cpp.llama_model_n_embd(model)
        # Recurrent state (Mamba, gated delta-net layers of Qwen3.5) cannot be cut
        # back to an arbitrary position; llama.cpp keeps a few snapshots instead.
        self.has_recurrent_state = bool(
            llama_cpp.llama_model_is_recurrent(model) or llama_cpp.llama_model_is_hybrid(model)
        )
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self.bos = llama_cpp.llama_vocab_bos(self.vocab)
        self.eos = llama_cpp.llama_vocab_eos(self.vocab)
        self._piece_buf = ctypes.create_string_buffer(256)

    @property
    def name(self) -> str:
        return self.path.name

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            llama_cpp.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    def chat_template(self) -> str | None:
        raw = llama_cpp.llama_model_chat_template(self.ptr, None)
        return raw.decode("utf-8") if raw else None

    def token_text(self, token: int) -> str:
        raw = llama_cpp.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            buf = (llama_cpp.llama_token * cap)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        tokens = list(buf[:n])
        # A template that writes its own BOS plus add_bos would give two.
        if len(tokens) >= 2 and tokens[0] == tokens[1] == self.bos and self.add_bos:
            tokens = tokens[1:]
        return tokens

    def single_tokens(self, markers: Sequence[str]) -> frozenset[int]:
        """Ids of the markers that are one token each (a model's tool-call or
        reasoning tags: a control token's text is otherwise left out of a reply)."""
        ids = [self.tokenize(m, add_special=False, parse_special=True) for m in markers]
        return frozenset(t[0] for t in ids if len(t) == 1)

    def piece(self, token: int, special: bool = False) -> bytes:
        buf = self._piece_buf
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", errors="replace")

    def close(self) -> None:
        if self.ptr:
            llama_cpp.llama_model_free(self.ptr)
            self.ptr = None

    def __del__(self) -> None:
        self.close()


class TextStream:
    """Token ids in, text out, holding back bytes of an unfinished UTF-8 character.

    Control tokens have no text, except those in `shown`: a tool call's
    markers (<|python_tag|>, [TOOL_CALLS]) are control tokens in some
    vocabularies, and the server's parser must see them."""

    def __init__(self, model: Model, shown: frozenset[int] = frozenset()):
        self.model = model
        self.shown = shown
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token: int) -> str:
        return self._decoder.decode(self.model.piece(token, special=token in self.shown))


Logits = Literal["none", "last", "all"]


class CacheListener(Protocol):
    """Something that mirrors a context's cache (the MTP drafter does)."""

    def after_decode(self, tokens: Sequence[int], pos0: int) -> None: ...

    def after_truncate(self, n: int) -> None: ...


class Context:
    """A KV cache for one model, with the token list it holds."""

    def __init__(
        self,
        model: Model,
        *,
        n_ctx: int = 4096,
        n_batch: int = 512,
        n_threads: int | None = None,
        flash_attn: bool | None = None,
        kv_f32: bool = False,
        rollback: int = 0,
    ):
        """`rollback`: how many trailing tokens `truncate` must be able to drop on
        a model with recurrent state (the longest draft); plain attention caches
        can always be cut anywhere."""
        self.model = model
        self.ptr = None  # until llama.cpp hands one out: close() must work on a failed init
        params = llama_cpp.llama_context_default_params()
        # Drafts longer than this would cut deeper than the snapshots reach.
        self.max_rollback = rollback if model.has_recurrent_state else None
        if model.has_recurrent_state:
            params.n_rs_seq = rollback
        if kv_f32:
            # The cache is F16 by default; F32 makes results independent of how the
            # tokens were batched (up to float reassociation), which exactness tests need.
            params.type_k = params.type_v = llama_cpp.GGML_TYPE_F32
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = 1
        threads = n_threads or default_threads()
        params.n_threads = threads
        params.n_threads_batch = threads
        params.flash_attn_type = {
            None: llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO,
            True: llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
            False: llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED,
        }[flash_attn]
        params.no_perf = True
        self.params = params  # contexts that shadow this one (MTP) copy its settings
        ctx = llama_cpp.llama_init_from_model(model.ptr, params)
        if not ctx:
            raise LocalspecError(f"llama.cpp could not create a context of {n_ctx} tokens for {model.name}")
        self.ptr = ctx
        self.memory = llama_cpp.llama_get_memory(ctx)
        self.n_ctx = llama_cpp.llama_n_ctx(ctx)
        # llama.cpp clamps the batch to the context; a longer chunk aborts in an assert.
        self.n_batch = min(n_batch, llama_cpp.llama_n_batch(ctx), llama_cpp.llama_n_ubatch(ctx))
        self.n_vocab = model.n_vocab
        self.tokens: list[int] = []
        self.decode_s = 0.0  # total seconds inside llama_decode: the rest of a step is our overhead
        self.listeners: list[CacheListener] = []
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)

    def common_prefix(self, seq: Sequence[int]) -> int:
        n = min(len(self.tokens), len(seq))
        i = 0
        while i < n and self.tokens[i] == seq[i]:
            i += 1
        return i

    def truncate(self, n: int) -> int:
        """Forget every cached position from n on; return how many are left.

        That is n, except on a model with recurrent state asked to go back
        further than its snapshots reach: then the cache is emptied (0), and
        the caller decodes again from there.
        """
        if n < len(self.tokens):
            if not llama_cpp.llama_memory_seq_rm(self.memory, 0, n, -1):
                if not self.model.has_recurrent_state:
                    raise RuntimeError(f"llama_memory_seq_rm refused to cut the cache at {n}")
                llama_cpp.llama_memory_clear(self.memory, True)
                n = 0
            del self.tokens[n:]
            for listener in self.listeners:
                listener.after_truncate(n)
        return len(self.tokens)

    def decode(self, tokens: Sequence[int], logits: Logits = "last") -> np.ndarray:
        """Append `tokens` to the cache; return logits for the rows asked for.

        The result has one row per requested position, (1, V) for "last",
        (len(tokens), V) for "all", (0, V) for "none". It is a view into
        llama.cpp's buffer, valid until this context decodes again.
        """
        check_decode(self, tokens, logits)
        start = 0
        while start < len(tokens):
            chunk = tokens[start : start + self.n_batch]
            last_chunk = start + len(chunk) == len(tokens)
            self._fill(chunk, logits if last_chunk else "none")
            t = time.perf_counter()
            rc = llama_cpp.llama_decode(self.ptr, self._batch)
            self.decode_s += time.perf_counter() - t
            if rc != 0:
                # The failed ubatch may have left partial entries; cut back to what we know.
                llama_cpp.llama_memory_seq_rm(self.memory, 0, len(self.tokens), -1)
                if rc == 1:
                    raise ContextFull(f"no KV slot for {len(chunk)} tokens (context {self.n_ctx})")
                raise RuntimeError(f"llama_decode failed with code {rc}")
            pos0 = len(self.tokens)
            self.tokens.extend(chunk)
            for listener in self.listeners:
                listener.after_decode(chunk, pos0)
            start += len(chunk)
        n_rows = {"none": 0, "last": 1, "all": len(tokens)}[logits]
        return self._rows(n_rows)

    def _fill(self, chunk: Sequence[int], logits: Logits) -> None:
        b = self._batch
        pos0 = len(self.tokens)
        n = len(chunk)
        for i, tok in enumerate(chunk):
            b.token[i] = tok
            b.pos[i] = pos0 + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = logits == "all"
        if logits == "last":
            b.logits[n - 1] = 1
        b.n_tokens = n

    def _rows(self, n_rows: int) -> np.ndarray:
        if n_rows == 0:
            return np.empty((0, self.n_vocab), dtype=np.float32)
        # Output rows of one decode are laid out contiguously in batch order, so one
        # view covers them; checked against llama_get_logits_ith's row pointers.
        first = llama_cpp.llama_get_logits_ith(self.ptr, 0 if n_rows > 1 else -1)
        base = ctypes.addressof(first.contents)
        if n_rows > 1:
            last = llama_cpp.llama_get_logits_ith(self.ptr, n_rows - 1)
            if ctypes.addressof(last.contents) - base != (n_rows - 1) * self.n_vocab * 4:
                return np.stack([self._row(i) for i in range(n_rows)])
        flat = (ctypes.c_float * (n_rows * self.n_vocab)).from_address(base)
        return np.frombuffer(flat, dtype=np.float32).reshape(n_rows, self.n_vocab)

    def _row(self, i: int) -> np.ndarray:
        ptr = llama_cpp.llama_get_logits_ith(self.ptr, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def prefill(self, seq: Sequence[int]) -> int:
        """Make the cache hold exactly `seq`, reusing the common prefix.

        Returns how many tokens were reused.
        """
        common = self.truncate(self.common_prefix(seq))
        if common < len(seq):
            self.decode(seq[common:], logits="none")
        return common

    def close(self) -> None:
        if self.ptr:
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self.ptr)
            self.ptr = None

    def __del__(self) -> None:
        self.close()
