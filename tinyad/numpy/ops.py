"""Every differentiable primitive of tinyad.numpy, each followed by its vjp.

Read it as a table. A primitive is a numpy function run on raw arrays; its vjp
turns the cotangent `g` of the output into the cotangent of one argument:

    vjp(g, ans, *args, **kwargs) = gᵀ ∂ans/∂args[argnum]

Three rules make the table short:

- vjps are written with the primitives of this file (never raw numpy), so a
  vjp is itself traced when an outer tape is recording: grad(grad(f)) needs no
  extra code. Constants (shapes, masks of comparisons) are computed on raw values.
- A vjp may return its cotangent at the broadcast output shape; the core sums
  it back to the argument's shape (tinyad.core.fit_cotangent). So the vjps of
  `x * y` are just `g * y` and `g * x`.
- A vjp that returns None says "zero": piecewise-constant functions (sign,
  floor, comparisons) pass no gradient.

In a vjp, `x`, `ans` and `g` may be raw arrays, Python floats or Boxes of an
outer tape: read shapes and dtypes with `_shape`/`_dtype`, which unbox.
This module defines `sum`, `max`, `min`, `abs` and `round`: Python's own are
spelled `builtins.sum` etc. here.
"""

import builtins
import math

import numpy as onp

from ..backend import array_module
from ..core import (
    defvjp,
    defvjp_argnum,
    dtype_of,
    isbox,
    primitive,
    read_value,
    shape_of,
    unbox,
)

# ---------------------------------------------------------------- helpers


_shape, _dtype = shape_of, dtype_of  # of arrays, numbers and traced values (core.py)


def _ndim(x):
    return len(_shape(x))


def _as_array(x):
    """x if it is an array (numpy, CuPy, ...), else a numpy array of it (a number, a list).

    Bodies of primitives call array methods (x.reshape(...)) rather than numpy's functions
    (numpy.reshape(x, ...)): same result, without numpy's dispatch layers, which cost more
    than the work itself on small arrays.
    """
    return x if hasattr(x, "shape") else onp.asarray(x)


def _zero(g, ans, *args, **kwargs):
    """The vjp of a piecewise-constant function: no cotangent (the core reads None as zero)."""
    return None


def _named(name):
    """Give a helper function its numpy name, which the tape prints."""

    def rename(fun):
        fun.__name__ = fun.__qualname__ = name
        return fun

    return rename


def _argsort(seq):
    return sorted(range(len(seq)), key=seq.__getitem__)


def _reduced_axes(axis, ndim):
    """`axis` of a reduction as a sorted tuple of non-negative ints (None: every axis)."""
    if axis is None or ndim == 0:  # numpy lets sum(x, axis=0) of a 0-d x reduce nothing
        return tuple(range(ndim))
    if isinstance(axis, (tuple, list)):
        return tuple(sorted(a % ndim for a in axis))
    return (axis % ndim,)


def _kept_shape(shape, axis):
    """The shape of a reduction over `axis` with keepdims=True."""
    axes = _reduced_axes(axis, len(shape))
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _count(shape, axis):
    """How many entries each output of a reduction over `axis` summarises."""
    return math.prod(shape[a] for a in _reduced_axes(axis, len(shape)))


def _keep(g, shape, axis, keepdims):
    """g (or ans) of a reduction reshaped as keepdims=True gives it, to broadcast against x."""
    if keepdims:
        return g
    kept = _kept_shape(shape, axis)
    return g if _shape(g) == kept else reshape(g, kept)


def _unreduce(g, x, axis, keepdims):
    """The cotangent of a sum over `axis`: g copied back along the reduced axes."""
    shape = _shape(x)
    return broadcast_to(_keep(g, shape, axis, keepdims), shape)


def _weights(mask, axis, dtype):
    """mask / (number of True along `axis`): ties share a gradient evenly. A raw constant."""
    count = onp.sum(mask, axis=axis, keepdims=True)
    return (mask / count).astype(dtype, copy=False)


def _safe(d):
    """d with its zeros replaced by 1, so that x / _safe(d) is 0 (not NaN) where x = d = 0."""
    return where(d == 0, 1, d)


# ------------------------------------------------- elementwise, one argument
# Each vjp is g · f'(x), written with `ans` = f(x) where that is cheaper.

negative = primitive(onp.negative)
defvjp(negative, lambda g, ans, x: -g)

sin = primitive(onp.sin)
defvjp(sin, lambda g, ans, x: g * cos(x))

cos = primitive(onp.cos)
defvjp(cos, lambda g, ans, x: -g * sin(x))

tan = primitive(onp.tan)
defvjp(tan, lambda g, ans, x: g * (1 + ans**2))

# Near |x| = 1, 1 − x² is a difference of nearly equal numbers: it keeps only the digits x²
# has below 1. (1 − x)(1 + x) is exact to rounding there, so these vjps keep every digit.
arcsin = primitive(onp.arcsin)
defvjp(arcsin, lambda g, ans, x: g / sqrt((1 - x) * (1 + x)))

arccos = primitive(onp.arccos)
defvjp(arccos, lambda g, ans, x: -g / sqrt((1 - x) * (1 + x)))


def _hypot1(x):
    """√(x² + 1) without overflow: b·√((x/b)² + (1/b)²) with b = max(|x|, 1).

    x² overflows for |x| > 1e154 (float64), 2e19 (float32), although 1/√(x² + 1) is still
    representable. b is a constant computed on raw values: the expression equals √(x² + 1)
    for every b > 0, so its derivatives (second order and up) are those of √(x² + 1) too.
    """
    v = read_value(x)
    xp = array_module(v)
    b = xp.maximum(xp.abs(v), 1)
    return b * sqrt((x / b) ** 2 + (1 / b) ** 2)


arctan = primitive(onp.arctan)
# 1/(1 + x²) as (1/h)/h with h = √(x² + 1): neither factor overflows.
defvjp(arctan, lambda g, ans, x: g / _hypot1(x) / _hypot1(x))

sinh = primitive(onp.sinh)
defvjp(sinh, lambda g, ans, x: g * cosh(x))

cosh = primitive(onp.cosh)
defvjp(cosh, lambda g, ans, x: g * sinh(x))

tanh = primitive(onp.tanh)


@primitive
@_named("sech2")
def _sech2(x):
    """1/cosh²x, the derivative of tanh, in one primitive.

    Not 1 − tanh²x: tanh x rounds to ±1 long before 1 − tanh²x underflows (|x| ≈ 9 in
    float32, 19 in float64), and the difference keeps none of its digits. cosh overflows
    to inf only beyond log(max float), where 1/cosh² is below the smallest float: 1/inf = 0
    is then the right answer, and the overflow is no error. Squared after the division, so
    nothing else overflows.
    """
    x = _as_array(x)
    with onp.errstate(over="ignore"):
        sech = 1 / onp.cosh(x)
    return sech * sech


defvjp(_sech2, lambda g, ans, x: -2 * g * ans * tanh(x))  # (sech² x)' = −2 sech² x tanh x


def _tanh_vjp(g, ans, x):
    """tanh'(x) = sech²x = 1/cosh²x, computed from x (see _sech2)."""
    return g * _sech2(x)


defvjp(tanh, _tanh_vjp)

arcsinh = primitive(onp.arcsinh)
defvjp(arcsinh, lambda g, ans, x: g / _hypot1(x))

arccosh = primitive(onp.arccosh)
# √(x − 1)·√(x + 1): exact near x = 1 (where x² − 1 cancels) and no overflow for large x.
defvjp(arccosh, lambda g, ans, x: g / (sqrt(x - 1) * sqrt(x + 1)))

arctanh = primitive(onp.arctanh)
defvjp(arctanh, lambda g, ans, x: g / ((1 - x) * (1 + x)))

exp = primitive(onp.exp)
defvjp(exp, lambda g, ans, x: g * ans)

exp2 = primitive(onp.exp2)
defvjp(exp2, lambda g, ans, x: g * ans * math.log(2.0))

expm1 = primitive(onp.expm1)
# exp(x), not ans + 1: for x < -37 (float64) ans rounds to -1 and ans + 1 to 0.
defvjp(expm1, lambda g, ans, x: g * exp(x))

log = primitive(onp.log)
defvjp(log, lambda g, ans, x: g / x)

log1p = primitive(onp.log1p)
defvjp(log1p, lambda g, ans, x: g / (x + 1))

log2 = primitive(onp.log2)
defvjp(log2, lambda g, ans, x: g / (x * math.log(2.0)))

log10 = primitive(onp.log10)
defvjp(log10, lambda g, ans, x: g / (x * math.log(10.0)))

sqrt = primitive(onp.sqrt)
defvjp(sqrt, lambda g, ans, x: g * 0.5 / ans)

cbrt = primitive(onp.cbrt)
defvjp(cbrt, lambda g, ans, x: g / (3 * ans**2))

square = primitive(onp.square)
defvjp(square, lambda g, ans, x: g * 2 * x)

reciprocal = primitive(onp.reciprocal)
defvjp(reciprocal, lambda g, ans, x: -g * ans**2)

absolute = primitive(onp.absolute)
abs = absolute
# d|x|/dx = sign(x); at x = 0 that is 0 (the smallest subgradient, as autograd and JAX give).
defvjp(absolute, lambda g, ans, x: g * sign(x))

# Piecewise constant: the derivative is 0 wherever it exists.
sign = primitive(onp.sign)
defvjp(sign, _zero)

floor = primitive(onp.floor)
defvjp(floor, _zero)

ceil = primitive(onp.ceil)
defvjp(ceil, _zero)

rint = primitive(onp.rint)
defvjp(rint, _zero)

round = primitive(onp.round)
defvjp(round, _zero)


# ----------------------------------------------- elementwise, two arguments
# Broadcasting is undone by the core, so these vjps ignore it.

add = primitive(onp.add)
defvjp(add, lambda g, ans, x, y: g, lambda g, ans, x, y: g)

subtract = primitive(onp.subtract)
defvjp(subtract, lambda g, ans, x, y: g, lambda g, ans, x, y: -g)

multiply = primitive(onp.multiply)
defvjp(multiply, lambda g, ans, x, y: g * y, lambda g, ans, x, y: g * x)

divide = primitive(onp.divide)
true_divide = divide
defvjp(divide, lambda g, ans, x, y: g / y, lambda g, ans, x, y: -g * ans / y)

power = primitive(onp.power)


def _power_vjp_x(g, ans, x, y):
    """∂xʸ/∂x = y·xʸ⁻¹. Where y = 0 the exponent is kept at 1, so 0·0⁻¹ never makes a NaN."""
    if isinstance(y, (int, float)):  # a Python exponent: x**2 stays x's dtype
        return g * y * x ** (y - 1) if y != 0 else None
    return g * y * x ** where(y != 0, y - 1, 1)


def _power_vjp_y(g, ans, x, y):
    """∂xʸ/∂y = xʸ·log x, taken as 0 where x ≤ 0 (0ʸ is flat in y; negative x has no real log)."""
    if isinstance(x, (int, float)):
        return g * ans * math.log(x) if x > 0 else None
    return g * ans * log(where(x > 0, x, 1))


defvjp(power, _power_vjp_x, _power_vjp_y)

arctan2 = primitive(onp.arctan2)


def _arctan2_scaled(y, x):
    """(x/b, y/b, b) with b = max(|x|, |y|), a constant on raw values (1 where both are 0).

    ∂arctan2(y, x) = (x dy − y dx)/(x² + y²) = ((x/b) dy − (y/b) dx) / (((x/b)² + (y/b)²) b):
    the same for every b > 0, but x² + y² overflows for large and underflows to 0 for tiny
    arguments, while (x/b)² + (y/b)² lies in [1, 2].
    """
    vx, vy = read_value(x), read_value(y)
    xp = array_module(vx)
    b = xp.maximum(xp.abs(vx), xp.abs(vy))
    b = xp.where(b == 0, 1, b)
    return x / b, y / b, b


def _arctan2_vjp_y(g, ans, y, x):
    xs, ys, b = _arctan2_scaled(y, x)
    return g * xs / ((xs**2 + ys**2) * b)


def _arctan2_vjp_x(g, ans, y, x):
    xs, ys, b = _arctan2_scaled(y, x)
    return -g * ys / ((xs**2 + ys**2) * b)


defvjp(arctan2, _arctan2_vjp_y, _arctan2_vjp_x)

logaddexp = primitive(onp.logaddexp)


def _logaddexp_weights(x, y):
    """(eˣ, eʸ) / (eˣ + eʸ), both exponents shifted by m = max(x, y), a constant on raw values.

    Not exp(x − ans): for large |x|, ans = log(eˣ + eʸ) is rounded to the ulp of x, and
    x − ans keeps that rounding error as a relative error of the result (hundreds of ulps at
    x = 1000). x − m and y − m are exact or nearly so, and the ratio does not depend on m.
    """
    m = maximum(read_value(x), read_value(y))
    ex, ey = exp(x - m), exp(y - m)
    return ex / (ex + ey), ey / (ex + ey)


defvjp(
    logaddexp,
    lambda g, ans, x, y: g * _logaddexp_weights(x, y)[0],
    lambda g, ans, x, y: g * _logaddexp_weights(x, y)[1],
)

maximum = primitive(onp.maximum)
minimum = primitive(onp.minimum)


def _split_ties(g, wins, ties):
    """g where this argument is the winner, g/2 where both are: ties share the gradient evenly."""
    return where(ties, 0.5 * g, g * wins)


# maximum(x, y) passes g to the larger argument; where x == y each gets g/2 (as autograd).
defvjp(
    maximum,
    lambda g, ans, x, y: _split_ties(g, x > y, x == y),
    lambda g, ans, x, y: _split_ties(g, y > x, x == y),
)
# minimum(x, y) passes g to the smaller argument; where x == y each gets g/2.
defvjp(
    minimum,
    lambda g, ans, x, y: _split_ties(g, x < y, x == y),
    lambda g, ans, x, y: _split_ties(g, y < x, x == y),
)


@primitive
@_named("where")
def _where(condition, x, y):
    """x where condition holds, else y (numpy.where with three arguments)."""
    return onp.where(condition, x, y)


defvjp(
    _where,
    _zero,
    lambda g, ans, c, x, y: where(c, g, 0),
    lambda g, ans, c, x, y: where(c, 0, g),
)

_NOT_GIVEN = object()  # a default that no argument can be (None is a value numpy accepts)


def where(condition, x=_NOT_GIVEN, y=_NOT_GIVEN):
    """numpy.where: x where condition holds, else y (differentiable in x and y).

    With condition alone, numpy.nonzero(condition): a tuple of integer index arrays,
    constants that carry no gradient.
    """
    if x is _NOT_GIVEN and y is _NOT_GIVEN:
        return onp.nonzero(read_value(condition))
    if x is _NOT_GIVEN or y is _NOT_GIVEN:
        raise ValueError("where: give both x and y, or neither (then it returns indices)")
    return _where(condition, x, y)


@primitive
def clip(x, a_min, a_max):
    """numpy.clip. The gradient reaches x where a_min ≤ x ≤ a_max, a bound where it is active.

    Either bound may be None. Assumes a_min ≤ a_max.
    """
    return onp.clip(x, a_min, a_max)


def _clip_vjp_x(g, ans, x, a_min, a_max):
    inside = True
    if a_min is not None:
        inside = inside & (x >= a_min)
    if a_max is not None:
        inside = inside & (x <= a_max)
    return g * inside


defvjp(
    clip,
    _clip_vjp_x,
    lambda g, ans, x, a_min, a_max: g * (x < a_min),
    lambda g, ans, x, a_min, a_max: g * (x > a_max),
)


# ------------------------------------------------------------- reductions
# A reduction's cotangent g has the reduced shape; `_keep` puts the reduced
# axes back (size 1) so that g broadcasts against x.


@primitive
def sum(x, axis=None, dtype=None, *, keepdims=False):
    """numpy.sum."""
    return _as_array(x).sum(axis=axis, dtype=dtype, keepdims=keepdims)


def _sum_vjp(g, ans, x, axis=None, dtype=None, *, keepdims=False):
    return _unreduce(g, x, axis, keepdims)


defvjp(sum, _sum_vjp)


@primitive
def mean(x, axis=None, dtype=None, *, keepdims=False):
    """numpy.mean."""
    return _as_array(x).mean(axis=axis, dtype=dtype, keepdims=keepdims)


def _mean_vjp(g, ans, x, axis=None, dtype=None, *, keepdims=False):
    return _unreduce(g / _count(_shape(x), axis), x, axis, keepdims)


defvjp(mean, _mean_vjp)


@primitive
def prod(x, axis=None, dtype=None, *, keepdims=False):
    """numpy.prod."""
    return onp.prod(x, axis=axis, dtype=dtype, keepdims=keepdims)


def _prod_of_others(x, axis):
    """∏_{j≠i} x_j for every i, without dividing (exact when some x_i are 0).

    The reduced axes are moved last and flattened to length n; row i of an
    (n, n) matrix is x with its i-th entry replaced by 1, and each row's product
    is the product of the others.
    """
    shape, axes = _shape(x), _reduced_axes(axis, _ndim(x))
    kept = [a for a in range(len(shape)) if a not in axes]
    n = _count(shape, axis)
    rows = reshape(transpose(x, kept + list(axes)), [shape[a] for a in kept] + [1, n])
    eye = array_module(unbox(x)).eye(n, dtype=bool)
    others = prod(where(eye, 1, rows), axis=-1)
    others = reshape(others, [shape[a] for a in kept] + [shape[a] for a in axes])
    return transpose(others, _argsort(kept + list(axes)))


def _prod_vjp(g, ans, x, axis=None, dtype=None, *, keepdims=False):
    """∂(∏x)/∂x_i = ∏_{j≠i} x_j: ans / x_i when no entry is 0, else built explicitly."""
    shape = _shape(x)
    g = _keep(g, shape, axis, keepdims)
    if onp.all(read_value(x) != 0):
        return g * _keep(ans, shape, axis, keepdims) / x
    return g * _prod_of_others(x, axis)


defvjp(prod, _prod_vjp)


@primitive
def max(x, axis=None, *, keepdims=False):
    """numpy.max. Where several entries are maximal, each gets an equal share of the gradient."""
    return onp.max(x, axis=axis, keepdims=keepdims)


@primitive
def min(x, axis=None, *, keepdims=False):
    """numpy.min. Where several entries are minimal, each gets an equal share of the gradient."""
    return onp.min(x, axis=axis, keepdims=keepdims)


def _extremum_vjp(g, ans, x, axis=None, *, keepdims=False):
    """g goes to the entries equal to the extremum, split evenly among ties (as autograd)."""
    shape = _shape(x)
    hit = read_value(x) == _keep(read_value(ans), shape, axis, keepdims)
    return _keep(g, shape, axis, keepdims) * _weights(hit, axis, _dtype(g))


defvjp(max, _extremum_vjp)
defvjp(min, _extremum_vjp)


@primitive
def var(x, axis=None, dtype=None, *, ddof=0, keepdims=False):
    """numpy.var: Σ(x − mean x)² / (n − ddof)."""
    return onp.var(x, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims)


def _centered(x, axis):
    """x − mean x along `axis`, accurate to rounding even when the spread is tiny against the mean.

    Subtracting the rounded mean m leaves its rounding error (an ulp of m) in every entry,
    all the digits there are when the spread is an ulp or two. So m is a raw constant,
    d = x − m is exact where x is near m, and d − mean d corrects for m's error: the result is
    x − mean x whatever m is, so its derivatives are too.
    """
    # Not a counted read (core.read_value): a replay with the m of other values still gives
    # x − mean x, only with the rounding of that m.
    d = x - _as_array(unbox(x)).mean(axis=axis, keepdims=True)
    return d - mean(d, axis=axis, keepdims=True)


def _var_vjp(g, ans, x, axis=None, dtype=None, *, ddof=0, keepdims=False):
    """∂var/∂x = 2 (x − mean x) / (n − ddof)."""
    shape = _shape(x)
    centered = _centered(x, axis)
    return _keep(g, shape, axis, keepdims) * centered * (2.0 / (_count(shape, axis) - ddof))


defvjp(var, _var_vjp)


@primitive
def std(x, axis=None, dtype=None, *, ddof=0, keepdims=False):
    """numpy.std = √var. Its gradient where std = 0 (all entries equal) is taken as 0."""
    return onp.std(x, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims)


def _std_vjp(g, ans, x, axis=None, dtype=None, *, ddof=0, keepdims=False):
    """∂std/∂x = (x − mean x) / ((n − ddof) · std)."""
    shape = _shape(x)
    centered = _centered(x, axis)
    scale = _keep(g, shape, axis, keepdims) / _safe(_keep(ans, shape, axis, keepdims))
    return scale * centered / (_count(shape, axis) - ddof)


defvjp(std, _std_vjp)


@primitive
def cumsum(x, axis=None, dtype=None):
    """numpy.cumsum (axis=None: of the flattened array)."""
    return onp.cumsum(x, axis=axis, dtype=dtype)


def _cumsum_vjp(g, ans, x, axis=None, dtype=None):
    """x_i enters every partial sum from i on: its cotangent is the reversed cumsum of g."""
    if axis is None:
        return reshape(flip(cumsum(flip(g))), _shape(x))
    return flip(cumsum(flip(g, axis), axis), axis)


defvjp(cumsum, _cumsum_vjp)


@primitive
@_named("logsumexp")
def _logsumexp(a, b=None, axis=None, keepdims=False):
    """log Σ b·exp(a) over `axis` (b=None: every weight 1): `logsumexp` below."""
    if b is not None:  # as scipy: a weight of 0 drops its entry, even where a is inf
        a = onp.where(b != 0, a, -onp.inf)
    m = onp.max(a, axis=axis, keepdims=True)
    m = onp.where(onp.isfinite(m), m, 0)  # all -inf (or an inf): shift by 0 instead
    # log 0 = -inf when every term is 0; the log of a negative sum is NaN (as scipy, silently)
    with onp.errstate(divide="ignore", invalid="ignore"):
        terms = onp.exp(a - m) if b is None else b * onp.exp(a - m)
        out = onp.log(onp.sum(terms, axis=axis, keepdims=True)) + m
    return out if keepdims else onp.squeeze(out, axis=axis)


def _summed_shape(a, b):
    """The shape the sum of logsumexp runs over: a's, broadcast against the weights b."""
    return _shape(a) if b is None else onp.broadcast_shapes(_shape(a), _shape(b))


def _logsumexp_weights(a, b, axis):
    """exp(a − logsumexp) = exp(a − m) / Σ b·exp(a − m), with m = max a a raw constant.

    Not exp(a − ans): for large |a| the rounding error of ans (an ulp of a) becomes a
    relative error of the result (hundreds of ulps at a = 1000); a − m is exact or nearly
    so, and the ratio does not depend on m (so neither do its derivatives).
    """
    v = read_value(a)
    xp = array_module(v)
    if b is not None:  # the entries of weight 0 are left out of m, as in the forward pass
        v = xp.where(read_value(b) != 0, v, -xp.inf)
    m = xp.max(v, axis=axis, keepdims=True)
    e = exp(a - xp.where(xp.isfinite(m), m, 0))  # shifted as in the forward pass
    return e / sum(e if b is None else b * e, axis=axis, keepdims=True)


def _logsumexp_vjp_a(g, ans, a, b=None, axis=None, keepdims=False):
    """∂/∂a log Σ b·exp(a) = b·exp(a − logsumexp): softmax(a) when b = 1."""
    shape = _summed_shape(a, b)
    ct = _keep(g, shape, axis, keepdims) * _logsumexp_weights(a, b, axis)
    return ct if b is None else ct * b


def _logsumexp_vjp_b(g, ans, a, b=None, axis=None, keepdims=False):
    """∂/∂b log Σ b·exp(a) = exp(a − logsumexp), at the summed shape (a may broadcast)."""
    shape = _summed_shape(a, b)
    ct = _keep(g, shape, axis, keepdims) * _logsumexp_weights(a, b, axis)
    return ct if _shape(ct) == shape else broadcast_to(ct, shape)


defvjp(_logsumexp, _logsumexp_vjp_a, _logsumexp_vjp_b)


def logsumexp(a, axis=None, b=None, keepdims=False):
    """log Σ b·exp(a) over `axis`, as scipy.special.logsumexp; differentiable in a and b.

    Computed as m + log Σ b·exp(a − m) with m = max a, so exp cannot overflow. The
    weights b (default 1) broadcast against a and may be negative, to subtract; a
    negative sum gives NaN, as scipy's does without return_sign (not provided here).
    """
    return _logsumexp(a, b, axis=axis, keepdims=keepdims)


# ------------------------------------------------------------ linear algebra


def _swap(x):
    """The matrix transpose of the last two axes."""
    return swapaxes(x, -1, -2)


matmul = primitive(onp.matmul)


def _matmul_vjp_a(g, ans, a, b):
    """Ā = G Bᵀ; a vector operand is a matrix with its axis dropped (matmul's 1-D rules)."""
    if _ndim(b) == 1:  # (…, n) @ (n,) -> (…)
        return expand_dims(g, -1) * b
    if _ndim(a) == 1:  # (n,) @ (…, n, m) -> (…, m)
        return squeeze(matmul(b, expand_dims(g, -1)), -1)
    a_shape = _shape(a)
    if _ndim(b) == 2 and len(a_shape) > 2:
        # (…, n, k) @ (k, m), a batch through a weight matrix: one GEMM over all rows of g
        # (a batched product runs one small GEMM per batch entry, about twice as slow).
        rows = (math.prod(a_shape[:-1]), _shape(g)[-1])  # not -1: g may have no entries
        return reshape(dot(reshape(g, rows), transpose(b)), a_shape)
    if _ndim(b) == 2 and len(a_shape) == 2:
        return dot(g, transpose(b))  # see _gemm_note
    return matmul(g, _swap(b))


def _matmul_vjp_b(g, ans, a, b):
    """B̄ = Aᵀ G; batch axes that were broadcast are summed by the core."""
    a_shape, b_ndim = _shape(a), _ndim(b)
    if len(a_shape) == 1:  # (n,) @ (…, n[, m])
        return g * a if b_ndim == 1 else expand_dims(a, -1) * expand_dims(g, -2)
    if b_ndim == 1:  # (…, k, n) @ (n,) -> (…, k)
        return squeeze(matmul(expand_dims(g, -2), a), -2)
    if b_ndim == 2 and len(a_shape) > 2:
        # (…, n, k) @ (k, m), e.g. a batch through a weight matrix: one GEMM over all rows
        # of a, instead of a batched product the core would then sum over the batch axes.
        n, k, m = math.prod(a_shape[:-1]), a_shape[-1], _shape(g)[-1]  # n, not -1: zero sizes
        return dot(transpose(reshape(a, (n, k))), reshape(g, (n, m)))
    if b_ndim == 2 and len(a_shape) == 2:
        return dot(transpose(a), g)  # see _gemm_note
    return matmul(_swap(a), g)


# _gemm_note: where both factors of a vjp's product are matrices (2-D), it is numpy.dot:
# the same BLAS GEMM as matmul, with the same numbers, at two thirds of its cost on small
# matrices (0.95 against 1.5 µs for (20, 2) · (2, 50)); an MLP's backward pass is mostly these.


defvjp(matmul, _matmul_vjp_a, _matmul_vjp_b)


@primitive
def tensordot(a, b, axes=2):
    """numpy.tensordot: sum over `axes` of a and b; the result's axes are a's free, then b's."""
    return onp.tensordot(a, b, axes)


def _tensordot_axes(axes, a_ndim, b_ndim):
    """numpy's `axes` (an int, or a pair of ints or sequences) as two lists of summed axes."""
    if isinstance(axes, int):
        return list(range(a_ndim - axes, a_ndim)), list(range(axes))
    a_axes, b_axes = axes
    a_axes = [a_axes] if isinstance(a_axes, int) else list(a_axes)
    b_axes = [b_axes] if isinstance(b_axes, int) else list(b_axes)
    return [i % a_ndim for i in a_axes], [i % b_ndim for i in b_axes]


def _transpose_back(x, order):
    """Transpose x, whose axis k is axis order[k] of the argument, into the argument's order."""
    perm = _argsort(order)
    return x if perm == sorted(perm) else transpose(x, perm)


def _tensordot_vjp_a(g, ans, a, b, axes=2):
    """Ā = G contracted with b over b's free axes, then a's axes put back in order."""
    a_sum, b_sum = _tensordot_axes(axes, _ndim(a), _ndim(b))
    a_free = [i for i in range(_ndim(a)) if i not in a_sum]
    b_free = [i for i in range(_ndim(b)) if i not in b_sum]
    g_b = list(range(len(a_free), len(a_free) + len(b_free)))
    # (tuples: CuPy's tensordot accepts a 0-d operand only with axes ((), ()))
    out = tensordot(g, b, (tuple(g_b), tuple(b_free)))  # a_free, then b's summed axes in order
    return _transpose_back(out, a_free + [a_sum[k] for k in _argsort(b_sum)])


def _tensordot_vjp_b(g, ans, a, b, axes=2):
    """B̄ = a contracted with G over a's free axes, then b's axes put back in order."""
    a_sum, b_sum = _tensordot_axes(axes, _ndim(a), _ndim(b))
    a_free = [i for i in range(_ndim(a)) if i not in a_sum]
    b_free = [i for i in range(_ndim(b)) if i not in b_sum]
    out = tensordot(a, g, (tuple(a_free), tuple(range(len(a_free)))))  # a's summed, then b_free
    return _transpose_back(out, [b_sum[k] for k in _argsort(a_sum)] + b_free)


defvjp(tensordot, _tensordot_vjp_a, _tensordot_vjp_b)


@primitive
def dot(a, b):
    """numpy.dot: a product over a's last axis and b's second-to-last (its only one if 1-D)."""
    return onp.dot(a, b)


def _dot_as_tensordot(a, b):
    """The `axes` that make tensordot(a, b, axes) equal dot(a, b) (none if either is 0-d)."""
    na, nb = _ndim(a), _ndim(b)
    if na == 0 or nb == 0:
        return ([], [])
    return ([na - 1], [builtins.max(nb - 2, 0)])


defvjp(
    dot,
    lambda g, ans, a, b: _tensordot_vjp_a(g, ans, a, b, _dot_as_tensordot(a, b)),
    lambda g, ans, a, b: _tensordot_vjp_b(g, ans, a, b, _dot_as_tensordot(a, b)),
)


@primitive
def outer(a, b):
    """numpy.outer of the flattened a and b."""
    return onp.outer(a, b)


defvjp(
    outer,
    lambda g, ans, a, b: reshape(dot(g, ravel(b)), _shape(a)),
    lambda g, ans, a, b: reshape(dot(ravel(a), g), _shape(b)),
)


einsum = primitive(onp.einsum)
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _einsum_explicit(subscripts, shapes):
    """(input subscripts, output subscripts) with '...' spelled out and the output explicit.

    The axes under '...' get fresh letters, aligned from the right as in
    broadcasting. Without '->' (implicit mode) the output is the '...' axes and
    then the letters used exactly once, in alphabetical order, as numpy does.
    """
    subscripts = subscripts.replace(" ", "")
    inputs, arrow, output = subscripts.partition("->")
    inputs = inputs.split(",")
    fresh = [c for c in _LETTERS if c not in subscripts]
    n_ell = builtins.max(
        [len(shape) - len(s) + 3 for s, shape in zip(inputs, shapes, strict=True) if "..." in s],
        default=0,
    )
    ell = "".join(fresh[:n_ell])
    inputs = [
        s.replace("...", ell[n_ell - (len(shape) - len(s) + 3) :]) if "..." in s else s
        for s, shape in zip(inputs, shapes, strict=True)
    ]
    if arrow:
        return inputs, output.replace("...", ell)
    letters = "".join(inputs)
    once = sorted(c for c in set(letters) if letters.count(c) == 1 and c not in ell)
    return inputs, ell + "".join(once)


def _einsum_subscripts(args):
    """(subscripts, the positions of the operands among args) for either form of einsum.

    The sublist form einsum(x, [0, 1], y, [1, 2], [0, 2]) is 'ab,bc->ac' with x, y: each
    integer becomes a letter (0 is 'a') and Ellipsis becomes '...'.
    """
    if isinstance(args[0], str):
        return args[0], list(range(1, len(args)))

    def letters(sublist):
        return "".join("..." if s is Ellipsis else _LETTERS[s] for s in sublist)

    n = len(args) // 2  # operand, sublist, operand, sublist, ..., then the output's if given
    subscripts = ",".join(letters(args[2 * i + 1]) for i in range(n))
    if len(args) % 2:
        subscripts += "->" + letters(args[-1])
    return subscripts, list(range(0, 2 * n, 2))


def _einsum_vjp(argnum, g, ans, *args, **kwargs):
    """The cotangent of operand k is an einsum of g with the other operands.

    For 'ij,jk->ik' it is 'ik,jk->ij' for the first operand. Two cases need an
    extra constant operand: a letter repeated in operand k (a diagonal, 'ii')
    gets an identity matrix, and a letter only operand k has (summed away in
    the forward pass, 'ij->i') gets a vector of ones to broadcast g back.
    """
    subscripts, positions = _einsum_subscripts(args)
    operands, k = [args[i] for i in positions], positions.index(argnum)
    inputs, output = _einsum_explicit(subscripts, [_shape(x) for x in operands])
    target, shape = inputs[k], _shape(operands[k])
    terms = [output] + inputs[:k] + inputs[k + 1 :]
    values = [g, *operands[:k], *operands[k + 1 :]]
    xp, dtype = array_module(unbox(g)), _dtype(g)
    fresh = iter(c for c in _LETTERS if c not in "".join(inputs) + output)
    result = ""
    for c, n in zip(target, shape, strict=True):
        if c in result:  # repeated: write a fresh letter and tie it to c with an identity
            f = next(fresh)
            terms.append(c + f)
            values.append(xp.eye(n, dtype=dtype))
            c = f
        result += c
    have = "".join(terms)
    for c, n in zip(target, shape, strict=True):
        if c not in have:
            terms.append(c)
            values.append(xp.ones(n, dtype=dtype))
            have += c
    return einsum(",".join(terms) + "->" + result, *values)


defvjp_argnum(einsum, _einsum_vjp)


# --------------------------------------------------- shape and rearrangement
# Reshaping vjps reshape g back; permuting vjps apply the inverse permutation.


@primitive
def reshape(x, shape, order="C"):
    """numpy.reshape."""
    return _as_array(x).reshape(shape, order=order)


defvjp(reshape, lambda g, ans, x, shape, order="C": reshape(g, _shape(x), order=order))


@primitive
def ravel(x, order="C"):
    """numpy.ravel."""
    return _as_array(x).ravel(order=order)


defvjp(ravel, lambda g, ans, x, order="C": reshape(g, _shape(x), order=order))


@primitive
def squeeze(x, axis=None):
    """numpy.squeeze."""
    return _as_array(x).squeeze(axis=axis)


defvjp(squeeze, lambda g, ans, x, axis=None: reshape(g, _shape(x)))


@primitive
def expand_dims(x, axis):
    """numpy.expand_dims."""
    return onp.expand_dims(x, axis)


defvjp(expand_dims, lambda g, ans, x, axis: reshape(g, _shape(x)))


@primitive
def broadcast_to(x, shape):
    """numpy.broadcast_to (a read-only view)."""
    return onp.broadcast_to(x, shape)


# The cotangent at the broadcast shape is summed back to x's shape by the core.
defvjp(broadcast_to, lambda g, ans, x, shape: g)


@primitive
def transpose(x, axes=None):
    """numpy.transpose."""
    return _as_array(x).transpose() if axes is None else _as_array(x).transpose(axes)


def _transpose_vjp(g, ans, x, axes=None):
    if axes is None:
        return transpose(g)
    return transpose(g, _argsort([a % _ndim(x) for a in axes]))


defvjp(transpose, _transpose_vjp)


@primitive
def swapaxes(x, axis1, axis2):
    """numpy.swapaxes."""
    return _as_array(x).swapaxes(axis1, axis2)


defvjp(swapaxes, lambda g, ans, x, axis1, axis2: swapaxes(g, axis1, axis2))


@primitive
def moveaxis(x, source, destination):
    """numpy.moveaxis."""
    return onp.moveaxis(x, source, destination)


defvjp(moveaxis, lambda g, ans, x, source, destination: moveaxis(g, destination, source))


@primitive
def flip(x, axis=None):
    """numpy.flip."""
    return onp.flip(x, axis)


defvjp(flip, lambda g, ans, x, axis=None: flip(g, axis))


@primitive
def roll(x, shift, axis=None):
    """numpy.roll."""
    return onp.roll(x, shift, axis)


def _roll_vjp(g, ans, x, shift, axis=None):
    back = -shift if onp.ndim(shift) == 0 else [-s for s in shift]  # numpy ints too
    if axis is None:
        return reshape(roll(ravel(g), back), _shape(x))
    return roll(g, back, axis)


defvjp(roll, _roll_vjp)


@primitive
def triu(x, k=0):
    """numpy.triu: the entries on and above the k-th diagonal."""
    return onp.triu(x, k)


defvjp(triu, lambda g, ans, x, k=0: triu(g, k))


@primitive
def tril(x, k=0):
    """numpy.tril: the entries on and below the k-th diagonal."""
    return onp.tril(x, k)


defvjp(tril, lambda g, ans, x, k=0: tril(g, k))


@primitive
def tile(x, reps):
    """numpy.tile."""
    return onp.tile(x, reps)


def _tile_vjp(g, ans, x, reps):
    """Sum the copies: view g as (reps₀, n₀, reps₁, n₁, …) and sum over the reps axes."""
    shape = _shape(x)
    reps = (reps,) if isinstance(reps, int) else tuple(reps)
    d = builtins.max(len(shape), len(reps))
    padded = (1,) * (d - len(shape)) + shape
    reps = (1,) * (d - len(reps)) + reps
    g = reshape(g, [n for pair in zip(reps, padded, strict=True) for n in pair])
    return reshape(sum(g, axis=tuple(range(0, 2 * d, 2))), shape)


defvjp(tile, _tile_vjp)


@primitive
def repeat(x, repeats, axis=None):
    """numpy.repeat (repeats an int or one count per entry; axis=None: of the flattened x)."""
    return onp.repeat(x, repeats, axis)


def _repeat_vjp(g, ans, x, repeats, axis=None):
    """Output entry j copies input entry src[j]: scatter-add g back to src."""
    shape = _shape(x)
    xp = array_module(unbox(x))
    if axis is None:
        src = xp.repeat(xp.arange(math.prod(shape)), repeats)
        return reshape(add_at(g, index=src, shape=(math.prod(shape),)), shape)
    axis = axis % len(shape)
    src = xp.repeat(xp.arange(shape[axis]), repeats)
    return add_at(g, index=(slice(None),) * axis + (src,), shape=shape)


defvjp(repeat, _repeat_vjp)


@primitive
def astype(x, dtype):
    """x.astype(dtype). Only a cast to a float or complex dtype passes a gradient."""
    return x.astype(dtype) if hasattr(x, "astype") else array_module(x).asarray(x, dtype)


defvjp(astype, lambda g, ans, x, dtype: g if onp.dtype(dtype).kind in "fc" else None)


# ------------------------------------------------------- joining (variadic)
# numpy takes a list of arrays; the primitive takes them one by one so that
# each can be traced, and the public function (numpy's signature) unpacks it.


def _piece(g, arrays, k, axis, sizes):
    """The slice of g along `axis` that came from arrays[k], reshaped to its shape."""
    start = builtins.sum(sizes[:k])
    part = g[(slice(None),) * axis + (slice(start, start + sizes[k]),)]
    shape = _shape(arrays[k])
    return part if _shape(part) == shape else reshape(part, shape)


def _at_least(shape, ndim):
    """The shape numpy.atleast_1d / atleast_2d give (leading axes of size 1)."""
    return (1,) * (ndim - len(shape)) + shape


@primitive
@_named("concatenate")
def _concatenate(*arrays, axis=0):
    return onp.concatenate(arrays, axis=axis)


def _concatenate_vjp(argnum, g, ans, *arrays, axis=0):
    if axis is None:  # numpy flattens every array first
        return _piece(g, arrays, argnum, 0, [math.prod(_shape(x)) for x in arrays])
    axis = axis % _ndim(ans)
    return _piece(g, arrays, argnum, axis, [_shape(x)[axis] for x in arrays])


defvjp_argnum(_concatenate, _concatenate_vjp)


def concatenate(arrays, axis=0):
    """numpy.concatenate."""
    return _concatenate(*arrays, axis=axis)


def hstack(arrays):
    """numpy.hstack: 1-D arrays joined end to end, others along axis 1 (a concatenate)."""
    arrays = [atleast_1d(a) for a in arrays]
    return concatenate(arrays, axis=0 if _ndim(arrays[0]) == 1 else 1)


def vstack(arrays):
    """numpy.vstack: arrays as rows (at least 2-D), joined along axis 0 (a concatenate)."""
    return concatenate([atleast_2d(a) for a in arrays], axis=0)


@primitive
@_named("stack")
def _stack(*arrays, axis=0):
    if arrays and axis in (0, -1) and _NUMBER_SCALARS.issuperset(map(type, arrays)):
        # numpy scalars, as f(y) = stack([y[1], -y[0]]) makes them: numpy.array joins them
        # with the same dtype promotion as numpy.stack, 15 times faster (0.6 against 9.5 µs)
        return onp.array(arrays)
    return onp.stack(arrays, axis=axis)


# numpy's scalar types of the number kinds, bools included (numpy.array promotes strings and
# dates otherwise); one set lookup per entry, not an isinstance and a dtype read.
_NUMBER_SCALARS = frozenset(
    onp.dtype(code).type for code in onp.typecodes["AllInteger"] + onp.typecodes["AllFloat"] + "?"
)


def _stack_vjp(argnum, g, ans, *arrays, axis=0):
    """Array k is the k-th slice of the result along the new axis."""
    return g[(slice(None),) * (axis % _ndim(ans)) + (argnum,)]


defvjp_argnum(_stack, _stack_vjp)


def stack(arrays, axis=0):
    """numpy.stack."""
    arrays = tuple(arrays)
    if arrays and axis in (0, -1) and _NUMBER_SCALARS.issuperset(map(type, arrays)):
        # numpy scalars are never traced: nothing to record, so no primitive call (whose
        # look at each argument for a Box took 3 of HIRES's 12 µs per evaluation)
        return onp.array(arrays)  # as _stack does them
    return _stack(*arrays, axis=axis)


# ------------------------------------------------------------------ indexing


@primitive
def getitem(x, *, index):
    """x[index]: basic indexing (ints, slices, None, Ellipsis) and integer or boolean arrays."""
    return x[index]


def _is_basic(index):
    """True when no entry of `index` is an array: every entry of x is then picked at most once."""
    if not isinstance(index, tuple):
        index = (index,)
    return all(
        i is None or i is Ellipsis or isinstance(i, (int, slice, onp.integer)) for i in index
    )


@primitive
@_named("add.at")
def add_at(g, *, index, shape):
    """zeros(shape) with g added at `index`, as numpy.add.at: the vjp of indexing.

    Adding (not assigning) counts an entry picked twice by an integer array twice.
    """
    out = array_module(g).zeros(shape, dtype=_dtype(g))
    if type(index) is int or _is_basic(index):
        out[index] = g
    else:
        array_module(g).add.at(out, index, g)
    return out


defvjp(getitem, lambda g, ans, x, *, index: add_at(g, index=index, shape=_shape(x)))
# Scatter-add and gather are each other's transpose.
defvjp(add_at, lambda g, ans, x, *, index, shape: g[index])


# ------------------------------------------------ as a compiled program writes them
# tinyad/replay.py writes these as numpy's operators, which are the same ufuncs (and the same
# indexing): on an array the same call, on numpy scalars (an f that takes y apart entry by
# entry, y[0] * y[1]) numpy's scalar arithmetic, which skips the ufunc machinery (0.1 µs
# against 1 µs a call). power is not among them: x ** 0.5 is numpy's sqrt, which differs
# from power(x, 0.5) at −0.0 and −inf.
for _prim, _form in [
    (add, "{0} + {1}"),
    (subtract, "{0} - {1}"),
    (multiply, "{0} * {1}"),
    (divide, "{0} / {1}"),
    (negative, "-{0}"),
    (matmul, "{0} @ {1}"),
    (getitem, "{0}[{index}]"),
]:
    _prim.operator = _form

# These call the array's own method on an array (see _as_array): a program writes the same
# call, v9.reshape((-1, 50)), without the primitive's wrapper (0.3 against 1.3 µs). Only as
# many positional arguments as the method takes alike (transpose(x, None): x alone).
for _prim, _arity in [
    (reshape, 2), (ravel, 2), (squeeze, 2), (transpose, 1), (swapaxes, 3), (sum, 3), (mean, 3),
    (dot, 2),
]:  # fmt: skip
    _prim.method = (_prim.name, _arity)


# ------------------------------------------------- built from the primitives
# No vjp of their own: the tape records the primitives they call.


def inner(a, b):
    """numpy.inner: the sum over the last axes of a and b."""
    if _ndim(a) == 0 or _ndim(b) == 0:
        return multiply(a, b)
    return tensordot(a, b, ([-1], [-1]))


def diagonal(x, offset=0, axis1=0, axis2=1):
    """numpy.diagonal (as an indexing: the diagonal axis comes last)."""
    x = moveaxis(x, (axis1, axis2), (-2, -1))
    rows, cols = _shape(x)[-2:]
    row0, col0 = builtins.max(-offset, 0), builtins.max(offset, 0)  # where the diagonal starts
    first = array_module(unbox(x)).arange(builtins.max(0, builtins.min(rows - row0, cols - col0)))
    return x[..., first + row0, first + col0]


def _as_traced(x):
    """x as one array: a (nested) list holding traced values is stacked, as numpy would.

    For the functions below that read x's shape before calling a primitive.
    """
    if isbox(x):
        return x
    if isinstance(x, (list, tuple)) and _holds_box(x):
        return stack([_as_traced(item) for item in x])
    return _as_array(x)


def _holds_box(x):
    return isbox(x) or (isinstance(x, (list, tuple)) and builtins.any(map(_holds_box, x)))


def trace(x, offset=0, axis1=0, axis2=1, dtype=None):
    """numpy.trace: the sum of the diagonal."""
    return sum(diagonal(_as_traced(x), offset, axis1, axis2), axis=-1, dtype=dtype)


def _one_slice_along(v, x, axis):
    """diff's prepend/append value: a scalar becomes one slice of x's shape along `axis`."""
    if _ndim(v) > 0:
        return v
    shape = list(_shape(x))
    shape[axis] = 1
    if not isbox(v):  # a number, in x's array module (CuPy's for a CuPy x)
        v = array_module(unbox(x)).asarray(v)
    return broadcast_to(v, tuple(shape))


def diff(x, n=1, axis=-1, prepend=None, append=None):
    """numpy.diff: x[i+1] − x[i] along `axis`, n times (prepend/append: joined on first)."""
    x = _as_traced(x)
    if _ndim(x) == 0:
        raise ValueError("diff requires an array of at least one dimension, got a 0-d array")
    if n < 0:
        raise ValueError(f"diff: the order n must be non-negative, got {n}")
    axis = axis % _ndim(x)
    if prepend is not None or append is not None:
        first = [] if prepend is None else [_one_slice_along(_as_traced(prepend), x, axis)]
        last = [] if append is None else [_one_slice_along(_as_traced(append), x, axis)]
        x = concatenate(first + [x] + last, axis=axis)
    before = (slice(None),) * axis
    for _ in range(n):
        x = x[before + (slice(1, None),)] - x[before + (slice(None, -1),)]
    return x


# ------------------------------------------------------ more of numpy (second round)
# Each family as above: a primitive next to its vjp, or a function built from primitives.

# ---- remainder


@primitive
def mod(x, y):
    """numpy.mod (also numpy.remainder and Python's %): x − floor(x / y)·y, with y's sign."""
    return onp.remainder(x, y)


remainder = mod


def _floor_quotient(x, y):
    """floor(x / y) as numpy's remainder counts it: piecewise constant, so a raw constant."""
    return onp.floor_divide(read_value(x), read_value(y))


# Between its jumps, mod is x − q·y with q = floor(x / y) constant: ∂/∂x = 1, ∂/∂y = −q.
defvjp(mod, lambda g, ans, x, y: g, lambda g, ans, x, y: -g * _floor_quotient(x, y))


# ---- sorting


def _sort_options(kind, stable):
    """The options numpy was given, and only those (CuPy's sort takes fewer)."""
    return {k: v for k, v in (("kind", kind), ("stable", stable)) if v is not None}


@primitive
def sort(a, axis=-1, kind=None, order=None, *, stable=None):
    """numpy.sort (axis=None: of the flattened array). Tied entries share no gradient: each
    sorted entry passes its cotangent to one of them."""
    options = _sort_options(kind, stable)
    if order is not None:
        options["order"] = order
    return onp.sort(a, axis=axis, **options)


def _along_axis(index, axis):
    """The index that picks `index[..., i, ...]` along `axis` (numpy.take_along_axis's)."""
    xp = array_module(index)
    shape = _shape(index)
    ranges = [
        xp.arange(n).reshape((1,) * d + (n,) + (1,) * (len(shape) - d - 1))
        for d, n in enumerate(shape)
    ]
    ranges[axis] = index
    return tuple(ranges)


def _sort_vjp(g, ans, a, axis=-1, kind=None, order=None, *, stable=None):
    """ans = a[perm] for the sorting permutation perm: g goes back to where each entry was."""
    raw, options = read_value(a), _sort_options(kind, stable)
    if axis is None:
        perm = onp.argsort(raw.ravel(), **options)
        return reshape(add_at(g, index=perm, shape=(raw.size,)), _shape(a))
    axis = axis % raw.ndim
    index = _along_axis(onp.argsort(raw, axis=axis, **options), axis)
    return add_at(g, index=index, shape=_shape(a))


defvjp(sort, _sort_vjp)


# ---- cumulative product


@primitive
def cumprod(x, axis=None, dtype=None):
    """numpy.cumprod (axis=None: of the flattened array)."""
    return onp.cumprod(x, axis=axis, dtype=dtype)


def _reverse_cumsum(x, axis):
    """Σ_{i ≥ j} x_i at every j along `axis`."""
    return flip(cumsum(flip(x, axis), axis), axis)


def _cumprod_with_each_left_out(x):
    """C[..., j, i] = Π_{k ≤ i, k ≠ j} x_k along the last axis, without dividing.

    Row j is the cumprod of x with its j-th entry replaced by 1 (as `_prod_of_others`).
    """
    n = _shape(x)[-1]
    eye = array_module(unbox(x)).eye(n, dtype=bool)
    return cumprod(where(eye, 1, expand_dims(x, -2)), axis=-1)


def _cumprod_vjp(g, ans, x, axis=None, dtype=None):
    """x̄_j = Σ_{i ≥ j} ḡ_i ∂y_i/∂x_j, with ∂y_i/∂x_j = Π_{k ≤ i, k ≠ j} x_k = y_i / x_j.

    The division is used when no x is 0; otherwise the products are built explicitly.
    """
    if axis is None:  # numpy flattens x first
        return reshape(_cumprod_vjp(g, ans, ravel(x), 0, dtype), _shape(x))
    if onp.all(read_value(x) != 0):
        return _reverse_cumsum(g * ans, axis) / x
    x_last, g_last = moveaxis(x, axis, -1), moveaxis(g, axis, -1)
    n = _shape(x_last)[-1]
    later = array_module(unbox(x)).tri(n, dtype=bool).T  # [j, i]: i ≥ j
    others = where(later, _cumprod_with_each_left_out(x_last), 0)
    return moveaxis(sum(others * expand_dims(g_last, -2), axis=-1), -1, axis)


defvjp(cumprod, _cumprod_vjp)


# ---- diagonal matrices


@primitive
@_named("diag")
def _diag_matrix(v, k=0):
    return onp.diag(v, k)


# The matrix's k-th diagonal holds v: v̄ is g's k-th diagonal.
defvjp(_diag_matrix, lambda g, ans, v, k=0: diagonal(g, k))


def diag(v, k=0):
    """numpy.diag: a 1-D v as the k-th diagonal of a square matrix; a 2-D v's k-th diagonal."""
    v = _as_traced(v)
    if _ndim(v) == 1:
        return _diag_matrix(v, k)
    if _ndim(v) == 2:
        return diagonal(v, k)
    raise ValueError(f"diag: v must be 1-D or 2-D, got shape {_shape(v)}")


# ---- appending and splitting: concatenation and slices of the primitives above


def append(arr, values, axis=None):
    """numpy.append: values after arr along `axis` (axis=None: both flattened first)."""
    if axis is None:
        return concatenate([ravel(arr), ravel(values)])
    return concatenate([arr, values], axis=axis)


def _split_bounds(n, indices_or_sections, equal):
    """Where the pieces of a length-n axis start and stop, as numpy.(array_)split cut it."""
    try:
        indices = list(indices_or_sections)
    except TypeError:  # not a sequence: a number of sections
        indices = None
    if indices is not None:
        return [0, *indices, n]  # the pieces end at the indices
    sections = int(indices_or_sections)
    if sections <= 0:
        raise ValueError(f"split: the number of sections must be positive, got {sections}")
    if equal and n % sections:
        raise ValueError(
            f"split: {sections} sections do not divide an axis of length {n} equally "
            "(array_split allows unequal pieces)"
        )
    each, extra = divmod(n, sections)  # the first `extra` pieces get one more entry
    sizes = [each + 1] * extra + [each] * (sections - extra)
    return [builtins.sum(sizes[:i]) for i in range(sections + 1)]


def _split(ary, indices_or_sections, axis, equal):
    ary = _as_traced(ary)
    axis = axis % _ndim(ary)
    bounds = _split_bounds(_shape(ary)[axis], indices_or_sections, equal)
    before = (slice(None),) * axis
    return [ary[before + (slice(start, stop),)] for start, stop in zip(bounds, bounds[1:])]


def split(ary, indices_or_sections, axis=0):
    """numpy.split: a list of pieces along `axis`, cut at the given indices or into equal
    sections (a ValueError when they do not divide the axis)."""
    return _split(ary, indices_or_sections, axis, equal=True)


def array_split(ary, indices_or_sections, axis=0):
    """numpy.array_split: as split, but n sections of an axis of length l need not be equal
    (the first l % n pieces get one entry more)."""
    return _split(ary, indices_or_sections, axis, equal=False)


# ---- at least n dimensions: reshapes


def _atleast(arys, new_shape):
    out = []
    for a in map(_as_traced, arys):
        shape = _shape(a)
        out.append(a if new_shape(shape) == shape else reshape(a, new_shape(shape)))
    return out[0] if len(out) == 1 else tuple(out)


def atleast_1d(*arys):
    """numpy.atleast_1d: 0-d arrays become shape (1,)."""
    return _atleast(arys, lambda shape: _at_least(shape, 1))


def atleast_2d(*arys):
    """numpy.atleast_2d: shape () becomes (1, 1), shape (n,) becomes (1, n)."""
    return _atleast(arys, lambda shape: _at_least(shape, 2))


def _at_least_3d(shape):
    if len(shape) == 0:
        return (1, 1, 1)
    if len(shape) == 1:
        return (1, shape[0], 1)
    return shape + (1,) if len(shape) == 2 else shape


def atleast_3d(*arys):
    """numpy.atleast_3d: shapes (), (n,), (m, n) become (1, 1, 1), (1, n, 1), (m, n, 1)."""
    return _atleast(arys, _at_least_3d)
