"""`import tinyad.numpy as np`: numpy's names and semantics, differentiable.

Three kinds of names live here:

- the differentiable primitives of `ops.py` (each written next to its vjp) and
  a few functions built from them (`inner`, `diagonal`, `trace`, `diff`);
- names whose results carry no gradient, passed through from numpy: dtypes and
  constants, array creation (`zeros`, `arange`, ...), and integer or boolean
  results (`argmax`, `isnan`, `shape`, ...), with Box arguments unboxed;
- nothing else. Any other numpy name raises AttributeError here, rather than
  handing out numpy's function, which would treat a traced value as a constant.

Importing this module also gives tinyad's Box its operators and ndarray
methods (`box_methods.py`).
"""

# ruff: noqa: F401  (this module re-exports the primitives of ops.py)
import builtins
import functools

import numpy as _np

from .. import core as _core
from ..backend import array_module
from ..core import isbox, unbox
from ..tree import tree_flatten
from . import box_methods, linalg, random  # box_methods installs Box's operators
from .ops import (
    abs,
    absolute,
    add,
    append,
    arccos,
    arccosh,
    arcsin,
    arcsinh,
    arctan,
    arctan2,
    arctanh,
    array_split,
    astype,
    atleast_1d,
    atleast_2d,
    atleast_3d,
    broadcast_to,
    cbrt,
    ceil,
    clip,
    concatenate,
    cos,
    cosh,
    cumprod,
    cumsum,
    diag,
    diagonal,
    diff,
    divide,
    dot,
    einsum,
    exp,
    exp2,
    expand_dims,
    expm1,
    flip,
    floor,
    hstack,
    inner,
    log,
    log1p,
    log2,
    log10,
    logaddexp,
    logsumexp,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    mod,
    moveaxis,
    multiply,
    negative,
    outer,
    power,
    prod,
    ravel,
    reciprocal,
    remainder,
    repeat,
    reshape,
    rint,
    roll,
    round,
    sign,
    sin,
    sinh,
    sort,
    split,
    sqrt,
    square,
    squeeze,
    stack,
    std,
    subtract,
    sum,
    swapaxes,
    tan,
    tanh,
    tensordot,
    tile,
    trace,
    transpose,
    tril,
    triu,
    true_divide,
    var,
    vstack,
    where,
)

# numpy's aliases of the names above
amax, amin = max, min

# ---- dtypes and constants, as numpy's
bool_ = _np.bool_
dtype = _np.dtype
finfo = _np.finfo
iinfo = _np.iinfo
ndarray = _np.ndarray
integer = _np.integer
floating = _np.floating
float16 = _np.float16
float32 = _np.float32
float64 = _np.float64
complex64 = _np.complex64
complex128 = _np.complex128
int8 = _np.int8
int16 = _np.int16
int32 = _np.int32
int64 = _np.int64
uint8 = _np.uint8
intp = _np.intp
pi = _np.pi
e = _np.e
euler_gamma = _np.euler_gamma
inf = _np.inf
nan = _np.nan
newaxis = _np.newaxis

# ---- array creation: the results are constants. A Box passed where numpy
# expects data (linspace's start, ...) is refused by Box.__array_function__.
zeros = _np.zeros
ones = _np.ones
empty = _np.empty
eye = _np.eye
identity = _np.identity
tri = _np.tri
arange = _np.arange
linspace = _np.linspace
logspace = _np.logspace


def _passthrough(fun, reads_values=True):
    """numpy's `fun` with every Box argument unboxed: for results that carry no gradient.

    With `reads_values`, the result depends on the traced numbers (argmax, isnan, ...),
    which the core counts (a tape recorded so is valid only at those numbers); shape,
    size and the *_like functions read only the shape and dtype.
    """
    read = _core.read_value if reads_values else unbox

    @functools.wraps(fun)
    def call(*args, **kwargs):
        return fun(*[read(a) for a in args], **{k: read(v) for k, v in kwargs.items()})

    return call


# *_like read only the shape and dtype of their first argument.
zeros_like = _passthrough(_np.zeros_like, reads_values=False)
ones_like = _passthrough(_np.ones_like, reads_values=False)
empty_like = _passthrough(_np.empty_like, reads_values=False)


def full(shape, fill_value, dtype=None):
    """numpy.full; a traced fill_value is broadcast to `shape`, so it stays traced."""
    if isbox(fill_value):
        out = broadcast_to(fill_value, shape)
        return out if dtype is None else astype(out, dtype)
    return array_module(fill_value).full(shape, fill_value, dtype=dtype)  # CuPy's for a CuPy value


def full_like(a, fill_value, dtype=None):
    """numpy.full_like (of a's shape and dtype); a traced fill_value stays traced."""
    a = unbox(a)
    if isbox(fill_value):
        return full(_np.shape(a), fill_value, dtype=a.dtype if dtype is None else dtype)
    return _np.full_like(a, fill_value, dtype=dtype)


# Integer and boolean results: piecewise constant, so nothing is lost by unboxing.
argmax = _passthrough(_np.argmax)
argmin = _passthrough(_np.argmin)
argsort = _passthrough(_np.argsort)
argwhere = _passthrough(_np.argwhere)
nonzero = _passthrough(_np.nonzero)
flatnonzero = _passthrough(_np.flatnonzero)
searchsorted = _passthrough(_np.searchsorted)
count_nonzero = _passthrough(_np.count_nonzero)
isfinite = _passthrough(_np.isfinite)
isnan = _passthrough(_np.isnan)
isinf = _passthrough(_np.isinf)
isclose = _passthrough(_np.isclose)
allclose = _passthrough(_np.allclose)
array_equal = _passthrough(_np.array_equal)
any = _passthrough(_np.any)
all = _passthrough(_np.all)
equal = _passthrough(_np.equal)
not_equal = _passthrough(_np.not_equal)
less = _passthrough(_np.less)
less_equal = _passthrough(_np.less_equal)
greater = _passthrough(_np.greater)
greater_equal = _passthrough(_np.greater_equal)
logical_and = _passthrough(_np.logical_and)
logical_or = _passthrough(_np.logical_or)
logical_not = _passthrough(_np.logical_not)
logical_xor = _passthrough(_np.logical_xor)
shape = _passthrough(_np.shape, reads_values=False)
ndim = _passthrough(_np.ndim, reads_values=False)
size = _passthrough(_np.size, reads_values=False)
result_type = _passthrough(_np.result_type, reads_values=False)
issubdtype = _np.issubdtype
broadcast_shapes = _np.broadcast_shapes
unravel_index = _np.unravel_index
ravel_multi_index = _np.ravel_multi_index
triu_indices = _np.triu_indices
tril_indices = _np.tril_indices
diag_indices = _np.diag_indices
errstate = _np.errstate


def _holds_box(x):
    return isbox(x) or (
        isinstance(x, (list, tuple)) and builtins.any(_holds_box(item) for item in x)
    )


def _module_of(a):
    """The array module of `a`, or of the first CuPy (non-numpy) array in a nested list."""
    for leaf in tree_flatten(a)[0]:
        xp = array_module(leaf)
        if xp is not _np:
            return xp
    return _np


def asarray(a, dtype=None):
    """numpy.asarray that keeps traced values traced.

    A Box is returned as it is (cast if `dtype` differs); a (nested) list holding
    Boxes is stacked, so `np.array([x[1], -x[0]])` stays differentiable.
    """
    if isbox(a):
        return a if dtype is None or _np.dtype(dtype) == a.dtype else astype(a, dtype)
    if isinstance(a, (list, tuple)) and _holds_box(a):
        return stack([asarray(e, dtype) for e in a])
    return _module_of(a).asarray(a, dtype=dtype)  # CuPy arrays stay on their device


# Array-likes holding traced values (`np.mean([x, x + 2.0])`) are stacked by `asarray`
# before any primitive runs on them.
_core.array_from_list = asarray


def array(a, dtype=None, **kwargs):
    """numpy.array; traced values as in `asarray` (a Box is immutable: no copy is needed)."""
    if isbox(a) or (isinstance(a, (list, tuple)) and _holds_box(a)):
        return asarray(a, dtype)
    return _module_of(a).array(a, dtype=dtype, **kwargs)


def _not_differentiable(name, fun):
    """numpy.<name> for constants; a TypeError naming it when handed a traced value."""

    def guard(*args, **kwargs):
        leaves = tree_flatten((args, kwargs))[0]
        if builtins.any(isbox(x) for x in leaves):
            raise TypeError(
                f"numpy.{name} was called on a traced value, but tinyad.numpy has no vjp for "
                f"it, so it cannot be differentiated. Write it with tinyad.numpy's functions, "
                f"or as a @tinyad.primitive with its vjp (tinyad.defvjp)."
            )
        return fun(*args, **kwargs)

    guard.__name__ = name
    guard.constants_only = True
    guard.__doc__ = f"numpy.{name} on constants only (not differentiable in tinyad)."
    return guard


def __getattr__(name):
    """Any other numpy function works on constants and refuses traced values by name."""
    fun = getattr(_np, name, None)
    if callable(fun) and not isinstance(fun, type):
        return _not_differentiable(name, fun)
    if fun is not None:
        raise AttributeError(
            f"tinyad.numpy.{name} is not provided: use numpy.{name} on constants, or write "
            "what you need with tinyad.numpy's functions"
        )
    raise AttributeError(f"module 'tinyad.numpy' has no attribute {name!r}")
