"""A bench run's reference texts: per prompt, the reply plain decoding made.

The hindsight bounds (hindsight.py), the planner's replay (replay.py) and
the scripts that price rules on recorded runs all read the same texts, at
the same prices, from a run's records.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence


class Text(NamedTuple):
    prompt_id: str
    category: str
    prompt: Sequence[int]
    tokens: Sequence[int]  # the reply, as plain decoding made it
    costs: dict  # the cost snapshot the planner had learned by the end of this prompt's runs


def plain_texts(records: list[dict], snapshot: dict | None = None) -> list[Text]:
    """The first plain run's text per prompt, in run order. Results that did
    not record a snapshot per prompt are priced at `snapshot` (the run's, at
    its end); a text that cannot be priced, or has no tokens, is left out."""
    seen: dict[str, Text] = {}
    for r in records:
        costs = r.get("costs") or snapshot
        if r["mode"] == "plain" and r.get("prompt_tokens") and r["tokens"] and costs and r["prompt_id"] not in seen:
            seen[r["prompt_id"]] = Text(r["prompt_id"], r["category"], r["prompt_tokens"], r["tokens"], costs)
    return list(seen.values())
