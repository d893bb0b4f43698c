"""Model files the tests run on: real GGUFs from the per-user cache (fetched
by `make models`, or here on first use) and tiny ones written by fixtures."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from localspec.resolve import ensure_local, resolve_model

# Calibrations made under the suite's load (and of its fixture files) go to a
# file of the run's own, inherited by the CLI and server processes it starts.
os.environ.setdefault(
    "LOCALSPEC_CALIBRATION_FILE", os.path.join(tempfile.mkdtemp(prefix="localspec-tests-"), "calibration.json")
)
# The tester's own Ollama models and llama.cpp downloads must not turn up in
# what `localspec models` and the pair picker list under test: empty stand-ins
# (tests/test_ollama.py builds its own stores).
_EMPTY = tempfile.mkdtemp(prefix="localspec-tests-stores-")
os.environ["OLLAMA_MODELS"] = os.path.join(_EMPTY, "ollama")
os.environ["LLAMA_CACHE"] = os.path.join(_EMPTY, "llama.cpp")

MODEL_FIXTURES = {"smollm2_path", "qwen_target_path", "qwen_draft_path", "tiny_f32_path", "tiny_f32_draft_path",
                  "tiny_mtp_path"}  # fmt: skip


def pytest_collection_modifyitems(config, items):
    # `make test-fast` deselects these: every test that runs a model says so
    # through its fixtures (or marks itself `models` when it starts one by name).
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.models)


def _model(name: str) -> Path:
    return ensure_local(resolve_model(name), progress=False)


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return _model("smollm2-135m")


@pytest.fixture(scope="session")
def qwen_target_path() -> Path:
    return _model("qwen2.5-coder-1.5b")


@pytest.fixture(scope="session")
def qwen_draft_path() -> Path:
    return _model("qwen2.5-coder-0.5b")


@pytest.fixture(scope="session")
def tiny_f32_path(tmp_path_factory, smollm2_path) -> Path:
    from gguf_fixtures import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny-f32-s0.gguf", vocab_from=smollm2_path, seed=0)


@pytest.fixture(scope="session")
def tiny_f32_draft_path(tmp_path_factory, smollm2_path) -> Path:
    """Another random tiny model with the same vocabulary: a draft that is often wrong."""
    from gguf_fixtures import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny-f32-s1.gguf", vocab_from=smollm2_path, seed=1)


@pytest.fixture(scope="session")
def tiny_mtp_path(tmp_path_factory, smollm2_path) -> Path:
    """A tiny hybrid (Qwen3.5-architecture) model with one MTP head."""
    from gguf_fixtures import write_tiny_qwen35_mtp

    return write_tiny_qwen35_mtp(tmp_path_factory.mktemp("gguf") / "tiny-qwen35-mtp.gguf", vocab_from=smollm2_path)
