"""The benchmark's prompts: shipped subsets of public sets, by category.

Every prompt is one chat message from the user (first turn only), so every
mode and every category goes through the same chat template.
"""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import dataclass

from localspec.errors import LocalspecError

SPEC_BENCH_CATEGORIES = (
    "writing",
    "roleplay",
    "reasoning",
    "math",
    "coding",
    "extraction",
    "stem",
    "humanities",
    "translation",
    "summarization",
    "qa",
    "math_reasoning",
    "rag",
)
CODE_GENERATION = "code-generation"  # HumanEval
EXTRA_CATEGORIES = ("code-edit", "structured")
CATEGORIES = SPEC_BENCH_CATEGORIES + (CODE_GENERATION,) + EXTRA_CATEGORIES

HUMANEVAL_INSTRUCTION = "Complete the following Python function. Return the whole function.\n\n```python\n{code}```"


@dataclass(frozen=True)
class Prompt:
    id: str  # unique across sets: "spec-bench/81", "humaneval/HumanEval/0", "extra/edit-1"
    category: str
    text: str


# Run before the timed prompts to warm the caches and the planner; never timed,
# and none of the sets', so no timed prompt's text is met before its own runs.
WARM_UP = Prompt(id="warm-up", category="warm-up", text="Write a short poem about the sea.")


def _lines(name: str) -> list[dict]:
    data = importlib.resources.files("localspec.bench").joinpath("data", name)
    return [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]


def all_prompts() -> list[Prompt]:
    out = [
        Prompt(f"spec-bench/{q['question_id']}", q["category"], q["turns"][0])
        for q in _lines("spec_bench_question.jsonl")
    ]
    out += [
        Prompt(f"humaneval/{t['task_id']}", CODE_GENERATION, HUMANEVAL_INSTRUCTION.format(code=t["prompt"]))
        for t in _lines("HumanEval.jsonl")
    ]
    out += [Prompt(f"extra/{e['id']}", e["category"], e["prompt"]) for e in _lines("localspec_extra.jsonl")]
    return out


def parse_categories(spec: str | None) -> tuple[str, ...]:
    """A comma-separated list of category names; None or "all" for every one."""
    if spec is None or spec.strip() == "all":
        return CATEGORIES
    wanted = tuple(dict.fromkeys(c.strip() for c in spec.split(",") if c.strip()))
    unknown = [c for c in wanted if c not in CATEGORIES]
    if unknown or not wanted:
        raise LocalspecError(
            f"unknown categor{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown) or '(none given)'}; "
            f"have: {', '.join(CATEGORIES)}"
        )
    return wanted


def select(categories: tuple[str, ...], per_category: int) -> list[Prompt]:
    """Up to `per_category` prompts of each category, round-robin over categories:
    prompt 1 of every category, then prompt 2, ... so a run stopped early still
    covers every category."""
    by_cat: dict[str, list[Prompt]] = {c: [] for c in categories}
    for p in all_prompts():
        if p.category in by_cat and len(by_cat[p.category]) < per_category:
            by_cat[p.category].append(p)
    out: list[Prompt] = []
    for i in range(per_category):
        out += [ps[i] for ps in by_cat.values() if i < len(ps)]
    return out
