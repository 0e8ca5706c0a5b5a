# The README's two commands: `make demo` and `make test` (plus `make bench`, `make lint`, `make docs`).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   ?= demo
JOBS   ?= 2
# torch is installed first, pinned to the CPU build: PyPI's Linux torch is the multi-GB CUDA build, so the
# "+cpu" wheel comes from PyTorch's CPU index (or a local mirror or --find-links that holds it; offline,
# pip retries the index a few times, then takes the local wheel). `make install TORCH_PIN=torch==2.13.0
# TORCH_INDEX=https://download.pytorch.org/whl/cu126` installs a CUDA build instead.
TORCH_PIN   ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

# `make docker`: the image from this checkout (docker, else podman); PyTorch comes from its CPU index.
DOCKER ?= $(shell command -v docker || command -v podman)

.PHONY: install test test-quick demo bench lint docs clean docker

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --extra-index-url $(TORCH_INDEX) '$(TORCH_PIN)'
	$(BIN)/python -m pip install --quiet -e '.[test,container]'
	touch $(STAMP)

install: $(STAMP)

# CI=true runs every test, the container build and SLURM included; locally those are skipped.
# --dist loadfile --no-loadscope-reorder: xdist hands out one module at a time in the order of
# tests/conftest.py, slow modules first (not a quarter of the suite per worker at once, in file order):
# both workers stay busy to the end, and each module's fixtures are built once.
test: $(STAMP)
	@if [ "$$CI" = "true" ]; then bash scripts/install-system-deps; fi
	$(BIN)/python -m pytest -n $(JOBS) --dist loadfile --no-loadscope-reorder --durations=15 tests

# Unit and graph tests only (no workflow, CLI or full CNN run): under 2 minutes on 2 cores.
test-quick: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) --dist loadfile --no-loadscope-reorder -m "not integration" --durations=10 tests

demo: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python scripts/demo.py $(DEMO)

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# Formatter check, linter (ruff), type checker on the science layer (mypy), layer contracts (import-linter).
LINTED := bids_app workflows strokefc_sim tests benchmarks scripts docs
lint: $(STAMP)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy
	$(BIN)/lint-imports

# The documentation (docs/, Sphinx + MyST): installs the `docs` extra into the venv, then builds the HTML
# into docs/_build/html with -W (any warning fails) and -n (every cross-reference must resolve).
DOCS_STAMP := $(VENV)/.docs-stamp
$(DOCS_STAMP): $(STAMP) setup.cfg
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(BIN)/python -m sphinx -W --keep-going -n -b html docs docs/_build/html

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache docs/_build

docker:
	@test -n "$(DOCKER)" || { echo "make docker needs docker or podman"; exit 1; }
	$(DOCKER) build -t strokefc .
