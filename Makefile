# `make test` and `make chat` each do the whole set-up on a fresh machine:
# virtualenv, install (llama-cpp-python compiles once, then pip's wheel cache
# serves it), model fetch into the per-user cache, then run.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install models test chat bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(STAMP)

models: install
	$(BIN)/localspec pull smollm2-135m
	$(BIN)/localspec pull qwen2.5-coder

test: models
	$(BIN)/python -m pytest -q
	LOCALSPEC=$(BIN)/localspec bash scripts/tui_tmux_check.sh smollm2-135m lookup

chat: install
	$(BIN)/localspec pull qwen2.5-coder
	$(BIN)/localspec chat

bench: models
	$(BIN)/localspec bench --pair qwen2.5-coder --out docs

clean:
	rm -rf $(VENV) build *.egg-info
