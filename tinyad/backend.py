"""Which array module a value lives in: numpy by default, CuPy for CuPy arrays.

The core and the solvers create arrays (zeros for a missing cotangent, a one-hot
row, a solver buffer) only through `array_module(x)`, so a device array is never
converted to numpy behind the user's back.
"""

import numpy

__all__ = ["array_module"]


def array_module(x):
    """The module (numpy, cupy, or an Array API namespace) that owns `x`."""
    t = type(x)
    if t is numpy.ndarray or t is float or t is int or t is numpy.float64:
        return numpy
    if t.__module__.startswith("cupy"):
        import cupy

        return cupy
    namespace = getattr(x, "__array_namespace__", None)
    if namespace is not None and not t.__module__.startswith("numpy"):
        return namespace()
    return numpy
