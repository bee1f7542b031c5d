"""The course assignment works both ways round.

The solution notebook passes the autograder; the student version that `make assignment`
writes fails every graded item, each with the NotImplementedError of its stub (never a crash
of the grader). The autograder runs as an instructor would run it: pytest in a subprocess.
"""

import ast
import importlib.util
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import nbformat
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ASSIGNMENT = os.path.join(ROOT, "tutorials", "assignment")
SOLUTION = os.path.join(ASSIGNMENT, "assignment.ipynb")
AUTOGRADER = os.path.join(ASSIGNMENT, "autograder.py")


def _load(name):
    spec = importlib.util.spec_from_file_location(
        f"assignment_{name}", os.path.join(ASSIGNMENT, f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_student = _load("make_student")


def _regions(source):
    return sum(1 for line in source.splitlines() if make_student.BEGIN.match(line))


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    path = tmp_path_factory.mktemp("student") / "assignment.ipynb"
    make_student.make_student(SOLUTION, str(path))
    return path


def _grade(notebook, tmp_path):
    """Run the autograder on `notebook`: {test id: (outcome, message)} from its JUnit report."""
    report = tmp_path / "report.xml"
    env = dict(os.environ, ASSIGNMENT_NOTEBOOK=str(notebook))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            AUTOGRADER,
            f"--junitxml={report}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.exists(), f"the autograder did not run:\n{proc.stdout}\n{proc.stderr}"
    cases = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
                message = (child.get("message") or "") + "\n" + (child.text or "")
        cases[case.get("name")] = (outcome, message)
    return proc, cases


@pytest.fixture(scope="module")
def solution_grades(tmp_path_factory):
    return _grade(SOLUTION, tmp_path_factory.mktemp("solution"))


def test_solution_notebook_runs_without_errors():
    autograder = _load("autograder")
    module, errors = autograder.load_notebook(SOLUTION)
    assert errors == [], f"cells of the solution notebook raised: {errors}"
    assert callable(module.augmented_dynamics)


def test_student_version_is_stripped(student):
    solution = nbformat.read(SOLUTION, as_version=4)
    stripped = nbformat.read(str(student), as_version=4)
    assert len(stripped.cells) == len(solution.cells)
    expected = sum(_regions(c.source) for c in solution.cells if c.cell_type == "code")
    assert expected >= 8
    stubs = 0
    for sol, cell in zip(solution.cells, stripped.cells):
        if cell.cell_type != "code":
            assert cell.source == sol.source
            continue
        assert cell.outputs == [] and cell.execution_count is None
        assert "BEGIN SOLUTION" not in cell.source and "END SOLUTION" not in cell.source
        ast.parse(cell.source)  # the stubs keep the indentation: still valid Python
        stubs += cell.source.count("raise NotImplementedError()")
        if _regions(sol.source) == 0:
            assert cell.source == sol.source  # cells without solutions are untouched
    assert stubs == expected
    # The solutions are gone: e.g. the vjp of tanh and the call of tinyad.vjp.
    text = "\n".join(c.source for c in stripped.cells)
    assert "1 - ans**2" not in text and "tinyad.vjp(" not in text


def test_stub_keeps_indentation():
    source = "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n"
    out, regions = make_student.strip_solutions(source)
    assert regions == 1
    assert out == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    with pytest.raises(ValueError, match="without END SOLUTION"):
        make_student.strip_solutions("### BEGIN SOLUTION\nx = 1\n")


def test_solution_passes_the_autograder(solution_grades):
    proc, cases = solution_grades
    failed = {name: msg for name, (outcome, msg) in cases.items() if outcome != "passed"}
    assert proc.returncode == 0 and not failed, f"{failed}\n{proc.stdout[-3000:]}"
    assert len(cases) >= 30


def test_student_version_fails_every_item_with_not_implemented(student, solution_grades, tmp_path):
    proc, cases = _grade(student, tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:]  # 1: tests failed (not a usage error)
    assert set(cases) == set(solution_grades[1])  # every graded item was collected and run
    for name, (outcome, message) in cases.items():
        assert outcome == "failure", f"{name}: {outcome} (the grader crashed?)\n{message}"
        assert "NotImplementedError" in message, f"{name} failed otherwise:\n{message}"
