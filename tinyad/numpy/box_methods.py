"""What makes a Box read like an ndarray: operators, attributes, methods, and numpy's hooks.

tinyad.core.Box knows nothing about numpy. Importing this module copies the
methods of `ArrayMethods` onto it, so `x @ W + b`, `x.T`, `x.sum(0)` and `x[i]`
on a traced value call the primitives of tinyad.numpy.

numpy's own hooks are answered too. `ndarray + box` reaches
`Box.__array_ufunc__`, which sends the arithmetic ufuncs to our primitives;
every other raw numpy function called on a Box raises a TypeError naming it,
instead of quietly turning the Box into a constant and cutting the gradient.
"""

import importlib

import numpy as onp

from ..core import Box, read_value
from . import ops

__all__ = ["ArrayMethods"]


def _raw_index(index):
    """An index with any Box in it unboxed: indices are constants, never traced."""
    if isinstance(index, tuple):
        return tuple(read_value(i) for i in index)
    return read_value(index)


def _shape_arg(shape):
    """`x.reshape(2, 3)` and `x.reshape((2, 3))` both mean shape (2, 3)."""
    return shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape


# The ufuncs that are Python operators, sent to our primitives so `ndarray + box` is traced.
_OPERATOR_UFUNCS = {
    onp.add: ops.add,
    onp.subtract: ops.subtract,
    onp.multiply: ops.multiply,
    onp.divide: ops.divide,
    onp.power: ops.power,
    onp.matmul: ops.matmul,
    onp.remainder: ops.mod,
    onp.negative: ops.negative,
}
# Comparisons give raw boolean arrays: they carry no gradient.
_COMPARISON_UFUNCS = {
    onp.less,
    onp.less_equal,
    onp.greater,
    onp.greater_equal,
    onp.equal,
    onp.not_equal,
}


def _untraceable(module, name):
    """The TypeError for raw `module.name` (e.g. numpy.sin) called on a Box, with the fix."""
    ours = "tinyad." + module
    try:
        ours_fun = getattr(importlib.import_module(ours), name, None)
        # differentiable there, not just numpy's own passed through for constants
        has = ours_fun is not None and not getattr(ours_fun, "constants_only", False)
    except ImportError:
        has = False
    if has:
        fix = f"use {ours}.{name} (import tinyad.numpy as np)"
    else:
        fix = (
            f"{ours} has no {name}: write it with tinyad.numpy's functions, or as a "
            "@tinyad.primitive with its vjp"
        )
    return TypeError(
        f"{module}.{name} was called on a traced value; raw numpy functions cannot be "
        f"differentiated: {fix}"
    )


class ArrayMethods:
    """The ndarray interface of a Box; every method is copied onto tinyad.core.Box."""

    # ---- arithmetic operators (each a primitive; reflected forms swap the operands)
    def __add__(self, other):
        return ops.add(self, other)

    def __radd__(self, other):
        return ops.add(other, self)

    def __sub__(self, other):
        return ops.subtract(self, other)

    def __rsub__(self, other):
        return ops.subtract(other, self)

    def __mul__(self, other):
        return ops.multiply(self, other)

    def __rmul__(self, other):
        return ops.multiply(other, self)

    def __truediv__(self, other):
        return ops.divide(self, other)

    def __rtruediv__(self, other):
        return ops.divide(other, self)

    def __pow__(self, other):
        return ops.power(self, other)

    def __rpow__(self, other):
        return ops.power(other, self)

    def __mod__(self, other):
        return ops.mod(self, other)

    def __rmod__(self, other):
        return ops.mod(other, self)

    def __matmul__(self, other):
        return ops.matmul(self, other)

    def __rmatmul__(self, other):
        return ops.matmul(other, self)

    def __neg__(self):
        return ops.negative(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return ops.absolute(self)

    # ---- comparisons: raw boolean arrays of the values (no gradient)
    def __lt__(self, other):
        return read_value(self) < read_value(other)

    def __le__(self, other):
        return read_value(self) <= read_value(other)

    def __gt__(self, other):
        return read_value(self) > read_value(other)

    def __ge__(self, other):
        return read_value(self) >= read_value(other)

    def __eq__(self, other):
        return read_value(self) == read_value(other)

    def __ne__(self, other):
        return read_value(self) != read_value(other)

    __hash__ = object.__hash__  # a Box is its own identity, like any traced node

    # ---- indexing and iteration
    def __getitem__(self, index):
        return ops.getitem(self, index=_raw_index(index))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    # ---- attributes
    @property
    def shape(self):
        return ops._shape(self)

    @property
    def ndim(self):
        return len(ops._shape(self))

    @property
    def size(self):
        return int(onp.prod(ops._shape(self)))

    @property
    def dtype(self):
        return ops._dtype(self)

    @property
    def T(self):
        return ops.transpose(self)

    # ---- methods, with ndarray's signatures
    def reshape(self, *shape, order="C"):
        return ops.reshape(self, _shape_arg(shape), order=order)

    def ravel(self, order="C"):
        return ops.ravel(self, order=order)

    flatten = ravel

    def transpose(self, *axes):
        return ops.transpose(self, _shape_arg(axes) if axes else None)

    def swapaxes(self, axis1, axis2):
        return ops.swapaxes(self, axis1, axis2)

    def squeeze(self, axis=None):
        return ops.squeeze(self, axis)

    def astype(self, dtype):
        return ops.astype(self, dtype)

    def dot(self, other):
        return ops.dot(self, other)

    def sum(self, axis=None, dtype=None, keepdims=False):
        return ops.sum(self, axis, dtype, keepdims=keepdims)

    def mean(self, axis=None, dtype=None, keepdims=False):
        return ops.mean(self, axis, dtype, keepdims=keepdims)

    def prod(self, axis=None, dtype=None, keepdims=False):
        return ops.prod(self, axis, dtype, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return ops.max(self, axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        return ops.min(self, axis, keepdims=keepdims)

    def var(self, axis=None, dtype=None, ddof=0, keepdims=False):
        return ops.var(self, axis, dtype, ddof=ddof, keepdims=keepdims)

    def std(self, axis=None, dtype=None, ddof=0, keepdims=False):
        return ops.std(self, axis, dtype, ddof=ddof, keepdims=keepdims)

    def cumsum(self, axis=None, dtype=None):
        return ops.cumsum(self, axis, dtype)

    def clip(self, min=None, max=None):
        return ops.clip(self, min, max)

    def repeat(self, repeats, axis=None):
        return ops.repeat(self, repeats, axis)

    # ---- numpy's hooks: arithmetic ufuncs are traced, anything else is refused loudly
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method == "__call__" and not kwargs:
            prim = _OPERATOR_UFUNCS.get(ufunc)
            if prim is not None:
                return prim(*inputs)
            if ufunc in _COMPARISON_UFUNCS:
                return ufunc(*[read_value(x) for x in inputs])
        if method != "__call__":  # e.g. numpy.add.reduce
            raise _untraceable("numpy", f"{ufunc.__name__}.{method}")
        raise _untraceable("numpy", ufunc.__name__)

    def __array_function__(self, func, types, args, kwargs):
        raise _untraceable(func.__module__, func.__name__)

    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "a traced value cannot be converted to a numpy array (numpy.asarray, numpy.array or "
            "a raw numpy function was called on it): that would silently drop the gradient. "
            "Use tinyad.numpy (import tinyad.numpy as np; np.asarray keeps it traced)."
        )


_SKIP = {
    "__module__",
    "__qualname__",
    "__doc__",
    "__dict__",
    "__weakref__",
    "__firstlineno__",
    "__static_attributes__",
}
for _name, _attr in vars(ArrayMethods).items():
    if _name not in _SKIP:
        setattr(Box, _name, _attr)
