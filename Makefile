# The two set-up commands of the README: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow bench clean clean-cache

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/covsde demo --out runs/demo --force

# the default suite on TEST_WORKERS pytest-xdist processes, whole test files per worker
# (module fixtures built once); `make test TEST_WORKERS=0` runs it in this process
TEST_WORKERS ?= 2

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

test-slow: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m slow

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_sde.py

clean:
	rm -rf $(VENV) runs build *.egg-info

# numba's on-disk cache does not notice edits to a *called* function in another file
# (e.g. sde/coefficients.py called from sde/_kernels.py): clear it after such edits.
clean-cache:
	find sde finite compare benchmarks -name '*.nbi' -delete -o -name '*.nbc' -delete
