"""A thinking model's reasoning in the chat: in its own block above the
answer in the Markdown face, streamed and whole (tui/thought.py); the token
face keeps the reply as written. Pure, then a scripted engine, then SmolLM2 given a
template that opens <think>."""

from __future__ import annotations

import json

import pytest
from textual.widgets import Markdown

from localspec.reasoning import END, Reasoning
from test_tui_app import dirs, ready, reply_done, send, until  # noqa: F401,F811 (fixture)
from test_tui_scripted import ScriptedEngine, async_test, scripted_loader, step
from tui.app import ChatApp
from tui.pairs import LoadRequest
from tui.reply import ReplyView
from tui.store import ChatSettings, ChatStore
from tui.thought import reasoning_in, split_reply, stats_of

OPENS = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)
THINKING = [step("First", " the", " sum"), step(".\nThen", " check", " it."), step("\n</think>\n\n", "It", " is 4.")]


@pytest.mark.parametrize(
    "open_, reply, thinking, answer",
    [
        (True, "add them\n\nthen check\n</think>\n\nIt is **4**.", "add them\n\nthen check", "It is **4**."),
        (True, "cut short", "cut short", ""),
        (True, "</think>\nno thoughts", "", "no thoughts"),
        (False, "<think>hmm</think>Hi", "hmm", "Hi"),
        (False, "Hi <think>", "", "Hi <think>"),
    ],
)
def test_a_reply_is_told_into_reasoning_and_answer(open_, reply, thinking, answer):
    assert split_reply(reply, Reasoning(open_)) == (thinking, answer)
    assert split_reply(reply, None) == ("", reply)


def test_while_it_streams_a_beginning_tag_stays_out():
    assert split_reply("so </thi", Reasoning(open=True), ended=False) == ("so", "")
    assert split_reply("<thi", Reasoning(open=False), ended=False) == ("", "")


def test_a_stored_reply_reasons_as_its_stats_say():
    assert reasoning_in(None) is None and reasoning_in({"methods": ["lookup"]}) is None
    assert reasoning_in(stats_of(Reasoning(open=True))) == Reasoning(open=True)
    assert reasoning_in(stats_of(Reasoning(open=False))) == Reasoning(open=False)
    assert stats_of(None) == {}


def app_for(engine: ScriptedEngine) -> ChatApp:
    return ChatApp(
        LoadRequest(target="scripted"), loader=scripted_loader(engine), store=ChatStore(), choices=lambda t: []
    )


def faces(reply: ReplyView) -> tuple[str | None, str]:
    """The reasoning block's text (None while hidden) and the answer's Markdown."""
    thinking = reply.query("#thinking")
    answer = reply.query("Markdown").exclude("#thinking").only_one(Markdown)
    shown = thinking and thinking.only_one(Markdown).display
    return (thinking.only_one(Markdown).source if shown else None), answer.source


@async_test
async def test_a_thinking_reply_streams_its_reasoning_apart(dirs):
    engine = ScriptedEngine([THINKING, THINKING], pause_after=2, chat_template=OPENS)
    app = app_for(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        assert app.reasoning == Reasoning(open=True)
        await pilot.press("ctrl+t")  # Markdown instead of token colours
        await send(pilot, "2 + 2?")
        await until(pilot, engine.paused.is_set)
        await until(pilot, lambda: faces(app.reply) == ("First the sum.\nThen check it.", ""))
        engine.resume.set()
        reply = await reply_done(pilot)
        assert reply.text == "First the sum.\nThen check it.\n</think>\n\nIt is 4."  # the reply as written
        assert faces(reply) == ("First the sum.\nThen check it.", "It is 4.")
        assert reply.stats["reasoning_open"] is True

        # Toggled while it reasons: the whole so far, then the rest streams on.
        engine.resume.clear()
        engine.paused.clear()
        await pilot.press("ctrl+t")
        await send(pilot, "Again?")
        await until(pilot, engine.paused.is_set)
        await pilot.press("ctrl+t")
        await until(pilot, lambda: faces(app.reply) == ("First the sum.\nThen check it.", ""))
        engine.resume.set()
        second = await reply_done(pilot)
        assert faces(second) == ("First the sum.\nThen check it.", "It is 4.")

    reopened = app_for(ScriptedEngine([THINKING]))  # no template: the stored stats tell
    async with reopened.run_test() as pilot:
        await ready(pilot)
        await pilot.press("ctrl+t")
        replies = reopened.chat_view.query(ReplyView)
        assert [faces(r) for r in replies] == [("First the sum.\nThen check it.", "It is 4.")] * 2


@async_test
async def test_a_reply_cut_inside_the_end_tag_continues_without_it(dirs):
    cut = [step("First", " thought"), step(" </th")]
    engine = ScriptedEngine([cut, [step("ink>\n\n"), step("It", " is 4.")]], chat_template=OPENS, final_stop="context_full")
    app = app_for(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        await pilot.press("ctrl+t")
        await send(pilot, "2 + 2?")
        reply = await reply_done(pilot)
        assert faces(reply) == ("First thought </th", "")  # ended there: all of it is reasoning
        engine.final_stop, engine.pause_after = None, 1
        await pilot.press("f5")
        await until(pilot, engine.paused.is_set)
        await until(pilot, lambda: faces(reply) == ("First thought", ""))
        engine.resume.set()
        reply = await reply_done(pilot)
        assert reply.text == "First thought </think>\n\nIt is 4."
        assert faces(reply) == ("First thought", "It is 4.")


@async_test
async def test_a_model_that_does_not_think_is_shown_as_written(dirs):
    engine = ScriptedEngine([[step("a </think> b")]], chat_template=OPENS.replace("<think>\n", ""))
    async with app_for(engine).run_test() as pilot:
        app = await ready(pilot)
        assert app.reasoning is None
        await pilot.press("ctrl+t")
        await send(pilot, "hi")
        reply = await reply_done(pilot)
        assert faces(reply) == (None, "a </think> b")
    async with app_for(ScriptedEngine([THINKING], chat_template=OPENS)).run_test() as pilot:
        app = await ready(pilot)
        await pilot.press("ctrl+t")
        [reply] = app.chat_view.query(ReplyView)
        assert faces(reply) == (None, "a </think> b")  # reopened under a thinking model: still as written


@async_test
async def test_smollm2_with_a_template_that_opens_its_reasoning(dirs, smollm2_path):
    (dirs / "config").mkdir(exist_ok=True)
    (dirs / "config" / "models.toml").write_text(
        f"[models.smollm2-thinking]\nchat_template = {json.dumps(OPENS)}\n\n"
        f"[[models.smollm2-thinking.sources]]\npath = {json.dumps(str(smollm2_path))}\n"
    )
    app = ChatApp(LoadRequest(target="smollm2-thinking", method="lookup"), store=ChatStore(), choices=lambda t: [])
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: not app.loading, timeout=600)
        assert app.engine is not None and app.reasoning == Reasoning(open=True)
        app.settings = ChatSettings(max_tokens=24)
        await pilot.press("ctrl+t")
        await send(pilot, "Count from 1 to 5.")
        reply = await reply_done(pilot, timeout=300)
        assert reply.text.strip() and not reply.text.lstrip().startswith(END)
        thinking, answer = faces(reply)
        assert thinking and thinking in reply.text and answer == reply.text.partition(END)[2].strip()
