"""`localspec chat` on the command line: flags, early errors, and the import rule
that the engine side never loads the UI."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from localspec.commands import chat
from localspec.errors import LocalspecError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    chat.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["chat", *argv])


def test_flags():
    args = parse("--target", "a.gguf", "--draft", "b.gguf", "--method", "draft", "--draft-max", "6")
    assert (args.target, args.draft, args.method, args.draft_max, args.pair) == ("a.gguf", "b.gguf", "draft", 6, None)
    assert parse("--pair", "smollm2-self", "--draft-max", "auto").draft_max == "auto"
    assert args.func is chat.handler


def test_names_are_checked_before_the_ui_starts():
    with pytest.raises(LocalspecError, match="unknown pair 'nope'"):
        chat.check_names(parse("--pair", "nope"))
    with pytest.raises(LocalspecError, match="unknown model 'nope'"):
        chat.check_names(parse("--target", "nope"))
    with pytest.raises(LocalspecError, match="model file not found"):
        chat.check_names(parse("--target", "/no/such/model.gguf"))
    chat.check_names(parse("--pair", "smollm2-self"))


def test_without_a_terminal_it_says_so():
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from localspec.commands import chat; sys.exit(chat.handler(None))"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode != 0 and "needs a terminal" in proc.stderr
