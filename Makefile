# Quick start: `make demo` runs the main job on the shipped data, `make test` runs the tests,
# `make lint` runs ruff and mypy (both configured in pyproject.toml).
# Each creates (or updates) a virtual environment in .venv unless one is already active.
VENV ?= .venv
ifdef VIRTUAL_ENV
PYTHON := python
STAMP := $(VIRTUAL_ENV)/.p5_jax_installed
else
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.p5_jax_installed
endif

.PHONY: install demo test test-slow test-beam lint bench clean

$(STAMP): pyproject.toml
	@if [ -z "$$VIRTUAL_ENV" ] && [ ! -x $(VENV)/bin/python ]; then python3 -m venv $(VENV); fi
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q -e '.[test,hf]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PYTHON) -m p5_jax.demo

test: $(STAMP)
	$(PYTHON) -m pytest -q

test-slow: $(STAMP)
	$(PYTHON) -m pytest -q --runslow

# The Beam build's equality test, in its own environment: apache-beam holds protobuf below 7,
# which the main environment's SentencePiece item tokens need.
BEAM_VENV ?= .venv-beam
test-beam:
	@if [ ! -x $(BEAM_VENV)/bin/python ]; then python3 -m venv $(BEAM_VENV); fi
	$(BEAM_VENV)/bin/python -m pip install -q -e '.[test,beam]'
	$(BEAM_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_prepare_beam.py

lint: $(STAMP)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy

bench: $(STAMP)
	$(PYTHON) benchmarks/train_throughput.py
	$(PYTHON) benchmarks/decode_throughput.py

clean:
	rm -rf prepared runs .pytest_cache
