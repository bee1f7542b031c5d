# `make test` and `make demo` work from a fresh clone with only Python 3 and make:
# each installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export MPLBACKEND := Agg
export OMP_NUM_THREADS := 1

.PHONY: install test lint demo bench tutorials assignment clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install lint
	$(BIN)/python -m pytest -q tests

demo: install
	$(BIN)/python -m tinyode.demo --out demo

tutorials: install
	$(BIN)/python tests/run_notebooks.py --in-place tutorials/*.ipynb

assignment: install
	$(BIN)/python tutorials/assignment/make_student.py

bench: install
	$(BIN)/python -m pip install -q -e '.[bench]' || echo "some peers failed to install; they are skipped"
	$(BIN)/python tests/bench/run_all.py --out tests/bench/results.md

clean:
	rm -rf $(VENV) demo build *.egg-info
