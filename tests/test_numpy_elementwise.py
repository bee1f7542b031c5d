"""Elementwise functions of one argument: each checked to second order on its domain."""

import numpy
import pytest
from helpers_numpy import check, names_on_tape, rand
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

import tinyad
import tinyad.numpy as np

# (function, domain of inputs, numpy's name on the tape)
UNARY = [
    (np.negative, "real", "negative"),
    (np.sin, "real", "sin"),
    (np.cos, "real", "cos"),
    (np.tan, "unit", "tan"),
    (np.arcsin, "unit", "arcsin"),
    (np.arccos, "unit", "arccos"),
    (np.arctan, "real", "arctan"),
    (np.sinh, "real", "sinh"),
    (np.cosh, "real", "cosh"),
    (np.tanh, "real", "tanh"),
    (np.arcsinh, "real", "arcsinh"),
    (np.arccosh, "above1", "arccosh"),
    (np.arctanh, "unit", "arctanh"),
    (np.exp, "real", "exp"),
    (np.exp2, "real", "exp2"),
    (np.expm1, "real", "expm1"),
    (np.log, "positive", "log"),
    (np.log1p, "positive", "log1p"),
    (np.log2, "positive", "log2"),
    (np.log10, "positive", "log10"),
    (np.sqrt, "positive", "sqrt"),
    (np.cbrt, "nonzero", "cbrt"),
    (np.square, "real", "square"),
    (np.reciprocal, "nonzero", "reciprocal"),
    (np.abs, "nonzero", "absolute"),
    (np.absolute, "nonzero", "absolute"),
]
SHAPES = [(), (3,), (2, 3)]
IDS = [case[2] if case[0] is not np.abs else "abs" for case in UNARY]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("fun, domain, name", UNARY, ids=IDS)
def test_unary_gradients_to_second_order(fun, domain, name, shape):
    check(fun, rand(shape, domain))


@pytest.mark.parametrize("fun, domain, name", UNARY, ids=IDS)
def test_unary_values_match_numpy_and_tape_shows_numpy_name(fun, domain, name):
    x = rand((2, 3), domain)
    assert numpy.allclose(fun(x), getattr(numpy, name)(x))
    assert names_on_tape(lambda x: fun(x), x) == [name]


@pytest.mark.parametrize("fun, domain, name", UNARY, ids=IDS)
def test_float32_stays_float32_in_value_and_gradient(fun, domain, name):
    x = rand((2, 3), domain).astype(numpy.float32)
    value, g = tinyad.value_and_grad(lambda x: np.sum(fun(x)))(x)
    assert fun(x).dtype == numpy.float32
    assert value.dtype == numpy.float32 and g.dtype == numpy.float32
    assert numpy.allclose(g, tinyad.grad(lambda x: np.sum(fun(x)))(x.astype(float)), rtol=1e-4)


@pytest.mark.parametrize("fun", [np.sign, np.floor, np.ceil, np.rint, np.round])
def test_piecewise_constant_functions_have_zero_gradient(fun):
    x = numpy.array([-1.7, -0.2, 0.3, 2.6])
    g = tinyad.grad(lambda x: np.sum(fun(x) * x))(x)  # d/dx [f(x)·x] = f(x) where f' = 0
    assert numpy.array_equal(g, getattr(numpy, fun.__name__)(x))


def test_abs_has_gradient_zero_at_zero():
    g = tinyad.grad(lambda x: np.sum(np.abs(x)))(numpy.array([-2.0, 0.0, 3.0]))
    assert numpy.array_equal(g, [-1.0, 0.0, 1.0])
    assert tinyad.grad(abs)(0.0) == 0.0  # Python's abs() on a Box goes through __abs__


def test_sqrt_gradient_is_half_over_sqrt():
    x = numpy.array([0.25, 4.0])
    assert numpy.allclose(tinyad.grad(lambda x: np.sum(np.sqrt(x)))(x), [1.0, 0.25])


def test_third_derivative_of_a_composition():
    # d³/dx³ sin(x²) = −12x·sin(x²) − 8x³·cos(x²)
    x = 0.7
    third = tinyad.grad(tinyad.grad(tinyad.grad(lambda x: np.sin(x**2))))(x)
    assert numpy.isclose(third, -8 * x**3 * numpy.cos(x**2) - 12 * x * numpy.sin(x**2))


# ---- hypothesis: random shapes and values against the derivative written by hand
DERIVATIVES = {
    "sin": (np.sin, numpy.cos, (-5, 5)),
    "exp": (np.exp, numpy.exp, (-5, 5)),
    "tanh": (np.tanh, lambda x: 1 - numpy.tanh(x) ** 2, (-5, 5)),
    "log": (np.log, lambda x: 1 / x, (0.1, 10)),
    "sqrt": (np.sqrt, lambda x: 0.5 / numpy.sqrt(x), (0.1, 10)),
    "arctan": (np.arctan, lambda x: 1 / (1 + x**2), (-5, 5)),
}


@settings(max_examples=15, deadline=None)
@given(name=st.sampled_from(sorted(DERIVATIVES)), data=st.data())
def test_hypothesis_gradient_equals_the_derivative(name, data):
    fun, derivative, (lo, hi) = DERIVATIVES[name]
    floats = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    x = data.draw(arrays(numpy.float64, array_shapes(max_dims=3, max_side=4), elements=floats))
    g = tinyad.grad(lambda x: np.sum(fun(x)))(x)
    assert g.shape == x.shape
    assert numpy.allclose(g, derivative(x), rtol=1e-12, atol=1e-12)
