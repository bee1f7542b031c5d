"""Shared by the course tests: the course's own modules, loaded from tutorials/course/."""

import importlib.util
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
COURSE = os.path.join(ROOT, "tutorials", "course")


def load(name):
    """tutorials/course/<name>.py as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"course_{name}", os.path.join(COURSE, name + ".py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
