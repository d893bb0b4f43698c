"""A thinking model's reasoning, told apart from its answer.

Qwen3, Qwen3.5, DeepSeek-R1, Nemotron and their kin write their reasoning
between <think> and </think> at the start of a reply. Their chat templates
either open the tag at the end of the prompt, so the reply begins inside it
("open": Qwen3.5, R1), or leave the model to write it (Qwen3). A reply cut
short inside the tag is all reasoning; reasoning anywhere but at the start is
answer text, as llama.cpp reads it.

`ReasoningSplit` reads a reply, whole or piece by piece, into its reasoning
(trimmed, as llama-server returns `reasoning_content`) and its answer (the
space between the end tag and the answer dropped; an answer with no
reasoning before it is kept as written); `around` lets a grammar that
holds the answer (a forced tool call, a response_format) leave the
reasoning free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from localspec.gbnf import until_rules

START, END = "<think>", "</think>"
_WS = " \t\n\r"


@dataclass(frozen=True)
class Reasoning:
    """How a reply may reason: `open` when its prompt ends inside <think>."""

    open: bool

    @classmethod
    def of(cls, template: str | None, prompt: str) -> Reasoning | None:
        """How the reply to `prompt` (rendered by `template`) may reason: None
        unless the template writes the tags anywhere (to show or drop earlier
        turns' reasoning, or to open it for the reply)."""
        if not template or (START not in template and END not in template):
            return None
        return cls(open=prompt.rstrip().endswith(START))

    def split(self) -> ReasoningSplit:
        return ReasoningSplit(self.open)

    def around(self, gbnf: str, root: str = "root") -> tuple[str, str]:
        """(`gbnf` with rules added, the name of their root): any reasoning,
        then what `root` allows. Open, the reply must close the reasoning
        first; otherwise it may begin with a whole <think>..</think> or with
        the answer at once. The added rules are named apart from gbnf's (a
        JSON schema's converter names rules after properties, "reasoning" among them)."""
        name, n = "reasoning", 0
        while re.search(rf"^\s*{name}-", gbnf, re.M):
            n += 1
            name = f"reasoning{n}"
        text, ws = f"{name}-text", f"{name}-ws"
        rules = [*until_rules(text, END), rf"{ws} ::= [ \t\n]{{0,20}}"]
        body = f'{text} "{END}" {ws} {root}'
        if self.open:
            rules.append(f"{name}-root ::= {body}")
        else:
            rules.append(f'{name}-root ::= {ws} "{START}" {body} | {root}')
        return gbnf.rstrip("\n") + "\n" + "\n".join(rules) + "\n", f"{name}-root"


class ReasoningSplit:
    """Reads a reply's text as it comes: `push` returns the (reasoning, answer)
    text it can tell apart so far, `finish` the rest. Text that could still be
    the beginning of a tag, or whitespace that could still be trimmed, waits."""

    def __init__(self, open: bool):
        self.state = "reasoning" if open else "start"  # then "reasoning", "after" (the tag closed), "answer"
        self._held = ""
        self._reasoned = False  # reasoning text has been given out, so whitespace is no longer leading
        self.thought = open  # the reply had reasoning (so far as is known)

    @property
    def deciding(self) -> bool:
        """Whether it is not yet known if the reply begins with reasoning."""
        return self.state == "start"

    @property
    def answering(self) -> bool:
        """Whether the reasoning is over (or there was none): what comes is answer."""
        return self.state in ("after", "answer")

    def push(self, text: str) -> tuple[str, str]:
        held, self._held = self._held + text, ""
        if self.state == "start":
            lead = held.lstrip(_WS)
            if lead.startswith(START):
                self.state, held, self.thought = "reasoning", lead[len(START) :], True
            elif START.startswith(lead):
                self._held = held
                return "", ""
            else:
                self.state = "answer"
        if self.state == "reasoning":
            if not self._reasoned:
                held = held.lstrip(_WS)
            end = held.find(END)
            if end < 0:
                keep = _open_tail(held)
                self._held, held = held[len(held) - keep :], held[: len(held) - keep]
                self._reasoned = self._reasoned or bool(held)
                return held, ""
            self.state, reasoning, held = "after", held[:end].rstrip(_WS), held[end + len(END) :]
            answer = self.push(held)[1] if held else ""
            return reasoning, answer
        if self.state == "after":
            held = held.lstrip(_WS)
            if held:
                self.state = "answer"
        return "", held

    def finish(self) -> tuple[str, str]:
        held, self._held = self._held, ""
        if self.state == "start":
            self.state = "answer"
            return "", held
        if self.state == "reasoning":
            return held.rstrip(_WS), ""
        return "", held


def reasoning_tokens(reasoning: Reasoning, pieces: Sequence[str]) -> int:
    """How many of a reply's tokens are reasoning (OpenAI's usage counts
    them): those that begin before its answer. `pieces` is the text each
    token added (a token that ends mid-character adds "")."""
    text = "".join(pieces)
    split = reasoning.split()
    (_, answer), (_, rest) = split.push(text), split.finish()
    if not split.answering:  # it never left its reasoning
        return len(pieces)
    answer_at = len(text) - len(answer + rest)
    n, at = 0, 0
    for piece in pieces:
        if at >= answer_at:
            break
        n, at = n + 1, at + len(piece)
    return n


def _open_tail(text: str) -> int:
    """How many characters at the end of `text` must wait: trailing whitespace
    (trimmed if the reasoning ends there) and a beginning of END after it."""
    for n in range(min(len(END) - 1, len(text)), 0, -1):
        if END.startswith(text[-n:]):
            break
    else:
        n = 0
    rest = text[: len(text) - n]
    return n + len(rest) - len(rest.rstrip(_WS))
