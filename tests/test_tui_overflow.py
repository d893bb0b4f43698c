"""A conversation past the context: the rolling window (tui.window), its
marker, continuing a reply the full context stopped, and the "stop" policy.
Pilot on a scripted engine whose stand-in tokenizer counts words
(test_tui_scripted.py); on the real engine: test_tui_overflow_e2e.py."""

from __future__ import annotations

from test_tui_app import dirs, make_app, notes, ready, reply_done, send, until  # noqa: F401 (fixture)
from test_tui_scripted import ScriptedEngine, async_test, step

from tui.reply import MemoryMark, Notice, ReplyView, UserMessage
from tui.screens import SettingsScreen
from tui.store import ChatSettings, ChatStore
from tui.window import Window, fit

TEN = step(*(f" w{i}" for i in range(10)))  # a reply of ten words: 13 stand-in tokens as history
ASK = "tell me more please"  # 7 stand-in tokens as history


def lengths(*sizes: int):
    """prompt_length for a history whose messages take `sizes` tokens, after 10 of preamble."""
    return lambda s: 10 + sum(sizes[s:])


def test_the_window_moves_rarely_and_far():
    roles = ["user", "assistant"] * 3
    sizes = (10, 30, 10, 30, 10, 30)
    # Fits with a quarter of the context to spare: the start stays.
    assert fit(lengths(*sizes[:5]), roles[:5], 0, 200, 1024) == Window(0, 100)
    # Would leave less than a quarter: the start moves until the prompt takes at most half.
    assert fit(lengths(*sizes[:5]), roles[:5], 0, 120, 1024) == Window(2, 60)
    assert fit(lengths(*sizes[:5]), roles[:5], 0, 120, 8) == Window(0, 100)  # max_tokens below the quarter
    # Never past the newest user message: a window that cannot fit says so by its length.
    assert fit(lengths(*sizes[:5]), roles[:5], 4, 20, 1024) == Window(4, 20)
    assert fit(lengths(10, 30, 200), roles[:3], 0, 120, 1024) == Window(2, 210)
    # A reply being continued that fills the window alone keeps its last part.
    assert fit(lengths(10), roles[:1], 0, 100, 1024, continuation=95) == Window(0, 50, 65)
    assert fit(lengths(10, 30, 10), roles[:3], 0, 100, 1024, continuation=30) == Window(2, 50)


def marked_before(app) -> str | None:
    """The text of the message right below the marker."""
    children = list(app.chat_view.children)
    marks = [i for i, w in enumerate(children) if isinstance(w, MemoryMark)]
    assert len(marks) <= 1
    return children[marks[0] + 1].text if marks else None


@async_test
async def test_the_oldest_turns_leave_and_a_marker_shows_where_memory_begins():
    engine = ScriptedEngine([[TEN]], n_ctx=60)
    app = make_app(engine)
    asks = [f"{ASK} {i}" for i in range(5)]  # 8 stand-in tokens each
    async with app.run_test() as pilot:
        await ready(pilot)
        app.settings = ChatSettings(system="Be brief.")
        for ask in asks[:2]:
            await send(pilot, ask)
            await reply_done(pilot)
        assert marked_before(app) is None and len(engine.calls[1]) == 4
        # 1 + 5 + 8 + 13 + 8 + 13 + 8 = 56 tokens: a reply would have 4. The two
        # oldest turns leave; the system prompt and the newest message stay.
        await send(pilot, asks[2])
        await reply_done(pilot)
        assert engine.calls[2] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": asks[2]}]
        assert marked_before(app) == asks[2]
        stored = app.store.messages(app.conversation.id)
        assert app.store.get(app.conversation.id).memory_from == stored[4].id
        # The next turn fits after it: the start stays (the cache keeps its prefix).
        await send(pilot, asks[3])
        await reply_done(pilot)
        assert [m["content"] for m in engine.calls[3][1:]] == [asks[2], "".join(TEN[0]), asks[3]]
        assert marked_before(app) == asks[2]
        await send(pilot, asks[4])
        await reply_done(pilot)
        assert marked_before(app) == asks[4] and len(app.chat_view.query(ReplyView)) == 5
        assert not notes(app) and not app.chat_view.query(Notice)

    again = make_app(ScriptedEngine([[TEN]], n_ctx=60))  # reopened: the marker where it was
    async with again.run_test() as pilot:
        await ready(pilot)
        assert marked_before(again) == asks[4] and again.settings.system == "Be brief."


@async_test
async def test_a_reply_the_context_stopped_continues_in_the_freed_window():
    long = step(*(f" w{i}" for i in range(30)))
    engine = ScriptedEngine([[long], [step(" more", " words.")]], n_ctx=40, final_stop="context_full")
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, ASK)
        reply = await reply_done(pilot)
        first = reply.text
        assert "context full · f5 continues" in str(reply.query_one("#note").render())
        engine.final_stop = None
        await pilot.press("f5")
        reply = await reply_done(pilot)
        # 1 + 7 for the message, 30 for the reply so far: over half of 40, so only
        # its last part stays (the newest user message always does).
        assert engine.continuations[-1] == (first, 18)
        assert engine.calls[-1] == [{"role": "user", "content": ASK}]
        assert len(app.chat_view.query(ReplyView)) == 1 and reply.text == first + " more words."
        assert reply.stop_reason == "eog" and "continues" not in str(reply.query_one("#note").render())
        [user, stored] = app.store.messages(app.conversation.id)
        assert (stored.content, stored.stop_reason, stored.id) == (reply.text, "eog", reply.message_id)
        assert sum(n for n, _ in stored.sources) == len(reply.text)
        await pilot.press("f5")  # nothing to continue now
        assert len(engine.calls) == 2 and any("can be continued" in n for n in notes(app))


@async_test
async def test_stop_says_in_the_conversation_what_to_do():
    engine = ScriptedEngine([[TEN]], n_ctx=40)
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, SettingsScreen))
        app.screen.query_one("#overflow").value = "stop"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, SettingsScreen))
        for _ in range(2):
            await send(pilot, ASK)
            await reply_done(pilot)
        await send(pilot, "and then?")  # 1 + 2 * (7 + 13) + 5 = 46 tokens: over 40
        await until(pilot, lambda: app.reply is None and app.chat_view.query(Notice))
        [notice] = app.chat_view.query(Notice)
        assert "46 tokens" in notice.text and "holds 40" in notice.text
        assert f"{app.key_for('new_chat')} starts a new chat" in notice.text and "--n-ctx" in notice.text
        assert not notes(app), "said in the conversation, not in a toast"
        assert len(app.chat_view.query(ReplyView)) == 2 and len(engine.calls) == 2
        assert [u.text for u in app.chat_view.query(UserMessage)][-1] == "and then?"
        assert app.store.get(app.conversation.id).settings.overflow == "stop"

        # Back to the rolling window: the same message gets its reply.
        app.settings = ChatSettings(overflow="rolling")
        await pilot.press("ctrl+r")
        await reply_done(pilot)
        assert engine.calls[-1] == [{"role": "user", "content": "and then?"}] and marked_before(app) == "and then?"

    full = ScriptedEngine([[TEN]], final_stop="context_full")
    app = make_app(full)
    async with app.run_test() as pilot:
        await ready(pilot)
        app.settings = ChatSettings(overflow="stop")
        await send(pilot, "new chat")
        reply = await reply_done(pilot)
        [notice] = app.chat_view.query(Notice)
        assert "is full" in notice.text and f"{app.key_for('new_chat')} starts a new chat" in notice.text
        assert "continues" not in str(reply.query_one("#note").render())


@async_test
async def test_a_message_too_long_even_alone_stays_and_the_chat_says_so():
    engine = ScriptedEngine([[TEN]], n_ctx=20)
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        long = " ".join(f"w{i}" for i in range(30))  # 1 + 3 + 30 stand-in tokens
        await send(pilot, long)
        await until(pilot, lambda: app.reply is None and app.chat_view.query(Notice))
        [notice] = app.chat_view.query(Notice)
        assert notice.text.startswith("This message takes 34 tokens and the context holds 20")
        assert "--n-ctx" in notice.text and not notes(app) and not engine.calls
        assert not app.chat_view.query(ReplyView) and [u.text for u in app.chat_view.query(UserMessage)] == [long]
        assert [m.content for m in app.store.messages(app.conversation.id)] == [long]
        await send(pilot, "short")  # the oversized message leaves the window; the chat goes on
        await reply_done(pilot)
        assert engine.calls == [[{"role": "user", "content": "short"}]] and marked_before(app) == "short"
