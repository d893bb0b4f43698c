"""`localspec serve`: an OpenAI-compatible HTTP API (see localspec/server)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import sys

from localspec.commands.run import add_model_args, engine_kwargs, non_negative_int
from localspec.errors import LocalspecError
from localspec.registry import METHODS

DEFAULT_QUEUE = 16


def port_number(s: str) -> int:
    v = non_negative_int(s)
    if v > 65535:
        raise argparse.ArgumentTypeError(f"must be at most 65535, got {s}")
    return v


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve an OpenAI-compatible HTTP API (/v1/chat/completions, ...)")
    add_model_args(p)
    p.add_argument("--method", choices=METHODS, help="drafting method (default: the pair's, else auto)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=port_number, default=8080, help="port (default 8080; 0 = any free port)")
    p.add_argument(
        "--api-key",
        help="require 'Authorization: Bearer KEY' on every request (default: $LOCALSPEC_API_KEY, else none)",
    )
    p.add_argument(
        "--queue",
        type=non_negative_int,
        default=DEFAULT_QUEUE,
        help=f"requests that may wait while one runs; more get 503 (default {DEFAULT_QUEUE})",
    )
    p.set_defaults(func=handle)


def listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        raise LocalspecError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def handle(args: argparse.Namespace) -> int:
    import uvicorn

    from localspec.engine import load_engine
    from localspec.server.app import create_app
    from localspec.server.worker import Worker

    api_key = args.api_key or os.environ.get("LOCALSPEC_API_KEY") or None
    sock = listen(args.host, args.port)  # before the load: a busy port fails at once
    try:
        engine = load_engine(**engine_kwargs(args), method=args.method)
    except BaseException:
        sock.close()
        raise
    for w in engine.warnings:
        print(f"localspec: warning: {w}", file=sys.stderr)
    if not api_key and not _is_loopback(args.host):
        print(f"localspec: warning: listening on {args.host} without --api-key: anyone who can reach it may use it",
              file=sys.stderr)  # fmt: skip
    worker = Worker(engine, args.queue)
    worker.start()
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"localspec: serving {engine.target_name} (method {engine.method}) on http://{shown}:{port}/v1",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(create_app(worker, api_key), log_level="warning", timeout_graceful_shutdown=3)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal
    # again; with these handlers that unwinds through `finally` instead of
    # killing the process before the engine is closed.
    previous = signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()  # cancels what runs, closes the engine (saves the costs it learned)
        sock.close()
        signal.signal(signal.SIGTERM, previous)
    return 0


def _exit_cleanly(signum, frame) -> None:
    raise SystemExit(0)
