# `make run` sets up .venv and opens the sample project; `make test` sets up and runs every test.
PYTHON ?= python3
VENV ?= .venv
# The CPU build is small and quick to install; for NVIDIA GPUs on Linux use TORCH_SPEC=torch
# (PyPI's default Linux build carries CUDA), or the CUDA variant your driver supports.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup run test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

run: setup
	$(BIN)/segstudio --sample

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
