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

CONSTRAINTS := $(VENV)/constraints.txt

.PHONY: demo test test-fast doctest lint format bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	@if $(PY) -c "import torch" 2>/dev/null; then \
	  echo "torch already installed in $(VENV)"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
	  $(PIP) install -q "torch>=2.3"; \
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

doctest: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider --doctest-modules src/probpath

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -x

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks examples
	$(VENV)/bin/ruff check --fix src tests benchmarks examples

# The peers (torchcfm -> torchdyn -> torchvision) would pull a CUDA torch from PyPI: pin torch
# to the installed build (a local label such as +cpu satisfies "torch==X.Y.Z"), and look on the
# CPU index first for the torchvision that matches it.
bench: $(STAMP)
	$(PY) -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(CONSTRAINTS)
	$(PIP) install -q -e ".[bench]" -c $(CONSTRAINTS) \
	  $$($(PY) -c "import torch; print('--extra-index-url $(TORCH_CPU_INDEX)' if '+cpu' in torch.__version__ else '')")

clean:
	rm -rf $(VENV) runs .pytest_cache
