"""The three assignments in real nbgrader (0.9.6), command line and all, in a temporary course.

`nbgrader generate_assignment` writes the student versions. Three students submit each
assignment: alice the instructor's solution (typed into the released notebook), bob the
released notebook left blank, carol the solution with one seeded bug. Then `nbgrader
autograde` and `nbgrader export`: alice gets every point, bob none, carol loses exactly the
points of the item with the bug (read per grade cell from the gradebook). `nbgrader validate`
fails carol's notebooks. The grader's grades.csv has nbgrader's columns.
"""

import csv
import json
import os
import re
import time

import pytest
from helpers_course import load as _load

course = _load("course")
grader = _load("grader")
probing = _load("probing")

# carol's bug in each assignment: one item's answer, which no other item uses.
BUGS = {
    "01_vjps": ("matmul_vjp_B", "factor 2 (the issue's example)"),
    "02_tape": ("nested", "seed 2, not 1"),
    "03_adjoint": ("train", "gradient ascent"),
}
MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS")


def solution_cells(name, bug=None):
    """{grade_id: source} of the solution cells, as a student would type them (no markers),
    with the seeded bug `bug` (item, what) applied."""
    assignment = grader.Assignment(name)
    with open(assignment.solution, encoding="utf-8") as f:
        nb = json.load(f)
    if bug:
        mutants = probing.load_mutants(assignment.path).MUTANTS
        (mutant,) = [m for m in mutants if (m.item, m.what) == bug]
        nb = grader.mutate(nb, mutant)
    cells = {}
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution"):
            lines = "".join(cell["source"]).splitlines()
            cells[meta["grade_id"]] = "\n".join(line for line in lines if "SOLUTION" not in line)
    return cells


def submit(root, student, name, answers):
    """Copy the released notebook into submitted/<student>/<name>/, answers typed in."""
    notebook = course.ASSIGNMENTS[name]
    with open(os.path.join(root, "release", name, notebook), encoding="utf-8") as f:
        nb = json.load(f)
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if answers and meta.get("solution"):
            cell["source"] = answers[meta["grade_id"]]
    folder = os.path.join(root, "submitted", student, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, notebook)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(nb, f)
    return path


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The course after generate_assignment, autograde and export: (root, timings)."""
    root = course.setup(str(tmp_path_factory.mktemp("course")))
    timings = {}
    start = time.perf_counter()
    course.nbgrader(root, "generate_assignment", "*")
    timings["generate_assignment"] = time.perf_counter() - start
    for name in course.ASSIGNMENTS:
        submit(root, "alice", name, solution_cells(name))
        submit(root, "bob", name, None)
        submit(root, "carol", name, solution_cells(name, BUGS[name]))
    start = time.perf_counter()
    course.nbgrader(root, "autograde", "*")
    timings["autograde"] = time.perf_counter() - start
    start = time.perf_counter()
    course.nbgrader(root, "export", "--to", os.path.join(root, "grades.csv"))
    timings["export"] = time.perf_counter() - start
    return root, timings


def test_released_notebooks_are_nbgraders_student_versions(graded):
    root, _ = graded
    for name, notebook in course.ASSIGNMENTS.items():
        with open(os.path.join(root, "release", name, notebook), encoding="utf-8") as f:
            nb = json.load(f)
        text = "\n".join("".join(c["source"]) for c in nb["cells"])
        for marker in MARKERS:
            assert marker not in text, (name, marker)
        assert "raise NotImplementedError()" in text
        solutions = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("solution")]
        for cell in solutions:  # every answer is a stub now
            assert "raise NotImplementedError()" in "".join(cell["source"]), (name, cell)
        tests = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade")]
        assert tests and all(c["metadata"]["nbgrader"]["locked"] for c in tests)
        assert os.path.exists(os.path.join(root, "release", name, "README.md"))
    # The solutions are gone: e.g. the vjp of tanh, the adjoint's vjp call.
    released = open(os.path.join(root, "release", "01_vjps", "vjps.ipynb")).read()
    assert "1 - ans**2" not in released
    released = open(os.path.join(root, "release", "03_adjoint", "adjoint.ipynb")).read()
    assert "f_vjp(a)" not in released


def test_autograde_and_export(graded):
    """alice every point, bob none, carol all but the points of her one wrong item."""
    from nbgrader.api import Gradebook

    root, _ = graded
    with open(os.path.join(root, "grades.csv")) as f:
        rows = {(r["assignment"], r["student_id"]): r for r in csv.DictReader(f)}
    with open(os.path.join(root, "grades.csv")) as f:
        assert next(csv.reader(f)) == grader.NBGRADER_COLUMNS  # the grader writes the same
    with Gradebook("sqlite:///" + os.path.join(root, "gradebook.db")) as gb:
        for name, notebook in course.ASSIGNMENTS.items():
            items = grader.Assignment(name).items
            total = sum(item.points for item in items)
            wrong = BUGS[name][0]
            lost = [item.points for item in items if item.name == wrong][0]
            assert float(rows[name, "alice"]["score"]) == total
            assert float(rows[name, "bob"]["score"]) == 0
            assert float(rows[name, "carol"]["score"]) == total - lost
            assert float(rows[name, "alice"]["max_score"]) == total
            for student in ("alice", "bob", "carol"):
                submission = gb.find_submission_notebook(notebook[:-6], name, student)
                got = {g.name: g.score for g in submission.grades}
                points = {item.name: float(item.points) for item in items}
                if student == "alice":
                    assert got == points, student
                elif student == "bob":
                    assert got == dict.fromkeys(points, 0.0)
                else:
                    assert got == dict(points, **{wrong: 0.0}), name


def test_validate_fails_the_wrong_submissions(graded):
    root, timings = graded
    wrong = [
        os.path.join(root, "submitted", "carol", name, notebook)
        for name, notebook in course.ASSIGNMENTS.items()
    ]
    start = time.perf_counter()
    proc = course.nbgrader(root, "validate", *wrong)
    timings["validate"] = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    assert out.count("VALIDATION FAILED ON 1 CELL(S)!") == 3, out[-3000:]
    assert "Success!" not in out
    # Each failure says which function went wrong.
    assert re.search(r"argument 1 of my_matmul", out), out[-3000:]
    print("nbgrader seconds:", {k: round(v, 1) for k, v in timings.items()})
