"""tinyad.numpy.linalg: norm, inv, solve, det, slogdet, cholesky, eigh, svd, pinv, each
followed by its vjp.

Matrix identities used (Aᵀ is the transpose of the last two axes; stacks of
matrices are handled as numpy does, batch axes first):

    X = A⁻¹          Ā = −Xᵀ X̄ Xᵀ
    x = A⁻¹ b        b̄ = A⁻ᵀ x̄,   Ā = −b̄ xᵀ
    d = det A        Ā = d̄ · d · A⁻ᵀ
    l = log|det A|   Ā = l̄ · A⁻ᵀ

The decompositions (cholesky, eigh, svd) and pinv follow at the end, with their sources.
"""

import builtins
from collections import namedtuple

import numpy as onp

from ..backend import array_module
from ..core import defvjp, isbox, primitive, read_value, unbox
from .ops import (
    _NOT_GIVEN,
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
    moveaxis,
    sign,
    squeeze,
    where,
)

__all__ = ["norm", "inv", "solve", "det", "slogdet", "cholesky", "eigh", "svd", "pinv"]


def __getattr__(name):
    if hasattr(onp.linalg, name):
        raise AttributeError(
            f"tinyad.numpy.linalg.{name} is not provided: numpy.linalg.{name} has no vjp in "
            f"tinyad, so it cannot be differentiated (tinyad.numpy.linalg has {', '.join(__all__)}"
            "). Write it as a @tinyad.primitive with its vjp."
        )
    raise AttributeError(f"module 'tinyad.numpy.linalg' has no attribute {name!r}")


@primitive
def inv(a):
    """numpy.linalg.inv.

    >>> inv(np.eye(2) * 2)                  # 0.5 I
    """
    return onp.linalg.inv(a)


defvjp(inv, lambda g, ans, a: -matmul(matmul(_swap(ans), g), _swap(ans)))


@primitive
def solve(a, b):
    """numpy.linalg.solve: x with a x = b (b a vector only when 1-D, as in numpy 2).

    >>> solve(np.eye(2) * 2, np.ones(2))    # [0.5, 0.5]
    """
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
    """numpy.linalg.det. Its gradient needs A⁻¹, so a singular A raises LinAlgError.

    >>> det(np.eye(3) * 2)                  # 8.0
    """
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

    >>> slogdet(np.eye(3) * 2)              # (1.0, 3 log 2)
    """
    if not isbox(a):
        return SlogdetResult(*onp.linalg.slogdet(a))
    return SlogdetResult(onp.linalg.slogdet(read_value(a))[0], _logabsdet(a))


@primitive
def norm(x, ord=None, axis=None, keepdims=False):
    """numpy.linalg.norm, differentiable for every vector ord and every matrix ord.

    Conventions at the non-smooth points: the gradient of a norm at x = 0 is 0
    (never NaN); for ord=±inf (vectors) and the matrix ords 1, -1, inf, -inf,
    entries tied for the maximum (minimum) share the gradient evenly. The
    spectral and nuclear matrix norms (ord=2, -2, 'nuc') differentiate through
    `svd`, so they need distinct singular values (and nonzero ones for 'nuc').

    >>> norm(np.array([3.0, 4.0]))          # 5.0
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
        return g * sign(x) * _weights(onp.abs(read_value(x)) == read_value(ans), axes, _dtype(g))
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
        sums = onp.sum(onp.abs(read_value(x)), axis=along, keepdims=True)
        hit = sums == read_value(ans)
        return g * sign(x) * _weights(hit, across, _dtype(g))
    # ord 2, -2, 'nuc': the largest, smallest, or sum of the singular values σ_i of X = U Σ Vᵀ;
    # ∂σ_i/∂X = u_i v_iᵀ (distinct singular values, as svd's vjp assumes).
    rows, cols = axes
    u, s, vh = svd(moveaxis(x, (rows, cols), (-2, -1)), full_matrices=False)
    if ord == "nuc":
        d = u @ vh
    else:
        k = 0 if ord == 2 else _shape(s)[-1] - 1
        d = u[..., :, k : k + 1] @ vh[..., k : k + 1, :]
    return g * moveaxis(d, (-2, -1), (rows, cols))


defvjp(norm, _norm_vjp)


# ---------------------------------------------------- decompositions (second round)
# Real matrices only. numpy reads one triangle of a symmetric matrix (cholesky and eigh the
# lower, by default); each gradient is that of numpy's function of that triangle: zero on the
# other side. A symmetric gradient Ḡ (the one for symmetric perturbations, dL = tr(Ḡ dA))
# becomes that of the lower triangle as Φ(2Ḡ), where Φ(X) keeps the lower triangle of X and
# halves its diagonal: the off-diagonal entry a_ij (i > j) stands for both a_ij and a_ji.


def _phi(x):
    """Φ(X): the lower triangle of X with its diagonal halved."""
    n = _shape(x)[-1]
    xp = array_module(unbox(x))
    return x * (xp.tri(n, dtype=_dtype(x)) - 0.5 * xp.eye(n, dtype=_dtype(x)))


def _lower_read(sym2, upper=False):
    """The gradient of the lower (upper) triangle read, from 2Ḡ = G + Gᵀ."""
    return _swap(_phi(sym2)) if upper else _phi(sym2)


def _real_only(name, a):
    if isbox(a) and _dtype(a).kind == "c":
        raise TypeError(
            f"tinyad.numpy.linalg.{name}: complex matrices are not supported (real input only)"
        )


def _reciprocal_or_zero(d):
    """1/d where d ≠ 0, and 0 where d = 0: the terms eigh and svd drop at ties (and s = 0)."""
    nonzero = read_value(d) != 0
    return where(nonzero, 1.0 / where(nonzero, d, 1.0), 0.0)


def _gaps_inverse(w):
    """F with F_ij = 1/(w_j − w_i) for w_i ≠ w_j, and 0 on the diagonal and at ties."""
    return _reciprocal_or_zero(expand_dims(w, -2) - expand_dims(w, -1))


def _diagonal_matrices(v):
    """A stack of diagonal matrices with v (…, n) on their diagonals."""
    n = _shape(v)[-1]
    return expand_dims(v, -1) * array_module(unbox(v)).eye(n, dtype=_dtype(v))


@primitive
@_named("cholesky")
def _cholesky(a):
    return onp.linalg.cholesky(a)


def _cholesky_vjp(g, ans, a):
    """Murray (2016): P = Φ(Lᵀ L̄), S = L⁻ᵀ P L⁻¹, Ḡ = (S + Sᵀ)/2; Ā = Φ(S + Sᵀ)."""
    lt = _swap(ans)
    p = _phi(matmul(lt, g))  # reads L̄ only on and below the diagonal, as it should
    s = solve(lt, _swap(solve(lt, _swap(p))))  # L⁻ᵀ P L⁻¹: two solves with Lᵀ (batched LU)
    return _phi(s + _swap(s))


defvjp(_cholesky, _cholesky_vjp)


def cholesky(a, /, *, upper=False):
    """numpy.linalg.cholesky: lower-triangular L with L Lᵀ = a (upper=True: U = Lᵀ, Uᵀ U = a).

    a must be symmetric positive definite. As numpy, only its lower triangle is read (the
    upper with upper=True), and the gradient is zero on the other side; for a symmetric
    parametrisation a = f(θ) the chain rule gives the usual symmetric gradient.

    >>> cholesky(np.eye(2) * 4)             # 2 I
    """
    _real_only("cholesky", a)
    if upper:  # a's upper triangle is the lower triangle of aᵀ
        return _swap(_cholesky(_swap(a)))
    return _cholesky(a)


EighResult = namedtuple("EighResult", ["eigenvalues", "eigenvectors"])


@primitive
@_named("eigh")
def _eigh_stacked(a, UPLO="L"):
    """numpy.linalg.eigh's w and V as one array (…, n + 1, n): row 0 is w, the rest V.

    A primitive returns one array; eigh indexes it apart, and the vjp of that indexing puts
    w̄ and V̄ back in place, so the vjp below gets both (zeros for one not used).
    """
    w, v = onp.linalg.eigh(a, UPLO=UPLO)
    return onp.concatenate([w[..., None, :], v], axis=-2)


def _eigh_vjp(g, ans, a, UPLO="L"):
    """Ḡ = V (diag(w̄) + F ∘ VᵀV̄) Vᵀ with F_ij = 1/(w_j − w_i) (Giles 2008), as read."""
    w, v = ans[..., 0, :], ans[..., 1:, :]
    gw, gv = g[..., 0, :], g[..., 1:, :]
    vt = _swap(v)
    inner = _diagonal_matrices(gw) + _gaps_inverse(w) * matmul(vt, gv)
    ga = matmul(v, matmul(inner, vt))
    return _lower_read(ga + _swap(ga), upper=UPLO == "U")


defvjp(_eigh_stacked, _eigh_vjp)


def eigh(a, UPLO="L"):
    """numpy.linalg.eigh of a real symmetric a (or a stack): (w, V) with a V = V diag(w).

    Conventions (those of autograd and JAX):

    - w is ascending; as numpy, only the lower triangle of a is read (the upper with
      UPLO="U"), and the gradient is zero on the other side.
    - Each column of V is defined up to its sign, so only functions that do not depend on
      the signs (w, v_k v_kᵀ, V diag(f(w)) Vᵀ, |V|) have well-defined gradients.
    - Gradients through V need distinct eigenvalues: they divide by w_j − w_i. Where two
      are exactly equal those terms are dropped: the gradients of functions of w, and of
      projectors onto whole eigenspaces, stay finite and right; those of other functions of
      V (V diag(f(w)) Vᵀ among them) are not reliable there.

    >>> w, v = eigh(np.diag([2.0, 1.0]))       # w == [1, 2]
    """
    _real_only("eigh", a)
    if not isbox(a):
        return EighResult(*onp.linalg.eigh(a, UPLO=UPLO))
    stacked = _eigh_stacked(a, UPLO)
    return EighResult(stacked[..., 0, :], stacked[..., 1:, :])


SVDResult = namedtuple("SVDResult", ["U", "S", "Vh"])


@primitive
@_named("svd")
def _svd_stacked(a):
    """numpy.linalg.svd(a, full_matrices=False)'s U (m, k), s and V = Vhᵀ (n, k) as one
    array (…, m + 1 + n, k), k = min(m, n), indexed apart by svd (as `_eigh_stacked`)."""
    u, s, vh = onp.linalg.svd(a, full_matrices=False)
    return onp.concatenate([u, s[..., None, :], onp.swapaxes(vh, -1, -2)], axis=-2)


def _svd_vjp(g, ans, a):
    """Townsend (2016), with F_ij = 1/(s_j² − s_i²) and S = diag(s):

    Ā = U [(F ∘ (UᵀŪ − ŪᵀU)) S + diag(s̄) + S (F ∘ (VᵀV̄ − V̄ᵀV))] Vᵀ
        + (I − UUᵀ) Ū S⁻¹ Vᵀ + U S⁻¹ V̄ᵀ (I − VVᵀ)

    (the last two terms only for non-square a: U or V is then not square).
    """
    m, n = _shape(a)[-2:]
    k = builtins.min(m, n)
    u, s, v = ans[..., :m, :], ans[..., m, :], ans[..., m + 1 :, :]
    gu, gs, gv = g[..., :m, :], g[..., m, :], g[..., m + 1 :, :]
    f = _gaps_inverse(s**2)
    utgu, vtgv = matmul(_swap(u), gu), matmul(_swap(v), gv)
    inner = (
        f * (utgu - _swap(utgu)) * expand_dims(s, -2)
        + _diagonal_matrices(gs)
        + expand_dims(s, -1) * (f * (vtgv - _swap(vtgv)))
    )
    ga = matmul(u, matmul(inner, _swap(v)))
    s_inv = expand_dims(_reciprocal_or_zero(s), -2)  # scales the columns
    if m > k:
        ga = ga + matmul((gu - matmul(u, utgu)) * s_inv, _swap(v))
    if n > k:
        ga = ga + matmul(u * s_inv, _swap(gv - matmul(v, vtgv)))
    return ga


defvjp(_svd_stacked, _svd_vjp)


def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    """numpy.linalg.svd of a real a (or a stack): a = U diag(S) Vh, S descending.

    Conventions (those of autograd and JAX):

    - The differentiable path is the reduced SVD, full_matrices=False (the extra columns of
      a full U or V are arbitrary): for a non-square traced a, full_matrices=True raises.
      S alone (compute_uv=False) is differentiable for any shape.
    - Each pair (u_k, v_k) is defined up to a common sign, so only functions that do not
      depend on it (S, U diag(S) Vh, u_k v_kᵀ, |U|) have well-defined gradients.
    - Gradients through U and Vh need distinct, nonzero singular values: they divide by
      s_j² − s_i² and by s_i. Where one of these is exactly 0 that term is dropped, which
      keeps the gradients of functions of S finite.

    >>> u, s, vh = svd(a, full_matrices=False)
    """
    _real_only("svd", a)
    if not isbox(a):
        if hermitian:
            return onp.linalg.svd(a, full_matrices, compute_uv, hermitian=True)
        return onp.linalg.svd(a, full_matrices, compute_uv)
    m, n = _shape(a)[-2:]
    if hermitian:
        raise NotImplementedError(
            "tinyad.numpy.linalg.svd: hermitian=True is not differentiable here; pass "
            "hermitian=False (the general SVD, same S)"
        )
    if compute_uv and full_matrices and m != n:
        raise NotImplementedError(
            f"tinyad.numpy.linalg.svd: for a non-square a ({m}×{n}) the gradient of U and Vh "
            "with full_matrices=True is not defined (their extra columns are arbitrary); pass "
            "full_matrices=False"
        )
    stacked = _svd_stacked(a)
    s = stacked[..., m, :]
    if not compute_uv:
        return s
    return SVDResult(stacked[..., :m, :], s, _swap(stacked[..., m + 1 :, :]))


@primitive
def pinv(a, rcond=None, hermitian=False, *, rtol=_NOT_GIVEN):
    """numpy.linalg.pinv: the Moore-Penrose pseudo-inverse A⁺ of a real a (or a stack).

    Its gradient holds where the rank of a does not change nearby (Golub & Pereyra 1973):
    for a matrix of full rank, or one whose small singular values are cut by rcond/rtol
    with a margin. With hermitian=True numpy reads only the lower triangle of a, and so
    does the gradient.

    >>> pinv(np.ones((2, 1)))                # [[0.5, 0.5]]
    """
    options = {"rcond": rcond} if rcond is not None else {}
    if hermitian:
        options["hermitian"] = True
    if rtol is not _NOT_GIVEN:  # numpy tells rtol=None (the array API's default) from no rtol
        options["rtol"] = rtol
    return onp.linalg.pinv(a, **options)


def _symmetric_from_lower(a):
    """The symmetric matrix numpy's hermitian=True reads: a's lower triangle, mirrored."""
    lower = _phi(a)  # the strict lower triangle, and the diagonal halved
    return lower + _swap(lower)


def _pinv_vjp(g, ans, a, rcond=None, hermitian=False, *, rtol=_NOT_GIVEN):
    """dA⁺ = −A⁺ dA A⁺ + A⁺A⁺ᵀ dAᵀ (I − AA⁺) + (I − A⁺A) dAᵀ A⁺ᵀA⁺ (Golub & Pereyra 1973),
    so Ā = −A⁺ᵀ Ḡ A⁺ᵀ + (I − AA⁺) Ḡᵀ A⁺A⁺ᵀ + A⁺ᵀA⁺ Ḡᵀ (I − A⁺A)."""
    x = _symmetric_from_lower(a) if hermitian else a
    p, pt, gt = ans, _swap(ans), _swap(g)
    ga = -matmul(pt, matmul(g, pt))
    ga = ga + matmul(gt - matmul(x, matmul(p, gt)), matmul(p, pt))
    ga = ga + matmul(matmul(pt, p), gt - matmul(matmul(gt, p), x))
    return _lower_read(ga + _swap(ga)) if hermitian else ga


defvjp(pinv, _pinv_vjp)
