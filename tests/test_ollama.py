"""Models from Ollama's store and llama.cpp's download cache, on fixture stores
shaped like theirs in a temp dir (manifests + blobs; flat `owner_repo_file.gguf`).
Nothing here reads the tester's own home: HOME, OLLAMA_MODELS, LLAMA_CACHE,
the HF cache and localspec's config and cache all point into tmp_path."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from localspec import fetch, inventory, ollama
from localspec.errors import LocalspecError
from localspec.registry import load_registry
from localspec.resolve import ensure_local, resolve_model

MODEL = "application/vnd.ollama.image.model"
TEMPLATE = "application/vnd.ollama.image.template"
PARAMS = "application/vnd.ollama.image.params"
PROJECTOR = "application/vnd.ollama.image.projector"
TINY_GGUF = b"GGUF" + bytes(range(256)) * 8  # enough for find(): it checks the magic, not the header


def add_model(root: Path, name: str, layers: list[tuple[str, bytes | Path]], digest: str | None = None) -> Path:
    """One model as `ollama pull` leaves it: a blob per layer, named by its
    sha256, and the manifest under manifests/<host>/<namespace>/<model>/<tag>.
    A Path layer becomes a symlink to that file (`digest` saves hashing a big one)."""
    entries = []
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    config = json.dumps({"model_format": "gguf", "model_family": "llama"}).encode()
    for media, content in [("application/vnd.docker.container.image.v1+json", config), *layers]:
        if isinstance(content, Path):
            hexdigest, size = digest or fetch.sha256_file(content), content.stat().st_size
            blob = root / "blobs" / f"sha256-{hexdigest}"
            if not blob.exists():
                blob.symlink_to(content)
        else:
            hexdigest, size = hashlib.sha256(content).hexdigest(), len(content)
            (root / "blobs" / f"sha256-{hexdigest}").write_bytes(content)
        entries.append({"mediaType": media, "digest": f"sha256:{hexdigest}", "size": size})
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": entries[0], "layers": entries[1:]}  # fmt: skip
    path = ollama.Name.parse(name).manifest(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return path


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """Every place a model is looked for, inside tmp_path."""
    from huggingface_hub import constants

    for var, sub in (("HOME", "home"), ("OLLAMA_MODELS", "ollama"), ("LLAMA_CACHE", "llama.cpp"),
                     ("LOCALSPEC_CONFIG_DIR", "config"), ("LOCALSPEC_CACHE_DIR", "cache")):  # fmt: skip
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # read when discover() runs
    return tmp_path


@pytest.mark.parametrize(
    "text, short, parts",
    [
        ("qwen2.5-coder:1.5b", "qwen2.5-coder:1.5b", ("registry.ollama.ai", "library", "qwen2.5-coder", "1.5b")),
        ("smollm2", "smollm2:latest", ("registry.ollama.ai", "library", "smollm2", "latest")),
        ("someone/m:q4", "someone/m:q4", ("registry.ollama.ai", "someone", "m", "q4")),
        ("hf.co/owner/Repo-GGUF:Q4_K_M", "hf.co/owner/Repo-GGUF:Q4_K_M", ("hf.co", "owner", "Repo-GGUF", "Q4_K_M")),
        ("registry.ollama.ai/library/m:t", "m:t", ("registry.ollama.ai", "library", "m", "t")),
        ("localhost:5000/ns/m", "localhost:5000/ns/m:latest", ("localhost:5000", "ns", "m", "latest")),
    ],
)
def test_names_as_ollama_reads_them(text, short, parts):
    name = ollama.Name.parse(text)
    assert (name.host, name.namespace, name.model, name.tag) == parts
    assert name.short() == short
    assert name.manifest(Path("/r")) == Path("/r/manifests", *parts)


@pytest.mark.parametrize("text", ["", "a/b/c/d", "m:", "../m", "m:../x", "a.b/m"])
def test_bad_names_are_refused(text):
    with pytest.raises(LocalspecError, match="bad Ollama model name"):
        ollama.Name.parse(text)


def test_find_and_its_one_line_errors(home):
    root = home / "ollama"
    add_model(root, "m:good", [(MODEL, TINY_GGUF), (TEMPLATE, b"{{ .Prompt }}"), (PARAMS, b"{}")])
    add_model(root, "m:vision", [(PROJECTOR, TINY_GGUF), (TEMPLATE, b"{{ .Prompt }}")])
    add_model(root, "m:weights", [(MODEL, b"\x00safetensors, not GGUF")])
    gone = add_model(root, "m:gone", [(MODEL, b"GGUF deleted since")])
    (root / "blobs" / f"sha256-{hashlib.sha256(b'GGUF deleted since').hexdigest()}").unlink()

    blob = ollama.find("m:good")
    assert blob.path == root / "blobs" / f"sha256-{hashlib.sha256(TINY_GGUF).hexdigest()}"
    assert blob.digest == hashlib.sha256(TINY_GGUF).hexdigest() and blob.size == len(TINY_GGUF)
    assert ollama.find("registry.ollama.ai/library/m:good") == blob
    assert ollama.find("M:GOOD").path == blob.path  # Ollama's names ignore case
    with pytest.raises(LocalspecError, match=r"no Ollama model m:nope in .*; tags here: gone, good, vision, weights"):
        ollama.find("m:nope")
    with pytest.raises(LocalspecError, match=r"m:vision has no GGUF model layer \(its layers: projector, template\)"):
        ollama.find("m:vision")
    with pytest.raises(LocalspecError, match="is not a GGUF file"):
        ollama.find("m:weights")
    with pytest.raises(LocalspecError, match="model blob .* is missing"):
        ollama.find("m:gone")
    gone.write_text("{not json")
    with pytest.raises(LocalspecError, match="is not JSON with a list of layers"):
        ollama.find("m:gone")
    listed = {item.name.short(): item for item in ollama.list_models()}
    assert listed["m:good"].blob == blob
    assert listed["m:vision"].blob is None and "no GGUF model layer" in listed["m:vision"].error


def test_a_blob_is_hashed_once_then_trusted_while_unchanged(home, monkeypatch):
    add_model(home / "ollama", "m:good", [(MODEL, TINY_GGUF)])
    add_model(home / "ollama", "m:same", [(MODEL, TINY_GGUF)])  # a second tag of the same blob
    hashed = []
    real = fetch.sha256_file
    monkeypatch.setattr(fetch, "sha256_file", lambda p: hashed.append(p) or real(p))

    spec = resolve_model("ollama:m:good")
    assert spec.name == "ollama:m:good" and spec.path is None  # not checked yet
    blob = ensure_local(spec, progress=False)
    assert blob == ollama.find("m:good").path and hashed == [blob]
    assert resolve_model("ollama:m:good").path == blob  # known good now, without hashing
    assert ensure_local(resolve_model("ollama:m:same"), progress=False) == blob
    assert hashed == [blob]
    assert blob.read_bytes() == TINY_GGUF  # read, never written


def test_a_corrupt_blob_is_reported_and_left_alone(home):
    add_model(home / "ollama", "m:good", [(MODEL, TINY_GGUF)])
    blob = ollama.find("m:good").path
    blob.write_bytes(TINY_GGUF[:-1] + b"!")  # same name, other bytes
    with pytest.raises(LocalspecError, match="does not match its sha256.*`ollama pull m:good`"):
        ensure_local(resolve_model("ollama:m:good"), progress=False)
    assert blob.exists()


def test_models_toml_ollama_sources(home):
    add_model(home / "ollama", "m:good", [(MODEL, TINY_GGUF)])
    elsewhere = home / "copy.gguf"
    elsewhere.write_bytes(b"GGUF pinned")
    (home / "config" / "models.toml").write_text(
        f"""
[models.mine]
[[models.mine.sources]]
ollama = "m:good"

[models.bypath]
[[models.bypath.sources]]
path = "ollama:m:good"

[models.pinned]
sha256 = "{hashlib.sha256(b'GGUF pinned').hexdigest()}"
[[models.pinned.sources]]
ollama = "m:good"
[[models.pinned.sources]]
path = "{elsewhere}"
"""
    )
    reg = load_registry()
    assert reg.models["bypath"].sources == reg.models["mine"].sources  # no sha256 needed for either
    blob = ollama.find("m:good").path
    assert ensure_local(resolve_model("mine", reg), progress=False) == blob
    assert ensure_local(resolve_model("bypath", reg), progress=False) == blob
    # The tag names other weights than the pinned sha256: the next source serves it.
    assert ensure_local(resolve_model("pinned", reg), progress=False) == elsewhere
    (home / "config" / "models.toml").write_text('[models.x]\n[[models.x.sources]]\nollama = "a/b/c/d"\n')
    with pytest.raises(LocalspecError, match=r"models.toml, line 3: .*'ollama' bad Ollama model name"):
        load_registry()


def test_llama_cache_dir_follows_llama_cpp(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("LLAMA_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert inventory.llama_cache_dir() == tmp_path / ".cache" / "llama.cpp"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert inventory.llama_cache_dir() == tmp_path / "xdg" / "llama.cpp"
    monkeypatch.setenv("LLAMA_CACHE", str(tmp_path / "lc"))
    assert inventory.llama_cache_dir() == tmp_path / "lc"


@pytest.fixture
def stores(home, smollm2_path, tiny_f32_path, tiny_f32_draft_path) -> Path:
    """SmolLM2 in Ollama's store under two tags, a projector-only model beside
    it, a tiny same-vocabulary GGUF in llama.cpp's cache and another in a
    search_paths folder. The SmolLM2 blob is a symlink to the cached file."""
    sha = load_registry().models["smollm2-135m"].sha256
    add_model(home / "ollama", "smollm2:135m", [(MODEL, smollm2_path), (TEMPLATE, b"{{ .Prompt }}")], digest=sha)
    add_model(home / "ollama", "someone/smollm2:alias", [(MODEL, smollm2_path)], digest=sha)
    add_model(home / "ollama", "llava:proj", [(PROJECTOR, TINY_GGUF)])
    (home / "llama.cpp" / "someone_tiny-GGUF_tiny-f32.gguf").symlink_to(tiny_f32_path)
    (home / "llama.cpp" / "someone_tiny-GGUF_tiny-f32.gguf.etag").write_text('"etag"')
    (home / "extra").mkdir()
    (home / "extra" / "draft.gguf").symlink_to(tiny_f32_draft_path)
    (home / "config" / "models.toml").write_text(f'search_paths = ["{home / "extra"}"]\n')
    return home


def test_inventory_lists_ollama_and_the_llama_cpp_cache(stores):
    entries = {e.name: e for e in inventory.inventory(load_registry())}
    tiny = str(stores / "llama.cpp" / "someone_tiny-GGUF_tiny-f32.gguf")
    extra = str(stores / "extra" / "draft.gguf")
    smol = entries["ollama:smollm2:135m"]
    assert smol.origin == "ollama" and smol.info is not None and smol.info.architecture == "llama"
    assert set(smol.drafts) == {tiny, extra}  # smaller, same vocabulary; the other tag is the same size
    assert entries["ollama:someone/smollm2:alias"].drafts == smol.drafts
    assert "no GGUF model layer" in entries["ollama:llava:proj"].error
    assert entries[tiny].origin == entries[extra].origin == "disk"
    assert entries["smollm2-135m"].info is None  # the registry's copy is not in this (empty) cache


def test_the_pair_picker_offers_and_loads_drafts_for_an_ollama_model(stores):
    from tui.engine_thread import load_with_engine
    from tui.pairs import LoadRequest, pair_choices

    tiny = str(stores / "llama.cpp" / "someone_tiny-GGUF_tiny-f32.gguf")
    offered = [c.request for c in pair_choices("ollama:smollm2:135m")]
    request = LoadRequest(target="ollama:smollm2:135m", draft=tiny, method="auto")
    assert request in offered
    engine = load_with_engine(request, lambda stage, fraction: None)
    try:
        assert (engine.target_name, engine.draft_name) == ("ollama:smollm2:135m", Path(tiny).stem)
        assert "draft" in engine.methods
    finally:
        engine.close()


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("XDG_CACHE_HOME", None)
    env |= {"HOME": str(home / "home"), "OLLAMA_MODELS": str(home / "ollama"), "LLAMA_CACHE": str(home / "llama.cpp"),
            "HF_HOME": str(home / "hf"), "HF_HUB_OFFLINE": "1", "LOCALSPEC_CONFIG_DIR": str(home / "config"),
            "LOCALSPEC_CACHE_DIR": str(home / "cache")}  # fmt: skip
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run([sys.executable, "-m", "localspec", *args], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip


def test_run_and_models_on_a_fixture_ollama_store(stores):
    args = ["run", "--target", "ollama:smollm2:135m", "--method", "lookup", "--temp", "0", "--max-tokens", "16",
            "--json", "--prompt", "Count from 1 to 10: 1, 2, 3,"]  # fmt: skip
    first = cli(stores, *args)
    assert first.returncode == 0, first.stderr
    assert "verifying" in first.stderr  # checked against its digest once ...
    out = json.loads(first.stdout)
    assert out["text"] and out["stats"]["n_generated"] > 0
    again = cli(stores, *args)
    assert again.returncode == 0, again.stderr
    assert "verifying" not in again.stderr  # ... then trusted while its size and mtime hold
    assert json.loads(again.stdout)["tokens"] == out["tokens"]
    drafted = cli(stores, "run", "--target", "ollama:smollm2:135m", "--draft", "ollama:someone/smollm2:alias",
                  "--method", "draft", "--max-tokens", "16", "--json", "--prompt", "Say hello.")  # fmt: skip
    assert drafted.returncode == 0, drafted.stderr
    stats = json.loads(drafted.stdout)["stats"]
    assert stats["drafted"] > 0 and stats["accepted"] > 0  # the same weights drafting for themselves

    listed = cli(stores, "models", "--json")
    assert listed.returncode == 0, listed.stderr
    models = {m["name"]: m for m in json.loads(listed.stdout)["models"]}
    smol = models["ollama:smollm2:135m"]
    assert smol["local"] and smol["origin"] == "ollama" and smol["vocab"]["n_tokens"] == 49152
    assert str(stores / "llama.cpp" / "someone_tiny-GGUF_tiny-f32.gguf") in smol["compatible_drafts"]
    text = cli(stores, "models")
    assert text.returncode == 0, text.stderr
    line = next(ln for ln in text.stdout.splitlines() if ln.startswith("ollama:smollm2:135m "))
    assert " local " in line and "someone_tiny-GGUF_tiny-f32.gguf" in line


@pytest.mark.parametrize(
    "target, needle",
    [
        ("ollama:smollm2:nope", "no Ollama model smollm2:nope in"),
        ("ollama:llava:proj", "llava:proj has no GGUF model layer"),
        ("ollama:bad:blob", "is not a GGUF file"),
        ("ollama:a/b/c/d", "bad Ollama model name"),
    ],
)
def test_ollama_mistakes_are_one_line_exit_2(home, target, needle):
    add_model(home / "ollama", "llava:proj", [(PROJECTOR, TINY_GGUF)])
    add_model(home / "ollama", "bad:blob", [(MODEL, b"PK\x03\x04 an adapter, zipped")])
    proc = cli(home, "run", "--target", target, "--method", "lookup", "--prompt", "hi")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr, proc.stderr
