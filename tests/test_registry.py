from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from localspec.errors import LocalspecError
from localspec.registry import DEFAULT_N_CTX, load_registry, resolve_pair
from localspec.resolve import resolve_model

SHA = "ab" * 32


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    cfg = tmp_path / "config"
    cfg.mkdir()
    monkeypatch.setenv("LOCALSPEC_CONFIG_DIR", str(cfg))
    monkeypatch.setenv("LOCALSPEC_CACHE_DIR", str(tmp_path / "cache"))
    return cfg


def write_user(user_dir: Path, text: str) -> Path:
    path = user_dir / "models.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_registry(user_dir):
    reg = load_registry()
    assert {"smollm2-135m", "qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"} <= set(reg.models)
    assert reg.default_pair == "qwen2.5-coder"
    pair = resolve_pair()
    assert (pair.target, pair.draft, pair.method) == ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "auto")
    parts = reg.models["qwen2.5-coder-1.5b"].sources[0]
    assert (parts.kind, parts.count) == ("pypi_parts", 22)
    assert resolve_pair("smollm2-self").draft is None


def test_root_models_toml_is_the_shipped_file():
    root = Path(__file__).resolve().parent.parent
    assert (root / "models.toml").resolve() == (root / "localspec" / "models.toml").resolve()


def test_user_file_replaces_entries_and_adds_new_ones(user_dir, tmp_path):
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF")
    write_user(
        user_dir,
        f"""
        default_pair = "mine"
        search_paths = ["~/somewhere"]

        [models.smollm2-135m]
        sha256 = "{SHA}"
        n_ctx = 1024
        n_gpu_layers = 0
        chat_template = "{{{{ messages }}}}"
        [[models.smollm2-135m.sources]]
        path = "{gguf}"

        [pairs.mine]
        target = "qwen2.5-coder-1.5b"
        draft = "smollm2-135m"
        draft_max = 8
        """,
    )
    reg = load_registry()
    mine = reg.models["smollm2-135m"]
    # the user's entry replaces ours whole: no inherited size or pypi source
    assert (mine.sha256, mine.n_ctx, mine.n_gpu_layers, mine.size) == (SHA, 1024, 0, None)
    assert mine.chat_template == "{{ messages }}"
    assert [s.kind for s in mine.sources] == ["path"]
    assert "qwen2.5-coder-0.5b" in reg.models  # untouched entries stay
    assert reg.default_pair == "mine"
    pair = resolve_pair(registry=reg)
    assert (pair.draft, pair.method, pair.draft_max, pair.p_min) == ("smollm2-135m", "draft", 8, 0.75)
    assert reg.search_paths == [Path("~/somewhere").expanduser()]
    assert reg.files[-1] == user_dir / "models.toml"


def test_malformed_toml_names_file_and_line(user_dir):
    path = write_user(user_dir, '[models.x]\nsha256 = "unterminated\n')
    with pytest.raises(LocalspecError) as e:
        load_registry()
    assert str(path) in str(e.value) and "line 2" in str(e.value)


def test_unknown_key_names_file_line_and_key(user_dir):
    path = write_user(
        user_dir,
        f"""
        [models.m]
        sha256 = "{SHA}"
        n_ctxx = 8
        [[models.m.sources]]
        pypi = "m==1"
        member = "m/m.gguf"
        """,
    )
    with pytest.raises(LocalspecError) as e:
        load_registry()
    msg = str(e.value)
    assert str(path) in msg and "line 4" in msg and "'n_ctxx'" in msg and "unknown" in msg


@pytest.mark.parametrize(
    "body, key",
    [
        ('[pairs.p]\ntarget = "smollm2-135m"\nmethod = "draft"\n', "draft"),
        ('[pairs.p]\ntarget = "smollm2-135m"\nmethod = "lookup"\ndraft = "smollm2-135m"\n', "draft"),
        ('[pairs.p]\ntarget = "smollm2-135m"\nmethod = "guess"\n', "method"),
        ('[pairs.p]\ntarget = "smollm2-135m"\nmethod = "lookup"\np_min = 2.0\n', "p_min"),
        ('[pairs.p]\ntarget = "smollm2-135m"\nrpc = "h:1"\n', "rpc"),
        ('[pairs.p]\ntarget = "smollm2-135m"\nrpc = ["h"]\n', "rpc"),
        ('[models.m]\nn_ctx = "big"\n[[models.m.sources]]\npath = "/x.gguf"\n', "n_ctx"),
        ('[models.m]\n[[models.m.sources]]\npypi = "m==1"\nmember = "m.gguf"\n', "sha256"),
        (f'[models.m]\nsha256 = "{SHA}"\n[[models.m.sources]]\npypi = "m==1"\n', "member"),
        (f'[models.m]\nsha256 = "{SHA}"\n[[models.m.sources]]\npypi = "m==1"\nhf = "a/b"\n', "sources"),
    ],
)
def test_invalid_entries_name_the_key(user_dir, body, key):
    write_user(user_dir, body)
    with pytest.raises(LocalspecError, match=f"'{key}'"):
        load_registry()


def test_a_pair_may_put_its_target_on_rpc_servers(user_dir):
    write_user(user_dir, '[pairs.p]\ntarget = "smollm2-135m"\nrpc = ["10.0.0.2:50052", "10.0.0.3:50052"]\n')
    assert load_registry().pairs["p"].rpc == ("10.0.0.2:50052", "10.0.0.3:50052")
    assert load_registry().pairs["qwen2.5-coder"].rpc == ()


def test_pair_naming_unknown_model(user_dir):
    write_user(user_dir, '[pairs.p]\ntarget = "smollm2-135"\n')
    with pytest.raises(LocalspecError, match="did you mean smollm2-135m"):
        load_registry()


def test_unknown_name_suggests_closest(user_dir):
    with pytest.raises(LocalspecError) as e:
        resolve_model("qwen2.5-coder-1.5")
    assert "unknown model 'qwen2.5-coder-1.5'" in str(e.value)
    assert "qwen2.5-coder-1.5b" in str(e.value)
    with pytest.raises(LocalspecError, match="unknown pair 'qwen-coder'.*qwen2.5-coder"):
        resolve_pair("qwen-coder")


def test_named_model_not_fetched_has_no_path(user_dir):
    spec = resolve_model("smollm2-135m")
    assert spec.path is None and spec.n_ctx == DEFAULT_N_CTX


def test_path_with_tilde(user_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    spec = resolve_model("~/m.gguf")
    assert spec.path == (tmp_path / "m.gguf").resolve()
    assert spec.name == "m" and spec.sha256 is None
    other = tmp_path / "weights.bin"  # an existing file counts as a path whatever its name
    other.write_bytes(b"GGUF")
    assert resolve_model(str(other)).path == other.resolve()


def test_missing_path(user_dir, tmp_path):
    missing = tmp_path / "nope.gguf"
    with pytest.raises(LocalspecError, match=f"model file not found: {missing}"):
        resolve_model(str(missing))


def test_relative_paths_are_relative_to_the_user_file(user_dir):
    write_user(
        user_dir,
        f"""
        search_paths = ["ggufs"]
        [models.local]
        sha256 = "{SHA}"
        [[models.local.sources]]
        path = "ggufs/local.gguf"
        """,
    )
    reg = load_registry()
    assert reg.models["local"].sources[0].ref == str(user_dir / "ggufs" / "local.gguf")
    assert reg.search_paths == [user_dir / "ggufs"]
