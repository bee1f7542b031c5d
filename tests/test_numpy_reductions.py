"""Reductions over every axis choice, with and without keepdims, and their conventions."""

import numpy
import pytest
import scipy.special
from helpers_numpy import check, rand
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

import tinyad
import tinyad.numpy as np

# (function, reference, domain, extra keyword arguments)
REDUCTIONS = [
    (np.sum, numpy.sum, "real", {}),
    (np.mean, numpy.mean, "real", {}),
    (np.prod, numpy.prod, "nonzero", {}),
    (np.max, numpy.max, "real", {}),
    (np.min, numpy.min, "real", {}),
    (np.var, numpy.var, "real", {}),
    (np.var, numpy.var, "real", {"ddof": 1}),
    (np.std, numpy.std, "real", {}),
    (np.std, numpy.std, "real", {"ddof": 1}),
    (np.logsumexp, scipy.special.logsumexp, "real", {}),
]
IDS = [
    f"{ref.__name__}{''.join(f'-{k}={v}' for k, v in kw.items())}" for _, ref, _, kw in REDUCTIONS
]
AXES = [None, 0, 1, -1, (0, 1)]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("fun, ref, domain, kw", REDUCTIONS, ids=IDS)
def test_reduction_gradients_over_every_axis(fun, ref, domain, kw, axis, keepdims):
    x = rand((2, 3), domain, seed=3)
    value = fun(x, axis=axis, keepdims=keepdims, **kw)
    assert numpy.allclose(value, ref(x, axis=axis, keepdims=keepdims, **kw))
    check(lambda x: fun(x, axis=axis, keepdims=keepdims, **kw), x)


@pytest.mark.parametrize("fun", [np.sum, np.mean, np.max, np.var, np.logsumexp])
def test_reductions_of_a_3d_array_over_an_axis_pair(fun):
    check(lambda x: fun(x, axis=(0, 2)), rand((2, 3, 2), seed=4))


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_cumsum_over_every_axis(axis):
    x = rand((2, 3), seed=5)
    assert numpy.allclose(np.cumsum(x, axis=axis), numpy.cumsum(x, axis=axis))
    check(lambda x: np.cumsum(x, axis=axis), x)


def test_methods_reduce_like_the_functions():
    x = rand((2, 3), seed=6)
    for method in ["sum", "mean", "max", "min", "prod", "var", "std"]:
        check(lambda x: getattr(x, method)(axis=0), x)
        check(lambda x: getattr(x, method)(1, keepdims=True), x)
    check(lambda x: x.cumsum(1), x)


def test_max_and_min_split_ties_evenly():
    x = numpy.array([[1.0, 3.0, 3.0, 2.0], [0.0, 0.0, 0.0, 5.0]])
    assert numpy.array_equal(tinyad.grad(np.max)(x), numpy.eye(1, 8, 7).reshape(2, 4))
    g = tinyad.grad(lambda x: np.sum(np.max(x, axis=1)))(x)
    assert numpy.array_equal(g, [[0.0, 0.5, 0.5, 0.0], [0.0, 0.0, 0.0, 1.0]])
    g = tinyad.grad(lambda x: np.sum(np.min(x, axis=1)))(x)
    assert numpy.allclose(g, [[1.0, 0.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3, 0.0]])


@pytest.mark.parametrize("axis", [None, 0, 1])
@pytest.mark.parametrize(
    "x",
    [
        numpy.array([[2.0, 0.0, -1.5], [0.5, 3.0, 1.2]]),  # one zero
        numpy.array([[0.0, 0.0, -1.5], [0.5, 0.0, 1.2]]),  # several zeros
    ],
    ids=["one-zero", "zeros"],
)
def test_prod_is_exact_where_entries_are_zero(x, axis):
    check(lambda x: np.prod(x, axis=axis), x)


def test_prod_gradient_at_a_zero_is_the_product_of_the_others():
    g = tinyad.grad(np.prod)(numpy.array([2.0, 0.0, 3.0]))
    assert numpy.array_equal(g, [0.0, 6.0, 0.0])


def test_var_and_std_against_their_formulas():
    x = rand((5,), seed=7)
    n = x.size
    g = tinyad.grad(lambda x: np.var(x, ddof=1))(x)
    assert numpy.allclose(g, 2 * (x - x.mean()) / (n - 1))
    g = tinyad.grad(np.std)(x)
    assert numpy.allclose(g, (x - x.mean()) / (n * x.std()))
    # std of a constant array: gradient 0, not NaN
    assert numpy.array_equal(tinyad.grad(np.std)(numpy.ones(3)), numpy.zeros(3))


def test_logsumexp_is_stable_and_matches_scipy():
    x = numpy.array([[1000.0, 1001.0, 999.0], [-1000.0, -1e4, -999.0]])
    for axis in [None, 0, 1]:
        assert numpy.allclose(np.logsumexp(x, axis=axis), scipy.special.logsumexp(x, axis=axis))
    g = tinyad.grad(lambda x: np.sum(np.logsumexp(x, axis=1)))(x)
    assert numpy.allclose(g, scipy.special.softmax(x, axis=1))
    x = numpy.array([-numpy.inf, -numpy.inf])
    assert np.logsumexp(x) == -numpy.inf == scipy.special.logsumexp(x)


def test_float32_reductions_stay_float32():
    x = rand((2, 3), seed=8).astype(numpy.float32)
    for fun in [np.sum, np.mean, np.max, np.var, np.std, np.logsumexp, np.prod]:
        value, g = tinyad.value_and_grad(lambda x: fun(x * 1.5))(x)
        assert value.dtype == numpy.float32 and g.dtype == numpy.float32, fun.__name__


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_hypothesis_sum_and_mean_gradients_on_random_shapes_and_axes(data):
    x = data.draw(
        arrays(
            numpy.float64,
            array_shapes(min_dims=1, max_dims=3, max_side=4),
            elements=st.floats(-5, 5),
        )
    )
    axis = data.draw(st.one_of(st.none(), st.integers(-x.ndim, x.ndim - 1)))
    keepdims = data.draw(st.booleans())
    n = x.size if axis is None else x.shape[axis]
    g = tinyad.grad(lambda x: np.sum(np.sum(x, axis=axis, keepdims=keepdims) ** 2))(x)
    assert numpy.allclose(g, 2 * numpy.sum(x, axis=axis, keepdims=True) * numpy.ones_like(x))
    g = tinyad.grad(lambda x: np.sum(np.mean(x, axis=axis, keepdims=keepdims)))(x)
    assert numpy.allclose(g, numpy.full(x.shape, 1.0 / n))
