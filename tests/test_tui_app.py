"""The chat app driven by Pilot against a scripted engine: sending, streaming,
cancelling and the conversation keys. Tuning keys, picker, screens: test_tui_keys.py."""

from __future__ import annotations

import pytest
from test_tui_scripted import ScriptedEngine, async_test, scripted_loader, step
from textual import events
from textual.widgets import Markdown
from textual.widgets.markdown import MarkdownFence

from localspec.errors import LocalspecError
from tui.app import ChatApp
from tui.pairs import LoadRequest
from tui.reply import DRAFT, TARGET, ReplyView, UserMessage
from tui.tokenlog import TokenLog
from tui.screens import ExportScreen
from tui.store import ChatStore

HELLO = [step("Hel", "lo", " there"), step(".", drafted=3), step(" How", " are", " you?")]
CODE = [step("```py", "thon\n"), step("print(1)\n", "```"), step("\nDone.")]


@pytest.fixture(autouse=True)
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALSPEC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOCALSPEC_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_app(engine, **kw) -> ChatApp:
    kw.setdefault("choices", lambda target: [])
    return ChatApp(LoadRequest(target="scripted"), loader=scripted_loader(engine), store=ChatStore(), **kw)


async def until(pilot, condition, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await pilot.pause(0.01)
    raise AssertionError("condition not reached")


async def ready(pilot) -> ChatApp:
    app = pilot.app
    await until(pilot, lambda: app.engine is not None and not app.loading)
    return app


async def send(pilot, text: str) -> None:
    pilot.app.prompt.text = text
    await pilot.press("enter")


async def reply_done(pilot, timeout: float = 5.0) -> ReplyView:
    app = pilot.app
    await until(pilot, lambda: app.reply is None and app.chat_view.query(ReplyView), timeout)
    await pilot.pause()
    return app.chat_view.query(ReplyView).last()


def text_of(app, selector: str) -> str:
    return str(app.query_one(selector).render())


def notes(app) -> list[str]:
    return [n.message for n in app._notifications]


@async_test
async def test_send_streams_a_reply_coloured_by_origin():
    engine = ScriptedEngine([HELLO])
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "Hi!")
        reply = await reply_done(pilot)
        assert app.prompt.text == ""
        assert [m.text for m in app.chat_view.query(UserMessage)] == ["Hi!"]
        assert reply.text == "Hello there. How are you?"
        assert reply.runs == [["Hello", DRAFT], [" there.", TARGET], [" How are", DRAFT], [" you?", TARGET]]
        assert engine.calls == [[{"role": "user", "content": "Hi!"}]]
        assert reply.query_one(TokenLog).display and not reply.query_one(Markdown).display
        c = app.stats.counters
        assert (c.n_generated, c.drafted, c.accepted, c.steps) == (7, 9, 4, 3)
        assert len(app.stats.rates) == 3
        # 7 tokens in 3 × 0.08 s against a plain 10 tok/s
        speed = text_of(app, "#speed")
        assert "29.2" in speed and "2.92×" in speed
        assert "44% (4 of 9)" in text_of(app, "#acceptance")
        assert " 1 " in text_of(app, "#positions") and "67%" in text_of(app, "#positions")
        assert "7 tokens · 29.2 tok/s" in str(reply.query_one("#note").render())


@async_test
async def test_markdown_streams_deltas_then_renders_the_whole_reply():
    engine = ScriptedEngine([CODE], pause_after=2)
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("ctrl+t")  # Markdown instead of token colours
        await send(pilot, "code please")
        await until(pilot, engine.paused.is_set)
        reply = app.reply
        markdown = reply.query_one(Markdown)
        await until(pilot, lambda: markdown.source == "```python\nprint(1)\n```")
        assert markdown.display and not reply.query_one(TokenLog).display
        engine.resume.set()
        reply = await reply_done(pilot)
        fence = reply.query_one(MarkdownFence)
        assert fence.code.strip() == "print(1)" and fence.lexer == "python"
        assert markdown.source == reply.text == "```python\nprint(1)\n```\nDone."


@async_test
async def test_escape_cancels_and_keeps_the_partial_reply_marked():
    engine = ScriptedEngine([HELLO, [step("Fine", ".")]], pause_after=1)
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "Hi!")
        await until(pilot, engine.paused.is_set)
        assert app.check_action("cancel", ()) is True
        await pilot.press("escape")
        reply = await reply_done(pilot)
        assert reply.stop_reason == "cancelled" and reply.has_class("-cancelled")
        assert reply.text == "Hello there"
        assert "cancelled" in str(reply.query_one("#note").render())
        stored = app.store.messages(app.conversation.id)
        assert [(m.role, m.content, m.stop_reason) for m in stored][-1] == ("assistant", "Hello there", "cancelled")
        assert app.check_action("cancel", ()) is None  # shown, disabled: nothing to stop
        # The next turn sees the partial reply in its history.
        engine.pause_after = None
        await send(pilot, "Go on")
        await reply_done(pilot)
        assert engine.calls[1][-2:] == [
            {"role": "assistant", "content": "Hello there"},
            {"role": "user", "content": "Go on"},
        ]


@async_test
async def test_typing_goes_on_while_a_reply_streams():
    engine = ScriptedEngine([HELLO], pause_after=1)
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "Hi!")
        await until(pilot, engine.paused.is_set)
        await pilot.press(*"a-b+c", "ctrl+j", "d")
        assert app.prompt.text == "a-b+c\nd"
        assert engine.draft_max == 4  # + and - went into the text, not to the draft length
        await pilot.press("enter")  # refused while streaming; the text stays
        assert app.prompt.text == "a-b+c\nd" and len(engine.calls) == 1
        assert any("still streaming" in n for n in notes(app))
        engine.resume.set()
        await reply_done(pilot)
        await pilot.press("enter")
        await reply_done(pilot)
        assert engine.calls[1][-1] == {"role": "user", "content": "a-b+c\nd"}


@async_test
async def test_new_chat_regenerate_copy_and_export(dirs):
    engine = ScriptedEngine([HELLO, [step("Other", " reply")]])
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "Hi!")
        await reply_done(pilot)
        await pilot.press("ctrl+r")
        reply = await reply_done(pilot)
        assert reply.text == "Other reply" and len(app.chat_view.query(ReplyView)) == 1
        assert engine.calls[1] == engine.calls[0] == [{"role": "user", "content": "Hi!"}]
        assert [m.content for m in app.store.messages(app.conversation.id)] == ["Hi!", "Other reply"]

        await pilot.press("ctrl+o")
        assert app.clipboard == "Other reply"

        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ExportScreen))
        await pilot.press("enter")
        exported = (dirs / "hi.md").read_text()
        assert exported.startswith("# Hi!\n") and "## User\n\nHi!" in exported
        assert "## Assistant\n\nOther reply" in exported

        first = app.conversation.id
        await pilot.press("ctrl+n")
        assert app.conversation is None and not app.chat_view.query(ReplyView)
        await send(pilot, "Second chat")
        await reply_done(pilot)
        assert app.conversation.id != first
        assert engine.calls[-1] == [{"role": "user", "content": "Second chat"}]


@async_test
async def test_conversations_persist_and_reopen_with_their_colours():
    engine = ScriptedEngine([HELLO])
    async with make_app(engine).run_test() as pilot:
        await ready(pilot)
        await send(pilot, "Hi!")
        await reply_done(pilot)
    assert engine.closed

    reopened = make_app(ScriptedEngine([HELLO]))
    async with reopened.run_test() as pilot:
        await ready(pilot)
        [user] = reopened.chat_view.query(UserMessage)
        [reply] = reopened.chat_view.query(ReplyView)
        assert user.text == "Hi!" and reply.text == "Hello there. How are you?"
        assert reply.runs == [["Hello", DRAFT], [" there.", TARGET], [" How are", DRAFT], [" you?", TARGET]]
        assert "7 tokens" in str(reply.query_one("#note").render())


@async_test
async def test_errors_are_notifications_not_crashes():
    failing = make_app({})  # no engine for any name: the load fails
    async with failing.run_test() as pilot:
        await until(pilot, lambda: not failing.loading)
        assert failing.engine is None and "no model loaded" in failing.sub_title
        assert any("unknown model 'scripted'" in n for n in notes(failing))
        await send(pilot, "Hi!")
        assert any("No model loaded" in n for n in notes(failing))

    engine = ScriptedEngine([HELLO], fail_with=LocalspecError("the prompt is 5000 tokens but the context holds 4096"))
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "Hi!")
        await until(pilot, lambda: app.reply is None)
        await pilot.pause()
        assert not app.chat_view.query(ReplyView)
        assert any("context holds 4096" in n for n in notes(app))

    full = ScriptedEngine([HELLO], final_stop="context_full")
    app = make_app(full)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "Hi!")
        reply = await reply_done(pilot)
        assert reply.stop_reason == "context_full"
        # Under the rolling window (the default) the reply says how to go on (test_tui_overflow.py).
        assert "context full · f5 continues" in str(reply.query_one("#note").render())
        assert not any("context" in n for n in notes(app))


@async_test
async def test_a_burst_of_keys_is_sent_whole():
    """Keys arriving together (tmux send-keys, fast typists) reach the prompt in
    order: Enter sends only after every character before it is in the text."""
    engine = ScriptedEngine([HELLO])
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        text = "Count 1-3 + more, please"
        for ch in text:
            key = {" ": "space", "-": "minus", "+": "plus", ",": "comma"}.get(ch, ch)
            app.post_message(events.Key(key, ch))
        app.post_message(events.Key("enter", "\r"))
        await reply_done(pilot)
        assert engine.calls == [[{"role": "user", "content": text}]]
        assert engine.draft_max == 4


def test_the_panel_groups_positions_past_eight():
    """Long lookup drafts reach position 63: one panel row per position up to
    8, then the share kept of the drafted tokens in 9-16, 17-32, 33-64."""
    from localspec.events import Counters
    from tui.stats import position_rows

    c = Counters()
    c.record_step(20, 20)  # a 20-token draft kept whole
    c.record_step(20, 10)  # one kept to its 10th token
    rows = position_rows(c)
    assert [label for label, _ in rows] == [str(i) for i in range(1, 9)] + ["9-16", "17-32"]
    assert rows[0][1] == 1.0
    assert rows[8][1] == pytest.approx((8 + 2) / 16)  # positions 9..16: 8 of 8 kept, then 2 of 8
    assert rows[9][1] == pytest.approx(0.5)  # 17..20: the first draft's 4 kept, the second's 4 not


def test_the_panel_bounds_the_network_share_of_verify_by_the_nearest_round_trip():
    """Over RPC each verify step waits on at least one request-reply: steps
    times the smallest measured round trip, over verify time, is a floor."""
    from localspec.events import Counters
    from tui.stats import StatsPanel

    panel = StatsPanel()
    c = Counters()
    for _ in range(10):
        c.record_step(0, 0)
    c.verify_s = 0.5
    assert panel._network_text(c) == ""  # a local target: no line
    panel.round_trips = {"10.0.0.2:50052": 0.004, "10.0.0.3:50052": 0.011}
    assert panel._network_text(c) == "\nrpc round trip 4.00-11.00 ms\nnetwork ≥ 8% of verify"
    panel.round_trips = {"10.0.0.2:50052": 0.004}
    assert panel._network_text(None) == "\nrpc round trip 4.00 ms"
