# `make test` and `make chat` each do the whole set-up on a fresh machine:
# virtualenv, install (llama-cpp-python compiles once, then pip's wheel cache
# serves it), model fetch into the per-user cache, then run.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install models test test-fast chat bench clean

# llama-cpp-python is built by localspec/llama_build.py, not by pip's resolver:
# AMX off for GCC < 13 on x86, and a wheel folder keyed by CPU, compiler and
# CMAKE_ARGS instead of pip's cache. It runs on every install and rebuilds only
# when the venv's build does not match this machine.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m localspec.llama_build
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $@

install: $(STAMP)
	$(BIN)/python -m localspec.llama_build

models: install
	$(BIN)/localspec pull smollm2-135m
	$(BIN)/localspec pull qwen2.5-coder

test: models
	$(BIN)/python -m pytest -q
	LOCALSPEC=$(BIN)/localspec bash scripts/tui_tmux_check.sh smollm2-135m lookup

# The pure tests (no GGUF model runs): about 1.5 minutes on 2 cores, for development.
test-fast: install
	$(BIN)/python -m pytest -q -m "not models and not slow"

chat: install
	$(BIN)/localspec pull qwen2.5-coder
	$(BIN)/localspec chat

bench: models
	$(BIN)/localspec bench --pair qwen2.5-coder --out docs

clean:
	rm -rf $(VENV) build *.egg-info
