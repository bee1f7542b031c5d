"""Every tutorial notebook executes without error (each asserts what it claims)."""

import glob
import os
import shutil

import pytest
from run_notebooks import execute

HERE = os.path.dirname(__file__)
NOTEBOOKS = sorted(glob.glob(os.path.join(HERE, "..", "tutorials", "*.ipynb")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, tmp_path):
    # Run a copy, so the committed outputs stay as `make tutorials` wrote them.
    copy = tmp_path / os.path.basename(path)
    shutil.copy(path, copy)
    execute(str(copy))
