"""The target model over llama.cpp's RPC backend, run in a child process.

Why a child: ggml-rpc ends the whole process (GGML_ABORT) when a connection to
an rpc-server fails, at connect and mid-decode alike, and waits in recv() with
no time limit when a server stalls. Only the target's weights and KV cache
touch the network, so only they move to `python -m localspec.rpc_worker`: this
process keeps the target's vocabulary (a vocab-only load), the draft model, the
planner and the UI, and sees a dead remote as a pipe that closes, a stalled one
as a pipe that stays quiet for `timeout` seconds. Either way the child is
killed, the caller gets `RemoteLost` (one line), and the next reply starts a
fresh child once every server answers again.

The pipes carry one JSON object per line each way. Logit rows do not: a
verify's rows are megabytes, so the child writes them into a file both map
(tmpfs where there is one) and `RemoteContext.decode` returns a view of it,
valid until the next decode, as `Context.decode` does (localspec/remote.py).

This module imports no llama.cpp (models.toml's parser checks endpoints with
it); the worker and `RemoteContext` do.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from localspec.errors import LocalspecError

DEFAULT_PORT = 50052
# No sign of life from the child (a reply, or load progress) for this long means a
# stalled server. One decode call is at most n_batch tokens, so the bound holds
# for a long prompt too; --rpc-timeout raises it for slow remotes.
DEFAULT_TIMEOUT = 60.0
PROBE_TIMEOUT = 3.0


class RemoteLost(LocalspecError):
    """An rpc-server went away or stopped answering; the remote target is gone until it is back."""


@dataclass(frozen=True)
class RpcSettings:
    endpoints: tuple[str, ...]
    tensor_split: tuple[float, ...] = ()
    timeout: float = DEFAULT_TIMEOUT


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LocalspecError(f"bad RPC endpoint {endpoint!r}: expected HOST:PORT, e.g. 127.0.0.1:{DEFAULT_PORT}")
    return host, int(port)


def parse_endpoints(value: str | Sequence[str]) -> tuple[str, ...]:
    """'h1:p1,h2:p2' (or a list of them, from models.toml) as checked endpoints, in order, once each."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in (str(i).strip() for i in items):
        split_endpoint(item)
        if item not in out:
            out.append(item)
    if not out:
        raise LocalspecError("--rpc needs at least one HOST:PORT")
    return tuple(out)


def parse_tensor_split(value: str) -> tuple[float, ...]:
    try:
        parts = tuple(float(p) for p in value.split(","))
    except ValueError:
        raise LocalspecError(f"bad --tensor-split {value!r}: expected numbers like 3,1") from None
    if any(p < 0 or p != p for p in parts) or not any(parts):
        raise LocalspecError(f"bad --tensor-split {value!r}: proportions must be 0 or more, not all 0")
    return parts


def probe(endpoints: Sequence[str], timeout: float = PROBE_TIMEOUT) -> None:
    """Refuse, in one line, endpoints that accept no connection (ggml-rpc would abort on them)."""
    for endpoint in endpoints:
        host, port = split_endpoint(endpoint)
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as e:
            raise RemoteLost(
                f"rpc-server {endpoint} is not reachable ({e.strerror or e}); "
                f"start one there with: localspec rpc-server --port {port}"
            ) from None


# --- ggml's backend registry, which llama-cpp-python does not bind ---


class Ggml:
    """The few ggml-backend calls device registration needs, from the libggml llama_cpp already loaded."""

    DEVICE_GPU, DEVICE_IGPU = 1, 2  # enum ggml_backend_dev_type

    def __init__(self) -> None:
        from localspec.llama_build import lib_dir

        folder = lib_dir()
        libs = [p for p in sorted(folder.glob("*ggml*")) if p.name.split(".")[0] in ("libggml", "ggml")] if folder else []
        if not libs:
            raise LocalspecError("llama-cpp-python's ggml library was not found; reinstall it: make install")
        self.lib = ctypes.CDLL(str(libs[0]))
        vp, cp, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
        for name, args, res in [
            ("ggml_backend_reg_by_name", [cp], vp),
            ("ggml_backend_reg_get_proc_address", [vp, cp], vp),
            ("ggml_backend_reg_name", [vp], cp),
            ("ggml_backend_reg_dev_count", [vp], sz),
            ("ggml_backend_reg_dev_get", [vp, sz], vp),
            ("ggml_backend_dev_count", [], sz),
            ("ggml_backend_dev_get", [sz], vp),
            ("ggml_backend_dev_name", [vp], cp),
            ("ggml_backend_dev_description", [vp], cp),
            ("ggml_backend_dev_type", [vp], ctypes.c_int),
            ("ggml_backend_dev_backend_reg", [vp], vp),
            ("ggml_backend_dev_memory", [vp, ctypes.POINTER(sz), ctypes.POINTER(sz)], None),
        ]:
            fn = getattr(self.lib, name)
            fn.argtypes, fn.restype = args, res
            setattr(self, name.removeprefix("ggml_backend_"), fn)

    def add_servers(self, endpoints: Sequence[str]) -> list[int]:
        """The devices of each rpc-server, in order (ggml_backend_rpc_add_server; aborts on a dead endpoint)."""
        reg = self.reg_by_name(b"RPC")
        addr = reg and self.reg_get_proc_address(reg, b"ggml_backend_rpc_add_server")
        if not addr:
            raise LocalspecError("this llama-cpp-python has no RPC backend; rebuild it: make install")
        add_server = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)(addr)
        devices = []
        for endpoint in endpoints:
            server = add_server(endpoint.encode())
            devices += [self.reg_dev_get(server, i) for i in range(self.reg_dev_count(server))]
        return devices

    def local_gpus(self) -> list[int]:
        """The GPUs llama.cpp would use by default: discrete ones, else integrated (as llama_prepare_model_devices)."""
        gpus, igpus = [], []
        for i in range(self.dev_count()):
            dev = self.dev_get(i)
            kind = self.dev_type(dev)
            if kind == self.DEVICE_GPU and self.reg_name(self.dev_backend_reg(dev)) != b"RPC":
                gpus.append(dev)
            elif kind == self.DEVICE_IGPU:
                igpus.append(dev)
        return gpus or igpus[:1]

    def describe(self, dev: int) -> dict:
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        self.dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        return {
            "name": self.dev_name(dev).decode(errors="replace"),
            "description": self.dev_description(dev).decode(errors="replace"),
            "free": free.value,
            "total": total.value,
        }


# --- the child process, seen from here ---


class Worker:
    """`python -m localspec.rpc_worker` and the pipes to it; every wait is bounded by `timeout`."""

    def __init__(self, request: dict, timeout: float, logits_bytes: int = 0):
        self.timeout = timeout
        self.endpoints = tuple(request["endpoints"])
        self.lost: RemoteLost | None = None
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.logits_file = tempfile.TemporaryFile(prefix="localspec-logits-", dir=shm)
        if logits_bytes:
            os.ftruncate(self.logits_file.fileno(), logits_bytes)  # sparse: pages exist once written
        self._log = tempfile.TemporaryFile(prefix="localspec-rpc-worker-")
        down_r, self._down = os.pipe()
        self._up, up_w = os.pipe()
        fds = (down_r, up_w, self.logits_file.fileno())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "localspec.rpc_worker", *map(str, fds)],
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            # The abort message is what we want from a dying child, not gdb's backtrace of it.
            env=dict(os.environ, GGML_NO_BACKTRACE="1"),
            start_new_session=True,  # Ctrl-C reaches this process, which then ends the child
        )
        os.close(down_r)
        os.close(up_w)
        self._buf = b""
        self.send(request)

    def send(self, msg: dict) -> None:
        self._check()
        try:
            os.write(self._down, json.dumps(msg).encode() + b"\n")
        except OSError:
            self._fail(self._why())

    def receive(self, on_progress: Callable[[float], None] | None = None) -> dict:
        """The child's next reply; progress lines extend the deadline, silence past it ends the child."""
        deadline = time.monotonic() + self.timeout
        while True:
            self._check()
            line, sep, rest = self._buf.partition(b"\n")
            if sep:
                self._buf = rest
                msg = json.loads(line)
                if "progress" in msg:
                    deadline = time.monotonic() + self.timeout
                    if on_progress:
                        on_progress(msg["progress"])
                    continue
                return msg
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._up], [], [], left)[0]:
                self._fail(f"no answer from rpc-server {', '.join(self.endpoints)} in {self.timeout:.0f} s")
            chunk = os.read(self._up, 1 << 16)
            if not chunk:
                self._fail(self._why())
            self._buf += chunk

    def call(self, msg: dict, on_progress: Callable[[float], None] | None = None) -> dict:
        self.send(msg)
        return self.receive(on_progress)

    def _check(self) -> None:
        if self.lost:
            raise self.lost

    def _fail(self, why: str) -> None:
        self.close(kill=True)  # a stalled worker would not read a polite close
        self.lost = RemoteLost(f"lost the remote target over RPC: {why}")
        raise self.lost

    def _why(self) -> str:
        """Which servers are gone, and the child's last words (ggml's abort line, or llama.cpp's error)."""
        self.proc.wait()
        self._log.seek(0)
        lines = [ln.strip() for ln in self._log.read().decode(errors="replace").splitlines() if ln.strip()]
        said = next((ln for ln in reversed(lines) if "error" in ln.lower() or "abort" in ln.lower()), lines[-1] if lines else "")
        # ggml writes 'path/ggml-rpc.cpp:566: Remote RPC server crashed ...'; the path says nothing to a user.
        said = said.rsplit(".cpp:", 1)[-1].split(": ", 1)[-1] if ".cpp:" in said else said
        gone = []
        for endpoint in self.endpoints:
            try:
                probe([endpoint], timeout=1.0)
            except RemoteLost:
                gone.append(endpoint)
        where = f"rpc-server {', '.join(gone)} is gone" if gone else "the RPC worker ended"
        return f"{where} ({said or f'exit status {self.proc.returncode}'})"

    def close(self, kill: bool = False) -> None:
        if self.proc.poll() is None and not kill:
            try:
                os.write(self._down, b'{"op": "close"}\n')
                self.proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._down, self._up):
            try:
                os.close(fd)
            except OSError:
                pass
        self._down = self._up = -1


def list_devices(endpoints: Sequence[str], timeout: float = 10.0) -> list[dict]:
    """Each rpc-server's devices with their memory, asked from a child (a dead server aborts the asker)."""
    probe(endpoints)
    worker = Worker({"op": "devices", "endpoints": list(endpoints)}, timeout)
    try:
        return worker.receive()["devices"]
    except RemoteLost as e:
        # rpc-server serves one client at a time: a busy one accepts and stays silent.
        raise RemoteLost(f"{e} (an rpc-server serves one client at a time: is another localspec using it?)") from None
    finally:
        worker.close()


@dataclass(frozen=True)
class TargetSpec:
    """What the worker needs to load the target (sent to it as JSON)."""

    path: str
    n_ctx: int
    n_batch: int
    n_threads: int | None
    n_gpu_layers: int
    flash_attn: bool | None
    kv_f32: bool
    rollback: int
