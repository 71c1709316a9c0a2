# The README's two commands: `make run` (set up, build the built-in data, start the app) and
# `make test` (set up, lint and type check, run the whole suite). Both create/update .venv on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8501
# Two pytest workers: the long tests mostly wait on subprocesses and fixed durations, so the suite
# overlaps them (override with `make test PYTEST_ARGS=-n0` for a serial run). The order is fixed by
# default; `make test PYTEST_ARGS="-n 2 --dist load"` shuffles it (pytest-randomly, seed printed;
# add `--randomly-seed=N` to repeat one order) to show that no test depends on another.
PYTEST_ARGS ?= -n 2 --dist loadfile -p no:randomly

.PHONY: run lint test bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m flagvision data builtin
	$(PY) -m streamlit run streamlit_app.py --server.address 127.0.0.1 --server.port $(PORT)

# Lint and type check first (config in pyproject.toml), then the suite.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
