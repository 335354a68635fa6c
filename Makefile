# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv when it
# is missing and reuse it otherwise; the package is (re)installed when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mslong-installed
# Keep the tests on the CPU and on the two cores a laptop or CI runner gives them.
TEST_ENV := CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=2

.PHONY: install demo test lint benchmarks clean

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
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) runs demo_output .pytest_cache
