"""The child process that holds a target over llama.cpp's RPC backend (see localspec/rpc.py).

`python -m localspec.rpc_worker IN OUT LOGITS`: file descriptors of the request
pipe, the reply pipe and the shared logits file. The first request says what
to do ("devices": list each server's devices; "load": load the target and
serve decode/truncate/ping until "close" or the pipe closes). If a server
dies, ggml aborts this process, which is the point of having one.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import sys
import time

import numpy as np


def main(argv: list[str]) -> int:
    die_with_parent()
    fd_in, fd_out, fd_logits = map(int, argv[1:4])
    requests = os.fdopen(fd_in, "rb")
    replies = os.fdopen(fd_out, "wb", buffering=0)

    def send(msg: dict) -> None:
        replies.write(json.dumps(msg).encode() + b"\n")

    first = json.loads(requests.readline())
    from localspec.backend import Context, ContextFull, Model, _init_backend
    from localspec.errors import LocalspecError
    from localspec.rpc import Ggml

    _init_backend()
    ggml = Ggml()
    remote = ggml.add_servers(first["endpoints"])
    if first["op"] == "devices":
        send({"devices": [ggml.describe(d) for d in remote]})
        return 0

    devices = remote + ggml.local_gpus()
    try:
        model = Model(
            first["path"],
            n_gpu_layers=first["n_gpu_layers"],
            devices=devices,
            tensor_split=first["tensor_split"] or None,
            progress=lambda f: send({"progress": f}),
        )
        ctx = Context(
            model,
            n_ctx=first["n_ctx"],
            n_batch=first["n_batch"],
            n_threads=first["n_threads"],
            flash_attn=first["flash_attn"],
            kv_f32=first["kv_f32"],
            rollback=first["rollback"],
        )
    except LocalspecError as e:
        send({"error": str(e)})
        return 1
    logits = mmap.mmap(fd_logits, 0)
    send({
        "devices": [ggml.describe(d) for d in devices],
        "n_ctx": ctx.n_ctx,
        "n_batch": ctx.n_batch,
        "max_rollback": ctx.max_rollback,
    })  # fmt: skip
    for line in requests:
        req = json.loads(line)
        op = req["op"]
        if op == "close":
            break
        try:
            if op == "decode":
                rows = ctx.decode(req["tokens"], logits=req["logits"])
                np.frombuffer(logits, dtype=np.float32, count=rows.size)[:] = rows.ravel()
                send({"rows": len(rows)})
            elif op == "truncate":
                send({"n": ctx.truncate(req["n"])})
            elif op == "ping":
                send({"rtt_s": ping(ggml, remote)})
            else:
                send({"error": f"unknown request {op!r}"})
        except ContextFull as e:
            send({"full": str(e)})
        except (RuntimeError, ValueError) as e:
            send({"error": str(e)})
    ctx.close()
    model.close()
    return 0


def die_with_parent() -> None:
    """A parent killed outright cannot end a worker blocked on a stalled server; the kernel does (Linux)."""
    if sys.platform.startswith("linux"):
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def ping(ggml, remote: list[int]) -> dict[str, float]:
    """Seconds for one device-memory request to each server: a full round trip on the connection decodes use."""
    out: dict[str, float] = {}
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    for dev in remote:
        endpoint = ggml.dev_description(dev).decode(errors="replace")  # ggml-rpc describes a device by its endpoint
        if endpoint in out:
            continue
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            ggml.dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
            best = min(best, time.perf_counter() - t)
        out[endpoint] = best
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv))
