"""Which part of a conversation the model sees when it outgrows the context.

Under the rolling window (the default overflow policy) the oldest turns
leave the model's context when the next one does not fit: the system prompt
stays, and always the newest user message. The window then starts at a user
message, so the template sees turns in order. It moves rarely and by a lot:
only when a turn would leave its reply less than RESERVE of the context,
and then far enough that the prompt takes at most KEEP of it. Between moves
the start stays where it is, so the cache keeps the whole conversation's
prefix and a new turn processes only its own message.

Moving the start is not cheap on the engine: llama.cpp cannot shift cached
positions for every model (recurrent state, some position encodings), so the
engine reuses what the cache and the new prompt have in common (the system
prompt and the template's preamble) and evaluates the kept turns again, once
per move.

When a reply alone fills the context, continuing it keeps only its last part
(`cut` tokens of it are dropped from the front), after the newest user message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

RESERVE = 1 / 4  # a turn leaves its reply at least this share of the context (or max_tokens)
KEEP = 1 / 2  # after a move the prompt takes at most this share


@dataclass(frozen=True)
class Window:
    start: int  # index in the history of the first message the model sees
    n_prompt: int  # the prompt's tokens
    cut: int = 0  # tokens dropped from the front of the reply being continued


def fit(
    prompt_length: Callable[[int], int],
    roles: Sequence[str],
    start: int,
    n_ctx: int,
    max_tokens: int,
    continuation: int = 0,
) -> Window:
    """The window for the next turn. Its prompt is n_ctx tokens or more when
    even the newest user message (with the system prompt) does not fit.

    `prompt_length(s)`: tokens of the system prompt and history[s:] in the
    template; `roles`: the history's; `start`: where the window began last
    turn; `continuation`: tokens of a reply being continued (after the history).
    """
    users = [i for i, role in enumerate(roles) if role == "user"] or [0]
    starts = [i for i in users if i >= start] or users[-1:]
    reserve = min(max_tokens, int(n_ctx * RESERVE))
    n = prompt_length(starts[0]) + continuation
    if n + reserve <= n_ctx:
        return Window(starts[0], n)
    keep = int(n_ctx * KEEP)
    for s in starts[1:]:
        n = prompt_length(s) + continuation
        if n <= keep:
            return Window(s, n)
    if continuation and n > keep:
        # A reply being continued fills the window on its own: keep its last part.
        cut = min(continuation, n - keep)
        return Window(starts[-1], n - cut, cut)
    return Window(starts[-1], n)


ROLLING, STOP = "rolling", "stop"  # the overflow policies (a chat setting)


@dataclass(frozen=True)
class Turn:
    """What a reply is asked for: the history (role, content), where the window
    began, and the text of a reply being continued (it follows the history)."""

    system: str
    history: list[dict[str, str]]
    start: int
    policy: str
    max_tokens: int
    continuation: str = ""

    def messages(self, start: int) -> list[dict[str, str]]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + self.history[start:]


def choose(engine, turn: Turn) -> Window:
    """The window for `turn` on `engine` (its `chat_tokens` and `n_ctx`): the
    rolling window's, or under "stop" the whole conversation. It does not fit
    when its prompt is n_ctx tokens or more."""
    lengths: dict[int, int] = {}

    def length(s: int) -> int:
        if s not in lengths:
            lengths[s] = len(engine.chat_tokens(turn.messages(s)))
        return lengths[s]

    continuation = 0
    if turn.continuation:
        continuation = len(engine.chat_tokens(turn.messages(turn.start), turn.continuation)) - length(turn.start)
    if turn.policy == STOP:
        return Window(0, length(0) + continuation)
    roles = [m["role"] for m in turn.history]
    return fit(length, roles, turn.start, engine.n_ctx, turn.max_tokens, continuation)
