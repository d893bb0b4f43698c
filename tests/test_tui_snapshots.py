"""Snapshots of the main screen (pytest-textual-snapshot): during a reply and after it.

The scripted engine's fixed timings make every number on screen repeatable.
Update after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update`
and look at the report before committing the new SVGs.
"""

from __future__ import annotations

from test_tui_app import dirs, make_app, ready, send, until  # noqa: F401 (fixture)
from test_tui_scripted import ScriptedEngine, step

SIZE = (110, 34)
REPLY = [
    step("Speculative", " decoding", " lets"),
    step(" a", " small", " model", " guess"),
    step(" ahead", drafted=4),
    step(";", " the", " big", " one"),
    step(" checks", " all", " guesses", " in", " one", drafted=4),
    step(" pass", ".\n\n```py", "thon\n"),
    step("while", " not", " done", ":\n"),
    step("    draft", "()\n", "    verify", "()\n```"),
]


async def _chat(pilot, engine, markdown: bool = False) -> None:
    app = await ready(pilot)
    app.prompt.cursor_blink = False
    if markdown:
        await pilot.press("ctrl+t")
    await send(pilot, "How does speculative decoding work?")


def test_main_screen_during_a_reply(snap_compare):
    engine = ScriptedEngine([REPLY], pause_after=5)

    async def mid_reply(pilot):
        await _chat(pilot, engine)
        await until(pilot, engine.paused.is_set)
        await until(pilot, lambda: pilot.app.stats.counters is not None and pilot.app.stats.counters.steps == 5)
        await pilot.pause()

    assert snap_compare(make_app(engine), terminal_size=SIZE, run_before=mid_reply)


def test_main_screen_after_a_reply(snap_compare):
    engine = ScriptedEngine([REPLY])

    async def finished(pilot):
        await _chat(pilot, engine)
        await until(pilot, lambda: pilot.app.reply is None and pilot.app.stats.counters is not None)
        await pilot.pause()

    assert snap_compare(make_app(engine), terminal_size=SIZE, run_before=finished)


def test_main_screen_after_a_reply_as_markdown(snap_compare):
    engine = ScriptedEngine([REPLY])

    async def finished(pilot):
        await _chat(pilot, engine, markdown=True)
        await until(pilot, lambda: pilot.app.reply is None and pilot.app.stats.counters is not None)
        await pilot.pause()

    assert snap_compare(make_app(engine), terminal_size=SIZE, run_before=finished)
