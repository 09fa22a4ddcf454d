# Set-up and checks. `make install` then `make test` is all a fresh machine needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0

.PHONY: install test test-slow test-gpu lint clean

install: $(BIN)/python
	# The CPU wheel first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	@echo "Installed. Activate with: source $(VENV)/bin/activate"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

test:
	$(BIN)/python -m pytest -q -n auto --dist worksteal

test-slow:
	$(BIN)/python -m pytest -q -m slow

# CUDA paths (NCCL DDP, autocast and the scaler, compile, NVML energy) on a machine with a GPU and a CUDA
# build of torch in the venv; every test is skipped where no GPU is visible. CI does not run them.
test-gpu:
	$(BIN)/python -m pytest -q -m gpu -rs

lint:
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
