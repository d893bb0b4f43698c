"""Imports run one way: the UI and the commands above the engine, the engine
above models and backend. Read from the source with `ast`, so an import inside
a function or under TYPE_CHECKING counts as much as one at the top: those are
how a cycle hides."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def modules() -> dict[str, set[str]]:
    """Every module of localspec and tui, with every module name it imports."""
    out = {}
    for package in ("localspec", "tui"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            imported = set()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    imported |= {a.name for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module:
                    # `from localspec import fetch` imports localspec.fetch
                    imported |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            out[name] = imported
    return out


def test_nothing_but_the_commands_imports_a_command():
    bad = {
        name: sorted(i for i in imported if i == "localspec.commands" or i.startswith("localspec.commands."))
        for name, imported in modules().items()
        if not name.startswith("localspec.commands") and name != "localspec.cli"
    }
    assert not {k: v for k, v in bad.items() if v}


def test_the_engine_side_never_names_the_ui():
    # localspec.commands.chat starts the UI (inside its handler); nothing else in localspec may.
    bad = {
        name: sorted(i for i in imported if i == "tui" or i.startswith(("tui.", "textual")))
        for name, imported in modules().items()
        if name.startswith("localspec") and name != "localspec.commands.chat"
    }
    assert not {k: v for k, v in bad.items() if v}


def test_no_import_cycles():
    mods = modules()
    graph = {m: {i for i in imported if i in mods and i != m} for m, imported in mods.items()}
    cycles = []

    def visit(node: str, path: list[str], done: set[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in path:
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in done:
                visit(nxt, path + [nxt], done)
        done.add(node)

    done: set[str] = set()
    for m in sorted(graph):
        if m not in done:
            visit(m, [m], done)
    assert not cycles, [" -> ".join(c) for c in cycles]


def test_fetch_and_registry_do_not_import_each_other():
    mods = modules()
    assert "localspec.fetch" not in mods["localspec.registry"]
    assert "localspec.registry" in mods["localspec.fetch"]  # fetch is the one above


def assert_never_loaded(imports: str, prefixes: tuple[str, ...]) -> None:
    """In a fresh interpreter, importing `imports` loads no module whose name
    is one of `prefixes` less a trailing dot, or starts with one of them."""
    names = tuple(p.rstrip(".") for p in prefixes if p.endswith("."))
    code = (
        f"import sys, {imports}; "
        f"bad = [m for m in sys.modules if m in {names!r} or m.startswith({prefixes!r})]; assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_run_chat_and_serve_never_load_matplotlib():
    # matplotlib is the [bench] extra; everything a plain `pip install localspec` runs must do without it.
    assert_never_loaded(
        "localspec.cli, localspec.engine, localspec.server.app, localspec.commands.run, "
        "localspec.commands.chat, localspec.commands.serve, tui.app",
        ("matplotlib.",),
    )


def test_the_engine_side_never_imports_the_ui():
    assert_never_loaded("localspec.cli, localspec.engine, localspec.commands.chat", ("tui.", "textual"))
