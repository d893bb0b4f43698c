"""`localspec rpc-server`: llama.cpp's own rpc-server, built with this llama-cpp-python (localspec/llama_build.py).

It runs the binary, not a re-implementation: the client side is the same ggml,
so both ends speak one protocol version. The process becomes the server
(exec), so signals and exit status are the server's own.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from localspec.commands.run import positive_int
from localspec.commands.serve import _is_loopback, port_number
from localspec.errors import LocalspecError
from localspec.rpc import DEFAULT_PORT


def register(sub) -> None:
    p = sub.add_parser("rpc-server", help="serve this machine's CPU/GPU to another localspec's --rpc (llama.cpp's rpc-server)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; the protocol has no authentication)")
    p.add_argument("--port", type=port_number, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--threads", type=positive_int, help="CPU threads for the CPU device (default: llama.cpp's)")
    p.add_argument("--device", help="comma-separated devices to serve (default: the GPUs, else the CPU)")
    p.add_argument("--cache", action="store_true", help="keep received weights on disk, so a reload sends only hashes")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from localspec.llama_build import rpc_server_path

    binary = rpc_server_path()
    if binary is None:
        raise LocalspecError("no rpc-server was built with this llama-cpp-python; build it with: make install")
    if args.port == 0:
        raise LocalspecError("rpc-server needs a fixed --port: clients name it in --rpc HOST:PORT")
    check_free(args.host, args.port)
    if not _is_loopback(args.host):
        print(
            f"localspec: warning: the RPC protocol has no authentication or encryption: anyone who can reach "
            f"{args.host}:{args.port} can use this machine's devices and read what they hold",
            file=sys.stderr,
        )
    argv = [str(binary), "--host", args.host, "--port", str(args.port)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.device:
        argv += ["--device", args.device]
    if args.cache:
        argv.append("--cache")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
    return 0  # not reached


def check_free(host: str, port: int) -> None:
    """A port in use fails here in one line; the server itself would only say 'Failed to create server socket' and exit 0."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise LocalspecError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
