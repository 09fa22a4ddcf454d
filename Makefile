# Set-up and checks. `make install` then `make test` is all a fresh machine needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0

.PHONY: install test test-slow lint clean

install: $(BIN)/python
	# The CPU wheel first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	@echo "Installed. Activate with: source $(VENV)/bin/activate"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

test:
	$(BIN)/python -m pytest -q

test-slow:
	$(BIN)/python -m pytest -q -m slow

lint:
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
