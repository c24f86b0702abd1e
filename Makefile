# Two commands do all set-up on a fresh machine:  make demo  |  make test
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all lint bench bench-defaults clean venv bench-env bench-peers

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

# two pytest workers (one torch thread each): the suite in ~5 min on 2 cores instead of ~8
test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 -m "not slow" tests

test-all: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 tests

lint: $(STAMP)
	$(VENV)/bin/ruff check convexnn tests benchmarks examples

bench: $(STAMP)
	$(PY) benchmarks/bench_two_layer.py

# the two-layer defaults vs scikit-learn's MLP / Ridge, and the default ReLU fit vs Adam
bench-defaults: $(STAMP)
	$(PY) benchmarks/bench_defaults.py --threads 1 --repeat 3

# Peer benchmark (scnn, adelie) in its own venv, so the peers never touch .venv.
# torch is pinned first and held by a constraints file on every later pip call.
BVENV  := .benchvenv
BPY    := $(BVENV)/bin/python
BPIN   := $(BVENV)/constraints.txt
BSTAMP := $(BVENV)/.installed

bench-env: $(BSTAMP)

$(BSTAMP): pyproject.toml
	$(PYTHON) -m venv $(BVENV)
	$(BPY) -m pip install -q --upgrade pip
	$(BPY) -m pip install -q torch==2.13.0
	echo "torch==2.13.0" > $(BPIN)
	$(BPY) -m pip install -q -c $(BPIN) --no-deps -e .
	$(BPY) -m pip install -q -c $(BPIN) "numpy>=1.24" "scipy>=1.10" "scikit-learn>=1.3" \
		"cvxpy>=1.4" "clarabel>=0.6" "scs>=3.2" threadpoolctl
	# pyscnn declares torch and torchvision (datasets only): take its pure-python deps by hand
	$(BPY) -m pip install -q -c $(BPIN) --no-deps pyscnn linalg-backends
	$(BPY) -m pip install -q -c $(BPIN) opt-einsum tqdm typing-extensions
	# adelie declares numpy<2, but cvxpy (imported by scnn) needs numpy>=2 while declaring less;
	# adelie runs on numpy 2 (bench_peers checks its objective against ours every run)
	$(BPY) -m pip install -q -c $(BPIN) --no-deps adelie
	$(BPY) -m pip install -q -c $(BPIN) "matplotlib>=3.7" "ipython>=8.17"
	$(BPY) -c "import torch, scnn, adelie, convexnn; print('bench-env: torch', torch.__version__)"
	touch $(BSTAMP)

# convexnn's gated FISTA vs scnn R-FISTA vs adelie, one lambda and the path (one thread)
bench-peers: $(BSTAMP)
	$(BPY) benchmarks/bench_peers.py --repeat 3 --out benchmarks/results/peers_table.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
