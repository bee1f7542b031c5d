"""A strict stand-in for CuPy: an array type that refuses every implicit trip to numpy.

`StrictArray` wraps a numpy array and behaves as a CuPy array does where it
matters for leaks:

- `numpy.asarray(x)` (`__array__`) raises TypeError, as CuPy's does;
- a ufunc or numpy function that mixes it with a numpy.ndarray (even a 0-d one)
  raises TypeError; Python and numpy scalars are fine. Numpy's functions dispatch to it
  through `__array_ufunc__` / `__array_function__` (unwrap, call numpy, rewrap),
  but creation functions (`numpy.zeros(shape)`) do not: their numpy results then
  collide with device arrays and raise, which is how a leak shows up;
- reductions return 0-d arrays, never host scalars;
- explicit host transfers (`float`, `bool`, `int`, `.item()`, `.tolist()`,
  `.get()`) work and are counted in `host_syncs`, so a test can count them.

`xp` (also `x.__array_namespace__()`) is the "cupy" module: numpy's names, with
arrays in and out as StrictArray; `xp.asarray(numpy_array)` is the explicit
host-to-device transfer.
"""

import numpy

__all__ = ["StrictArray", "xp", "host_syncs", "to_device", "to_host"]

host_syncs = 0  # explicit device-to-host transfers so far; tests reset and read it


def _sync():
    global host_syncs
    host_syncs += 1


def _unwrap(x):
    """Raw numpy values of StrictArrays, recursing into lists, tuples and dicts."""
    if type(x) is StrictArray:
        return x.a
    if type(x) is numpy.ndarray:  # even 0-d: CuPy takes numpy scalars, not 0-d arrays
        raise TypeError(
            f"implicit conversion of a numpy.ndarray of shape {x.shape} to a device array; "
            "convert explicitly with xp.asarray (as CuPy requires)"
        )
    if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
        return type(x)(_unwrap(v) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v) for k, v in x.items()}
    return x


def _index(key):
    """An index: StrictArrays unwrapped; numpy index arrays are allowed (CuPy copies them)."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    return key.a if type(key) is StrictArray else key


def _wrap(x):
    """numpy results as StrictArrays (numpy scalars become 0-d arrays, as CuPy returns)."""
    if isinstance(x, (numpy.ndarray, numpy.generic)):
        return StrictArray(x)
    if isinstance(x, tuple):
        items = [_wrap(v) for v in x]
        return type(x)(*items) if hasattr(x, "_fields") else tuple(items)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _foreign(x):
    """True for another array type with numpy hooks (a tinyad Box): let it answer instead."""
    return hasattr(x, "__array_ufunc__") and not isinstance(
        x, (StrictArray, numpy.ndarray, numpy.generic)
    )


# ndarray methods forwarded as they are (arguments unwrapped, results wrapped)
_METHODS = {
    "reshape", "ravel", "flatten", "transpose", "swapaxes", "squeeze", "copy", "astype",
    "sum", "mean", "prod", "max", "min", "var", "std", "cumsum", "any", "all", "dot",
    "clip", "repeat", "argmax", "argmin", "nonzero",
}  # fmt: skip


class StrictArray:
    __slots__ = ("a",)
    __array_priority__ = 100  # as CuPy's

    def __init__(self, a):
        self.a = a if type(a) is numpy.ndarray else numpy.asarray(a)

    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "implicit conversion of a StrictArray (a stand-in for a CuPy array) to a numpy "
            "array is not allowed; use .get() to copy it to the host explicitly"
        )

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if any(_foreign(x) for x in inputs):
            return NotImplemented
        if method == "at":  # ufunc.at(a, indices, b): indices may be numpy arrays, as in CuPy
            a, indices, *rest = inputs
            return getattr(ufunc, method)(_unwrap(a), _index(indices), *_unwrap(rest))
        result = getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs))
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        if not all(issubclass(t, (StrictArray, numpy.ndarray)) for t in types):
            return NotImplemented
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def __array_namespace__(self, api_version=None):
        return xp

    # ---- attributes
    shape = property(lambda self: self.a.shape)
    dtype = property(lambda self: self.a.dtype)
    ndim = property(lambda self: self.a.ndim)
    size = property(lambda self: self.a.size)
    T = property(lambda self: StrictArray(self.a.T))

    def __getattr__(self, name):
        if name not in _METHODS:
            raise AttributeError(f"StrictArray has no attribute {name!r}")
        method = getattr(self.a, name)
        return lambda *args, **kwargs: _wrap(method(*_unwrap(args), **_unwrap(kwargs)))

    def __len__(self):
        return len(self.a)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __getitem__(self, key):
        return _wrap(self.a[_index(key)])

    def __setitem__(self, key, value):
        self.a[_index(key)] = _unwrap(value)

    def __repr__(self):
        return f"StrictArray({self.a!r})"

    # ---- explicit transfers to the host (each one counted)
    def get(self):
        _sync()
        return self.a.copy()

    def item(self):
        _sync()
        return self.a.item()

    def tolist(self):
        _sync()
        return self.a.tolist()

    def __float__(self):
        _sync()
        return float(self.a)

    def __int__(self):
        _sync()
        return int(self.a)

    def __bool__(self):
        _sync()
        return bool(self.a)


def _operators():
    """Python's operators through numpy's ufuncs, which dispatch back to __array_ufunc__."""
    binary = {
        "add": numpy.add, "sub": numpy.subtract, "mul": numpy.multiply,
        "truediv": numpy.true_divide, "floordiv": numpy.floor_divide, "mod": numpy.remainder,
        "pow": numpy.power, "matmul": numpy.matmul, "and": numpy.bitwise_and,
        "or": numpy.bitwise_or, "xor": numpy.bitwise_xor,
    }  # fmt: skip
    for name, ufunc in binary.items():
        setattr(StrictArray, f"__{name}__", lambda self, other, f=ufunc: f(self, other))
        setattr(StrictArray, f"__r{name}__", lambda self, other, f=ufunc: f(other, self))
    compare = {
        "lt": numpy.less, "le": numpy.less_equal, "gt": numpy.greater,
        "ge": numpy.greater_equal, "eq": numpy.equal, "ne": numpy.not_equal,
    }  # fmt: skip
    for name, ufunc in compare.items():
        setattr(StrictArray, f"__{name}__", lambda self, other, f=ufunc: f(self, other))
    unary = {"neg": numpy.negative, "abs": numpy.absolute, "invert": numpy.invert}
    for name, ufunc in unary.items():
        setattr(StrictArray, f"__{name}__", lambda self, f=ufunc: f(self))
    StrictArray.__pos__ = lambda self: self
    StrictArray.__hash__ = None


_operators()


class _Namespace:
    """The stand-in's `cupy` module: numpy's names; arrays in and out are StrictArrays."""

    def __getattr__(self, name):
        obj = getattr(numpy, name)
        if isinstance(obj, (type, numpy.ufunc)) or not callable(obj):
            return obj  # dtypes, constants, ufuncs (which dispatch) and submodules
        return lambda *args, **kwargs: _wrap(obj(*_unwrap(args), **_unwrap(kwargs)))

    @staticmethod
    def asarray(a, dtype=None):
        """The explicit host-to-device copy (cupy.asarray); a device array stays as it is."""
        if type(a) is StrictArray:
            return a if dtype is None else a.astype(dtype, copy=False)
        if isinstance(a, (list, tuple)):  # may hold device arrays, as cupy.array allows
            a = [_Namespace.asarray(v).a for v in a]
        return StrictArray(numpy.array(a, dtype=dtype))

    array = asarray


xp = _Namespace()


def to_device(tree):
    """Every numpy array (and numpy scalar) leaf of a pytree as a StrictArray."""
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_device(v) for v in tree)
    if isinstance(tree, dict):
        return {k: to_device(v) for k, v in tree.items()}
    if isinstance(tree, (numpy.ndarray, numpy.generic)):
        return xp.asarray(tree)
    return tree


def to_host(tree):
    """Every StrictArray leaf of a pytree as numpy (asserting the leaf stayed on the device)."""
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_host(v) for v in tree)
    if isinstance(tree, dict):
        return {k: to_host(v) for k, v in tree.items()}
    assert type(tree) is StrictArray, f"expected a device array, got {type(tree).__name__}"
    return tree.get()
