# `make demo` and `make test` set everything up on a fresh machine by themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml requirements/base.txt requirements/nodeps.txt requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/base.txt -c requirements/constraints.txt
	$(PY) -m pip install --quiet --no-deps -r requirements/nodeps.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/wmlab quickstart

test: setup
	$(PY) -m pytest -n 2 -q -p no:cacheprovider

bench: setup
	$(VENV)/bin/wmlab bench

clean:
	rm -rf $(VENV) runs
