"""Functions of two (or three) arguments, on every broadcasting pair of shapes."""

import itertools

import numpy
import pytest
from helpers_numpy import check, names_on_tape, rand
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays, mutually_broadcastable_shapes

import tinyad
import tinyad.numpy as np

SHAPES = [(), (3,), (2, 3), (1, 3), (2, 1)]
PAIRS = list(itertools.product(SHAPES, SHAPES))

# (function, domain of x, domain of y, numpy's name on the tape)
BINARY = [
    (np.add, "real", "real", "add"),
    (np.subtract, "real", "real", "subtract"),
    (np.multiply, "real", "real", "multiply"),
    (np.divide, "real", "nonzero", "divide"),
    (np.true_divide, "real", "nonzero", "divide"),
    (np.power, "positive", "real", "power"),
    (np.maximum, "real", "real", "maximum"),
    (np.minimum, "real", "real", "minimum"),
    (np.arctan2, "nonzero", "nonzero", "arctan2"),
    (np.logaddexp, "real", "real", "logaddexp"),
]
OPERATORS = [
    (lambda x, y: x + y, "add"),
    (lambda x, y: x - y, "subtract"),
    (lambda x, y: x * y, "multiply"),
    (lambda x, y: x / y, "divide"),
    (lambda x, y: x**y, "power"),
]


@pytest.mark.parametrize("xs, ys", PAIRS, ids=str)
@pytest.mark.parametrize("fun, dx, dy, name", BINARY, ids=[c[3] for c in BINARY])
def test_binary_gradients_on_every_broadcasting_pair(fun, dx, dy, name, xs, ys):
    x, y = rand(xs, dx, seed=1), rand(ys, dy, seed=2)
    assert numpy.allclose(fun(x, y), getattr(numpy, name)(x, y))
    check(fun, x, y)


@pytest.mark.parametrize("fun, name", OPERATORS, ids=[c[1] for c in OPERATORS])
def test_operators_trace_their_primitive(fun, name):
    x, y = rand((2, 3), "positive"), rand((3,), "real")
    check(fun, x, y)
    assert names_on_tape(fun, x, y) == [name]


@pytest.mark.parametrize("xs, ys", [((2, 3), (2, 3)), ((3,), (2, 3)), ((2, 1), ())], ids=str)
def test_where_is_differentiable_in_both_branches(xs, ys):
    cond = numpy.array([[True, False, True], [False, False, True]])
    check(lambda x, y: np.where(cond, x, y), rand(xs, seed=1), rand(ys, seed=2))
    x = numpy.ones(3)
    g = tinyad.grad(lambda x: np.sum(np.where(x > 0.5, 2 * x, x)))(x)
    assert numpy.array_equal(g, [2.0, 2.0, 2.0])


@pytest.mark.parametrize(
    "lo, hi",
    [(-0.5, 0.5), (None, 0.3), (-0.3, None), (numpy.full(3, -0.4), numpy.full((2, 1), 0.6))],
    ids=["scalars", "no-min", "no-max", "arrays"],
)
def test_clip_passes_gradient_where_not_clipped(lo, hi):
    x = numpy.array([[-1.2, -0.2, 0.1], [0.25, 0.9, -0.05]])
    check(lambda x: np.clip(x, lo, hi), x)
    g = tinyad.grad(lambda x: np.sum(np.clip(x, lo, hi)))(x)
    inside = numpy.ones_like(x, dtype=bool)
    if lo is not None:
        inside &= x >= lo
    if hi is not None:
        inside &= x <= hi
    assert numpy.array_equal(g, inside.astype(float))


def test_clip_bounds_get_the_gradient_where_they_are_active():
    x = numpy.array([-1.2, -0.2, 0.1, 0.9])
    check(lambda x, lo, hi: np.clip(x, lo, hi), x, numpy.array(-0.5), numpy.array(0.5))


def test_power_at_zero_base_has_no_nan():
    x = numpy.array([0.0, 2.0])
    # d/dy xʸ = xʸ log x is 0 at x = 0 (not 0 · -inf = NaN)
    gy = tinyad.grad(lambda y: np.sum(x**y))(numpy.array([2.0, 2.0]))
    assert numpy.allclose(gy, [0.0, 4 * numpy.log(2.0)])
    # d/dx x⁰ = 0, also at x = 0, whether the exponent is a Python number or an array
    assert numpy.array_equal(tinyad.grad(lambda x: np.sum(x**0))(x), [0.0, 0.0])
    assert numpy.array_equal(tinyad.grad(lambda x: np.sum(x ** numpy.zeros(2)))(x), [0.0, 0.0])
    assert numpy.array_equal(tinyad.grad(lambda x: np.sum(x**2))(x), [0.0, 4.0])
    check(lambda y: 2.0**y, numpy.array([0.5, -1.0]))


def test_python_number_exponent_keeps_float32():
    x = numpy.array([1.5, 2.0], dtype=numpy.float32)
    value, g = tinyad.value_and_grad(lambda x: np.sum(x**2 / 3.0))(x)
    assert value.dtype == numpy.float32 and g.dtype == numpy.float32


def test_maximum_and_minimum_split_ties_evenly():
    x = numpy.array([1.0, 2.0, 3.0])
    y = numpy.array([1.0, 5.0, 0.0])
    gx, gy = tinyad.grad(lambda x, y: np.sum(np.maximum(x, y)), argnum=(0, 1))(x, y)
    assert numpy.array_equal(gx, [0.5, 0.0, 1.0]) and numpy.array_equal(gy, [0.5, 1.0, 0.0])
    gx, gy = tinyad.grad(lambda x, y: np.sum(np.minimum(x, y)), argnum=(0, 1))(x, y)
    assert numpy.array_equal(gx, [0.5, 1.0, 0.0]) and numpy.array_equal(gy, [0.5, 0.0, 1.0])
    # relu'(0) = 1/2 under this convention; relu'(x) for x ≠ 0 is the step function
    g = tinyad.grad(lambda x: np.sum(np.maximum(x, 0.0)))(numpy.array([-1.0, 0.0, 2.0]))
    assert numpy.array_equal(g, [0.0, 0.5, 1.0])


@settings(max_examples=20, deadline=None)
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3), data=st.data())
def test_hypothesis_product_rule_on_broadcast_shapes(shapes, data):
    """d/dx Σ x·y = y summed over the axes x was broadcast along (and likewise for y)."""
    (xs, ys), out = shapes.input_shapes, shapes.result_shape
    floats = st.floats(-3, 3, allow_nan=False)
    x = data.draw(arrays(numpy.float64, xs, elements=floats))
    y = data.draw(arrays(numpy.float64, ys, elements=floats))
    gx, gy = tinyad.grad(lambda x, y: np.sum(x * y), argnum=(0, 1))(x, y)
    assert gx.shape == xs and gy.shape == ys
    ones = numpy.ones(out)
    assert numpy.allclose(gx, _sum_to(ones * y, xs)) and numpy.allclose(gy, _sum_to(ones * x, ys))


def _sum_to(a, shape):
    """Sum a down to `shape` (the reference unbroadcast, written independently of the core)."""
    while a.ndim > len(shape):
        a = a.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1:
            a = a.sum(axis=axis, keepdims=True)
    return a
