"""`RemoteContext`: a target's KV cache held by the RPC worker (localspec/rpc.py), behind Context's interface."""

from __future__ import annotations

import mmap
import time
from typing import Callable, Sequence

import numpy as np

from localspec.backend import Context, ContextFull, Logits, Model, check_decode
from localspec.errors import LocalspecError
from localspec.rpc import RemoteLost, RpcSettings, TargetSpec, Worker, probe


class RemoteContext:
    """`Context`'s interface (tokens, decode, truncate, prefill) for a target loaded in the RPC worker."""

    common_prefix = Context.common_prefix
    prefill = Context.prefill

    def __init__(self, model: Model, spec: TargetSpec, rpc: RpcSettings, progress: Callable[[float], None] | None = None):
        self.model = model  # vocabulary only: tokenizing, detokenizing, end-of-generation
        self.spec = spec
        self.rpc = rpc
        self.n_vocab = model.n_vocab
        self.listeners: list = []  # nothing mirrors a remote cache (MTP is not offered over RPC)
        self.decode_s = 0.0
        self.worker: Worker | None = None
        self._start(progress)

    def _start(self, progress: Callable[[float], None] | None) -> None:
        probe(self.rpc.endpoints)
        request = {
            "op": "load",
            "endpoints": list(self.rpc.endpoints),
            "tensor_split": list(self.rpc.tensor_split),
            **self.spec.__dict__,
        }
        self.worker = Worker(request, self.rpc.timeout, logits_bytes=self.spec.n_batch * self.n_vocab * 4)
        ready = self.worker.receive(progress)
        if "error" in ready:
            self.worker.close()
            raise LocalspecError(ready["error"])
        self.devices: list[dict] = ready["devices"]
        self.n_ctx = ready["n_ctx"]
        self.n_batch = ready["n_batch"]
        self.max_rollback = ready["max_rollback"]
        self.tokens: list[int] = []
        self._map = mmap.mmap(self.worker.logits_file.fileno(), 0)

    @property
    def lost(self) -> RemoteLost | None:
        return self.worker.lost if self.worker else None

    def ensure_alive(self, progress: Callable[[float], None] | None = None) -> None:
        """After a lost remote: a fresh worker if every server answers again, else RemoteLost (one line)."""
        if self.worker is not None and not self.worker.lost:
            return
        self.close()
        self._start(progress)

    def truncate(self, n: int) -> int:
        if n < len(self.tokens):
            kept = self._call({"op": "truncate", "n": n})["n"]
            del self.tokens[kept:]
        return len(self.tokens)

    def decode(self, tokens: Sequence[int], logits: Logits = "last") -> np.ndarray:
        check_decode(self, tokens, logits)
        t = time.perf_counter()
        reply = self._call({"op": "decode", "tokens": list(tokens), "logits": logits})
        self.decode_s += time.perf_counter() - t
        if reply.get("full"):
            raise ContextFull(reply["full"])
        self.tokens.extend(tokens)
        rows = reply["rows"]
        return np.frombuffer(self._map, dtype=np.float32, count=rows * self.n_vocab).reshape(rows, self.n_vocab)

    def ping(self) -> dict[str, float]:
        """Seconds of one request-reply to each server over the worker's own connections (device memory query)."""
        return self._call({"op": "ping"})["rtt_s"]

    def _call(self, msg: dict) -> dict:
        assert self.worker is not None
        reply = self.worker.call(msg)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def close(self) -> None:
        if self.worker:
            self.worker.close()
            self.worker.logits_file.close()
            self.worker = None
            # Not mmap.close(): rows handed out may still be read; the map goes with the last of them.
            self._map = None

    def __del__(self) -> None:
        self.close()
