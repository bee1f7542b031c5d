"""Tests of the Butcher tableaus in tinyode.tableaus, against known answers.

* Butcher's order conditions, generated from rooted trees: a method has order p when
  ``sum_i b_i Phi_i(t) = 1 / gamma(t)`` for every rooted tree t with at most p nodes.
  The same conditions, with ``theta**rho(t) / gamma(t)`` on the right, give the order of
  a dense-output interpolant (Hairer, Norsett, Wanner I, Sec. II.2 and II.6).
* One step on problems with known solutions, in 40-digit decimal arithmetic: halving h
  must divide the local error by about 2**(order + 1).
* The coefficients printed by scipy (which follows the same papers and Hairer's codes).
"""

import math
from decimal import Decimal, localcontext
from functools import cache

import numpy as np
import pytest

from tinyode.tableaus import DOP853_E3, TABLEAUS, dense_weights

NAMES = list(TABLEAUS)
ADAPTIVE = [name for name in NAMES if TABLEAUS[name].b_err is not None]
EXPECTED = {  # name: (order, error_order, fsal, dense_order, number of stages)
    "euler": (1, None, False, None, 1),
    "midpoint": (2, None, False, None, 2),
    "heun": (2, None, False, None, 2),
    "rk4": (4, None, False, None, 4),
    "bosh3": (3, 2, True, 3, 4),
    "dopri5": (5, 4, True, 4, 7),
    "tsit5": (5, 4, True, 4, 7),
    "dopri8": (8, 5, True, 7, 13),
}
THETAS = (0.2, 0.37, 0.5, 0.81, 1.0)
TOL = 1e-13  # order conditions hold up to the rounding of the coefficients to floats
FAIL = 1e-6  # a violated condition is off by more than this
EPS = np.finfo(float).eps


# --------------------------------------------------------------------------------------
# Rooted trees. A tree is the sorted tuple of the subtrees of its root; a leaf is ().
# --------------------------------------------------------------------------------------


def _graft(tree):
    """Every tree made by attaching one new leaf to some node of ``tree``."""
    yield tuple(sorted((*tree, ())))
    for i, child in enumerate(tree):
        for new in _graft(child):
            yield tuple(sorted((*tree[:i], new, *tree[i + 1 :])))


@cache
def trees(order):
    """All rooted trees with ``order`` nodes."""
    if order == 1:
        return ((),)
    return tuple(sorted({new for tree in trees(order - 1) for new in _graft(tree)}))


def nodes(tree):
    return 1 + sum(nodes(child) for child in tree)


def density(tree):
    """gamma(t): the tree's order times the densities of its subtrees."""
    return nodes(tree) * math.prod(density(child) for child in tree)


def symmetry(tree):
    """sigma(t): the number of automorphisms of the tree."""
    out = math.prod(symmetry(child) for child in tree)
    for child in set(tree):  # equal subtrees may be permuted
        out *= math.factorial(tree.count(child))
    return out


def trees_up_to(order):
    return [tree for n in range(1, order + 1) for tree in trees(n)]


def test_rooted_trees():
    # OEIS A000081: the number of rooted trees with n nodes.
    assert [len(trees(n)) for n in range(1, 10)] == [1, 1, 2, 4, 9, 20, 48, 115, 286]
    assert len(trees_up_to(8)) == 200
    for n in range(1, 9):
        # n!/(sigma gamma) counts the increasing labellings of t; over all trees with n
        # nodes they give the (n-1)! recursive trees.
        assert sum(math.factorial(n) // (symmetry(t) * density(t)) for t in trees(n)) == (
            math.factorial(n - 1)
        )
    tall, bushy = ((),), ((), ())
    assert density(tall) == 2 and density(bushy) == 3 and symmetry(bushy) == 2


# --------------------------------------------------------------------------------------
# Elementary weights
# --------------------------------------------------------------------------------------


def stage_matrix(tab):
    """The (n, n) matrix of all stages, main and dense-output ones."""
    rows = tab.a + tab.dense_a
    A = np.zeros((len(rows), len(rows)))
    for i, row in enumerate(rows):
        A[i, : len(row)] = row
    return A


def stage_weights(A):
    """``Phi(t)``: the vector of the stages' elementary weights of a tree."""

    @cache
    def phi(tree):
        out = np.ones(len(A))
        for child in tree:
            out = out * (A @ phi(child))
        return out

    return phi


def padded(weights, n):
    return np.concatenate([weights, np.zeros(n - len(weights))])


def residuals(tab, weights, order):
    """``{tree: sum_i weights_i Phi_i(t) - 1/gamma(t)}`` for the trees with ``order`` nodes."""
    A = stage_matrix(tab)
    phi, w = stage_weights(A), padded(np.asarray(weights), len(A))
    return {t: w @ phi(t) - 1 / density(t) for t in trees(order)}


def assert_order(tab, weights, order):
    """The quadrature ``weights`` have exactly the order ``order``."""
    for n in range(1, order + 1):
        worst = max(abs(r) for r in residuals(tab, weights, n).values())
        assert worst < TOL, f"{tab.name}: an order-{n} condition fails by {worst:.2e}"
    worst = max(abs(r) for r in residuals(tab, weights, order + 1).values())
    assert worst > FAIL, f"{tab.name}: all order-{order + 1} conditions hold"


# --------------------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------------------


def test_names():
    assert NAMES == list(EXPECTED)
    assert all(TABLEAUS[name].name == name for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_shapes(name):
    tab = TABLEAUS[name]
    order, error_order, fsal, dense_order, s = EXPECTED[name]
    assert (tab.order, tab.error_order, tab.fsal, tab.dense_order) == (
        order,
        error_order,
        fsal,
        dense_order,
    )
    assert len(tab.c) == len(tab.a) == len(tab.b) == s
    assert [len(row) for row in tab.a] == list(range(s))
    assert [len(row) for row in tab.dense_a] == [s + j for j in range(len(tab.dense_c))]
    values = [*tab.c, *tab.b, *(x for row in tab.a + tab.dense_a for x in row), *tab.dense_c]
    if tab.b_err is None:
        assert tab.dense_p is None and tab.dense_c == ()
    else:
        assert len(tab.b_err) == s
        n = s + len(tab.dense_c)
        assert len(tab.dense_p) == n and len({len(row) for row in tab.dense_p}) == 1
        values += [*tab.b_err, *(x for row in tab.dense_p for x in row)]
    assert all(type(x) is float for x in values)


@pytest.mark.parametrize("name", NAMES)
def test_row_sums(name):
    """``sum_j a_ij = c_i``, for the dense-output stages too."""
    tab = TABLEAUS[name]
    for c, row in zip(tab.c + tab.dense_c, tab.a + tab.dense_a, strict=True):
        scale = 1 + math.fsum(abs(x) for x in row)  # dopri8's rows reach 96
        assert math.fsum(row) == pytest.approx(c, abs=4 * EPS * scale)


@pytest.mark.parametrize("name", NAMES)
def test_fsal(name):
    tab = TABLEAUS[name]
    if tab.fsal:
        assert tab.c[-1] == 1.0 and tab.b[-1] == 0.0
        assert tab.a[-1] == tab.b[:-1]
    else:  # the last stage is not f(t + h, y_{n+1})
        assert tab.a[-1] != tab.b[:-1] or tab.c[-1] != 1.0


# --------------------------------------------------------------------------------------
# Order conditions
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_order(name):
    tab = TABLEAUS[name]
    assert_order(tab, tab.b, tab.order)


@pytest.mark.parametrize("name", ADAPTIVE)
def test_embedded_order(name):
    """``yhat = b - b_err`` has order ``error_order``, so err is O(h**(error_order+1))."""
    tab = TABLEAUS[name]
    assert math.fsum(tab.b_err) == pytest.approx(0.0, abs=1e-15)
    assert_order(tab, np.subtract(tab.b, tab.b_err), tab.error_order)


# The embedded weights bhat as published (Tsitouras's to 20 digits), pinning the sign
# convention b_err = b - bhat; scipy and OrdinaryDiffEq.jl store bhat - b instead.
PUBLISHED_BHAT = {
    "bosh3": (7 / 24, 1 / 4, 1 / 3, 1 / 8),
    "dopri5": (5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40),
    "tsit5": (
        0.094680755765839458075,
        0.0091835655403432530968,
        0.48777052842476157079,
        1.2342975669304789857,
        -2.7077123499835254549,
        1.8666284181705870358,
        1 / 66,
    ),
}


@pytest.mark.parametrize("name", list(PUBLISHED_BHAT))
def test_embedded_weights_are_the_published_ones(name):
    tab = TABLEAUS[name]
    bhat = np.subtract(tab.b, tab.b_err)
    np.testing.assert_allclose(bhat, PUBLISHED_BHAT[name], rtol=0, atol=4 * EPS)


def test_dop853_third_order_estimate():
    tab = TABLEAUS["dopri8"]
    assert len(DOP853_E3) == len(tab.b)
    assert_order(tab, np.subtract(tab.b, DOP853_E3), 3)


@pytest.mark.parametrize("name", ADAPTIVE)
def test_dense_ends_at_the_step(name):
    tab = TABLEAUS[name]
    n = len(tab.dense_p)
    assert dense_weights(tab, 0.0) == (0.0,) * n
    # Exact up to rounding: the power-form coefficients reach 545 for dopri8.
    scale = max(abs(x) for row in tab.dense_p for x in row)
    np.testing.assert_allclose(
        dense_weights(tab, 1.0), padded(tab.b, n), rtol=0, atol=4 * EPS * scale
    )


@pytest.mark.parametrize("name", ADAPTIVE)
def test_dense_order(name):
    """``sum_i B_i(theta) Phi_i(t) = theta**rho(t) / gamma(t)`` up to the dense order."""
    tab = TABLEAUS[name]
    A = stage_matrix(tab)
    phi = stage_weights(A)

    def worst(order):
        return max(
            abs(np.dot(dense_weights(tab, th), phi(t)) - th ** nodes(t) / density(t))
            for t in trees(order)
            for th in THETAS
        )

    for n in range(1, tab.dense_order + 1):
        assert worst(n) < TOL, f"{name}: an order-{n} continuous condition fails"
    assert worst(tab.dense_order + 1) > FAIL


# --------------------------------------------------------------------------------------
# One step on problems with known solutions
# --------------------------------------------------------------------------------------


def _series(x, first, k0):
    """sin (first = x, k0 = 1) or cos (first = 1, k0 = 0) by its Taylor series."""
    term, total, k = first, first, k0
    while abs(term) > Decimal(10) ** -45:
        term *= -x * x / ((k + 1) * (k + 2))
        total, k = total + term, k + 2
    return total


def dsin(x):
    return _series(x, x, 1)


def dcos(x):
    return _series(x, Decimal(1), 0)


T0 = Decimal("0.5")
PROBLEMS = {  # y' = f(t, y), y(T0) = 1, exact solution
    "exp": (lambda t, y: y, lambda t: (t - T0).exp()),
    "cos": (lambda t, y: dcos(t) * y, lambda t: (dsin(t) - dsin(T0)).exp()),
}


def one_step(tab, problem, h, theta=Decimal("0.37")):
    """Errors of y_{n+1}, of the estimate, and of the dense output at theta."""
    f, exact = PROBLEMS[problem]
    k = []
    for c, row in zip(tab.c + tab.dense_c, tab.a + tab.dense_a, strict=True):
        stage = 1 + h * sum((Decimal(a) * kj for a, kj in zip(row, k, strict=True)), Decimal(0))
        k.append(f(T0 + Decimal(c) * h, stage))

    def advance(weights):
        return h * sum(Decimal(w) * kj for w, kj in zip(weights, k, strict=False))

    y1 = 1 + advance(tab.b)
    errors = {"step": abs(y1 - exact(T0 + h))}
    if tab.b_err is not None:
        # the estimate y1 - yhat is the error of yhat
        errors["embedded"] = abs(y1 - advance(tab.b_err) - exact(T0 + h))
        B = [sum(Decimal(p) * theta ** (j + 1) for j, p in enumerate(row)) for row in tab.dense_p]
        dense = 1 + advance(B)
        errors["dense"] = abs(dense - exact(T0 + theta * h))
    return errors


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("name", NAMES)
def test_local_error_ratio(name, problem):
    """Halving h divides the local error by 2**(order + 1).

    40-digit arithmetic keeps rounding out; h is small enough to be in the asymptotic
    range and large enough that the errors stay above the effect of rounding the
    coefficients to floats (for dopri8 that leaves h = 0.2 and 0.1).
    """
    tab = TABLEAUS[name]
    h = Decimal("0.2") if name == "dopri8" else Decimal("0.05")
    orders = {"step": tab.order, "embedded": tab.error_order, "dense": tab.dense_order}
    with localcontext() as ctx:
        ctx.prec = 40
        big, small = one_step(tab, problem, h), one_step(tab, problem, h / 2)
    for kind, error in big.items():
        observed = math.log2(error / small[kind])
        assert abs(observed - (orders[kind] + 1)) < 0.5, (kind, observed)


# --------------------------------------------------------------------------------------
# Cross-checks against the coefficients in scipy
# --------------------------------------------------------------------------------------


def test_bosh3_and_dopri5_match_scipy():
    rk = pytest.importorskip("scipy.integrate._ivp.rk")
    for name, scipy_method in (("bosh3", rk.RK23), ("dopri5", rk.RK45)):
        tab = TABLEAUS[name]
        rows, cols = scipy_method.A.shape  # scipy leaves out the FSAL stage
        np.testing.assert_allclose(stage_matrix(tab)[:rows, :cols], scipy_method.A, atol=1e-15)
        np.testing.assert_allclose(tab.c[:-1], scipy_method.C, atol=1e-15)
        np.testing.assert_allclose(tab.b[:-1], scipy_method.B, atol=1e-15)
        # scipy's E is yhat - y, ours y - yhat
        np.testing.assert_allclose(tab.b_err, -scipy_method.E, atol=1e-15)
        np.testing.assert_allclose(tab.dense_p, scipy_method.P, rtol=1e-14, atol=1e-15)


def test_dopri8_matches_scipy():
    dop = pytest.importorskip("scipy.integrate._ivp.dop853_coefficients")
    tab = TABLEAUS["dopri8"]
    A = stage_matrix(tab)
    np.testing.assert_array_equal(A, dop.A)
    np.testing.assert_array_equal(tab.c + tab.dense_c, dop.C)
    np.testing.assert_array_equal(tab.b[:12], dop.B)
    np.testing.assert_array_equal(tab.b_err, dop.E5)
    np.testing.assert_allclose(DOP853_E3, dop.E3, rtol=0, atol=1e-16)

    # scipy evaluates Hairer's nested form y_n + theta(F0 + (1-theta)(F1 + theta(F2 + ...)))
    # with F_m = h * sum_i R[m, i] k_i; R is built here from b and scipy's D.
    b, e0, e12 = padded(tab.b, 16), np.eye(16)[0], np.eye(16)[12]
    R = [b, e0 - b, 2 * b - e0 - e12, *dop.D]
    for th in THETAS:
        weights = np.zeros(16)
        for m, row in reversed(list(enumerate(R))):
            weights = (weights + row) * (th if m % 2 == 0 else 1 - th)
        np.testing.assert_allclose(dense_weights(tab, th), weights, rtol=0, atol=1e-12)
