"""The chat with a history file that is broken, foreign or cannot be written,
and two chats on one file: Pilot on a scripted engine, the real store."""

from __future__ import annotations

from test_tui_app import HELLO, dirs, make_app, ready, reply_done, send, until  # noqa: F401 (fixture)
from test_tui_scripted import ScriptedEngine, async_test, step

from tui.reply import Notice, ReplyView, UserMessage
from tui.screens import HistoryScreen
from tui.store import ChatSettings, ChatStore


def said(app) -> list[str]:
    return [n.text for n in app.chat_view.query(Notice)]


@async_test
async def test_a_broken_history_file_is_moved_aside_and_the_chat_goes_on(dirs):
    data = dirs / "data"
    data.mkdir()
    junk = b"\x00not sqlite\xff" * 500
    (data / "chats.db").write_bytes(junk)
    engine = ScriptedEngine([HELLO])
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        [aside] = data.glob("chats.db.broken-*")
        [notice] = said(app)
        assert str(aside) in notice and "new one started" in notice
        await send(pilot, "Hi!")
        await reply_done(pilot)
        assert len(said(app)) == 1  # said once
    assert aside.read_bytes() == junk
    store = ChatStore()
    [conv] = store.conversations()
    assert [m.content for m in store.messages(conv.id)] == ["Hi!", "Hello there. How are you?"]


@async_test
async def test_a_database_from_a_newer_localspec_is_left_as_it_is(dirs):
    store = ChatStore()
    store.db.execute("INSERT INTO _migrations (name, applied_at) VALUES ('m999_future', 'x')")
    store.close()
    before = (dirs / "data" / "chats.db").read_bytes()
    app = make_app(ScriptedEngine([HELLO]))
    async with app.run_test() as pilot:
        await ready(pilot)
        [notice] = said(app)
        assert "newer localspec" in notice and "not being saved" in notice
        await send(pilot, "Hi!")
        reply = await reply_done(pilot)
        assert reply.text == "Hello there. How are you?"
    assert (dirs / "data" / "chats.db").read_bytes() == before


@async_test
async def test_when_writes_start_failing_the_reply_stays_and_the_chat_goes_on(dirs):
    """The file turns read-only between two turns (SQLite's own refusal, as for
    a disk that filled up): the reply is on screen, the chat says once that the
    history is no longer saved, and the next turn still has the whole history."""
    engine = ScriptedEngine([HELLO, [step("Second", ".")], [step("Third", ".")]])
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "Hi!")
        await reply_done(pilot)
        app.store.db.execute("PRAGMA query_only = ON")
        await send(pilot, "Again")
        second = await reply_done(pilot)
        [notice] = said(app)
        assert "not being saved" in notice and "readonly" in notice
        assert second.text == "Second." and second.is_attached and app.store.saving is False
        await send(pilot, "Once more")
        await reply_done(pilot)
        assert len(said(app)) == 1
        assert [m["content"] for m in engine.calls[-1]] == ["Hi!", "Hello there. How are you?", "Again", "Second.", "Once more"]
        assert [r.text for r in app.chat_view.query(ReplyView)] == ["Hello there. How are you?", "Second.", "Third."]
    store = ChatStore()  # the file has what was written before it failed
    [conv] = store.conversations()
    assert [m.content for m in store.messages(conv.id)] == ["Hi!", "Hello there. How are you?"]


@async_test
async def test_two_chats_at_once_each_keep_their_own_conversation():
    past = ChatStore()
    old = past.create("old", "m", ChatSettings())
    past.add_message(old.id, "user", "long ago")
    past.close()
    one, two = ScriptedEngine([[step("One", ".")]]), ScriptedEngine([[step("Two", ".")]])
    a, b = make_app(one), make_app(two)
    async with a.run_test() as pa, b.run_test() as pb:
        await ready(pa)
        await ready(pb)
        # The first opens the most recent chat; the second, finding it open there, starts anew.
        assert a.conversation.id == old.id and b.conversation is None
        await send(pa, "from a")
        await send(pb, "from b")
        await reply_done(pa)
        await reply_done(pb)
        await send(pa, "a again")
        await reply_done(pa)
        assert [m["content"] for m in one.calls[-1]] == ["long ago", "from a", "One.", "a again"]
        assert [m["content"] for m in two.calls[-1]] == ["from b"]
        assert [u.text for u in b.chat_view.query(UserMessage)] == ["from b"]
        await pb.press("f2")
        await until(pb, lambda: isinstance(b.screen, HistoryScreen))
        assert [c.title for c in b.screen.conversations] == ["old", "from b"]
        assert b.screen.elsewhere == {old.id}
        await pb.press("delete")  # a's open chat cannot be deleted from b
        assert [c.title for c in b.store.conversations()] == ["old", "from b"]
        await pb.press("escape")
        assert a.store.saving and b.store.saving and not said(a) and not said(b)
    store = ChatStore()
    titles = {c.title: [m.content for m in store.messages(c.id)] for c in store.conversations()}
    assert titles == {"old": ["long ago", "from a", "One.", "a again", "One."], "from b": ["from b", "Two."]}
    assert store.open_elsewhere() == set()  # both closed: nothing is open
