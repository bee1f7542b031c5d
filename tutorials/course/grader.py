"""The course grader: points per item, in a process the submission cannot reach.

    python tutorials/course/grader.py ASSIGNMENT SUBMISSION... [--out DIR]
    python tutorials/course/grader.py all                # the three solutions: every point
    python tutorials/course/grader.py all --mutants      # the seeded bugs: caught?
    make grade ASSIGNMENT=01_vjps SUBMISSIONS="alice.ipynb bob.ipynb"

ASSIGNMENT is 01_vjps, 02_tape or 03_adjoint (or the path of an assignment folder). A
SUBMISSION is a notebook (the student is its file name without .ipynb) or nbgrader's
`submitted` folder, whose submitted/<student>/<assignment>/<notebook>.ipynb are graded.

How it grades. The instructor's solution notebook runs first, in a child process
(harness.py), and its values become the references, kept in this process only. Then
each submission runs in a child process of its own, with a time limit, a memory limit, and
an empty working folder; that child evaluates the submission's functions on fixed inputs
(the probes of the assignment's items.py) and reports the numbers. This process compares
them with the references, item by item. Whatever a submission replaces in its own process
(tinyad.check_grads, numpy.testing.assert_allclose, this grader's modules), it changes
only the numbers it reports, which must still be the right ones.

Writes, in --out (default tutorials/course/grades/<assignment>):
- grades.csv: one row per student, the columns of `nbgrader export`;
- items.csv: one row per student and item: score, max_score, message;
- <student>/results.json: Gradescope's format (score; tests with name, score,
  max_score, output, visibility). --results PATH writes it to PATH instead, for
  Gradescope's run_autograder with one submission.
"""

import argparse
import csv
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from probing import load_items, load_mutants  # noqa: E402

HARNESS = os.path.join(HERE, "harness.py")
ASSIGNMENTS = ("01_vjps", "02_tape", "03_adjoint")
NBGRADER_COLUMNS = [
    "assignment",
    "duedate",
    "timestamp",
    "student_id",
    "last_name",
    "first_name",
    "email",
    "raw_score",
    "late_submission_penalty",
    "score",
    "max_score",
]
SHOWN_FAILURES = 3  # per item: the first few failing checks, then how many more


class Assignment:
    """An assignment folder: its items (items.py) and its solution notebook."""

    def __init__(self, name_or_path):
        path = name_or_path
        if not os.path.isdir(path):
            path = os.path.join(HERE, name_or_path)
        if not os.path.isfile(os.path.join(path, "items.py")):
            raise SystemExit(
                f"no assignment {name_or_path!r}: expected one of {', '.join(ASSIGNMENTS)} "
                "or a folder with an items.py"
            )
        self.path = os.path.abspath(path)
        self.items_module = load_items(self.path)
        self.name = self.items_module.ASSIGNMENT
        self.items = self.items_module.ITEMS
        self.solution = os.path.join(self.path, self.items_module.NOTEBOOK)

    @property
    def max_score(self):
        return sum(item.points for item in self.items)


# ---------------------------------------------------------------- the child process


def _limit_memory(megabytes):
    def limit():
        import resource

        size = megabytes * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    return limit


def run_child(args, timeout, memory_mb=4096):
    """Run harness.py with `args` in an empty folder, in its own process group.

    Returns (return code or None when it ran past `timeout`, seconds, the tail of its
    stderr). On a timeout the whole group is killed (a submission may start processes).
    """
    work = tempfile.mkdtemp(prefix="grader-")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": work,
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    stderr_path = os.path.join(work, "stderr.txt")
    start = time.perf_counter()
    try:
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, HARNESS, *args],
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
                preexec_fn=_limit_memory(memory_mb) if os.name == "posix" else None,
            )
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # what the submission left running
                except ProcessLookupError:
                    pass
                proc.wait()
        with open(stderr_path, "rb") as f:
            f.seek(max(0, os.path.getsize(stderr_path) - 2000))
            tail = f.read().decode("utf-8", "replace")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return code, time.perf_counter() - start, tail


def read_values(out, item):
    """What the child reported for `item`: (values {key: array or JSON}, errors, order), or
    None when it wrote nothing (it stopped or was stopped before that item)."""
    path = os.path.join(out, item.name + ".json")
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        values = {key: value for key, value in record.get("exact", {}).items()}
        names = record.get("arrays", {})
        if names:
            with numpy.load(os.path.join(out, item.name + ".npz"), allow_pickle=False) as npz:
                for key, name in names.items():
                    values[key] = numpy.asarray(npz[name], dtype=numpy.float64)
        errors = {str(k): str(v) for k, v in record.get("errors", {}).items()}
        return values, errors, [str(k) for k in record.get("order", [])]
    except FileNotFoundError:
        return None
    except Exception as e:  # a file the submission wrote over, say
        return {}, {"*": f"the grader could not read its results ({type(e).__name__})"}, []


def read_load(out):
    try:
        with open(os.path.join(out, "load.json"), encoding="utf-8") as f:
            return json.load(f)
    except Exception:
        return None


# ---------------------------------------------------------------- comparing


def compare_arrays(got, expected, rtol, atol):
    """None when `got` matches `expected`, else a sentence: the worst entry, both values and
    the relative error (or the shapes, or the non-finite entry)."""
    if got.shape != expected.shape:
        return f"shape {got.shape}, expected {expected.shape}"
    if got.size == 0:
        return None
    scale = max(1.0, float(numpy.max(numpy.abs(expected))))
    with numpy.errstate(invalid="ignore", over="ignore"):
        excess = numpy.abs(got - expected) - (atol * scale + rtol * numpy.abs(expected))
    excess = numpy.where(numpy.isfinite(got), excess, numpy.inf)
    if not excess.max() > 0:
        return None
    i = numpy.unravel_index(numpy.argmax(excess), got.shape)
    entry = f"entry {tuple(int(k) for k in i)}: " if got.ndim else ""
    g, e = float(got[i]), float(expected[i])
    if not numpy.isfinite(g):
        return f"{entry}got {g}, expected {e:.10g}"
    rel = abs(g - e) / max(abs(e), 1e-300)
    return (
        f"worst {entry}got {g:.10g}, expected {e:.10g}, relative error {rel:.2g} "
        f"(tolerance rtol={rtol:g})"
    )


def check_values(item, values, errors, expected):
    """Failures of one submission's values on `item` as (check, problem) pairs (empty: full
    marks); `check` is None for a failure of the whole item."""
    if item.judge is not None and not errors:
        return [(None, problem) for problem in item.judge(values, expected)]
    failures = []
    for key, want in expected.items():
        if key in errors:
            failures.append((key, errors[key]))
        elif "*" in errors:
            failures.append((None, errors["*"]))
        elif key not in values:
            failures.append((key, "no value"))
        elif isinstance(want, numpy.ndarray):
            got = values[key]
            if not isinstance(got, numpy.ndarray):
                failures.append((key, f"got {got!r}, expected an array"))
                continue
            problem = compare_arrays(got, want, item.rtol, item.atol)
            if problem:
                failures.append((key, problem))
        elif values[key] != want:
            failures.append((key, f"got {values[key]!r}, expected {want!r}"))
    return failures


def summarize(failures, total):
    """The message of an item: 'ok', or its failures, one line per distinct problem (an
    error shared by many checks, such as an unanswered stub, is said once)."""
    if not failures:
        return f"ok ({total} checks)"
    groups = {}
    for key, problem in failures:
        groups.setdefault(problem, []).append(key)
    lines = []
    for problem, keys in groups.items():
        if len(keys) == 1 or keys[0] is None:
            lines.append(f"{keys[0]}: {problem}" if keys[0] else problem)
        else:
            more = f"{len(keys) - 1} more check" + ("s" if len(keys) > 2 else "")
            lines.append(f"{keys[0]} (and {more}): {problem}")
    shown = lines[:SHOWN_FAILURES]
    if len(lines) > SHOWN_FAILURES:
        shown.append(f"... and {len(lines) - SHOWN_FAILURES} more")
    return f"{len(failures)} of {total} checks failed:\n" + "\n".join(shown)


def cell_context(load):
    """A sentence about the notebook's cells that raised, to explain missing names."""
    cells = (load or {}).get("cells", [])
    if not cells:
        return ""
    shown = "; ".join(f"cell {c['cell']}: {c['error']}" for c in cells[:3])
    more = f" (and {len(cells) - 3} more)" if len(cells) > 3 else ""
    return f" Cells that raised when the notebook ran: {shown}{more}."


def judge_submission(assignment, out, references, status, only=None):
    """[(item, score, message)] for the child's results in `out` (the items named in `only`,
    or all).

    `status` says why the child stopped early, if it did (timeout, crash), for the items
    it reported nothing on.
    """
    load = read_load(out)
    results = []
    for item in assignment.items:
        if only is not None and item.name not in only:
            continue
        expected = references[item.name]
        if load is None or "unreadable" in (load or {}):
            why = (load or {}).get("unreadable") or status or "the grader's process failed"
            results.append((item, 0, f"the notebook could not be run: {why}"))
            continue
        reported = read_values(out, item)
        if reported is None:
            results.append((item, 0, f"not graded: {status or 'the grader process stopped'}"))
            continue
        values, errors, _ = reported
        failures = check_values(item, values, errors, expected)
        message = summarize(failures, len(expected))
        if failures and any("does not define" in problem for _, problem in failures):
            message += cell_context(load)
        results.append((item, 0 if failures else item.points, message))
    return results


# ---------------------------------------------------------------- references and grading


def references(assignment, timeout):
    """The instructor's values for every item: the solution notebook through the same probes."""
    out = tempfile.mkdtemp(prefix="grader-reference-")
    try:
        code, _, tail = run_child([assignment.path, assignment.solution, out], timeout)
        if code != 0:
            raise RuntimeError(f"the solution notebook did not run (exit {code}):\n{tail}")
        refs = {}
        for item in assignment.items:
            reported = read_values(out, item)
            if reported is None or reported[1]:
                raise RuntimeError(
                    f"{assignment.name}: the solution fails its own item {item.name}: "
                    f"{reported and reported[1]}\n{tail}"
                )
            values, _, order = reported
            refs[item.name] = {key: values[key] for key in order}
        return refs
    finally:
        shutil.rmtree(out, ignore_errors=True)


def grade(assignment, notebook, refs, timeout, memory_mb=4096):
    """Grade one notebook: ([(item, score, message)], seconds)."""
    out = tempfile.mkdtemp(prefix="grader-results-")
    try:
        code, seconds, tail = run_child(
            [assignment.path, os.path.abspath(notebook), out], timeout, memory_mb
        )
        if code is None:
            status = f"the submission ran past the time limit of {timeout:g} s"
        elif code != 0:
            status = f"the grader's process exited with code {code}"
            if tail.strip():
                status += ": " + tail.strip().splitlines()[-1][:300]
        else:
            status = None
        return judge_submission(assignment, out, refs, status), seconds
    finally:
        shutil.rmtree(out, ignore_errors=True)


def find_submissions(assignment, paths):
    """[(student, notebook path)] from notebook files and nbgrader `submitted` folders."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            pattern = os.path.join(path, "*", assignment.name, assignment.items_module.NOTEBOOK)
            for notebook in sorted(glob.glob(pattern)):
                student = os.path.basename(os.path.dirname(os.path.dirname(notebook)))
                found.append((student, notebook))
        elif os.path.isfile(path):
            found.append((os.path.splitext(os.path.basename(path))[0], path))
        else:
            raise SystemExit(f"no such submission: {path}")
    return found


def results_json(assignment, results, seconds, visibility):
    """Gradescope's results.json for one submission."""
    return {
        "score": float(sum(score for _, score, _ in results)),
        "execution_time": round(seconds, 2),
        "output": f"{assignment.name}: graded by tutorials/course/grader.py",
        "tests": [
            {
                "name": f"{item.name}: {item.title}",
                "score": float(score),
                "max_score": float(item.points),
                "output": message,
                "visibility": visibility,
            }
            for item, score, message in results
        ],
    }


def write_reports(assignment, graded, out, visibility="visible", results_path=None):
    """grades.csv, items.csv and results.json for `graded` [(student, results, seconds)]."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "grades.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(NBGRADER_COLUMNS)
        for student, results, _ in graded:
            score = float(sum(s for _, s, _ in results))
            writer.writerow(
                [assignment.name, "", "", student, "", "", "", score, 0.0, score]
                + [float(assignment.max_score)]
            )
    with open(os.path.join(out, "items.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["assignment", "student_id", "item", "score", "max_score", "message"])
        for student, results, _ in graded:
            for item, score, message in results:
                writer.writerow(
                    [assignment.name, student, item.name, float(score), item.points, message]
                )
    for student, results, seconds in graded:
        path = results_path or os.path.join(out, student, "results.json")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(results_json(assignment, results, seconds, visibility), f, indent=1)


# ---------------------------------------------------------------- mutation testing


def mutate(notebook, mutant):
    """The notebook (a dict, as read from JSON) with `mutant` applied to its solution cell."""
    nb = json.loads(json.dumps(notebook))
    cells = [
        c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == mutant.cell
    ]
    if len(cells) != 1:
        raise ValueError(f"{mutant}: no single cell with grade_id {mutant.cell!r}")
    source = "".join(cells[0]["source"])
    if source.count(mutant.old) != 1:
        raise ValueError(
            f"{mutant}: {mutant.old!r} occurs {source.count(mutant.old)} times in cell "
            f"{mutant.cell!r}, not once"
        )
    cells[0]["source"] = source.replace(mutant.old, mutant.new)
    return nb


def mutation_test(assignment, refs, timeout=600):
    """Grade every seeded bug and every equivalent rewrite of the solution, on its own item.

    Returns [(mutant, is_bug, score, message)]. The mutants are the instructor's own code, so
    they share one child process (harness.py --batch), each in its own module.
    """
    module = load_mutants(assignment.path)
    cases = [(m, True) for m in module.MUTANTS] + [(m, False) for m in module.EQUIVALENT]
    with open(assignment.solution, encoding="utf-8") as f:
        solution = json.load(f)
    folder = tempfile.mkdtemp(prefix="grader-mutants-")
    try:
        batch = []
        for k, (mutant, _) in enumerate(cases):
            path = os.path.join(folder, f"m{k:02d}.ipynb")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(mutate(solution, mutant), f)
            batch.append({"name": f"m{k:02d}", "notebook": path, "items": [mutant.item]})
        with open(os.path.join(folder, "batch.json"), "w") as f:
            json.dump(batch, f)
        out = os.path.join(folder, "out")
        code, _, tail = run_child(
            [assignment.path, "--batch", os.path.join(folder, "batch.json"), out], timeout
        )
        if code != 0:
            raise RuntimeError(f"the mutants' process failed (exit {code}):\n{tail}")
        report = []
        for entry, (mutant, is_bug) in zip(batch, cases):
            ((_, score, message),) = judge_submission(
                assignment, os.path.join(out, entry["name"]), refs, None, only=[mutant.item]
            )
            report.append((mutant, is_bug, score, message))
        return report
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def print_mutation_report(assignment, report):
    """Print the table; returns the fraction of bugs caught by their own item."""
    bugs = [(m, s) for m, is_bug, s, _ in report if is_bug]
    caught = sum(1 for _, s in bugs if s == 0)
    print(f"{assignment.name}: {caught} of {len(bugs)} seeded bugs caught by their own item")
    for mutant, is_bug, score, message in report:
        if is_bug:
            verdict = "caught " if score == 0 else "MISSED "
        else:
            verdict = "right  " if score > 0 else "UNFAIR "  # a correct rewrite must pass
        print(f"  {verdict} {mutant.item:20s} {mutant.what}")
        if verdict.strip() in ("MISSED", "UNFAIR"):
            print(f"  {'':28s} {message.splitlines()[0]}")
    return caught / len(bugs) if bugs else 1.0


def print_results(name, results, seconds, max_score):
    total = sum(score for _, score, _ in results)
    print(f"{name}: {total:g} / {max_score:g} ({seconds:.1f} s)")
    for item, score, message in results:
        lines = message.splitlines()
        print(f"  {item.name:22s} {score:g} / {item.points:g}  {lines[0]}")
        for line in lines[1:]:
            print(f"  {'':22s}   {line}")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("assignment", help=f"{', '.join(ASSIGNMENTS)}, a folder, or 'all'")
    parser.add_argument("submissions", nargs="*", help="notebooks or nbgrader submitted/ folders")
    parser.add_argument("--out", help="where the reports go")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per submission")
    parser.add_argument("--memory", type=int, default=4096, help="MiB per submission")
    parser.add_argument("--visibility", default="visible", help="Gradescope test visibility")
    parser.add_argument("--results", help="write the one submission's results.json here")
    parser.add_argument(
        "--mutants", action="store_true", help="grade the seeded bugs of mutants.py instead"
    )
    args = parser.parse_args(argv)

    if args.mutants:
        names = ASSIGNMENTS if args.assignment == "all" else [args.assignment]
        rates = []
        for name in names:
            assignment = Assignment(name)
            report = mutation_test(assignment, references(assignment, args.timeout))
            rates.append(print_mutation_report(assignment, report))
            unfair = [m for m, is_bug, score, _ in report if not is_bug and score == 0]
            rates[-1] = rates[-1] if not unfair else 0.0
        return 0 if min(rates) >= 0.9 else 1

    if args.assignment == "all":
        if args.submissions:
            parser.error("with 'all', no submissions: it grades the three solution notebooks")
        jobs = [(Assignment(name), None) for name in ASSIGNMENTS]
    else:
        jobs = [(Assignment(args.assignment), args.submissions)]
    complete = True
    for assignment, paths in jobs:
        refs = references(assignment, args.timeout)
        if paths is None:
            submissions = [("solution", assignment.solution)]
        else:
            submissions = find_submissions(assignment, paths)
            if not submissions:
                parser.error("no submissions found")
        if args.results and len(submissions) != 1:
            parser.error("--results takes exactly one submission")
        graded = []
        for student, notebook in submissions:
            results, seconds = grade(assignment, notebook, refs, args.timeout, args.memory)
            graded.append((student, results, seconds))
            print_results(f"{assignment.name} {student}", results, seconds, assignment.max_score)
        out = args.out or os.path.join(HERE, "grades", assignment.name)
        if args.assignment == "all" and args.out:
            out = os.path.join(args.out, assignment.name)
        write_reports(assignment, graded, out, args.visibility, args.results)
        print(f"wrote {os.path.join(out, 'grades.csv')}")
        if paths is None:
            complete &= all(score == item.points for item, score, _ in graded[0][1])
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
