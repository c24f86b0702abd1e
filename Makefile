# Two commands do all set-up on a fresh machine:  make demo  |  make test
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all lint bench bench-defaults clean venv

venv: $(STAMP)

# torch is pinned and installed first (a CPU wheel); an unpinned resolve would pull CUDA.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

test-all: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check convexnn tests benchmarks examples

bench: $(STAMP)
	$(PY) benchmarks/bench_two_layer.py

# the two-layer defaults vs scikit-learn's MLP / Ridge, and the default ReLU fit vs Adam
bench-defaults: $(STAMP)
	$(PY) benchmarks/bench_defaults.py --threads 1 --repeat 3

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
