"""Execute notebooks with nbclient: `make tutorials` (in place, outputs saved) and the tests.

python tests/run_notebooks.py --in-place tutorials/*.ipynb
"""

import argparse
import os
import sys
import time

import nbformat
from nbclient import NotebookClient


def execute(path, in_place=False, timeout=600):
    """Run every cell of the notebook at `path` in its own folder; returns the seconds it took.

    Raises nbclient's CellExecutionError (naming the cell and the error) if a cell fails.
    """
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": os.path.dirname(path) or "."}},
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    if in_place:
        nbformat.write(nb, path)
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("--in-place", action="store_true", help="save the outputs")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        seconds = execute(path, in_place=args.in_place)
        print(f"{path}: {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
