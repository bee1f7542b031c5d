# `make test` and `make demo` work from a fresh clone with only Python 3 and make:
# each installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export MPLBACKEND := Agg
export OMP_NUM_THREADS := 1

.PHONY: install test lint demo bench tutorials notebooks assignment grade fuzz clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

# The project's own files only: a scratch script dropped into the clone does not stop `make test`.
LINTED := tinyad tinyode tests tutorials/course

lint: install
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

test: install lint
	$(BIN)/python -m pytest -q tests

# 20,000 random programs, tinyad against autograd, finite differences as referee (not in `test`)
fuzz: install
	$(BIN)/python tests/differential.py --start 0 --count 20000 --jobs 2

demo: install
	$(BIN)/python -m tinyode.demo --out demo

tutorials: install
	$(BIN)/python tests/run_notebooks.py --in-place tutorials/*.ipynb

# The course's nbgrader directory: the student versions in tutorials/course/nbgrader/release/.
assignment: install
	$(BIN)/python tutorials/course/course.py

# make grade ASSIGNMENT=01_vjps SUBMISSIONS="alice.ipynb bob.ipynb" (or nbgrader's submitted/);
# plain `make grade` grades the three solutions. Reports go to tutorials/course/grades/.
grade: install
	$(BIN)/python tutorials/course/grader.py $(or $(ASSIGNMENT),all) $(SUBMISSIONS)

notebooks: install
	$(BIN)/python -m pip install -q -e '.[notebooks]'
	$(BIN)/jupyter lab tutorials

bench: install
	$(BIN)/python -m pip install -q -e '.[bench]' || echo "some peers failed to install; they are skipped"
	$(BIN)/python tests/bench/run_all.py --out tests/bench/results.md

clean:
	rm -rf $(VENV) demo build *.egg-info
