# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv when it
# is missing and reuse it otherwise; the package is (re)installed when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mslong-installed
# Keep the tests on the CPU and on the two cores a laptop or CI runner gives them.
TEST_ENV := CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=2

.PHONY: install demo test lint benchmarks benchmarks-real clean
# The real-scan benchmarks read a folder of real data (not in the repository): make benchmarks-real LJUBLJANA=DIR
REAL_BENCHMARKS := benchmarks/bench_real.py benchmarks/bench_evolution.py benchmarks/bench_peers.py benchmarks/bench_bias.py benchmarks/bench_planes.py benchmarks/bench_shipped.py benchmarks/bench_visibility.py

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mslong demo

test: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

benchmarks: $(STAMP)
	@for script in $(filter-out $(REAL_BENCHMARKS),$(wildcard benchmarks/bench_*.py)); do echo "== $$script"; $(PY) $$script || exit 1; done

benchmarks-real: $(STAMP)
	@test -n "$(LJUBLJANA)" || { echo "make benchmarks-real LJUBLJANA=DIR (the ljubljana folder)"; exit 2; }
	$(PY) benchmarks/bench_evolution.py --root $(LJUBLJANA)/cross_sectional
	$(PY) benchmarks/bench_real.py --root $(LJUBLJANA)
	$(PY) benchmarks/bench_bias.py --root $(LJUBLJANA)
	$(PY) benchmarks/bench_shipped.py --root $(LJUBLJANA)
	$(PY) benchmarks/bench_visibility.py --root $(LJUBLJANA)

clean:
	rm -rf $(VENV) runs demo_output .pytest_cache
