"""From what the user typed to a model file: a registry name, a GGUF path or
`ollama:NAME`. Above both localspec.registry (what models.toml says) and
localspec.fetch (getting and checking files), which know nothing of this one.
"""

from __future__ import annotations

from pathlib import Path

from localspec import ollama
from localspec.errors import LocalspecError
from localspec.fetch import cached_path, fetch_model
from localspec.registry import ModelSpec, Registry, Source, load_registry, unknown


def resolve_model(name_or_path: str, registry: Registry | None = None) -> ModelSpec:
    """A registry name, `ollama:NAME`, or a GGUF path (anything that exists or ends in .gguf).

    `path` is set only where the file is known good without hashing; else
    ensure_local finds (and checks) it.
    """
    if name_or_path.startswith(ollama.PREFIX):
        blob = ollama.find(name_or_path.removeprefix(ollama.PREFIX))  # one-line errors: tag, layer, GGUF
        spec = ModelSpec(name=f"{ollama.PREFIX}{blob.name.short()}", path=None, sha256=None, size=blob.size,
                         sources=(Source("ollama", name_or_path.removeprefix(ollama.PREFIX)),))  # fmt: skip
        spec.path = cached_path(spec)
        return spec
    expanded = Path(name_or_path).expanduser()
    if expanded.exists() or name_or_path.lower().endswith(".gguf"):
        if not expanded.is_file():
            raise LocalspecError(f"model file not found: {expanded}")
        return ModelSpec(name=expanded.stem, path=expanded.resolve(), sha256=None, size=None)
    reg = registry or load_registry()
    spec = reg.models.get(name_or_path)
    if spec is None:
        raise LocalspecError(unknown("model", name_or_path, reg.models))
    spec.path = cached_path(spec)
    return spec


def ensure_local(spec: ModelSpec, progress: bool = True) -> Path:
    """The model's verified local file, fetched first if it is not there."""
    spec.path = fetch_model(spec, progress=progress)
    return spec.path
