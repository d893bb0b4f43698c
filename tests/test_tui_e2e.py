"""The chat app end to end on a real model: SmolLM2-135M drafting by n-gram lookup.

Slow (loads and calibrates a model, generates on the CPU), but the only test
that the app and the real engine agree on the API: events, cancel, multi-turn.
"""

from __future__ import annotations

import pytest

pytest.importorskip("localspec.engine")  # until the engine lands; then this always runs

from test_tui_app import dirs, notes, reply_done, send, until  # noqa: E402,F401 (fixture)
from test_tui_scripted import async_test  # noqa: E402

from tui.app import ChatApp  # noqa: E402
from tui.pairs import LoadRequest  # noqa: E402
from tui.reply import DRAFT, ReplyView  # noqa: E402
from tui.store import ChatSettings, ChatStore  # noqa: E402


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
