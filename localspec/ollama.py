"""Ollama's model store, read in place: a name, its manifest, the model's GGUF blob.

The layout, as Ollama writes it (ollama/ollama: envconfig.Models,
manifest/paths.go, types/model/name.go, server/images.go):

    $OLLAMA_MODELS (default ~/.ollama/models)
      manifests/<host>/<namespace>/<model>/<tag>   JSON, {"layers": [{"mediaType", "digest", "size"}, ...]}
      blobs/sha256-<64 hex digits>                 one file per layer, named by its digest

A name is `[host/][namespace/]model[:tag]`; the defaults are
registry.ollama.ai, library and latest. The weights are the layer of media
type application/vnd.ollama.image.model, a GGUF; the other layers (template,
params, license, projector, adapter) are not needed, as the GGUF carries its
own chat template. Nothing here writes to the store: blobs are Ollama's, used
where they lie. Checking a blob against its digest is fetch.py's job (it keeps
the verdict, as for its other in-place sources).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from localspec.errors import LocalspecError

PREFIX = "ollama:"  # how a model from Ollama's store is named on the command line
MODEL_LAYER = "application/vnd.ollama.image.model"
DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG = "registry.ollama.ai", "library", "latest"
# Ollama's own part rules (types/model/name.go): letters, digits, _ - . (no dot
# in a namespace; a host may carry a port). They also keep a name from
# reaching outside manifests/ (no "..", no empty part).
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*")
_DIGEST = re.compile(r"sha256[:-]([0-9a-f]{64})")


def store_root() -> Path:
    env = os.environ.get("OLLAMA_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".ollama" / "models"


@dataclass(frozen=True)
class Name:
    host: str
    namespace: str
    model: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> Name:
        rest, tag = text, DEFAULT_TAG
        if text.rfind(":") > text.rfind("/"):  # a host's port comes before a slash, a tag after
            rest, tag = text.rsplit(":", 1)
        parts = rest.split("/")
        if len(parts) > 3:
            raise LocalspecError(f"bad Ollama model name {text!r}: expected [host/][namespace/]model[:tag]")
        host, namespace, model = [DEFAULT_HOST, DEFAULT_NAMESPACE][: 3 - len(parts)] + parts
        ok = _HOST.fullmatch(host) and _PART.fullmatch(namespace) and "." not in namespace
        if not (ok and _PART.fullmatch(model) and _PART.fullmatch(tag)):
            raise LocalspecError(f"bad Ollama model name {text!r}: expected [host/][namespace/]model[:tag]")
        return cls(host, namespace, model, tag)

    def short(self) -> str:
        """As `ollama list` shows it: the default host and namespace left out."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    def manifest(self, root: Path) -> Path:
        return root / "manifests" / self.host / self.namespace / self.model / self.tag


@dataclass(frozen=True)
class Blob:
    """A model's GGUF in the store; `digest` is the sha256 its file is named by."""

    name: Name
    path: Path
    digest: str
    size: int | None  # as the manifest gives it


@dataclass(frozen=True)
class Listed:
    name: Name
    blob: Blob | None
    error: str | None = None


def find(text: str, root: Path | None = None) -> Blob:
    """The model blob of the Ollama model `text` names; one-line errors for what is not there."""
    root = root or store_root()
    name = Name.parse(text)
    manifest = name.manifest(root)
    if not manifest.is_file():
        # Ollama compares names ignoring case; its files keep the case they were pulled with.
        wanted = name.short().lower()
        same = [m for m in list_manifests(root) if _name_of(m, root).short().lower() == wanted]
        if not same:
            tags = sorted(p.name for p in manifest.parent.glob("*") if p.is_file())
            have = f"; tags here: {', '.join(tags)}" if tags else ""
            raise LocalspecError(f"no Ollama model {name.short()} in {root}{have}")
        name, manifest = _name_of(same[0], root), same[0]
    return _model_blob(name, manifest, root)


def list_models(root: Path | None = None) -> list[Listed]:
    """Every model in the store, with its blob or why it has none usable here."""
    root = root or store_root()
    out = []
    for manifest in list_manifests(root):
        name = _name_of(manifest, root)
        try:
            out.append(Listed(name, _model_blob(name, manifest, root)))
        except LocalspecError as e:
            out.append(Listed(name, None, str(e)))
    return out


def list_manifests(root: Path) -> list[Path]:
    # manifests/<host>/<namespace>/<model>/<tag>, as Ollama's own listing globs it
    return sorted(p for p in (root / "manifests").glob("*/*/*/*") if p.is_file())


def _name_of(manifest: Path, root: Path) -> Name:
    return Name(*manifest.relative_to(root / "manifests").parts)


def _model_blob(name: Name, manifest: Path, root: Path) -> Blob:
    try:
        layers = json.loads(manifest.read_text(encoding="utf-8"))["layers"]
        kinds = [layer["mediaType"] for layer in layers]
    except (OSError, ValueError, KeyError, TypeError):
        raise LocalspecError(f"Ollama manifest {manifest} is not JSON with a list of layers") from None
    models = [layer for layer in layers if layer["mediaType"] == MODEL_LAYER]
    if not models:
        shown = ", ".join(sorted({k.removeprefix("application/vnd.ollama.image.") for k in kinds})) or "none"
        raise LocalspecError(f"Ollama model {name.short()} has no GGUF model layer (its layers: {shown})")
    layer = models[-1]  # Ollama's loader (server/images.go) keeps the last one too
    match = _DIGEST.fullmatch(str(layer.get("digest", "")))
    if match is None:
        raise LocalspecError(f"Ollama manifest {manifest}: the model layer's digest is not a sha256")
    path = root / "blobs" / f"sha256-{match[1]}"
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError:
        raise LocalspecError(f"Ollama model {name.short()}: its model blob {path} is missing") from None
    if magic != b"GGUF":
        raise LocalspecError(
            f"Ollama model {name.short()}: {path} is not a GGUF file (Ollama also stores projectors, "
            "adapters and safetensors weights); localspec runs GGUF models"
        )
    size = layer.get("size")
    return Blob(name, path, match[1], size if isinstance(size, int) else None)
