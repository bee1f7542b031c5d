"""Write the student version of the assignment: `make assignment`.

    python tutorials/assignment/make_student.py [SOLUTION.ipynb [STUDENT.ipynb]]

Defaults: `assignment.ipynb` next to this file -> `student/assignment.ipynb` (gitignored).
As nbgrader does, every region of a code cell between a `### BEGIN SOLUTION` line and its
`### END SOLUTION` line (markers included) becomes, at the marker's indentation,

    # YOUR CODE HERE
    raise NotImplementedError()

and every output and execution count is cleared.
"""

import os
import re
import sys

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))
SOLUTION = os.path.join(HERE, "assignment.ipynb")
STUDENT = os.path.join(HERE, "student", "assignment.ipynb")

BEGIN = re.compile(r"^(\s*)#+\s*BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*#+\s*END SOLUTION\s*$")
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")


def strip_solutions(source, where="cell"):
    """`source` with each solution region replaced by the stub; returns (source, regions)."""
    lines, out, indent, regions = source.splitlines(), [], None, 0
    for number, line in enumerate(lines, 1):
        begin, end = BEGIN.match(line), END.match(line)
        if indent is None:
            if end:
                raise ValueError(f"{where}, line {number}: END SOLUTION without BEGIN SOLUTION")
            if begin:
                indent = begin.group(1)
                out.extend(indent + stub for stub in STUB)
                regions += 1
            else:
                out.append(line)
        elif begin:
            raise ValueError(f"{where}, line {number}: BEGIN SOLUTION inside a solution region")
        elif end:
            indent = None
    if indent is not None:
        raise ValueError(f"{where}: BEGIN SOLUTION without END SOLUTION")
    return "\n".join(out), regions


def make_student(solution=SOLUTION, student=STUDENT):
    """Write the student notebook; returns the number of solution regions replaced."""
    nb = nbformat.read(solution, as_version=4)
    total = 0
    for i, cell in enumerate(nb.cells):
        cell.metadata.pop("execution", None)  # nbclient's timestamps
        if cell.cell_type != "code":
            continue
        cell.source, regions = strip_solutions(cell.source, where=f"{solution}, cell {i}")
        total += regions
        cell.outputs = []
        cell.execution_count = None
    if total == 0:
        raise ValueError(f"{solution} has no ### BEGIN SOLUTION / ### END SOLUTION regions")
    os.makedirs(os.path.dirname(os.path.abspath(student)), exist_ok=True)
    nbformat.write(nb, student)
    return total


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 2:
        sys.exit(__doc__)
    solution = argv[0] if argv else SOLUTION
    student = argv[1] if len(argv) > 1 else STUDENT
    regions = make_student(solution, student)
    print(f"{student}: {regions} solution regions replaced by raise NotImplementedError()")


if __name__ == "__main__":
    main()
