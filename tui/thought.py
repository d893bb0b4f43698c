"""A thinking model's reasoning, shown apart in a reply's Markdown face: in
its own block above the answer (localspec/reasoning.py tells them apart).
The token face shows the reply as written, tags and all."""

from __future__ import annotations

from localspec.errors import LocalspecError
from localspec.reasoning import END, START, Reasoning

STATS_KEY = "reasoning_open"  # in a stored reply's stats: how it reasoned (absent: it did not)


def shown_tags(engine, reasoning: Reasoning | None) -> frozenset[int]:
    """The reasoning tags' token ids, for a reply that must show them to be told apart."""
    return engine.single_tokens((START, END)) if reasoning else frozenset()


def reasoning_of(engine) -> Reasoning | None:
    """How the loaded model's replies in this chat may reason (the chat gives
    its template no other variables, so one rendering tells)."""
    try:
        prompt = engine.render_chat([{"role": "user", "content": "hi"}])
    except LocalspecError:  # no template, or one that renders nothing: each reply will say so
        return None
    return Reasoning.of(engine.chat_template, prompt)


def reasoning_in(stats: dict | None) -> Reasoning | None:
    """A stored reply's, as its stats recorded it."""
    opened = (stats or {}).get(STATS_KEY)
    return Reasoning(open=opened) if isinstance(opened, bool) else None


def stats_of(reasoning: Reasoning | None) -> dict:
    return {STATS_KEY: reasoning.open} if reasoning else {}


def split_reply(text: str, reasoning: Reasoning | None, ended: bool = True) -> tuple[str, str]:
    """(reasoning, answer) of a reply's text; not `ended`, what may still be
    the beginning of a tag stays out, as it does while the reply streams."""
    if reasoning is None:
        return "", text
    split = reasoning.split()
    r, a = split.push(text)
    r2, a2 = split.finish() if ended else ("", "")
    return r + r2, a + a2
