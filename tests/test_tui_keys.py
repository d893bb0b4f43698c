"""Tuning keys, the pair picker, past chats, settings, help, palette and keymap."""

from __future__ import annotations

from test_tui_app import dirs, make_app, notes, ready, reply_done, send, text_of, until  # noqa: F401 (fixture)
from test_tui_scripted import ScriptedEngine, async_test, scripted_loader, step
from textual.widgets import OptionList

from tui.app import ChatApp
from tui.pairs import LoadRequest, PairChoice
from tui.reply import ReplyView, UserMessage
from tui.screens import HelpScreen, HistoryScreen, PairPickerScreen, SettingsScreen
from tui.store import ChatStore

LONG = [step("a", "b"), step("c"), step("d", "e"), step("f")]


@async_test
async def test_plus_and_minus_change_the_draft_length_of_the_next_steps():
    engine = ScriptedEngine([LONG], pause_after=1, method="draft", draft_max=4)
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "go")
        await until(pilot, engine.paused.is_set)
        await pilot.press("plus", "plus", "minus")
        assert engine.draft_max == 5
        assert "draft length 5" in text_of(app, "#setting")
        engine.resume.set()
        await reply_done(pilot)
        assert [k for _, k in engine.steps_seen] == [4, 5, 5, 5]
        await pilot.press(*["minus"] * 8)
        assert engine.draft_max == 0
        await pilot.press(*["plus"] * 20)
        assert engine.draft_max == 16
        await pilot.press("ctrl+g")  # automatic length: + and - now set the most it may pick
        await pilot.press("minus", "minus")
        assert (engine.draft_max, engine.auto_draft, engine.auto_limit) == (16, True, 6)
        assert "draft length auto ≤ 6" in text_of(app, "#setting")
        await pilot.press("ctrl+g")
        await pilot.press("minus")
        assert (engine.draft_max, engine.auto_limit) == (15, 6)


@async_test
async def test_plus_and_minus_set_the_most_auto_may_draft():
    """Under method auto the planner picks k; + and - bound it (engine.auto_limit,
    0 up to engine.auto_ceiling, the longest draft it could pick)."""
    engine = ScriptedEngine([LONG, LONG], pause_after=1, method="auto")
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("plus")  # already the most there is
        assert engine.auto_limit == 8 and engine.draft_max == 4
        await send(pilot, "go")
        await until(pilot, engine.paused.is_set)
        await pilot.press("minus", "minus", "minus")
        assert engine.auto_limit == 5 and "draft length auto ≤ 5" in text_of(app, "#setting")
        engine.resume.set()
        await reply_done(pilot)
        assert [k for _, k in engine.steps_seen] == [8, 5, 5, 5]
        await pilot.press(*["minus"] * 9)
        assert engine.auto_limit == 0 and "auto ≤ 0" in text_of(app, "#setting")
        await pilot.press("plus")
        assert engine.auto_limit == 1 and engine.draft_max == 4
        engine.auto_ceiling = 16  # a machine whose verify curve is flat lets lookup draft longer
        await pilot.press(*["plus"] * 20)
        assert engine.auto_limit == 16 and "auto ≤ 16" in text_of(app, "#setting")
        # Past 8 the keys step through the lengths whose verify size was measured.
        engine.auto_ceiling, engine.long_lengths = 63, (15, 31, 63)
        await pilot.press("plus")
        assert engine.auto_limit == 31
        await pilot.press("plus", "plus")
        assert engine.auto_limit == 63 and "auto ≤ 63" in text_of(app, "#setting")
        await pilot.press("minus", "minus", "minus")
        assert engine.auto_limit == 8


@async_test
async def test_method_cycles_and_automatic_draft_length_toggles():
    engine = ScriptedEngine([LONG], method="auto")
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        assert "draft length auto ≤ 8" in text_of(app, "#setting")
        seen = []
        for _ in engine.methods:
            await pilot.press("ctrl+f")
            seen.append(engine.method)
            assert f"method {engine.method}" in text_of(app, "#setting")
        assert seen == ["draft", "lookup", "draft+lookup", "none", "auto"]
        await pilot.press("ctrl+f")
        assert engine.method == "draft" and "draft length 4" in text_of(app, "#setting")
        await pilot.press("ctrl+g")
        assert engine.auto_draft and "draft length auto" in text_of(app, "#setting")
        await pilot.press("ctrl+g")
        assert not engine.auto_draft

    no_planner = ScriptedEngine([LONG], methods=("lookup", "none"), method="lookup")
    app = make_app(no_planner)
    async with app.run_test() as pilot:
        await ready(pilot)
        assert app.check_action("auto_draft", ()) is False
        await pilot.press("ctrl+g")
        assert not no_planner.auto_draft


@async_test
async def test_pair_picker_loads_the_chosen_pair():
    first = ScriptedEngine([LONG], target_name="big", draft_name="small")
    second = ScriptedEngine([LONG], target_name="other", draft_name=None, methods=("lookup", "none"), method="lookup")
    asked = []
    choices = [
        PairChoice("pair-a", "big + small", LoadRequest(pair="scripted")),
        PairChoice("pair-b", "other", LoadRequest(pair="pair-b")),
    ]
    loads: list[LoadRequest] = []
    app = ChatApp(
        LoadRequest(target="scripted", extra={"n_ctx": 2048}),
        loader=scripted_loader({"scripted": first, "pair-b": second}, loads),
        store=ChatStore(),
        choices=lambda target: asked.append(target) or choices,
    )
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("f3")
        await until(pilot, lambda: isinstance(app.screen, PairPickerScreen) and app.screen.choices)
        assert asked == ["big"]
        assert app.screen.query_one(OptionList).option_count == 2
        await pilot.press("down", "enter")
        await until(pilot, lambda: app.engine is second)
        assert first.closed and not second.closed
        assert loads[-1] == LoadRequest(pair="pair-b", extra={"n_ctx": 2048})
        assert app.sub_title == "other · lookup"
        await send(pilot, "hello")
        await reply_done(pilot)
        assert second.calls and not first.calls


@async_test
async def test_past_chats_open_and_delete():
    engine = ScriptedEngine([[step("one")], [step("two")]])
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await send(pilot, "first chat")
        await reply_done(pilot)
        await pilot.press("ctrl+n")
        await send(pilot, "second chat")
        await reply_done(pilot)
        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, HistoryScreen))
        options = app.screen.query_one(OptionList)
        assert options.option_count == 2
        await pilot.press("down", "enter")  # the older chat
        await until(pilot, lambda: not isinstance(app.screen, HistoryScreen))
        await pilot.pause()
        assert [m.text for m in app.chat_view.query(UserMessage)] == ["first chat"]
        assert app.chat_view.query(ReplyView).last().text == "one"

        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, HistoryScreen))
        await pilot.press("down", "delete", "escape")  # the open chat is deleted: a new one starts
        await until(pilot, lambda: app.conversation is None)
        assert [c.title for c in app.store.conversations()] == ["second chat"]
        assert not app.chat_view.query(UserMessage)


@async_test
async def test_settings_set_the_system_prompt_and_sampling():
    engine = ScriptedEngine([LONG])
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, SettingsScreen))
        screen = app.screen
        screen.query_one("#system").text = "Answer briefly."
        screen.query_one("#temperature").value = "0.7"
        screen.query_one("#top_p").value = "1.5"
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, SettingsScreen)  # top-p out of range: stays open
        screen.query_one("#top_p").value = "0.9"
        screen.query_one("#top_p").focus()
        await pilot.press("enter")  # Enter in a field saves too
        await until(pilot, lambda: not isinstance(app.screen, SettingsScreen))
        await send(pilot, "hi")
        await reply_done(pilot)
        assert engine.calls[0][0] == {"role": "system", "content": "Answer briefly."}
        sampling = engine.options[0].sampling
        assert (sampling.temp, sampling.top_p) == (0.7, 0.9)
        assert app.store.get(app.conversation.id).settings.system == "Answer briefly."


@async_test
async def test_help_and_palette_list_every_key_and_the_keymap_remaps(dirs):
    config = dirs / "config"
    config.mkdir()
    (config / "keymap.toml").write_text('[keymap]\ncycle_method = "f5"\nno_such_action = "f9"\n')
    engine = ScriptedEngine([LONG])
    app = make_app(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        assert any("no key binding with id 'no_such_action'" in n for n in notes(app))
        await pilot.press("f5")
        assert engine.method == "lookup"
        await pilot.press("ctrl+f")  # the old key no longer cycles
        assert engine.method == "lookup"

        await pilot.press("f1")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        help_text = str(app.screen.query_one("#keys").render())
        ids = app.binding_ids()
        assert {"send", "newline", "cancel", "draft_more", "draft_less", "auto_draft", "cycle_method"} <= ids
        for binding_id in ids:
            assert f"[{binding_id}]" in help_text
        [method_line] = [line for line in help_text.splitlines() if "[cycle_method]" in line]
        assert method_line.startswith("f5 ")
        await pilot.press("escape")

        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        for b in app.own_bindings():
            assert b.tooltip in commands
        commands["Draft one token more per step"].callback()
        assert engine.draft_max == 5
