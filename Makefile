# Two commands do all set-up on a fresh machine:
#   make demo   -> creates .venv if needed, installs probpath (CPU torch unless a GPU is present), runs `probpath compare --quick`
#   make test   -> same set-up, then the whole test suite (slow end-to-end tests included)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.probpath-installed
# CPU wheel first (a local wheel or the PyTorch CPU index), a CUDA build only where nvidia-smi sees a GPU.
TORCH_VERSION ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: demo test test-fast lint format bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	@if $(PY) -c "import torch" 2>/dev/null; then \
	  echo "torch already installed in $(VENV)"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
	  $(PIP) install -q "torch>=2.1"; \
	else \
	  $(PIP) install -q "torch==$(TORCH_VERSION)+cpu" 2>/dev/null \
	  || $(PIP) install -q torch --index-url $(TORCH_CPU_INDEX); \
	fi
	$(PIP) install -q -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/probpath compare --quick --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -x

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks examples
	$(VENV)/bin/ruff check --fix src tests benchmarks examples

bench: $(STAMP)
	$(PIP) install -q -e ".[bench]"

clean:
	rm -rf $(VENV) runs .pytest_cache
