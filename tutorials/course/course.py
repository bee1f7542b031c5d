"""An nbgrader course directory for the three assignments: `make assignment`.

    python tutorials/course/course.py [COURSE_DIR]

Writes COURSE_DIR (default tutorials/course/nbgrader/, ignored by git) as nbgrader expects
it: nbgrader_config.py, and source/<assignment>/ holding the instructor's notebook and the
students' README (STUDENTS.md there). Then runs `nbgrader generate_assignment` on every
assignment, which writes the student versions to release/<assignment>/: solutions replaced
by `raise NotImplementedError()`, hidden tests removed, test cells locked. The gradebook
is COURSE_DIR/gradebook.db. From there the usual nbgrader steps apply: collect into
submitted/<student>/<assignment>/, then `nbgrader autograde` and `nbgrader export`
(tutorials/course/README.md).
"""

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ASSIGNMENTS = {"01_vjps": "vjps.ipynb", "02_tape": "tape.ipynb", "03_adjoint": "adjoint.ipynb"}
DEFAULT_ROOT = os.path.join(HERE, "nbgrader")

CONFIG = """c = get_config()  # noqa: F821 (nbgrader's config loader defines it)
c.CourseDirectory.root = {root!r}
c.CourseDirectory.course_id = "tinyad"
c.CourseDirectory.db_url = "sqlite:///" + {db!r}
c.Execute.timeout = 300  # seconds per cell when nbgrader runs a notebook
"""


def setup(root, assignments=tuple(ASSIGNMENTS)):
    """Write nbgrader_config.py and source/<assignment>/ for `assignments` under `root`."""
    root = os.path.abspath(root)
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "nbgrader_config.py"), "w") as f:
        f.write(CONFIG.format(root=root, db=os.path.join(root, "gradebook.db")))
    for name in assignments:
        source = os.path.join(root, "source", name)
        os.makedirs(source, exist_ok=True)
        shutil.copy(os.path.join(HERE, name, ASSIGNMENTS[name]), source)
        shutil.copy(os.path.join(HERE, name, "STUDENTS.md"), os.path.join(source, "README.md"))
    return root


def nbgrader(root, *args, check=True, timeout=900):
    """Run the nbgrader command line in the course `root`; returns the CompletedProcess.

    The nbgrader next to this Python is used, with its folder first on PATH (nbgrader runs
    its database migrations with the `alembic` command found there).
    """
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(
        [os.path.join(bindir, "nbgrader"), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"nbgrader {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def release(root=DEFAULT_ROOT):
    """setup(), then `nbgrader generate_assignment` of every assignment (all in one run)."""
    root = setup(root)
    nbgrader(root, "generate_assignment", "*", "--force")
    return root


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1 or argv[:1] in (["-h"], ["--help"]):
        sys.exit(__doc__)
    root = release(argv[0] if argv else DEFAULT_ROOT)
    for name, notebook in ASSIGNMENTS.items():
        print(f"released {os.path.join(root, 'release', name, notebook)}")


if __name__ == "__main__":
    main()
