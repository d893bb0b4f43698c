"""The engine settings a benchmark compares, each under a short name.

Fixed-k draft modes set p_min to 0 so the draft model really drafts k tokens
every step (p_min would otherwise stop it early). `draft-pmin` is
llama.cpp's speculative default shape: draft up to 8, stop when the draft's
top token is below 0.75. `draft+lookup` is the same with the n-gram lookup
tried first, so the two rows differ only by the lookup. `lookup` alone
drafts up to 6: its proposals cost nothing to make, but each row costs
verify time and a miss usually loses the whole run of copied tokens.
`mtp` (targets that ship NextN heads) drafts 3 with the heads: their
acceptance falls with depth, and each position costs a head decode.
`plain-rerun` is plain decoding again, at another point of the rotation:
its "speedup" is pure run-to-run noise, the yardstick for every other ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

from localspec.errors import LocalspecError
from localspec.registry import DEFAULT_DRAFT_MAX, DEFAULT_P_MIN


@dataclass(frozen=True)
class Mode:
    name: str
    method: str  # an Engine method: "none", "draft", "lookup", "draft+lookup", "mtp", "auto"
    draft_max: int
    p_min: float

    def describe(self) -> str:
        if self.name == "plain-rerun":
            return "plain decoding again, later in the rotation: the noise yardstick"
        if self.method == "none":
            return "plain decoding (one target token per step)"
        if self.method == "auto":
            return (f"adaptive planner picks drafter and k each step (0..8; lookup longer, up to 63, at the "
                    f"verify sizes calibration measured); p_min {self.p_min}")
        return f"method {self.method}, k = {self.draft_max}, p_min {self.p_min}"


MODES: tuple[Mode, ...] = (
    Mode("plain", "none", 0, 0.0),
    Mode("draft-k1", "draft", 1, 0.0),
    Mode("draft-k3", "draft", 3, 0.0),
    Mode("draft-k6", "draft", 6, 0.0),
    Mode("draft-pmin", "draft", 8, 0.75),
    Mode("lookup", "lookup", 6, 0.0),
    Mode("draft+lookup", "draft+lookup", 8, 0.75),
    Mode("mtp", "mtp", 3, 0.0),
    # What `--method auto` does with the defaults; draft_max is not used by it.
    Mode("auto", "auto", DEFAULT_DRAFT_MAX, DEFAULT_P_MIN),
    Mode("plain-rerun", "none", 0, 0.0),
)
BY_NAME = {m.name: m for m in MODES}


def choose_modes(spec: str | None, methods: tuple[str, ...]) -> tuple[list[Mode], list[str]]:
    """The modes to run on an engine offering `methods`, and notes on any left out.

    With no list, every mode the engine can run (draft modes need a draft
    model; `auto` needs the adaptive planner). Asking by name for a mode the
    engine cannot run is an error.
    """
    if spec is None or spec.strip() == "all":
        runnable = [m for m in MODES if m.method in methods]
        notes = [f"skipped {m.name}: needs {_need(m)}" for m in MODES if m.method not in methods]
        return runnable, notes
    names = list(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or not names:
        raise LocalspecError(f"unknown mode {', '.join(unknown) or '(none given)'}; have: {', '.join(BY_NAME)}")
    modes = [BY_NAME[n] for n in names]
    bad = [m for m in modes if m.method not in methods]
    if bad:
        raise LocalspecError("; ".join(f"mode {m.name} needs {_need(m)}" for m in bad))
    return modes, []


def _need(mode: Mode) -> str:
    if mode.method == "auto":
        return "the adaptive planner"
    if mode.method == "mtp":
        return "a target with MTP heads"
    return "a draft model (--draft NAME_OR_PATH, or a --pair that has one)"


def apply(engine, mode: Mode) -> None:
    engine.method = mode.method
    engine.draft_max = mode.draft_max
    engine.p_min = mode.p_min
    engine.auto_draft = False
