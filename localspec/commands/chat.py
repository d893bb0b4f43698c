"""`localspec chat`: the terminal chat UI (the `tui` package, imported only here,
inside the handler, so the engine and the other commands never load Textual)."""

from __future__ import annotations

import argparse
import sys

from localspec.commands.run import METHODS, add_model_args, engine_kwargs
from localspec.errors import LocalspecError


def register(sub) -> None:
    p = sub.add_parser("chat", help="chat in a terminal UI that shows speculation live")
    add_model_args(p)
    p.add_argument("--method", choices=METHODS, help="drafting method (default: the pair's, else auto)")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise LocalspecError("localspec chat needs a terminal; for pipes and scripts use localspec run")
    check_names(args)
    from tui.app import ChatApp
    from tui.pairs import LoadRequest

    kwargs = engine_kwargs(args)
    request = LoadRequest(
        target=kwargs.pop("target"),
        draft=kwargs.pop("draft"),
        pair=kwargs.pop("pair"),
        method=args.method,
        draft_max=kwargs.pop("draft_max"),
        extra=kwargs,
    )
    ChatApp(request).run()
    return 0


def check_names(args: argparse.Namespace) -> None:
    """Unknown pair or model names fail here, in one line, before the UI starts;
    fetching and loading happen inside the UI, with progress."""
    from localspec import registry
    from localspec.resolve import resolve_model

    reg = registry.load_registry()
    if args.pair is not None or args.target is None:
        registry.resolve_pair(args.pair, reg)
    for name in (args.target, args.draft):
        if name is not None:
            resolve_model(name, reg)
