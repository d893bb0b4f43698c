"""What the app loads, and the choices the pair picker offers.

A choice is either a pair from models.toml or, for the model being chatted
with, one of the GGUFs on this machine that can draft for it. Drafts whose
vocabulary llama.cpp would refuse are left out (a pair whose files are not
downloaded yet cannot be checked and is offered; the engine checks it
before loading weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LoadRequest:
    """Arguments for `localspec.engine.load_engine`; None means "the pair's / default"."""

    target: str | None = None
    draft: str | None = None
    pair: str | None = None
    method: str | None = None
    draft_max: int | str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # n_ctx, n_gpu_layers, ... as the CLI gave them

    def describe(self) -> str:
        if self.target:
            return f"{self.target} + {self.draft}" if self.draft else self.target
        return f"pair {self.pair}" if self.pair else "the default pair"

    def load_kwargs(self) -> dict[str, Any]:
        return dict(
            target=self.target,
            draft=self.draft,
            pair=self.pair,
            method=self.method,
            draft_max=self.draft_max,
            **{k: v for k, v in self.extra.items() if v is not None},
        )


@dataclass(frozen=True)
class PairChoice:
    label: str
    detail: str
    request: LoadRequest


def pair_choices(current_target: str | None) -> list[PairChoice]:
    """Pairs from models.toml, then local drafts for `current_target`.

    Reads GGUF headers (vocabularies included), about a second for a few
    models: call it from a worker thread.
    """
    from localspec.inventory import inventory
    from localspec.registry import load_registry
    from localspec.vocab import incompatibility

    reg = load_registry()
    entries = {e.name: e for e in inventory(reg)}
    choices = []
    for pair in reg.pairs.values():
        target = entries.get(pair.target)
        draft = entries.get(pair.draft) if pair.draft else None
        if target and draft and target.info and draft.info and incompatibility(target.info.vocab, draft.info.vocab):
            continue
        models = f"{pair.target} + {pair.draft}" if pair.draft else pair.target
        missing = [e.name for e in (target, draft) if e is not None and e.info is None]
        note = f"; fetches {', '.join(missing)}" if missing else ""
        default = " (default)" if pair.name == reg.default_pair else ""
        choices.append(
            PairChoice(
                f"{pair.name}{default}",
                f"{models} · {pair.method}, k {pair.draft_max}{note}",
                LoadRequest(pair=pair.name),
            )
        )
    current = _entry_for(entries, current_target)
    if current is not None:
        for name in current.drafts:
            choices.append(
                PairChoice(
                    f"{_short(current.name)} + {_short(name)}",
                    "local draft with the same vocabulary · auto",
                    LoadRequest(target=current.name, draft=name, method="auto"),
                )
            )
    return choices


def _entry_for(entries: dict, target: str | None):
    if target is None:
        return None
    if target in entries:
        return entries[target]
    # A model opened by path is named after its file by the engine.
    return next((e for e in entries.values() if e.path is not None and e.path.stem == target and e.info), None)


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1]
