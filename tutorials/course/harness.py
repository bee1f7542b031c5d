"""The grader's child process: it runs one submission and reports numbers; it never grades.

    python harness.py ASSIGNMENT_DIR NOTEBOOK OUT_DIR
    python harness.py ASSIGNMENT_DIR --batch LIST.json OUT_DIR

The notebook's code cells run in order in a fresh module (nbgrader's test cells, cells
tagged "skip-in-grader" and IPython `%magic` / `!shell` lines are skipped; a cell that
raises is noted and skipped, so every function the notebook defines is still graded on its
own). Then the probes of each item
of ASSIGNMENT_DIR/items.py evaluate the submission's functions on fixed inputs, and the
values go to OUT_DIR/<item>.json (plus <item>.npz for arrays) as soon as the item is done:
an item that hangs costs only the items after it.

Nothing here decides a grade. grader.py compares these numbers with the instructor's in its
own process, so a submission that replaces tinyad.check_grads, numpy.testing or anything in
this process can change nothing but its own numbers.

--batch runs many notebooks in this one process, each in its own module, LIST.json being
[{"name": ..., "notebook": ..., "items": [...] (optional: only these)}, ...] and the results
going to OUT_DIR/<name>/. It is for
the instructor's own notebooks (the mutants of tests/test_course_grader.py), never for
students' submissions: those get a process each.
"""

import json
import linecache
import os
import sys
import types

import numpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from probing import Exact, Missing, load_items  # noqa: E402

# numpy's functions as they were before any submission ran (one may replace numpy.asarray).
_asarray, _savez = numpy.asarray, numpy.savez
MAX_MESSAGE = 400
SKIP_TAG = "skip-in-grader"  # a cell tag: the cell defines nothing a probe needs


def notebook_cells(path):
    """(cell number, source) of each code cell to run, numbered from 1 at the top of the
    notebook (markdown cells count); nbgrader's test cells are left out."""
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    for number, cell in enumerate(nb.get("cells", []), 1):
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {})
        nbgrader = meta.get("nbgrader", {})
        if nbgrader.get("grade") and not nbgrader.get("solution"):
            continue  # a test cell: the grader has its own tests
        if SKIP_TAG in meta.get("tags", []):
            continue  # a demonstration the probes redo themselves (a training run)
        source = cell.get("source", "")
        yield number, "".join(source) if isinstance(source, list) else source


def describe(e):
    """One line about exception `e`: its type and message, and where in the notebook it rose."""
    if isinstance(e, Missing):
        return str(e)
    where, tb = "", e.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith("<cell "):
            where = f" (notebook cell {filename[6:-1]}, line {tb.tb_lineno})"
        tb = tb.tb_next
    try:
        message = str(e)
    except Exception:  # a submission's exception whose __str__ fails
        message = "(its message could not be printed)"
    if isinstance(e, NotImplementedError) and not message:
        return "not answered yet: raise NotImplementedError() is still there" + where
    text = f"{type(e).__name__}: {message}" if message else type(e).__name__
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 3] + "..."
    return text + where


def run_notebook(path):
    """Run the notebook's code cells in a new module; returns (namespace, cell errors)."""
    module = types.ModuleType("submission")
    module.__file__ = os.path.abspath(path)
    sys.modules["submission"] = module
    errors = []
    for number, source in notebook_cells(path):
        source = "".join(
            line
            for line in source.splitlines(keepends=True)
            if not line.lstrip().startswith(("%", "!"))
        )
        filename = f"<cell {number}>"
        # Tracebacks and inspect.getsource can show the notebook's lines.
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
        try:
            exec(compile(source, filename, "exec"), module.__dict__)
        except BaseException as e:  # even SystemExit: one cell must not stop the grading
            errors.append({"cell": number, "error": describe(e)})
    return module.__dict__, errors


def as_numbers(value):
    """`value` as a float64 array, or TypeError saying what it was instead."""
    array = _asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"got {type(value).__name__}, not an array of real numbers")
    return array.astype(numpy.float64)


def _write(path, text):
    with open(path + ".part", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".part", path)  # whole or absent, even if this process is killed


def run_item(item, ns, out):
    """Evaluate one item's probes; writes OUT/<item>.json (and .npz)."""
    order, arrays, exact, errors = [], {}, {}, {}
    try:
        for key, thunk in item.probe(ns):
            order.append(key)
            try:
                value = thunk()
                if isinstance(value, Exact):
                    json.dumps(value.value)  # refuse here what the parent could not read
                    exact[key] = value.value
                else:
                    arrays[key] = as_numbers(value)
            except BaseException as e:
                errors[key] = describe(e)
    except BaseException as e:  # the probe itself stopped (a name the notebook lacks)
        errors["*"] = describe(e)
    names = {key: f"a{k}" for k, key in enumerate(arrays)}
    if arrays:
        with open(os.path.join(out, item.name + ".npz.part"), "wb") as f:
            _savez(f, **{names[key]: a for key, a in arrays.items()})
        os.replace(
            os.path.join(out, item.name + ".npz.part"), os.path.join(out, item.name + ".npz")
        )
    record = {"order": order, "arrays": names, "exact": exact, "errors": errors}
    _write(os.path.join(out, item.name + ".json"), json.dumps(record))


def grade_notebook(items, notebook, out, only=None):
    """Run `notebook`, then the probes of every item (or of those named in `only`)."""
    os.makedirs(out, exist_ok=True)
    try:
        ns, errors = run_notebook(notebook)
    except Exception as e:  # not a notebook at all
        _write(os.path.join(out, "load.json"), json.dumps({"unreadable": describe(e)}))
        return
    _write(os.path.join(out, "load.json"), json.dumps({"cells": errors}))
    for item in items.ITEMS:
        if only is None or item.name in only:
            run_item(item, ns, out)


def main(argv):
    if len(argv) == 4 and argv[1] == "--batch":
        assignment, _, batch, out = argv
        items = load_items(assignment)
        with open(batch, encoding="utf-8") as f:
            for entry in json.load(f):
                out_entry = os.path.join(out, entry["name"])
                grade_notebook(items, entry["notebook"], out_entry, entry.get("items"))
        return 0
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    assignment, notebook, out = argv
    grade_notebook(load_items(assignment), notebook, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
