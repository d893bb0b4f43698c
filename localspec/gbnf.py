"""GBNF text that several grammars share (llama.cpp's grammar format)."""

from __future__ import annotations


def until_rules(name: str, delimiter: str) -> list[str]:
    """Rules `name`, `name-1`, ..: any text in which `delimiter` does not
    occur. State i has just read the delimiter's first i characters; the
    character that would complete it has no way on (llama.cpp builds the
    same automaton for its `until`, common/peg-parser.cpp)."""

    def state(i: int) -> str:
        return name if i == 0 else f"{name}-{i}"

    def after(i: int, c: str) -> int:  # the longest prefix of delimiter that ends delimiter[:i] + c
        read = delimiter[:i] + c
        return next(k for k in range(len(read), -1, -1) if read.endswith(delimiter[:k]))

    rules = []
    for i in range(len(delimiter)):
        ways, named = [], set()
        for c in sorted(set(delimiter)):
            to = after(i, c)
            if to:
                named.add(c)
                if to < len(delimiter):
                    ways.append(f"[{_class_char(c)}] {state(to)}")
        others = "".join(_class_char(c) for c in sorted(named))
        rules.append(f"{state(i)} ::= | {' | '.join([*ways, f'[^{others}] {state(0)}'])}")
    return rules


def _class_char(c: str) -> str:
    """`c` inside a GBNF [class] (llama.cpp's parser takes only these escapes; ^ by its code, as it could come first)."""
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r", "]": "\\]", "-": "\\-", "\\": "\\\\", "^": "\\x5E"}.get(c, c)
