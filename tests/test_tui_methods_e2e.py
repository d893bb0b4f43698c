"""Every method the chat's cycle offers, with automatic draft length off and on, on the real engine.

SmolLM2-135M drafts for itself, so the cycle holds draft, lookup and
draft+lookup as well as auto and none; each combination answers a reply
without an error note (draft+lookup with automatic length once raised a
KeyError in the planner, hidden because the Ctrl+G test ran a scripted engine).
"""

from __future__ import annotations

import localspec.engine  # noqa: F401 (imported, not skipped)
from test_tui_app import dirs, notes, reply_done, send, until  # noqa: F401 (fixture)
from test_tui_scripted import async_test

from tui.app import ChatApp
from tui.pairs import LoadRequest
from tui.store import ChatSettings, ChatStore


@async_test
async def test_every_method_in_the_cycle_with_and_without_automatic_length(smollm2_path):
    request = LoadRequest(target="smollm2-135m", draft="smollm2-135m", method="auto")
    app = ChatApp(request, store=ChatStore(), choices=lambda t: [])
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not app.loading, timeout=600)
        engine = app.engine
        assert engine is not None, notes(app)
        assert set(engine.methods) >= {"auto", "none", "lookup", "draft", "draft+lookup"}
        app.settings = ChatSettings(max_tokens=12)
        tried = []
        for _ in engine.methods:
            for automatic in (False, True):
                if engine.auto_draft != automatic:
                    await pilot.press("ctrl+g")
                    await pilot.pause()
                assert engine.auto_draft == automatic
                await send(pilot, "Count to five: 1, 2, 3,")
                reply = await reply_done(pilot, timeout=300)
                assert reply.stop_reason in ("eog", "max_tokens"), (engine.method, automatic, notes(app))
                assert reply.text.strip(), (engine.method, automatic)
                tried.append((engine.method, automatic))
            await pilot.press("ctrl+f")
            await pilot.pause()
        assert {m for m, _ in tried} == set(engine.methods)
        assert not [n for n in notes(app) if "rror" in n], notes(app)
