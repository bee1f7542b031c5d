"""tinyad.numpy.linalg: norm, inv, solve, det, slogdet, each followed by its vjp.

Matrix identities used (Aᵀ is the transpose of the last two axes; stacks of
matrices are handled as numpy does, batch axes first):

    X = A⁻¹          Ā = −Xᵀ X̄ Xᵀ
    x = A⁻¹ b        b̄ = A⁻ᵀ x̄,   Ā = −b̄ xᵀ
    d = det A        Ā = d̄ · d · A⁻ᵀ
    l = log|det A|   Ā = l̄ · A⁻ᵀ
"""

from collections import namedtuple

import numpy as onp

from ..core import defvjp, getval, isbox, primitive
from .ops import (
    _dtype,
    _keep,
    _named,
    _ndim,
    _safe,
    _shape,
    _swap,
    _weights,
    absolute,
    expand_dims,
    matmul,
    sign,
    squeeze,
)

__all__ = ["norm", "inv", "solve", "det", "slogdet"]


def __getattr__(name):
    if hasattr(onp.linalg, name):
        raise AttributeError(
            f"tinyad.numpy.linalg.{name} is not provided: numpy.linalg.{name} has no vjp in "
            "tinyad, so it cannot be differentiated (tinyad.numpy.linalg has norm, inv, solve, "
            "det, slogdet). Write it as a @tinyad.primitive with its vjp."
        )
    raise AttributeError(f"module 'tinyad.numpy.linalg' has no attribute {name!r}")


@primitive
def inv(a):
    """numpy.linalg.inv."""
    return onp.linalg.inv(a)


defvjp(inv, lambda g, ans, a: -matmul(matmul(_swap(ans), g), _swap(ans)))


@primitive
def solve(a, b):
    """numpy.linalg.solve: x with a x = b (b a vector only when 1-D, as in numpy 2)."""
    return onp.linalg.solve(a, b)


def _solve_vjp_b(g, ans, a, b):
    """b̄ = A⁻ᵀ x̄."""
    if _ndim(b) == 1:
        return squeeze(solve(_swap(a), expand_dims(g, -1)), -1)
    return solve(_swap(a), g)


def _solve_vjp_a(g, ans, a, b):
    """Ā = −b̄ xᵀ."""
    gb = _solve_vjp_b(g, ans, a, b)
    if _ndim(b) == 1:
        return -expand_dims(gb, -1) * expand_dims(ans, -2)
    return -matmul(gb, _swap(ans))


defvjp(solve, _solve_vjp_a, _solve_vjp_b)


def _as_matrices(x):
    """(…) → (…, 1, 1): a value per matrix, to broadcast against a stack of matrices."""
    return expand_dims(expand_dims(x, -1), -1)


@primitive
def det(a):
    """numpy.linalg.det. Its gradient needs A⁻¹, so a singular A raises LinAlgError."""
    return onp.linalg.det(a)


defvjp(det, lambda g, ans, a: _as_matrices(g * ans) * _swap(inv(a)))


@primitive
@_named("slogdet")
def _logabsdet(a):
    return onp.linalg.slogdet(a)[1]


defvjp(_logabsdet, lambda g, ans, a: _as_matrices(g) * _swap(inv(a)))

SlogdetResult = namedtuple("SlogdetResult", ["sign", "logabsdet"])


def slogdet(a):
    """numpy.linalg.slogdet: (sign, log|det a|). Only log|det a| carries a gradient.

    The sign is piecewise constant, so it is returned as a raw array.
    """
    if not isbox(a):
        return SlogdetResult(*onp.linalg.slogdet(a))
    return SlogdetResult(onp.linalg.slogdet(getval(a))[0], _logabsdet(a))


@primitive
def norm(x, ord=None, axis=None, keepdims=False):
    """numpy.linalg.norm, differentiable for every vector ord and the matrix ords None, 'fro',
    1, -1, inf, -inf.

    Conventions at the non-smooth points: the gradient of a norm at x = 0 is 0
    (never NaN); for ord=±inf (vectors) and the matrix ords 1, -1, inf, -inf,
    entries tied for the maximum (minimum) share the gradient evenly. The
    spectral and nuclear matrix norms (ord=2, -2, 'nuc') would need the vjp of
    an SVD, which tinyad does not have.
    """
    return onp.linalg.norm(x, ord=ord, axis=axis, keepdims=keepdims)


def _norm_axes(x, ord, axis):
    """('vector' or 'matrix', the reduced axes), as numpy.linalg.norm reads its arguments."""
    n = _ndim(x)
    if axis is None:
        if ord is None:
            return "vector", tuple(range(n))  # the 2-norm of the flattened x
        axis = tuple(range(n))
    axis = (axis,) if isinstance(axis, int) else tuple(a % n for a in axis)
    return ("vector" if len(axis) == 1 else "matrix"), axis


def _vector_norm_vjp(g, ans, x, ord, axes):
    """∂‖x‖_p/∂x = sign(x)·|x|^(p−1) / ‖x‖^(p−1), with its limits for p = 0, 1, 2, ±inf."""
    if ord is None or ord == 2:
        return g * x / _safe(ans)
    if ord == 1:
        return g * sign(x)
    if ord == 0:  # counts the nonzero entries: piecewise constant
        return None
    if ord in (onp.inf, -onp.inf):  # max (min) |x_i|: the extreme entries share g
        return g * sign(x) * _weights(onp.abs(getval(x)) == getval(ans), axes, _dtype(g))
    return g * sign(x) * (absolute(x) / _safe(ans)) ** (ord - 1)


def _norm_vjp(g, ans, x, ord=None, axis=None, keepdims=False):
    kind, axes = _norm_axes(x, ord, axis)
    shape = _shape(x)
    g, ans = _keep(g, shape, axes, keepdims), _keep(ans, shape, axes, keepdims)
    if kind == "vector":
        return _vector_norm_vjp(g, ans, x, ord, axes)
    if ord is None or ord == "fro":  # the 2-norm of the entries
        return g * x / _safe(ans)
    if ord in (1, -1, onp.inf, -onp.inf):
        # max (min) over columns (ord ±1) or rows (ord ±inf) of the sum of |x| along the other
        # axis; every entry of the extreme column(s) gets g·sign(x), shared among ties.
        rows, cols = axes
        along = rows if ord in (1, -1) else cols
        across = cols if along == rows else rows
        sums = onp.sum(onp.abs(getval(x)), axis=along, keepdims=True)
        hit = sums == getval(ans)
        return g * sign(x) * _weights(hit, across, _dtype(g))
    raise NotImplementedError(
        f"tinyad.numpy.linalg.norm: the gradient of the matrix norm ord={ord!r} needs the vjp "
        "of an SVD, which tinyad does not have; use ord='fro', 1 or inf"
    )


defvjp(norm, _norm_vjp)
