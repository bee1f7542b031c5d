"""The course grader (tutorials/course/grader.py) grades right and cannot be fooled.

Each assignment's solution gets every point, within 30 s; its blank version none; a seeded
bug loses exactly its item's points, with a message naming the function, the case, the
worst entry, both values and the relative error. Tampering inside the submission (replacing
tinyad.check_grads, numpy.testing.assert_allclose, the grader's own modules, its result
files, or exiting early) changes no grade. At least 90% of the seeded bugs of each assignment
are caught by their own item, and correct rewrites keep every point.
"""

import csv
import json
import os
import re

import pytest
from helpers_course import COURSE
from helpers_course import load as _load

ASSIGNMENTS = ("01_vjps", "02_tape", "03_adjoint")


grader = _load("grader")
probing = _load("probing")

BEGIN = re.compile(r"^(\s*)### BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*### END SOLUTION\s*$")


def blank(source):
    """A solution cell as nbgrader releases it: each solution region becomes a stub."""
    out, inside = [], False
    for line in source.splitlines():
        begin = BEGIN.match(line)
        if begin:
            out += [
                begin.group(1) + "# YOUR CODE HERE",
                begin.group(1) + "raise NotImplementedError()",
            ]
            inside = True
        elif END.match(line):
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def write_notebook(path, assignment, transform=None, extra_cells=()):
    """The solution notebook of `assignment`, each solution cell passed through `transform`,
    with `extra_cells` (sources) appended at the end; returns the path."""
    with open(assignment.solution, encoding="utf-8") as f:
        nb = json.load(f)
    for cell in nb["cells"]:
        if transform and cell["metadata"].get("nbgrader", {}).get("solution"):
            cell["source"] = transform("".join(cell["source"]))
    for source in extra_cells:
        nb["cells"].append(
            {
                "cell_type": "code",
                "metadata": {},
                "source": source,
                "outputs": [],
                "execution_count": None,
            }
        )
    with open(path, "w", encoding="utf-8") as f:
        json.dump(nb, f)
    return str(path)


def mutant_notebook(path, assignment, item, what, extra_cells=()):
    """The solution with the seeded bug `what` of `item` (from mutants.py)."""
    (mutant,) = [
        m
        for m in probing.load_mutants(assignment.path).MUTANTS
        if m.item == item and m.what == what
    ]
    nb = grader.mutate(json.load(open(assignment.solution, encoding="utf-8")), mutant)
    for source in extra_cells:
        nb["cells"].append(
            {
                "cell_type": "code",
                "metadata": {},
                "source": source,
                "outputs": [],
                "execution_count": None,
            }
        )
    with open(path, "w", encoding="utf-8") as f:
        json.dump(nb, f)
    return str(path)


@pytest.fixture(scope="module")
def course():
    """{name: (Assignment, references)}: references computed once per assignment."""
    found = {}
    for name in ASSIGNMENTS:
        assignment = grader.Assignment(name)
        found[name] = (assignment, grader.references(assignment, timeout=300))
    return found


def scores(results):
    return {item.name: score for item, score, _ in results}


def test_points_are_the_notebooks_grade_cells():
    """The grader's items are the notebook's nbgrader grade cells, with the same points."""
    for name in ASSIGNMENTS:
        assignment = grader.Assignment(name)
        with open(assignment.solution, encoding="utf-8") as f:
            cells = json.load(f)["cells"]
        graded = [
            (c["metadata"]["nbgrader"]["grade_id"], c["metadata"]["nbgrader"]["points"])
            for c in cells
            if c["metadata"].get("nbgrader", {}).get("grade")
        ]
        assert graded == [(item.name, item.points) for item in assignment.items], name


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_solution_gets_every_point_in_under_30_s(course, name):
    assignment, refs = course[name]
    results, seconds = grader.grade(assignment, assignment.solution, refs, timeout=120)
    assert {n: s for n, s in scores(results).items()} == {
        i.name: i.points for i in assignment.items
    }
    assert all(message.startswith("ok") for _, _, message in results)
    assert seconds < 30, f"grading the {name} solution took {seconds:.1f} s"


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_blank_notebook_gets_nothing_and_says_why(course, name, tmp_path):
    assignment, refs = course[name]
    notebook = write_notebook(tmp_path / "blank.ipynb", assignment, blank)
    results, _ = grader.grade(assignment, notebook, refs, timeout=120)
    assert scores(results) == {item.name: 0 for item in assignment.items}
    for item, _, message in results:
        assert "not answered yet" in message or "does not define" in message, (item, message)
        assert "Traceback" not in message and 'File "' not in message


def test_one_wrong_vjp_loses_exactly_its_points_with_a_message(course, tmp_path):
    assignment, refs = course["01_vjps"]
    notebook = mutant_notebook(
        tmp_path / "wrong.ipynb", assignment, "matmul_vjp_B", "factor 2 (the issue's example)"
    )
    results, _ = grader.grade(assignment, notebook, refs, timeout=120)
    expected = {item.name: item.points for item in assignment.items}
    expected["matmul_vjp_B"] = 0
    assert scores(results) == expected
    (message,) = [m for item, _, m in results if item.name == "matmul_vjp_B"]
    first = message.splitlines()[1]
    # The function and the case, the worst entry, both values, the relative error: 2x is 100%.
    assert "my_matmul_vjp_B(g, ans, A, B) with A of shape (3, 4), B of shape (4, 2)" in first
    assert re.search(r"worst entry \(\d+, \d+\): got -?[\d.]+(e-?\d+)?, expected -?[\d.]+", first)
    assert "relative error 1 " in first, first
    assert "Traceback" not in message


TAMPERING = {
    "check_grads": "import tinyad\ntinyad.check_grads = lambda *a, **k: None",
    "assert_allclose": (
        "import numpy\nnumpy.testing.assert_allclose = lambda *a, **k: None\n"
        "numpy.allclose = lambda *a, **k: True\nnumpy.isclose = lambda *a, **k: True"
    ),
    "grader modules": (
        "import gc, sys, types\nimport grader, probing\n"
        "grader.check_values = lambda *a, **k: []\n"
        "grader.compare_arrays = lambda *a, **k: None\n"
        "probing.Item.points = 100\n"
        "(items,) = [m for m in gc.get_objects() if isinstance(m, types.ModuleType)\n"
        "            and m.__name__.startswith('course_items')]\n"
        "for item in items.ITEMS:\n"
        "    item.points, item.rtol, item.atol = 100, 1e9, 1e9\n"
        "sys.modules['__main__'].MAX_MESSAGE = 0"
    ),
    "result files": (
        # Results for every item, with no values and no errors, where the grader reads them.
        "import json, os, sys\nout = sys.argv[-1]\n"
        "for name in ['tanh_vjp', 'matmul_vjp_A', 'matmul_vjp_B', 'sum_vjp', 'logsumexp_forward',\n"
        "             'logsumexp_vjp', 'unbroadcast', 'add_vjps']:\n"
        "    json.dump({'order': [], 'arrays': {}, 'exact': {}, 'errors': {}},\n"
        "              open(os.path.join(out, name + '.json'), 'w'))\n"
        "sys.modules['__main__'].run_item = lambda *a, **k: None"
    ),
    "exit early": "import os\nos._exit(0)",
}


def cell_errors(assignment, notebook, tmp_path):
    """{cell number: error} from running `notebook` in the grader's child process."""
    out = tmp_path / "child"
    code, _, tail = grader.run_child([assignment.path, notebook, str(out)], timeout=120)
    assert code == 0, tail
    with open(out / "load.json") as f:
        return {c["cell"]: c["error"] for c in json.load(f)["cells"]}


@pytest.mark.parametrize("how", TAMPERING)
def test_tampering_changes_no_grade(course, how, tmp_path):
    """A blank and a one-bug submission, each with the tampering cell at its end."""
    assignment, refs = course["01_vjps"]
    cell = TAMPERING[how]
    blank_nb = write_notebook(tmp_path / "blank.ipynb", assignment, blank, [cell])
    if how != "exit early":  # the tampering itself ran: the last cell raised nothing
        last = len(json.load(open(blank_nb))["cells"])  # cells are numbered from 1
        assert last not in cell_errors(assignment, blank_nb, tmp_path), how
    results, _ = grader.grade(assignment, blank_nb, refs, timeout=120)
    assert scores(results) == {item.name: 0 for item in assignment.items}, how
    wrong = mutant_notebook(
        tmp_path / "wrong.ipynb",
        assignment,
        "matmul_vjp_B",
        "factor 2 (the issue's example)",
        [cell],
    )
    results, _ = grader.grade(assignment, wrong, refs, timeout=120)
    assert scores(results)["matmul_vjp_B"] == 0, how


def test_tampering_leaves_a_right_answer_right(course, tmp_path):
    """check_grads and assert_allclose replaced: the grader never used them."""
    assignment, refs = course["01_vjps"]
    cells = [TAMPERING["check_grads"], TAMPERING["assert_allclose"]]
    notebook = write_notebook(tmp_path / "right.ipynb", assignment, None, cells)
    results, _ = grader.grade(assignment, notebook, refs, timeout=120)
    assert scores(results) == {item.name: item.points for item in assignment.items}


def test_a_submission_that_hangs_is_stopped(course, tmp_path):
    assignment, refs = course["01_vjps"]
    notebook = write_notebook(tmp_path / "hangs.ipynb", assignment, None, ["while True:\n    pass"])
    results, seconds = grader.grade(assignment, notebook, refs, timeout=3)
    assert scores(results) == {item.name: 0 for item in assignment.items}
    assert all("time limit of 3 s" in message for _, _, message in results)
    assert seconds < 10


def test_reports_nbgrader_csv_and_gradescope_json(course, tmp_path):
    assignment, refs = course["01_vjps"]
    graded = []
    for student, notebook in [
        ("alice", assignment.solution),
        ("bob", write_notebook(tmp_path / "bob.ipynb", assignment, blank)),
    ]:
        results, seconds = grader.grade(assignment, notebook, refs, timeout=120)
        graded.append((student, results, seconds))
    grader.write_reports(assignment, graded, str(tmp_path / "out"))
    with open(tmp_path / "out" / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == grader.NBGRADER_COLUMNS
    assert [(r["student_id"], float(r["score"]), float(r["max_score"])) for r in rows] == [
        ("alice", 20.0, 20.0),
        ("bob", 0.0, 20.0),
    ]
    with open(tmp_path / "out" / "items.csv") as f:
        items = list(csv.DictReader(f))
    assert len(items) == 2 * len(assignment.items)
    with open(tmp_path / "out" / "bob" / "results.json") as f:
        results = json.load(f)
    assert results["score"] == 0.0
    assert [t["name"].split(":")[0] for t in results["tests"]] == [i.name for i in assignment.items]
    for test, item in zip(results["tests"], assignment.items):
        assert set(test) == {"name", "score", "max_score", "output", "visibility"}
        assert test["max_score"] == item.points and test["score"] == 0.0
        assert test["visibility"] == "visible" and "not answered yet" in test["output"]


def test_command_line_grades_the_solutions(tmp_path, capsys):
    code = grader.main(["01_vjps", _solution("01_vjps"), "--out", str(tmp_path)])
    assert code == 0
    assert "01_vjps vjps: 20 / 20" in capsys.readouterr().out
    assert (tmp_path / "vjps" / "results.json").exists() and (tmp_path / "grades.csv").exists()


def _solution(name):
    return grader.Assignment(name).solution


def test_at_least_40_seeded_bugs():
    bugs = [probing.load_mutants(os.path.join(COURSE, n)).MUTANTS for n in ASSIGNMENTS]
    assert sum(map(len, bugs)) >= 40
    assert all(len(b) >= 12 for b in bugs)


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_mutants_are_caught_by_their_own_item(course, name):
    assignment, refs = course[name]
    report = grader.mutation_test(assignment, refs)
    bugs = [(m, score) for m, is_bug, score, _ in report if is_bug]
    caught = [m for m, score in bugs if score == 0]
    missed = [m.what for m, score in bugs if score != 0]
    assert len(caught) >= 0.9 * len(bugs), f"{name}: missed {missed}"
    unfair = [(m.what, msg) for m, is_bug, score, msg in report if not is_bug and score == 0]
    assert not unfair, f"{name}: right rewrites that lost points: {unfair}"


def test_unreadable_and_incomplete_notebooks_get_messages(course, tmp_path):
    assignment, refs = course["01_vjps"]
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{ not a notebook")
    results, _ = grader.grade(assignment, str(broken), refs, timeout=120)
    assert scores(results) == {item.name: 0 for item in assignment.items}
    assert all("could not be run" in message for _, _, message in results)

    def without_tanh(source):  # the student deleted the definition of my_tanh_vjp
        return source.replace("def my_tanh_vjp(", "def renamed_tanh_vjp(")

    notebook = write_notebook(tmp_path / "renamed.ipynb", assignment, without_tanh)
    results, _ = grader.grade(assignment, notebook, refs, timeout=120)
    expected = {item.name: item.points for item in assignment.items}
    expected["tanh_vjp"] = 0
    assert scores(results) == expected
    (message,) = [m for item, _, m in results if item.name == "tanh_vjp"]
    assert "the notebook does not define 'my_tanh_vjp'" in message
    assert "NameError" in message  # and which cell raised because of it


def test_memory_is_limited(course, tmp_path):
    """A cell that asks for 8 GiB fails alone; the rest is graded."""
    assignment, refs = course["01_vjps"]
    notebook = write_notebook(
        tmp_path / "greedy.ipynb", assignment, None, ["hog = bytearray(8 * 2**30)"]
    )
    last = len(json.load(open(notebook))["cells"])  # cells are numbered from 1
    errors = cell_errors(assignment, notebook, tmp_path)
    assert errors == {last: f"MemoryError (notebook cell {last}, line 1)"}
    results, _ = grader.grade(assignment, notebook, refs, timeout=120)
    assert scores(results) == {item.name: item.points for item in assignment.items}
