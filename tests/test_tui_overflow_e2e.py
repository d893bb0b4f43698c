"""A conversation past the context on the real engine: SmolLM2-135M at
n_ctx 256, turn after turn, each answered; what the engine's cache holds is
checked against the turns the window keeps (tui.window)."""

from __future__ import annotations

import localspec.engine  # noqa: F401 (imported, not skipped: without the engine these tests must fail)
from test_tui_app import dirs, notes, reply_done, send, until  # noqa: F401 (fixture)
from test_tui_overflow import marked_before
from test_tui_scripted import async_test

from tui.app import ChatApp
from tui.pairs import LoadRequest
from tui.reply import Notice
from tui.store import ChatSettings, ChatStore

N_CTX = 256
SYSTEM = "You are a storyteller. You write short, vivid stories."


def small_context_app() -> ChatApp:
    request = LoadRequest(target="smollm2-135m", method="lookup", extra={"n_ctx": N_CTX})
    return ChatApp(request, store=ChatStore(), choices=lambda t: [])


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@async_test
async def test_many_turns_past_a_small_context_each_answered(smollm2_path):
    app = small_context_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not app.loading, timeout=600)
        engine = app.engine
        assert engine is not None and engine.n_ctx == N_CTX, notes(app)
        app.settings = ChatSettings(system=SYSTEM, max_tokens=96)
        system = {"role": "system", "content": SYSTEM}
        # The part of every prompt that does not depend on the turns: its KV is reused when they leave.
        preamble = common_prefix(
            engine.chat_tokens([system, {"role": "user", "content": "a"}]),
            engine.chat_tokens([system, {"role": "user", "content": "b"}]),
        )
        starts = []
        for turn in range(8):
            await send(pilot, "Continue the story." if turn else "Tell me a story about a fox and a lighthouse.")
            reply = await reply_done(pilot, timeout=300)
            assert reply.text.strip() and reply.stop_reason in ("eog", "max_tokens", "context_full"), reply.stop_reason
            assert not notes(app) and not app.chat_view.query(Notice)

            conversation = app.store.get(app.conversation.id)
            history = app.store.messages(conversation.id)
            ids = [m.id for m in history]
            start = ids.index(conversation.memory_from) if conversation.memory_from else 0
            assert history[start].role == "user" and start <= len(history) - 2  # the newest message is kept
            kept = [system] + [{"role": m.role, "content": m.content} for m in history[start:-1]]
            prompt = engine.chat_tokens(kept)
            held = engine.target_ctx.tokens
            assert held[: len(prompt)] == prompt, f"turn {turn}: the cache does not begin with the kept turns"
            assert len(prompt) + reply.stats["n_generated"] - 1 == len(held) <= N_CTX
            assert marked_before(app) == (history[start].content if start else None)
            if turn:
                assert reply.stats["n_prompt_cached"] >= preamble
            if starts and start != starts[-1]:  # moved: the cache was cut back, not appended to
                assert reply.stats["n_prompt_cached"] < held_before
            starts.append(start)
            held_before = len(held)
        assert len(set(starts)) >= 3, f"the window moved too seldom: {starts}"
        assert starts == sorted(starts)


@async_test
async def test_a_reply_that_fills_the_context_continues(smollm2_path):
    app = small_context_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not app.loading, timeout=600)
        engine = app.engine
        assert engine is not None, notes(app)
        ask = "Write the numbers from 1 to 300 separated by commas."
        await send(pilot, ask)
        reply = await reply_done(pilot, timeout=300)
        assert reply.stop_reason == "context_full" and len(engine.target_ctx.tokens) >= N_CTX - 1
        assert f"{app.key_for('continue_reply')} continues" in str(reply.query_one("#note").render())
        before = reply.text
        await pilot.press(app.keymap.get("continue_reply", "f5"))
        reply = await reply_done(pilot, timeout=300)
        assert reply.text.startswith(before) and len(reply.text) > len(before)
        # The reply alone filled the context: the newest message stays, then the reply's last part.
        prompt = engine.chat_tokens([{"role": "user", "content": ask}])
        assert engine.target_ctx.tokens[: len(prompt)] == prompt
        [_, stored] = app.store.messages(app.conversation.id)
        assert stored.content == reply.text and stored.id == reply.message_id
        assert not app.chat_view.query(Notice) and not notes(app)
