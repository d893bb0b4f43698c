"""The chat app end to end on a real model: SmolLM2-135M drafting by n-gram lookup.

Slow (loads and calibrates a model, generates on the CPU), but the only test
that the app and the real engine agree on the API: events, cancel, multi-turn;
and that the chat's economy (test_tui_stream.py on a scripted engine) holds
on real steps: batches, rows drawn once, the panel a few times a second,
`+`/`-` bounding auto's draft length.
"""

from __future__ import annotations

import localspec.engine  # noqa: F401 (imported, not skipped: without the engine these tests must fail)
from test_tui_app import dirs, notes, reply_done, send, until  # noqa: F401 (fixture)
from test_tui_scripted import async_test

from tui.app import ChatApp
from tui.pairs import LoadRequest
from tui.reply import DRAFT, ReplyView
from tui.store import ChatSettings, ChatStore
from tui.tokenlog import TokenLog

COUNT = "Write the numbers from 1 to 40 separated by commas."


@async_test
async def test_chat_on_smollm2_with_lookup(smollm2_path):
    app = ChatApp(LoadRequest(target="smollm2-135m", method="lookup"), store=ChatStore(), choices=lambda t: [])
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not app.loading, timeout=600)
        assert app.engine is not None, notes(app)
        assert app.engine.method == "lookup" and "lookup" in app.sub_title
        app.settings = ChatSettings(max_tokens=64)

        await send(pilot, "Repeat this line three times: the cat sat on the mat.")
        first = await reply_done(pilot, timeout=300)
        assert first.text.strip() and first.stop_reason in ("eog", "max_tokens")
        stats = first.stats
        assert stats["n_generated"] > 0 and stats["tokens_per_s"] > 0 and stats["methods"] == ["lookup"]
        assert stats["drafted"] > 0 and any(origin == DRAFT for _, origin in first.runs)
        assert "".join(text for text, _ in first.runs) == first.text
        panel = str(app.query_one("#speed").render())
        assert f"{stats['tokens_per_s']:.1f}" in panel

        # Esc mid-reply keeps the partial text; the engine stays usable.
        app.settings = ChatSettings(max_tokens=400)
        await send(pilot, "Write a long story about a lighthouse keeper.")
        await until(pilot, lambda: app.reply is not None and len(app.reply.text) > 10, timeout=120)
        await pilot.press("escape")
        cancelled = await reply_done(pilot, timeout=300)
        assert cancelled.stop_reason == "cancelled" and cancelled.text

        # Third turn: the history before it comes from the KV cache.
        app.settings = ChatSettings(max_tokens=16)
        await send(pilot, "Thanks!")
        third = await reply_done(pilot, timeout=300)
        assert third.stats["n_prompt_cached"] > third.stats["n_prompt"]
        assert len(app.chat_view.query(ReplyView)) == 3


@async_test
async def test_chat_drafts_with_mtp_when_the_target_has_heads(tiny_mtp_path):
    app = ChatApp(LoadRequest(target=str(tiny_mtp_path), method="mtp"), store=ChatStore(), choices=lambda t: [])
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not app.loading, timeout=600)
        assert app.engine is not None, notes(app)
        assert "mtp" in app.engine.methods and app.engine.method == "mtp"
        app.settings = ChatSettings(max_tokens=32)
        await send(pilot, "Say something.")
        reply = await reply_done(pilot, timeout=300)
        assert reply.stats["methods"] == ["mtp"] and reply.stats["drafted"] > 0
        assert any(origin == DRAFT for _, origin in reply.runs)

        # The method cycle goes through every method the engine offers, MTP included.
        seen = set()
        for _ in app.engine.methods:
            await pilot.press("ctrl+f")
            await pilot.pause()
            seen.add(app.engine.method)
        assert seen == set(app.engine.methods)


def smollm2_app(method: str) -> ChatApp:
    return ChatApp(LoadRequest(target="smollm2-135m", method=method), store=ChatStore(), choices=lambda t: [])


@async_test
async def test_the_engine_never_waits_for_the_ui(smollm2_path):
    """With the UI's flush timer held off, the engine still runs the whole
    reply; the UI then draws all its steps as one batch."""
    app = smollm2_app("lookup")
    app.FLUSH_S = 3600.0
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not app.loading, timeout=600)
        assert app.engine is not None, notes(app)
        app.settings = ChatSettings(max_tokens=96)
        await send(pilot, COUNT)
        reply = await reply_done(pilot, timeout=300)
        assert reply.stats["steps"] > 10 and app.flushes == 1
        assert reply.query_one(TokenLog).text == reply.text


@async_test
async def test_real_steps_draw_only_new_rows_and_the_panel_keeps_up(smollm2_path):
    app = smollm2_app("auto")
    # Each flush: the strips built before it, the rows there were, the re-wraps so far.
    seen: list[tuple[int, int, int]] = []
    flush = app._flush

    async def counting_flush(final: bool = False) -> None:
        if app.reply is not None:
            tokens = app.reply.query_one(TokenLog)
            seen.append((tokens.rows_rendered, len(tokens._rows), tokens.rewraps))
        await flush(final)

    app._flush = counting_flush  # before mount: the timer takes it then
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not app.loading, timeout=600)
        assert app.engine is not None, notes(app)
        app.settings = ChatSettings(max_tokens=160)
        draws = app.stats.draws
        await send(pilot, COUNT)
        reply = await reply_done(pilot, timeout=300)
        assert app.flushes < reply.stats["steps"] or reply.stats["steps"] < 4, "one draw per step"
        assert app.stats.draws - draws >= 2, "the panel did not update during the reply"
        assert len(seen) > 3
        for (built0, rows0, wraps0), (built1, rows1, wraps1) in zip(seen, seen[1:]):
            if wraps1 == wraps0:  # a flush builds the rows it added and the one it grew
                assert built1 - built0 <= rows1 - rows0 + 2, seen
        plain = app.engine.plain_tokens_per_s
        assert plain and reply.stats["plain_tokens_per_s"] == plain
        assert f"{plain:.1f} tok/s" in str(app.query_one("#speed").render())

        # Under auto, - and + set the most the planner may draft.
        await pilot.press(*["minus"] * app.engine.auto_ceiling)
        assert app.engine.auto_limit == 0 and "auto ≤ 0" in str(app.query_one("#setting").render())
        app.settings = ChatSettings(max_tokens=24)
        await send(pilot, COUNT)
        plain_only = await reply_done(pilot, timeout=300)
        assert plain_only.stats["drafted"] == 0 and plain_only.stats["methods"] == ["none"]
        await pilot.press("plus")
        assert app.engine.auto_limit == 1
        await send(pilot, COUNT)
        short = await reply_done(pilot, timeout=300)
        assert short.stats["drafted"] <= short.stats["steps"]
