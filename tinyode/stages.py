"""The stages k_0, k_1, … of one Runge–Kutta step, stacked, so that each combination
Σ_i w_i k_i is one product `w · K`.

`Stages` is the version to read: a list of stages, stacked for each product,
which works on raw arrays and traced values alike ("backprop" records it).
`StageBuffer` does the same for raw arrays only, faster: the stages are the rows
of one matrix allocated per step, so a product is one `w · rows` with no stacking
(on small states that is most of a step's cost: tests/bench B4, B6).
tests/test_solvers.py checks that both give the same steps.
"""

import tinyad.numpy as np
from tinyad import getval, isbox
from tinyad.backend import array_module


class Stages:
    """The stages as a list; `dot(w)` = Σ_i w_i k_i over the first len(w) of them."""

    def __init__(self, k0):
        self.ks = [k0]

    def append(self, k):
        self.ks.append(k)

    def __len__(self):
        return len(self.ks)

    def __getitem__(self, i):
        return self.ks[i]

    def dot(self, w):
        return np.tensordot(w, np.stack(self.ks[: len(w)]), 1)

    def raw_dot(self, w):
        """dot on the raw values: for the error estimate, which is never differentiated."""
        return np.tensordot(w, np.stack([getval(k) for k in self.ks[: len(w)]]), 1)


class StageBuffer:
    """The same for raw arrays: the stages are the rows of one (capacity, size) matrix."""

    def __init__(self, k0, capacity):
        self.shape = k0.shape
        self.rows = array_module(k0).empty((capacity, k0.size), dtype=k0.dtype)
        self.n = 0
        self.append(k0)

    def append(self, k):
        self.rows[self.n] = k.reshape(-1)
        self.n += 1

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.rows[i].reshape(self.shape)

    def dot(self, w):
        # ndarray.dot, the same BLAS product as @ at half its cost on a few stages (0.5 µs)
        return w.dot(self.rows[: len(w)]).reshape(self.shape)

    raw_dot = dot


def stages(k0, capacity, *step):
    """The stage stack for a step (t, y, h) from slope k0: a StageBuffer when nothing is traced."""
    if isbox(k0) or any(map(isbox, step)) or not hasattr(k0, "reshape"):
        return Stages(k0)
    return StageBuffer(k0, capacity)
