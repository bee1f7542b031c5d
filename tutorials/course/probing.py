"""What a graded item is, and the helpers its probes use.

Each assignment's `items.py` lists its items. An item's `probe(ns)` runs in the grader's
child process, next to the submission (`ns` is the namespace its notebook left behind): it
yields `(key, thunk)` pairs, each thunk computing one value from the submission's functions
on fixed inputs. The child only reports the values. The parent (grader.py) never runs a
probe: it compares the values with the instructor's, computed by the same probes on the
solution notebook, with the item's tolerances (or with the item's own `judge`).
"""

import numpy

__all__ = [
    "Item",
    "Exact",
    "Missing",
    "Mutant",
    "need",
    "memo",
    "rng",
    "load_items",
    "load_mutants",
]


class Item:
    """One graded item: the grade cell `name` of the notebook, worth `points`.

    `probe(ns)` yields (key, thunk) pairs (see the module docstring). Arrays are compared
    entrywise: |got - expected| <= atol * scale + rtol * |expected|, with scale the largest
    |expected| of that array (at least 1), so that rounding noise in an entry that should
    be 0 is not an error. `judge(got, expected)`, if given, runs in the parent instead and
    returns the list of failures (strings); `got` and `expected` map keys to values.
    """

    def __init__(self, name, points, title, probe, rtol=1e-9, atol=1e-12, judge=None):
        self.name, self.points, self.title = name, points, title
        self.probe, self.rtol, self.atol, self.judge = probe, rtol, atol, judge

    def __repr__(self):
        return f"Item({self.name!r}, {self.points} points)"


class Mutant:
    """A bug seeded into the instructor's solution, for testing the grader.

    In the solution cell with nbgrader grade_id `cell`, the text `old` (which must occur
    exactly once there) becomes `new`; the item `item` must then lose its points.
    """

    def __init__(self, item, cell, old, new, what):
        self.item, self.cell, self.old, self.new, self.what = item, cell, old, new, what

    def __repr__(self):
        return f"Mutant({self.item!r}: {self.what})"


class Exact:
    """A value compared exactly, not numerically: names, shapes, the structure of a tape.

    It must be JSON: str, int, float, bool, None, and lists and dicts of those.
    """

    def __init__(self, value):
        self.value = value


class Missing(Exception):
    """The submission does not define a name that an item needs."""

    def __init__(self, name):
        super().__init__(f"the notebook does not define {name!r}")
        self.name = name


def need(ns, name):
    """`ns[name]`, or Missing naming it."""
    if name not in ns:
        raise Missing(name)
    return ns[name]


def memo(thunk):
    """`thunk`, computed once however often it is called (several keys from one computation).

    An exception is raised again, the same, at every call.
    """
    cache = []

    def once():
        if not cache:
            try:
                cache.append((True, thunk()))
            except Exception as e:  # the submission's error, reported under every key
                cache.append((False, e))
        ok, value = cache[0]
        if not ok:
            raise value
        return value

    return once


def rng(seed):
    """The fixed inputs' random generator: the same numbers in every process."""
    return numpy.random.default_rng(seed)


def load_items(assignment_dir):
    """The `items.py` module of the assignment in `assignment_dir` (ASSIGNMENT, NOTEBOOK, ITEMS)."""
    import importlib.util
    import os

    path = os.path.join(assignment_dir, "items.py")
    name = "course_items_" + os.path.basename(os.path.normpath(assignment_dir))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_mutants(assignment_dir):
    """The `mutants.py` module of an assignment: MUTANTS (bugs) and EQUIVALENT (rewrites that
    are still right, so must keep every point)."""
    import importlib.util
    import os

    path = os.path.join(assignment_dir, "mutants.py")
    name = "course_mutants_" + os.path.basename(os.path.normpath(assignment_dir))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
