"""Residuals a primitive saves for its vjp (tinyad.Saved): kept on the tape, counted, passed on."""

import numpy

import tinyad
import tinyad.numpy as np
import tinyode


@tinyad.primitive
def cube(x):
    square = x * x
    return tinyad.Saved(square * x, square)  # keep x² for the vjp: 3x² without recomputing


tinyad.defvjp(cube, lambda g, ans, x, saved: 3 * g * saved)


def test_the_vjp_receives_what_the_primitive_saved():
    x = numpy.array([1.0, 2.0])
    assert numpy.array_equal(cube(x), x**3)  # a plain call returns the value alone
    numpy.testing.assert_allclose(tinyad.grad(lambda x: np.sum(cube(x)))(x), 3 * x**2)


def test_saved_residuals_are_counted_on_the_tape():
    x = numpy.ones(1000)
    with_cube = tinyad.trace(lambda x: np.sum(cube(x)), x).nbytes()
    with_power = tinyad.trace(lambda x: np.sum(x**3), x).nbytes()
    assert with_cube == with_power + 8000  # the saved x², 1000 float64


def test_saved_residuals_reach_the_vjp_of_a_nested_trace():
    # x traced on an outer tape as well: the outer tape records cube first, and the inner
    # record finds the residuals there; the inner vjp, linear in g, is differentiated in g.
    x, v = numpy.array([1.0, 2.0]), numpy.array([0.5, -1.0])
    _, tangent = tinyad.jvp(lambda x: cube(x), (x,), (v,))
    numpy.testing.assert_allclose(tangent, 3 * x**2 * v)
    outer = tinyad.grad(lambda w: np.sum(tinyad.grad(lambda x: np.sum(cube(x) * w))(x)))
    numpy.testing.assert_allclose(outer(numpy.ones(2)), 3 * x**2)


def _loss(y0, theta, gradient):
    t = numpy.linspace(0.0, 3.0, 4)
    f = lambda y, t, w: np.tanh(w @ y)
    return np.sum(tinyode.odeint(f, y0, t, theta, gradient=gradient, rtol=1e-8, atol=1e-10))


def test_checkpointing_keeps_its_states_where_trace_counts_them():
    y0 = numpy.linspace(-1.0, 1.0, 64)
    theta = numpy.eye(64) * -0.5
    sizes, steps = {}, None
    for gradient in ("adjoint", "checkpoint"):
        sizes[gradient] = tinyad.trace(lambda y0: _loss(y0, theta, gradient), y0).nbytes()
    _, info = tinyode.odeint(
        lambda y, t, w: np.tanh(w @ y),
        y0,
        numpy.linspace(0.0, 3.0, 4),
        theta,
        rtol=1e-8,
        atol=1e-10,
        full_output=True,
    )
    steps = info["n_steps"]
    # checkpointing keeps the 64-vector (512 B) each accepted step starts from (the first is
    # y0, on the tape already); the adjoint keeps each step's start time (8 B)
    assert sizes["checkpoint"] - sizes["adjoint"] == (steps - 1) * 512 - steps * 8
