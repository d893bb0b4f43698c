"""A thinking model's reasoning, shown apart in a reply's Markdown face: as a
block quote above the answer (localspec/reasoning.py tells them apart). The
token face shows the reply as written, tags and all."""

from __future__ import annotations

from localspec.errors import LocalspecError
from localspec.reasoning import END, START, Reasoning


def reasoning_of(engine) -> Reasoning | None:
    """How the loaded model's replies in this chat may reason (the chat gives
    its template no other variables, so one rendering tells)."""
    try:
        prompt = engine.render_chat([{"role": "user", "content": "hi"}])
    except LocalspecError:  # no template: nothing to show apart
        return None
    return Reasoning.of(engine.chat_template, prompt)


def reasoning_in(text: str) -> Reasoning | None:
    """A stored reply's reasoning, read from its text alone: one that closed
    its reasoning shows it; begun by the model or by the prompt."""
    if END not in text:
        return None
    return Reasoning(open=not text.lstrip().startswith(START))


class ThoughtMarkdown:
    """Reply text in, Markdown out, piece by piece: the reasoning quoted, a
    blank line, then the answer."""

    def __init__(self, reasoning: Reasoning):
        self.split = reasoning.split()
        self._quoting = False  # inside the quote: each line must carry its marker
        self._answering = False

    def push(self, text: str) -> str:
        return self._markdown(*self.split.push(text))

    def finish(self) -> str:
        return self._markdown(*self.split.finish())

    def _markdown(self, reasoning: str, answer: str) -> str:
        out = ""
        if reasoning:
            out += ("" if self._quoting else "> ") + reasoning.replace("\n", "\n> ")
            self._quoting = True
        if answer:
            if self._quoting and not self._answering:
                out += "\n\n"
            self._answering = True
            out += answer
        return out


def markdown_of(text: str, reasoning: Reasoning | None) -> str:
    """A whole reply's Markdown (as written when it does not reason)."""
    if reasoning is None:
        return text
    thought = ThoughtMarkdown(reasoning)
    return thought.push(text) + thought.finish()
