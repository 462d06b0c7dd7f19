# Two commands on a fresh clone:  `make run` (server on the embedded default)  and  `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch first and pinned, so pip never resolves a newer (multi-GB CUDA) build.
TORCH := torch==2.13.0

.PHONY: run test check bench clean system-packages

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools<81" wheel

$(VENV)/.run-stamp: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-stamp: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[torch,test]"
	touch $@ $(VENV)/.run-stamp

run: $(VENV)/.run-stamp
	$(BIN)/python server.py $(ARGS)

check: $(VENV)/.test-stamp
	$(BIN)/ruff check mirage tests bench examples server.py
	$(BIN)/ruff format --check mirage tests bench examples server.py
	$(BIN)/mypy

# The Debian packages the tests use (espeak-ng, chromium, nginx ...): installed when
# root, else one line naming them and make stops before the first test.
system-packages:
	@sh scripts/system-packages.sh

# The GPU rehearsal's device-like venv is installed here (cached in .rehearsal/), not in a test.
test: system-packages $(VENV)/.test-stamp
	@echo "device-like venv for the GPU rehearsal: $$($(BIN)/python bench/device_venv.py)"
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: system-packages $(VENV)/.test-stamp
	$(BIN)/python bench/loopback.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# GPU readiness (issue 20): lay out .gpu/ (golden subset, media, recorded landmarks) for
# the device tool's carry; then `python3 bench/gpu.py --data .gpu --out $OUT` there.
.PHONY: gpu-data
gpu-data: $(VENV)/.test-stamp
	$(BIN)/python bench/gpu_prepare.py .gpu
