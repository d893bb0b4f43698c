"""`localspec` command line: one subcommand per module under localspec/commands.

User errors (LocalspecError, bad flags) print one line on stderr and exit 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from localspec.errors import LocalspecError


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; the contract is a single line."""

    def error(self, message: str):  # type: ignore[override]
        raise LocalspecError(message)


def build_parser() -> argparse.ArgumentParser:
    from localspec.commands import bench, chat, curve, layout, models, rpc_server, run, serve

    parser = OneLineParser(prog="localspec", description="Speculative decoding for local GGUF models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for module in (run, chat, models, bench, serve, curve, layout, rpc_server):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except LocalspecError as e:
        print(f"localspec: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("localspec: interrupted", file=sys.stderr)
        return 130
