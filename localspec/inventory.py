"""The GGUF models on this machine and which can draft for which.

Registry models, Ollama's store (localspec.ollama) and the usual folders:
the Hugging Face cache, llama.cpp's download cache, LM Studio's folder,
~/models and models.toml's search_paths. `localspec models` prints this, the
chat's pair picker offers from it. Everything here reads GGUF headers
(localspec.gguf_info) rather than loading models, so listing a dozen files
takes about a second and needs no memory.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from localspec import ollama
from localspec.errors import LocalspecError
from localspec.fetch import cached_path
from localspec.gguf_info import GGUFInfo, read_gguf_info
from localspec.registry import ModelSpec, Registry
from localspec.vocab import incompatibility


@dataclass
class Entry:
    name: str
    origin: str  # "registry", "ollama" or "disk"
    path: Path | None
    size: int | None
    info: GGUFInfo | None = None
    error: str | None = None
    drafts: tuple[str, ...] = ()

    def as_json(self) -> dict:
        out: dict = {"name": self.name, "origin": self.origin, "local": self.info is not None,
                     "path": str(self.path) if self.path else None, "size": self.size}  # fmt: skip
        if self.info:
            i = self.info
            out |= {"architecture": i.architecture, "n_params": i.n_params,
                    "context_length": i.context_length, "mtp_layers": i.nextn_predict_layers,
                    "vocab": {"type": i.vocab.type, "n_tokens": i.vocab.n_tokens},
                    "compatible_drafts": list(self.drafts)}  # fmt: skip
        if self.error:
            out["error"] = self.error
        return out


def inventory(reg: Registry) -> list[Entry]:
    """Every registry model, Ollama's models and GGUFs found on disk, drafts filled in for the local ones."""
    entries = []
    for spec in reg.models.values():
        path = cached_path(spec) or _in_ollama(spec)
        entries.append(_read(Entry(spec.name, "registry", path, spec.size), path))
    known = {e.path.resolve() for e in entries if e.path}
    for listed in ollama.list_models():  # tags sharing one blob are each listed: each is a name to run
        name, blob = ollama.PREFIX + listed.name.short(), listed.blob
        if blob is None:
            entries.append(Entry(name, "ollama", None, None, error=listed.error))
        elif blob.path.resolve() not in known:
            entries.append(_read(Entry(name, "ollama", blob.path, blob.size), blob.path))
    known |= {e.path.resolve() for e in entries if e.path}
    for path in discover(reg.search_paths):
        if path.resolve() not in known:
            known.add(path.resolve())
            entries.append(_read(Entry(str(path), "disk", path, path.stat().st_size), path))
    local = [e for e in entries if e.info]
    for t in local:
        assert t.info is not None
        t.drafts = tuple(
            d.name for d in local
            if d is not t and d.info and d.info.file_size < t.info.file_size
            and incompatibility(t.info.vocab, d.info.vocab) is None
        )  # fmt: skip
    return entries


def _in_ollama(spec: ModelSpec) -> Path | None:
    """An `ollama` source's blob, there but not yet checked against its digest (that happens at load)."""
    for source in spec.sources:
        if source.kind == "ollama":
            try:
                blob = ollama.find(source.ref)
            except LocalspecError:
                continue
            if spec.sha256 in (None, blob.digest):  # a pinned sha256 the tag no longer names is not this model
                return blob.path
    return None


def _read(entry: Entry, path: Path | None) -> Entry:
    if path is not None:
        try:
            entry.info = read_gguf_info(path)
            entry.size = entry.info.file_size
        except LocalspecError as e:
            entry.error = str(e)
    return entry


def llama_cache_dir() -> Path:
    """Where llama.cpp's `-hf`/`-mu` downloads go (common.cpp's fs_get_cache_directory)."""
    env = os.environ.get("LLAMA_CACHE")
    if env:
        return Path(env).expanduser()
    if sys.platform == "darwin":
        return Path("~/Library/Caches/llama.cpp").expanduser()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "llama.cpp"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser()) / "llama.cpp"


def discover(extra: list[Path]) -> list[Path]:
    """GGUF files in the usual places: HF cache, llama.cpp's cache, LM Studio, ~/models, search_paths.

    llama.cpp's cache holds flat `owner_repo_file.gguf` downloads (newer
    llama.cpp keeps a Hugging Face cache layout): a recursive search finds either.
    """
    from huggingface_hub import constants

    roots = [Path(constants.HF_HUB_CACHE), llama_cache_dir(), Path("~/.lmstudio/models").expanduser(),
             Path("~/models").expanduser(), *extra]  # fmt: skip
    found: list[Path] = []
    for root in roots:
        if root.is_file() and root.suffix == ".gguf":
            found.append(root)
        elif root.is_dir():
            found += sorted(p for p in root.rglob("*.gguf") if p.is_file())
    return found
