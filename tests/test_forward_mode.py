"""Forward mode (jvp, derived from the vjps by transposition), hvp and elementwise_grad.

The primitive tables check jvp on every primitive (tests/helpers_numpy.check);
this file checks the transformations themselves: against jacobian @ v, finite
differences, autograd, to several orders and mixed with reverse mode.
"""

import math

import autograd
import autograd.numpy as anp
import numpy
import pytest

import tinyad
import tinyad.numpy as np
import tinyode

RNG = numpy.random.default_rng(0)
A = RNG.standard_normal((3, 4))
X = RNG.standard_normal(4)
V = RNG.standard_normal(4)


def f(x):
    return np.tanh(A @ x) * np.sum(x**2)


def test_jvp_is_the_jacobian_times_the_tangent():
    out, t = tinyad.jvp(f, (X,), (V,))
    numpy.testing.assert_allclose(out, f(X))
    numpy.testing.assert_allclose(t, tinyad.jacobian(f)(X) @ V, rtol=1e-12)


def test_jvp_of_several_arguments_and_pytrees():
    g = lambda p, x: {"y": p["W"] @ x + p["b"], "n": np.sum(x**2)}
    p = {"W": A, "b": numpy.ones(3)}
    dp = {"W": RNG.standard_normal((3, 4)), "b": RNG.standard_normal(3)}
    out, t = tinyad.jvp(g, (p, X), (dp, V))
    numpy.testing.assert_allclose(t["y"], dp["W"] @ X + dp["b"] + A @ V, rtol=1e-12)
    assert t["n"] == pytest.approx(2 * X @ V)


def test_jvp_to_fourth_order_by_nesting():
    d = lambda fun: lambda x: tinyad.jvp(fun, (x,), (1.0,))[1]
    x = 0.7
    assert d(np.sin)(x) == pytest.approx(math.cos(x))
    assert d(d(np.sin))(x) == pytest.approx(-math.sin(x))
    assert d(d(d(np.sin)))(x) == pytest.approx(-math.cos(x))
    assert d(d(d(d(np.sin))))(x) == pytest.approx(math.sin(x))


def test_jvp_mixes_with_reverse_mode_both_ways():
    # grad of a jvp: d/dx [3x²·1] = 6x ; jvp of a grad: d/dx [3x²] along 1 = 6x
    assert tinyad.grad(lambda x: tinyad.jvp(lambda y: y**3, (x,), (1.0,))[1])(2.0) == 12.0
    assert tinyad.jvp(tinyad.grad(lambda y: y**3), (2.0,), (1.0,))[1] == pytest.approx(12.0)
    # nested tapes stay apart: d/dx [x · d/dy (x y)] = 2x
    inner = lambda x: x * tinyad.jvp(lambda y: x * y, (1.0,), (1.0,))[1]
    assert tinyad.jvp(inner, (3.0,), (1.0,))[1] == pytest.approx(6.0)


def test_jvp_refuses_tangents_that_do_not_match_the_primals():
    with pytest.raises(ValueError, match="tangent"):
        tinyad.jvp(f, (X,), ())
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        tinyad.jvp(f, (X,), (numpy.ones(3),))
    with pytest.raises(TypeError, match="float"):
        tinyad.jvp(f, (numpy.arange(4),), (numpy.ones(4),))


def test_jvp_keeps_float32():
    x = X.astype(numpy.float32)
    out, t = tinyad.jvp(np.sin, (x,), (V,))
    assert out.dtype == numpy.float32 and t.dtype == numpy.float32


def test_hvp_is_the_hessian_times_v_without_building_it():
    loss = lambda x: np.sum(np.sin(A @ x) ** 2) + np.sum(x**4)
    H = tinyad.hessian(loss)(X)
    numpy.testing.assert_allclose(tinyad.hvp(loss, X, V), H @ V, rtol=1e-10)
    ref = autograd.grad(
        lambda x: anp.dot(
            autograd.grad(lambda y: anp.sum(anp.sin(A @ y) ** 2) + anp.sum(y**4))(x), V
        )
    )(X)
    numpy.testing.assert_allclose(tinyad.hvp(loss, X, V), ref, rtol=1e-10)


def test_hvp_of_a_pytree():
    loss = lambda p: np.sum(p["a"] ** 2 * p["b"])
    p = {"a": numpy.array([1.0, 2.0]), "b": numpy.array([3.0, -1.0])}
    v = {"a": numpy.array([1.0, 0.0]), "b": numpy.array([0.0, 1.0])}
    hv = tinyad.hvp(loss, p, v)
    # ∂²/∂a² = 2b, ∂²/∂a∂b = 2a: (H v)_a = 2b·v_a + 2a·v_b, (H v)_b = 2a·v_a
    numpy.testing.assert_allclose(hv["a"], [6.0, 4.0])
    numpy.testing.assert_allclose(hv["b"], [2.0, 0.0])


def test_elementwise_grad_matches_autograd():
    x = numpy.linspace(-2, 2, 7)
    got = tinyad.elementwise_grad(lambda x: np.tanh(x) * x)(x)
    want = autograd.elementwise_grad(lambda x: anp.tanh(x) * x)(x)
    numpy.testing.assert_allclose(got, want, rtol=1e-12)
    got = tinyad.elementwise_grad(lambda x, y: x * y, argnum=1)(x, 2 * x)
    numpy.testing.assert_allclose(got, x)


@pytest.mark.parametrize("gradient", ["adjoint", "backprop", "checkpoint"])
def test_forward_sensitivities_through_odeint(gradient):
    # y' = -k y: y(t) = y0 exp(-k t); the tangent along (dy0, dk) is exp(-kt)(dy0 - y0 t dk)
    t = numpy.array([0.0, 0.5, 1.0])
    sol = lambda y0, k: tinyode.odeint(lambda y, t, k: -k * y, y0, t, k, gradient=gradient)
    y0, k = numpy.array([1.0, 2.0]), 0.7
    _, tangent = tinyad.jvp(sol, (y0, k), (numpy.array([1.0, 0.0]), 1.0))
    e = numpy.exp(-k * t)[:, None]
    want = e * (numpy.array([1.0, 0.0]) - y0 * t[:, None])
    numpy.testing.assert_allclose(tangent, want, rtol=1e-5, atol=1e-7)
