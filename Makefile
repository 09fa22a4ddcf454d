# Set-up and checks. `make install` then `make test` is all a fresh machine needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0

.PHONY: install test test-slow test-gpu lint clean lava spikingjelly

install: $(BIN)/python
	# The CPU wheel first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	@echo "Installed. Activate with: source $(VENV)/bin/activate"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# A second environment for Lava, the third-party reader of `--quantize int8` bundles (`python -m spikerl.deploy
# lava`). lava-nc declares Python < 3.11, so it cannot live in $(VENV): a Python 3.10 (LAVA_PYTHON, else the
# first of python3.10 on the PATH and pyenv's 3.10.x that runs) gets lava-nc and its numpy, nothing of SpikeRL's.
LAVA_VENV ?= .venv-lava
LAVA      ?= lava-nc==0.10.0
LAVA_PYTHON ?= $(shell for p in python3.10 $$(ls -d "$$(pyenv root 2>/dev/null)"/versions/3.10.*/bin/python \
                 2>/dev/null | sort -rV); do "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' \
                 2>/dev/null && { echo "$$p"; break; }; done)

lava: $(LAVA_VENV)/.installed

$(LAVA_VENV)/.installed:
	@test -n "$(LAVA_PYTHON)" || { echo "make lava: no Python 3.10 found (lava-nc needs Python < 3.11; tried python3.10 on the PATH and pyenv's 3.10.x): install one, or set LAVA_PYTHON" >&2; exit 2; }
	$(LAVA_PYTHON) -m venv $(LAVA_VENV)
	$(LAVA_VENV)/bin/pip install --quiet "$(LAVA)"
	@touch $@
	@echo "Lava installed in $(LAVA_VENV): python -m spikerl.deploy lava <bundle>"

# SpikingJelly's ANN-to-SNN converter, the reference tests/test_convert.py checks `spikerl.convert` against.
# Not a dependency: its release requires torchvision and torchaudio builds that would replace the pinned torch,
# so only the package itself (and its logger) go into a folder of their own, put on the path by that test.
SPIKINGJELLY_DIR ?= .spikingjelly
SPIKINGJELLY     ?= spikingjelly==2.0.0 loguru==0.7.3

spikingjelly: $(SPIKINGJELLY_DIR)/.installed

$(SPIKINGJELLY_DIR)/.installed:
	$(BIN)/pip install --quiet --no-deps --target $(SPIKINGJELLY_DIR) $(SPIKINGJELLY)
	@touch $@

test:
	$(BIN)/python -m pytest -q -n auto --dist worksteal

# Builds the Lava environment first where the machine can (its tests check bundles against Lava); where it
# cannot, they skip and say why.
test-slow:
	@$(MAKE) --no-print-directory lava || echo "make test-slow: no Lava environment; its tests will skip"
	@$(MAKE) --no-print-directory spikingjelly || echo "make test-slow: no SpikingJelly; its comparison will skip"
	SPIKERL_SPIKINGJELLY=$(abspath $(SPIKINGJELLY_DIR)) $(BIN)/python -m pytest -q -m slow -rs

# CUDA paths (NCCL DDP, autocast and the scaler, compile, NVML energy) on a machine with a GPU and a CUDA
# build of torch in the venv; every test is skipped where no GPU is visible. CI does not run them.
test-gpu:
	$(BIN)/python -m pytest -q -m gpu -rs

lint:
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(LAVA_VENV) $(SPIKINGJELLY_DIR) outputs multirun .pytest_cache
