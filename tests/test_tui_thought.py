"""A thinking model's reasoning in the chat: quoted above the answer in the
Markdown face, streamed and whole (tui/thought.py); the token face keeps the
reply as written. Pure, then a scripted engine, then SmolLM2 given a
template that opens <think>."""

from __future__ import annotations

import json
import random

import pytest
from textual.widgets import Markdown
from textual.widgets._markdown import MarkdownBlockQuote, MarkdownParagraph

from localspec.reasoning import END, Reasoning
from test_tui_app import dirs, ready, reply_done, send, until  # noqa: F401,F811 (fixture)
from test_tui_scripted import ScriptedEngine, async_test, scripted_loader, step
from tui.app import ChatApp
from tui.pairs import LoadRequest
from tui.reply import ReplyView
from tui.store import ChatSettings, ChatStore
from tui.thought import ThoughtMarkdown, markdown_of, reasoning_in

OPENS = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)
THINKING = [step("First", " the", " sum"), step(".\nThen", " check", " it."), step("\n</think>\n\n", "It", " is 4.")]


@pytest.mark.parametrize(
    "open_, reply, markdown",
    [
        (True, "add them\n\nthen check\n</think>\n\nIt is **4**.", "> add them\n> \n> then check\n\nIt is **4**."),
        (True, "cut short", "> cut short"),
        (True, "</think>\nno thoughts", "no thoughts"),
        (False, "<think>hmm</think>Hi", "> hmm\n\nHi"),
        (False, "Hi <think>", "Hi <think>"),
    ],
)
def test_the_reasoning_is_quoted_above_the_answer(open_, reply, markdown):
    assert markdown_of(reply, Reasoning(open_)) == markdown
    rng = random.Random(0)
    for _ in range(30):  # streamed in any pieces, the same Markdown
        cuts = sorted(rng.sample(range(len(reply) + 1), min(len(reply) + 1, 5)))
        thought = ThoughtMarkdown(Reasoning(open_))
        pieces = [reply[a:b] for a, b in zip([0, *cuts], [*cuts, len(reply)])]
        assert "".join(thought.push(p) for p in pieces) + thought.finish() == markdown, pieces


def test_a_stored_reply_shows_its_reasoning_when_it_closed_it():
    assert reasoning_in("plain answer") is None
    assert reasoning_in(f"thought\n{END}\nanswer") == Reasoning(open=True)
    assert reasoning_in(f"<think>thought{END}answer") == Reasoning(open=False)


def app_for(engine: ScriptedEngine) -> ChatApp:
    return ChatApp(
        LoadRequest(target="scripted"), loader=scripted_loader(engine), store=ChatStore(), choices=lambda t: []
    )


@async_test
async def test_a_thinking_reply_streams_its_reasoning_as_a_quote(dirs):
    engine = ScriptedEngine([THINKING], pause_after=2, chat_template=OPENS)
    app = app_for(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        assert app.reasoning == Reasoning(open=True)
        await pilot.press("ctrl+t")  # Markdown instead of token colours
        await send(pilot, "2 + 2?")
        await until(pilot, engine.paused.is_set)
        markdown = app.reply.query_one(Markdown)
        await until(pilot, lambda: markdown.source == "> First the sum.\n> Then check it.")
        await until(pilot, lambda: bool(markdown.query(MarkdownBlockQuote)))
        engine.resume.set()
        reply = await reply_done(pilot)
        assert reply.text == "First the sum.\nThen check it.\n</think>\n\nIt is 4."  # the reply as written
        assert markdown.source == "> First the sum.\n> Then check it.\n\nIt is 4."
        [quote] = markdown.query(MarkdownBlockQuote)
        assert "It is 4." not in str(quote.query(MarkdownParagraph).first().render())

    reopened = app_for(ScriptedEngine([THINKING]))  # no template: the stored text alone tells
    async with reopened.run_test() as pilot:
        await ready(pilot)
        await pilot.press("ctrl+t")
        [reply] = reopened.chat_view.query(ReplyView)
        assert reply.query_one(Markdown).source == "> First the sum.\n> Then check it.\n\nIt is 4."


@async_test
async def test_a_model_that_does_not_think_is_shown_as_written(dirs):
    engine = ScriptedEngine([[step("a </think> b")]], chat_template=OPENS.replace("<think>\n", ""))
    app = app_for(engine)
    async with app.run_test() as pilot:
        await ready(pilot)
        assert app.reasoning is None
        await pilot.press("ctrl+t")
        await send(pilot, "hi")
        reply = await reply_done(pilot)
        assert reply.query_one(Markdown).source == "a </think> b"


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
        markdown = reply.query_one(Markdown)
        assert markdown.source == markdown_of(reply.text, Reasoning(open=True)) and markdown.source.startswith("> ")
        assert markdown.query(MarkdownBlockQuote)
