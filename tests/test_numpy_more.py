"""The numpy functions of the second round: values as numpy's, gradients to second order.

Each case is written once as f(module, *args) and run with tinyad.numpy (checked against
finite differences to second order, and forward mode), with numpy (the values must agree)
and, where autograd differentiates it, with autograd.numpy (the gradients must agree).
"""

import autograd
import autograd.numpy as anp
import numpy
import pytest
import scipy.special
from helpers_numpy import check, names_on_tape, rand
from test_backend import same_as_numpy

import tinyad
import tinyad.numpy as np

X = rand((3, 4), seed=1)
X3 = rand((2, 3, 4), seed=2)
V = rand((5,), seed=3)
S = rand((), seed=4)
WITH_ZEROS = numpy.array([[1.5, 0.0, 2.0, -0.7], [0.0, 1.2, 0.0, 0.9], [0.8, -1.1, 0.6, 1.3]])

# (name, f(m, *args), args, autograd has its gradient)
CASES = [
    ("diag-vector", lambda m, v: m.diag(v), (V,), True),
    ("diag-vector-above", lambda m, v: m.diag(v, 2), (V,), True),
    ("diag-vector-below", lambda m, v: m.diag(v, -1), (V,), True),
    ("diag-square", lambda m, x: m.diag(x), (rand((3, 3), seed=17),), True),
    ("diag-square-offset", lambda m, x: m.diag(x, -1), (rand((3, 3), seed=17),), True),
    # autograd's vjp of diag gives a non-square x a square gradient (a shape error)
    ("diag-matrix", lambda m, x: m.diag(x), (X,), False),
    ("diag-matrix-offset", lambda m, x: m.diag(x, 1), (X,), False),
    ("diag-matrix-negative-offset", lambda m, x: m.diag(x, -2), (X,), False),
    ("append-flat", lambda m, x, v: m.append(x, v), (X, V), True),
    ("append-axis0", lambda m, x: m.append(x, x[:1] * 2, axis=0), (X,), True),
    ("append-axis-1", lambda m, x, y: m.append(x, y, axis=-1), (X, rand((3, 2), seed=5)), True),
    ("split-sections", lambda m, x: m.split(x, 2, axis=1)[1], (X,), True),
    ("split-indices", lambda m, x: m.split(x, [1, 3])[1], (rand((5, 2), seed=6),), True),
    ("split-indices-last", lambda m, x: m.split(x, [1, 3], axis=-1)[2], (X3,), True),
    ("split-all-pieces", lambda m, x: m.stack(m.split(x, 4, axis=1)) ** 2, (X,), True),
    ("array_split-uneven", lambda m, x: m.array_split(x, 3, axis=1)[0], (X,), True),
    ("array_split-last", lambda m, v: m.array_split(v, 3)[2], (V,), True),
    ("array_split-indices", lambda m, x: m.array_split(x, [2], axis=2)[1], (X3,), True),
    ("mod-scalar", lambda m, x: m.mod(x, 0.7), (X,), True),
    ("mod-arrays", lambda m, x, y: m.mod(x, y), (X, rand((4,), "nonzero", seed=7)), True),
    ("mod-negative-divisor", lambda m, x: m.mod(x, -0.9), (X,), True),
    ("remainder", lambda m, x, y: m.remainder(x, y), (X, rand((3, 1), "positive", seed=8)), True),
    ("percent", lambda m, x, y: x % y, (X, rand((4,), "positive", seed=9)), True),
    ("percent-reflected", lambda m, x: 2.5 % (x + 3.0), (X,), True),
    ("sort-1d", lambda m, v: m.sort(v), (V,), True),
    ("sort-last-axis", lambda m, x: m.sort(x), (X,), False),
    ("sort-axis0", lambda m, x: m.sort(x, axis=0), (X3,), False),
    ("sort-flat", lambda m, x: m.sort(x, axis=None), (X,), False),
    ("sort-stable", lambda m, x: m.sort(x, axis=1, kind="stable"), (X,), False),
    ("atleast_1d-0d", lambda m, s: m.atleast_1d(s), (S,), True),
    ("atleast_1d-2d", lambda m, x: m.atleast_1d(x), (X,), True),
    ("atleast_2d-0d", lambda m, s: m.atleast_2d(s), (S,), True),
    ("atleast_2d-1d", lambda m, v: m.atleast_2d(v), (V,), True),
    ("atleast_3d-0d", lambda m, s: m.atleast_3d(s), (S,), True),
    ("atleast_3d-1d", lambda m, v: m.atleast_3d(v), (V,), True),
    ("atleast_3d-2d", lambda m, x: m.atleast_3d(x), (X,), True),
    ("atleast_3d-3d", lambda m, x: m.atleast_3d(x), (X3,), True),
    ("triu", lambda m, x: m.triu(x), (X,), True),
    ("triu-above", lambda m, x: m.triu(x, 1), (X,), True),
    ("triu-stack", lambda m, x: m.triu(x, -1), (X3,), True),
    ("triu-vector", lambda m, v: m.triu(v), (V,), False),  # autograd: a shape error
    ("tril", lambda m, x: m.tril(x), (X,), True),
    ("tril-below", lambda m, x: m.tril(x, -1), (X,), True),
    ("tril-stack", lambda m, x: m.tril(x, 2), (X3,), True),
    ("trace", lambda m, x: m.trace(x), (X,), True),
    ("trace-offset", lambda m, x: m.trace(x, 1), (X,), True),
    ("trace-negative-offset", lambda m, x: m.trace(x, -1), (X,), True),
    # autograd's trace takes no axes
    ("trace-axes", lambda m, x: m.trace(x, 0, 1, 2), (X3,), False),
    ("trace-axes-offset", lambda m, x: m.trace(x, 1, 2, 0), (X3,), False),
    ("cumprod-flat", lambda m, x: m.cumprod(x), (X,), False),
    ("cumprod-axis0", lambda m, x: m.cumprod(x, axis=0), (X,), False),
    ("cumprod-axis1", lambda m, x: m.cumprod(x, axis=1), (X,), False),
    ("cumprod-3d", lambda m, x: m.cumprod(x, axis=-2), (X3,), False),
    ("cumprod-zeros-axis1", lambda m, x: m.cumprod(x, axis=1), (WITH_ZEROS,), False),
    ("cumprod-zeros-axis0", lambda m, x: m.cumprod(x, axis=0), (WITH_ZEROS,), False),
    ("cumprod-zeros-flat", lambda m, x: m.cumprod(x), (WITH_ZEROS,), False),
    ("diff", lambda m, x: m.diff(x), (X,), True),
    ("diff-n3", lambda m, x: m.diff(x, 3), (X,), True),
    ("diff-axis0", lambda m, x: m.diff(x, axis=0), (X3,), True),
    ("diff-n0", lambda m, x: m.diff(x, 0), (X,), True),
    ("diff-prepend-scalar", lambda m, x: m.diff(x, prepend=0.5), (X,), False),
    ("diff-append-array", lambda m, x: m.diff(x, 2, axis=0, append=x[:1] ** 2), (X,), False),
    ("diff-both", lambda m, x, v: m.diff(v, prepend=x[0], append=2.0), (X, V), False),
    ("roll", lambda m, x: m.roll(x, 2), (X,), True),
    ("roll-numpy-int", lambda m, x: m.roll(x, numpy.int64(-3)), (X,), False),
    ("roll-axis", lambda m, x: m.roll(x, numpy.int64(1), axis=1), (X3,), True),
    ("roll-axes", lambda m, x: m.roll(x, (1, -2), axis=(0, 2)), (X3,), False),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("name, f, args, _", CASES, ids=IDS)
def test_values_are_numpys(name, f, args, _):
    numpy.testing.assert_array_equal(f(np, *args), f(numpy, *args))


@pytest.mark.parametrize("name, f, args, _", CASES, ids=IDS)
def test_gradients_to_second_order(name, f, args, _):
    check(lambda *a: f(np, *a), *args)


AUTOGRAD_CASES = [c for c in CASES if c[3]]


@pytest.mark.parametrize("name, f, args, _", AUTOGRAD_CASES, ids=[c[0] for c in AUTOGRAD_CASES])
def test_gradients_are_autograds(name, f, args, _):
    w = rand(numpy.shape(f(numpy, *args)), seed=11)
    argnums = tuple(range(len(args)))
    ours = tinyad.grad(lambda *a: np.sum(f(np, *a) * w), argnums)(*args)
    theirs = autograd.grad(lambda a: anp.sum(f(anp, *a) * w))(args)
    for o, t in zip(ours, theirs, strict=True):
        numpy.testing.assert_allclose(o, t, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, f, args, _", CASES, ids=IDS)
def test_the_same_on_the_strict_device_stand_in(name, f, args, _):
    same_as_numpy(lambda *a: f(np, *a), *args)


def test_mod_gradients_are_one_and_minus_the_quotient():
    x, y = numpy.array([2.5, -2.5, 7.0]), numpy.array([1.0, 1.0, -2.0])
    gx, gy = tinyad.grad(lambda x, y: np.sum(x % y), (0, 1))(x, y)
    numpy.testing.assert_array_equal(gx, [1.0, 1.0, 1.0])
    numpy.testing.assert_array_equal(gy, -numpy.floor_divide(x, y))  # [-2, 3, 4]
    assert names_on_tape(lambda x: x % 2.0, x) == ["mod"]
    assert names_on_tape(lambda x: numpy.float64(3.0) % x, x) == ["mod"]


def test_sort_passes_each_cotangent_to_where_the_entry_came_from():
    v = numpy.array([3.0, 1.0, 2.0])
    w = numpy.array([10.0, 20.0, 30.0])  # weights of the sorted positions
    g = tinyad.grad(lambda v: np.sum(np.sort(v) * w))(v)
    numpy.testing.assert_array_equal(g, [30.0, 10.0, 20.0])
    assert names_on_tape(np.sort, v) == ["sort"]


def test_cumprod_with_zeros_has_the_exact_gradient():
    x = numpy.array([2.0, 0.0, 3.0, 0.0])
    g = tinyad.grad(lambda x: np.sum(np.cumprod(x)))(x)
    # y = (x0, x0·x1, x0·x1·x2, x0·x1·x2·x3): through x1 = 0 only ∂y1/∂x1 = 2, ∂y2/∂x1 = 6 live
    numpy.testing.assert_array_equal(g, [1.0, 8.0, 0.0, 0.0])


def test_diag_round_trips_and_is_named():
    assert names_on_tape(np.diag, V) == ["diag"]
    check(lambda v: np.diag(np.diag(v, 1), 1), V)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        np.diag(X3)


def test_split_returns_every_piece_and_refuses_unequal_sections():
    pieces = np.split(X, [1, 3], axis=1)
    expected = numpy.split(X, [1, 3], axis=1)
    assert len(pieces) == len(expected) == 3
    for p, e in zip(pieces, expected, strict=True):
        numpy.testing.assert_array_equal(p, e)
    g = tinyad.grad(lambda x: sum(np.sum(p * k) for k, p in enumerate(np.split(x, 2, axis=1))))(X)
    numpy.testing.assert_array_equal(g, numpy.repeat([[0.0, 1.0]], [2, 2], axis=1).repeat(3, 0))
    with pytest.raises(ValueError, match="equally"):
        np.split(X, 3, axis=1)
    with pytest.raises(ValueError, match="positive"):
        np.array_split(X, 0)
    sizes = [p.shape[1] for p in np.array_split(X, 3, axis=1)]
    assert sizes == [p.shape[1] for p in numpy.array_split(X, 3, axis=1)] == [2, 1, 1]


def test_atleast_of_several_arrays_gives_a_tuple():
    out = tinyad.grad(lambda s, v: np.sum(np.atleast_2d(s, v)[0] * np.atleast_2d(s, v)[1]), (0, 1))
    gs, gv = out(S, V)
    assert numpy.isclose(gs, V.sum()) and numpy.allclose(gv, numpy.full(5, S))
    shapes = [a.shape for a in np.atleast_3d(S, V, X)]
    assert shapes == [a.shape for a in numpy.atleast_3d(S, V, X)]


def test_diff_refuses_what_numpy_refuses():
    with pytest.raises(ValueError, match="at least one dimension"):
        np.diff(S)
    with pytest.raises(ValueError, match="non-negative"):
        np.diff(X, -1)


def test_new_functions_accept_lists_of_traced_values():
    def f(x):
        return np.sum(np.sort([x[1], x[0] * 2.0, 1.0]) * numpy.arange(3.0)) + np.trace(
            [[x[0], 1.0], [2.0, x[1]]]
        )

    check(f, numpy.array([0.3, -0.4]))
    check(lambda x: np.diag([x[0], x[1] ** 2]), numpy.array([0.3, -0.4]))


# ---- logsumexp with weights, as scipy's

A = rand((2, 3), seed=12)
B = rand((2, 3), "positive", seed=13)
LOGSUMEXP = [
    ((2, 3), (2, 3), {}),
    ((2, 3), (2, 3), {"axis": 0}),
    ((2, 3), (2, 3), {"axis": -1, "keepdims": True}),
    ((2, 3), (3,), {"axis": 1}),  # b broadcast against a
    ((2, 1), (2, 3), {"axis": 1}),  # a broadcast against b
    ((2, 3, 2), (3, 1), {"axis": (0, 2)}),
    ((2, 3, 2), (2, 3, 2), {"axis": (0, 2), "keepdims": True}),
]


@pytest.mark.parametrize("sa, sb, kw", LOGSUMEXP, ids=[f"{a}-{b}-{kw}" for a, b, kw in LOGSUMEXP])
def test_weighted_logsumexp_in_a_and_b(sa, sb, kw):
    a, b = rand(sa, seed=14), rand(sb, "positive", seed=15)
    numpy.testing.assert_allclose(
        np.logsumexp(a, b=b, **kw), scipy.special.logsumexp(a, b=b, **kw), rtol=1e-14
    )
    check(lambda a, b: np.logsumexp(a, b=b, **kw), a, b)
    if sa != numpy.broadcast_shapes(sa, sb):
        return  # autograd's gradient in a broadcast a comes back at the broadcast shape
    w = rand(numpy.shape(scipy.special.logsumexp(a, b=b, **kw)), seed=16)
    from autograd.scipy.special import logsumexp as autograd_logsumexp

    theirs = autograd.grad(lambda a: anp.sum(autograd_logsumexp(a, b=b, **kw) * w))(a)
    ours = tinyad.grad(lambda a: np.sum(np.logsumexp(a, b=b, **kw) * w))(a)
    numpy.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_logsumexp_takes_scipys_positional_order():
    numpy.testing.assert_allclose(
        np.logsumexp(A, 1, B, True), scipy.special.logsumexp(A, 1, B, True), rtol=1e-14
    )


def test_logsumexp_with_negative_and_zero_weights_as_scipy():
    a = numpy.array([1.0, 2.0, numpy.inf])
    b = numpy.array([-1.0, 2.0, 0.0])  # a weight of 0 drops its entry, even an infinite one
    assert np.logsumexp(a, b=b) == pytest.approx(scipy.special.logsumexp(a, b=b), rel=1e-14)
    check(lambda a, b: np.logsumexp(a[:2], b=b[:2]), a, b)
    # a negative sum has no real log: NaN, as scipy (without a warning)
    b = numpy.array([1.0, -2.0, 0.0])
    assert numpy.isnan(np.logsumexp(a, b=b)) and numpy.isnan(scipy.special.logsumexp(a, b=b))
    # all weights 0: log 0 (scipy too, for finite a; with the inf above it gives NaN)
    zeros, finite = numpy.zeros(3), a[:2].tolist() + [3.0]
    assert np.logsumexp(a, b=zeros) == -numpy.inf
    assert np.logsumexp(finite, b=zeros) == -numpy.inf == scipy.special.logsumexp(finite, b=zeros)


def test_logsumexp_weights_are_log_shifts():
    """Σ b·exp(a) = Σ exp(a + log b): the gradients in a agree, and b̄ = ā / b."""
    ga, gb = tinyad.grad(lambda a, b: np.logsumexp(a, b=b), (0, 1))(A, B)
    shifted = tinyad.grad(lambda a: np.logsumexp(a + numpy.log(B)))(A)
    numpy.testing.assert_allclose(ga, shifted, rtol=1e-14)
    numpy.testing.assert_allclose(gb, shifted / B, rtol=1e-14)


def test_weighted_logsumexp_on_the_strict_device_stand_in():
    same_as_numpy(lambda a, b: np.logsumexp(a, axis=1, b=b), A, B)


# ---- where with the condition alone


def test_where_of_the_condition_alone_gives_numpys_indices():
    for cond in [X > 0, X3 < 0.5, numpy.array([0.0, 2.0, 0.0, -1.0])]:
        got, want = np.where(cond), numpy.where(cond)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            numpy.testing.assert_array_equal(g, w)
    seen = []

    def f(x):
        rows, cols = np.where(x)  # of a traced array: constants, the indices of its nonzeros
        seen.append(type(rows))
        return np.sum(x[rows, cols] ** 2)

    x = numpy.array([[0.0, 1.5], [-2.0, 0.0]])
    numpy.testing.assert_array_equal(tinyad.grad(f)(x), 2 * x)
    assert seen == [numpy.ndarray]
    with pytest.raises(ValueError, match="both x and y"):
        np.where(X > 0, X)
