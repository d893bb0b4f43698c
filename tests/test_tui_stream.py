"""The chat costs the engine nothing it can avoid: steps are drawn in batches
on a timer, a batch redraws only the rows its text touched, and the panel
draws a few times a second. Counted, never timed: these hold on any machine.
The same properties on the real engine: test_tui_e2e.py."""

from __future__ import annotations

import gc
import threading
from contextlib import asynccontextmanager

from test_tui_app import dirs, make_app, notes, ready, reply_done, send, until  # noqa: F401 (fixture)
from test_tui_scripted import ScriptedEngine, async_test, step
from textual.content import Content
from textual._compositor import Compositor
from textual.geometry import Offset, Region
from textual.selection import Selection
from textual.visual import Visual
from textual.widgets import Markdown
from textual.widgets._footer import FooterKey

from tui.footer import KeyFooter
from tui.reply import KEEP_ROWS
from tui.screen import RowCompositor
from tui.tokenlog import TokenLog

NEVER = 3600.0  # a flush interval the tests outlast: they flush by hand


def words(n: int, line_every: int = 6) -> list:
    """n one-word steps, a line break every few; every third step's word came from a draft."""
    out = []
    for i in range(n):
        end = "\n" if i % line_every == line_every - 1 else " "
        out.append(step(f"w{i}", end) if i % 3 == 0 else step(f"w{i}{end}"))
    return out


def cells(strip) -> list:
    """A strip cell by cell: character, look, and the text offset selection reads."""
    out = []
    for seg in strip:
        style = seg.style
        x, y = style.meta["offset"]
        out += [(ch, style.color, style.bgcolor, style.bold, (x + i, y)) for i, ch in enumerate(seg.text)]
    return out


async def one_step_drawn(pilot, app, engine: ScriptedEngine) -> None:
    """Let a gated engine take one step, and draw it by hand."""
    engine.gate.release()
    await until(pilot, lambda: len(app._feed) == 1)
    while len(app._feed) or app._unshown:  # a tick may be the panel's turn
        await app._flush()
    await pilot.pause()


def hand_flushed(engine: ScriptedEngine):
    app = make_app(engine)
    app.FLUSH_S = NEVER
    return app


@asynccontextmanager
async def gated_reply(script: list, size: tuple[int, int] = (100, 30)):
    """A reply under way on an engine that takes a step only when its gate is
    released, drawn only when the test flushes: (pilot, app, engine)."""
    engine = ScriptedEngine([script], gate=threading.Semaphore(0))
    app = hand_flushed(engine)
    async with app.run_test(size=size) as pilot:
        await ready(pilot)
        await send(pilot, "go")
        await until(pilot, lambda: app.reply is not None)
        yield pilot, app, engine


@async_test
async def test_the_engine_runs_on_while_the_ui_draws_nothing_then_one_batch_draws_it_all():
    script = words(200)
    engine = ScriptedEngine([script], pause_after=len(script) - 1)
    app = hand_flushed(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await send(pilot, "go")
        await until(pilot, engine.paused.is_set)
        # 199 steps taken, none drawn: nothing made the engine wait for the UI.
        assert len(app._feed) == 199 and app.flushes == 0 and app.reply.text == ""
        draws = app.stats.draws
        await app._flush()  # the text's turn
        await pilot.pause()
        reply = app.reply
        tokens = reply.query_one(TokenLog)
        assert app.flushes == 1 and len(app._feed) == 0
        assert reply.text == "".join("".join(p) for p, _ in script[:199])
        assert app.stats.draws == draws
        await app._flush()  # the panel's
        assert app.stats.counters.steps == 199 and app.stats.draws == draws + 1 and app.flushes == 1
        # Drawn: rows on screen only (twice: the scrollbar appearing narrows the
        # text, which re-wraps once), and one batch costs one flush however many steps.
        assert len(tokens._rows) == 34 and tokens.rewraps <= 2
        assert 0 < tokens.rows_rendered <= 2 * 30
        engine.resume.set()
        await reply_done(pilot)
        assert app.flushes == 2


@async_test
async def test_a_steps_drawing_cost_does_not_grow_with_the_reply():
    """Strips built and words wrapped per step stay the same from the first
    step to the 300th: finished rows are never drawn or wrapped again."""
    script = words(300)
    async with gated_reply(script) as (pilot, app, engine):
        tokens = app.reply.query_one(TokenLog)
        rendered, placed = [], []
        for _ in script[:-1]:  # the last step ends the reply
            before = tokens.rows_rendered, sum(w.words_placed for w in tokens._wraps), tokens.rewraps
            await one_step_drawn(pilot, app, engine)
            if tokens.rewraps == before[2]:  # a new width re-wraps all, once: counted below
                rendered.append(tokens.rows_rendered - before[0])
                placed.append(sum(w.words_placed for w in tokens._wraps) - before[1])
        assert len(tokens._rows) == 50 and len(rendered) >= len(script) - 3
        assert max(rendered) <= 2 and max(placed) <= 2  # the row it grew, a row it began; its words
        assert sum(rendered[-50:]) <= sum(rendered[:50]) + 2
        assert tokens.rewraps <= 2  # the first layout, and the scrollbar appearing
        engine.gate.release()
        await reply_done(pilot)


@async_test
async def test_a_streaming_reply_grows_a_page_at_a_time_and_its_newest_row_stays_in_view():
    """A change of the reply's height lays the whole screen out again, the
    dearest thing the chat draws: a streaming reply grows by a page of the
    conversation (its height less the note line and KEEP_ROWS rows of the
    page before), not by the row, and its newest row is always on screen."""
    script = words(300)
    async with gated_reply(script) as (pilot, app, engine):
        tokens = app.reply.query_one(TokenLog)
        for _ in script[:-1]:
            await one_step_drawn(pilot, app, engine)
            view = app.chat_view.region
            newest = tokens.region.y + len(tokens._rows) - 1
            assert view.y <= newest < view.bottom
        page = app.chat_view.scrollable_content_region.height - 1 - KEEP_ROWS
        assert tokens.block == page and len(tokens._rows) == 50
        # One growth a page (and once more where the scrollbar's appearing narrowed the text).
        assert tokens.growths <= -(-50 // page) + 1
        engine.gate.release()
        await reply_done(pilot)
        assert tokens.block == 1 and tokens.outer_size.height == len(tokens._rows)  # exactly the text again


@async_test
async def test_token_text_wraps_and_colours_exactly_as_a_whole_render():
    """Streamed a few characters at a time, the rows are the strips the whole
    reply rendered at once (the old way: one Content, wrapped by Textual) gives:
    same breaks, same colours, draft tokens included."""
    text = "def parse(path: str) -> dict[str, float]:\n\tnames = {}  # a comment long enough to wrap, " * 4
    chunks = [text[i : i + 4] for i in range(0, len(text), 4)]
    script = [step(*chunks[i : i + 3]) for i in range(0, len(chunks), 3)]  # drafted, drafted, target
    engine = ScriptedEngine([script])
    app = make_app(engine)
    async with app.run_test(size=(70, 60)) as pilot:
        await ready(pilot)
        await send(pilot, "go")
        reply = await reply_done(pilot)
        await pilot.pause()
        tokens = reply.query_one(TokenLog)
        styles = {
            "d": tokens.get_visual_style("token--draft", partial=True),
            "t": tokens.get_visual_style("token--target", partial=True),
        }
        whole = Content.assemble(*((run, styles[origin]) for run, origin in reply.runs))
        expected = Visual.to_strips(tokens, whole, tokens.size.width, None, tokens.visual_style)
        shown = [tokens.render_line(y) for y in range(len(tokens._rows))]
        assert len(shown) == len(expected) > 8
        assert [cells(s) for s in shown] == [cells(e) for e in expected]
        assert any(seg.style.bgcolor for seg in shown[0])  # drafts are highlighted
        # Mouse selection finds the text through the rows' offsets.
        app.screen.selections = {tokens: Selection(Offset(4, 0), Offset(4, 1))}
        await pilot.pause()
        assert app.screen.get_selected_text() == "parse(path: str) -> dict[str, float]:\n    "


@async_test
async def test_the_panel_draws_a_few_times_a_second_however_fast_steps_come():
    """A tick draws the text or the panel, never both (one frame around both
    would span the screen); the panel every STATS_S, the text in between."""
    script = words(40)
    engine = ScriptedEngine([script], gate=threading.Semaphore(0))
    app = hand_flushed(engine)
    now = [100.0]
    app.clock = lambda: now[0]
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "go")
        await until(pilot, lambda: app.reply is not None)
        draws = app.stats.draws
        turns = []
        for _ in script[:-1]:  # a tick every 1/16 s of the fake clock, a step before each
            engine.gate.release()
            await until(pilot, lambda: len(app._feed) == 1)
            before = app.flushes, app.stats.draws
            await app._flush()
            turns.append(("text" if app.flushes > before[0] else "") + ("panel" if app.stats.draws > before[1] else ""))
            now[0] += 1 / 16
        assert set(turns) == {"text", "panel"}  # every tick drew one of them, none both
        assert app.stats.draws - draws == 5  # ticks 1, 9, 17, 25, 33: every STATS_S = 0.5 s
        assert app.flushes == 34 and "panelpanel" not in "".join(turns)
        engine.gate.release()
        await reply_done(pilot)
        assert app.stats.counters.steps == 40  # the end is always drawn


@async_test
async def test_markdown_gets_one_write_per_flush():
    script = words(60)
    engine = ScriptedEngine([script], pause_after=len(script) - 1)
    app = hand_flushed(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("ctrl+t")
        await send(pilot, "go")
        await until(pilot, engine.paused.is_set)
        markdown = app.reply.query_one(Markdown)
        appends = []
        original = markdown.append
        markdown.append = lambda fragment: appends.append(fragment) or original(fragment)
        await app._flush()
        await until(pilot, lambda: appends)
        assert len(appends) == 1 and appends[0] == app.reply.text
        engine.resume.set()
        await reply_done(pilot)


@async_test
async def test_the_key_bar_keeps_its_keys_through_a_reply_and_shows_whether_stop_applies():
    """Textual's footer mounts its keys again on every refresh of the bindings,
    which lays the whole screen out; a reply starting and ending changes only
    whether Stop applies, so the same keys stay and that one is shown enabled
    and disabled in place (tui.footer)."""
    engine = ScriptedEngine([words(10)], pause_after=5)
    app = make_app(engine)
    async with app.run_test(size=(110, 30)) as pilot:
        await ready(pilot)
        await pilot.pause()
        keys = list(app.query(FooterKey))
        stop = next(k for k in keys if k.action == "cancel")
        assert stop.has_class("-disabled")  # nothing to stop
        await send(pilot, "go")
        await until(pilot, engine.paused.is_set)
        await pilot.pause()
        assert not stop.has_class("-disabled") and not stop._disabled
        engine.resume.set()
        await reply_done(pilot)
        await pilot.pause()
        assert stop.has_class("-disabled") and stop._disabled
        assert list(app.query(FooterKey)) == keys  # the same widgets: never mounted again
        # A key that comes or goes still re-mounts the bar.
        app.engine.methods = ("none",)  # no auto: its key is hidden
        app.refresh_bindings()
        await pilot.pause()
        await pilot.pause()
        assert "auto_draft" not in [k.action for k in app.query(FooterKey)]


@async_test
async def test_a_frame_of_new_reply_text_asks_only_the_widgets_in_its_rows_for_those_rows():
    """Textual's compositor asks every widget whose container reaches a frame's
    rows for its whole visible area; the chat's (tui.screen) asks the widgets
    that reach the rows, for those rows, front to back until one covers them:
    a frame of new text draws the token text, not the containers around it,
    the header, the key bar, the panel or the prompt."""
    async with gated_reply(words(40)) as (pilot, app, engine):
        for _ in range(3):
            await one_step_drawn(pilot, app, engine)
        asked = []
        for widget in app.screen._compositor.visible_widgets:
            widget.render_lines = lambda crop, w=widget, draw=widget.render_lines: asked.append((w, crop)) or draw(crop)
        tokens = app.reply.query_one(TokenLog)
        rows = tokens.rows_rendered
        for _ in range(5):
            await one_step_drawn(pilot, app, engine)
        assert tokens.rows_rendered > rows and tokens in {w for w, _ in asked}
        elsewhere = {app.prompt, app.stats, app.query_one("Header"), app.query_one(KeyFooter)}
        assert not {w for w, _ in asked} & (elsewhere | set(tokens.ancestors[:-1]))
        assert max(crop.height for _, crop in asked) <= 2  # the row a word grew, a row it began
        engine.gate.release(40)
        await reply_done(pilot)


@async_test
async def test_each_frame_writes_the_bytes_textuals_own_compositor_writes():
    """The chat's compositor changes what is asked, never what is written:
    every frame of a reply to its end (text, panel, key bar, note) and a set of
    hand-made ones (one cell, boxes across widgets, each widget's area, boxes
    ending where a widget begins, the whole screen) render to the same
    terminal bytes as Textual's Compositor on the same screen."""
    async with gated_reply(words(120)) as (pilot, app, engine):
        compositor = app.screen._compositor
        assert type(compositor) is RowCompositor
        frames = []

        def both(dirty) -> tuple[str, str]:
            compositor._dirty_regions = set(dirty)
            ours = RowCompositor.render_partial_update(compositor)
            compositor._dirty_regions = set(dirty)
            compositor._get_renders = Compositor._get_renders.__get__(compositor)
            try:
                theirs = Compositor.render_partial_update(compositor)
            finally:
                del compositor._get_renders
            return ours.render_segments(app.console), theirs.render_segments(app.console)

        def checked():
            dirty = set(compositor._dirty_regions)
            if not dirty:
                return None
            ours, theirs = both(dirty)
            frames.append(ours == theirs)
            compositor._dirty_regions = dirty
            return RowCompositor.render_partial_update(compositor)

        compositor.render_partial_update = checked
        for _ in range(60):
            await one_step_drawn(pilot, app, engine)
        w, h = app.size
        boxes = [
            [Region(5, 4, 1, 1)],
            [Region(0, 3, w, 2)],
            [Region(w - 20, 2, 20, 6), Region(3, 10, 40, 1)],
            [Region(0, h - 2, w, 2)],
            [Region(0, 0, w, h)],
            [Region(x, y, 7, 3) for x, y in ((0, 0), (w // 2, h // 2), (w - 7, h - 3))],
        ]
        for region, clip in compositor.visible_widgets.values():  # ending where a widget begins, and its own area
            seen = region.intersection(clip)
            if seen.x and seen.height:
                boxes += [[Region(0, seen.y, seen.x, 1)], [seen]]
        for dirty in boxes:
            ours, theirs = both(dirty)
            assert ours == theirs, dirty
        engine.gate.release(60)
        await reply_done(pilot)
        await pilot.pause()
        assert len(frames) >= 62 and all(frames)


@async_test
async def test_a_reply_streams_with_what_existed_before_it_kept_from_the_garbage_collector():
    """A full collection walks every object of the process; while a reply
    streams the collector looks only at what the reply creates, and afterwards
    (a finished or a failed reply) at everything again."""
    engine = ScriptedEngine([words(10)], pause_after=5)
    app = make_app(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        assert gc.get_freeze_count() == 0
        await send(pilot, "go")
        await until(pilot, engine.paused.is_set)
        assert gc.get_freeze_count() > 1000
        engine.resume.set()
        await reply_done(pilot)
        assert gc.get_freeze_count() == 0
        engine.fail_with = RuntimeError("boom")
        await send(pilot, "again")
        await until(pilot, lambda: any("boom" in n for n in notes(app)))
        assert gc.get_freeze_count() == 0
