"""tinyode.BacksolveWarning: fires on an unstable backsolve, never on ordinary truncation error.

The adjoint's backward solve reconstructs z(t) backwards from the stored z(t_i); at each
t_{i-1} it compares with the stored state. An unstable backsolve (y' = −30y with
tolerances, Lorenz) amplifies the solves' small errors by orders of magnitude; a benign
one (a fixed-step solve of a stable problem, a damped pendulum fit, JAX's pendulum test)
is off by no more than the solves' own truncation error, whatever its size.
"""

import warnings

import numpy
import pytest

import tinyad
import tinyad.numpy as np
import tinyode
from tinyode import BacksolveWarning


def relerr(a, b):
    return numpy.max(numpy.abs(numpy.asarray(a) - b)) / numpy.max(numpy.abs(b))


def silently(fun, *args):
    """fun(*args), failing on any BacksolveWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", BacksolveWarning)
        return fun(*args)


def lorenz(y, t, s=10.0, r=28.0, b=8 / 3):
    return np.stack([s * (y[1] - y[0]), y[0] * (r - y[2]) - y[1], y[0] * y[1] - b * y[2]])


def damped_pendulum(z, t, p):
    """z = (θ, ω): θ' = ω, ω' = −p0 sin θ − p1 ω."""
    return np.stack([z[1], -p[0] * np.sin(z[0]) - p[1] * z[1]])


def odeint_loss(func, t, *args, **kw):
    """L(y0) = Σ ys (a function of y0 only, for tinyad.grad)."""
    return lambda y0: np.sum(tinyode.odeint(func, y0, t, *args, **kw))


# --- it fires: unstable backsolves ---------------------------------------------------------


@pytest.mark.parametrize(
    "name, loss, y0",
    [
        (
            "y' = −30y over [0, 3]",  # atol lets z(3) ≈ e^{−90} be all error; e^{30Δt} amplifies it
            odeint_loss(lambda y, t: -30 * y, numpy.linspace(0.0, 3.0, 4)),
            numpy.ones(3),
        ),
        (
            "Lorenz on [0, 10]",
            odeint_loss(lorenz, numpy.linspace(0.0, 10.0, 11), rtol=1e-7, atol=1e-7),
            numpy.array([1.0, 0.0, 0.0]),
        ),
        (
            "Lorenz on [0, 10], rk4",  # fixed steps do not hide a chaotic backsolve
            odeint_loss(lorenz, numpy.linspace(0.0, 10.0, 11), method="rk4", step_size=0.01),
            numpy.array([1.0, 0.0, 0.0]),
        ),
    ],
)
def test_fires_on_an_unstable_backsolve_at_the_users_line(name, loss, y0):
    with pytest.warns(BacksolveWarning, match=r"t=.*checkpoint") as record:
        tinyad.grad(loss)(y0)  # the line the warning must name
    for w in record:
        if issubclass(w.category, BacksolveWarning):
            assert w.filename == __file__, f"{name}: the warning names {w.filename}:{w.lineno}"


def test_the_lorenz_gradient_it_warns_about_is_wrong_and_checkpoint_is_right():
    t = numpy.linspace(0.0, 10.0, 11)
    y0 = numpy.array([1.0, 0.0, 0.0])

    def loss(y0, mode):
        ys = tinyode.odeint(lorenz, y0, t, gradient=mode, rtol=1e-7, atol=1e-7)
        return np.sum(ys[-1])

    with pytest.warns(BacksolveWarning):
        g_adjoint = tinyad.grad(loss)(y0, "adjoint")
    g_checkpoint = silently(tinyad.grad(loss), y0, "checkpoint")  # the discrete gradient
    assert relerr(g_adjoint, g_checkpoint) > 1e-3  # the warning was not a false alarm


# --- it stays silent: ordinary truncation error --------------------------------------------


@pytest.mark.parametrize(
    "name, loss, y0",
    [
        (
            "y' = −y, rk4, one step per output",  # drift 7.5e4× the (unused) tolerances before
            odeint_loss(lambda y, t: -y, numpy.linspace(0.0, 5.0, 6), method="rk4"),
            numpy.ones(2),
        ),
        (
            "y' = −y, rk4, one interval [0, 10]",
            odeint_loss(lambda y, t: -y, numpy.array([0.0, 10.0]), method="rk4", step_size=0.1),
            numpy.ones(2),
        ),
        (
            "y' = y, euler, step 0.1",  # 4.7e4× before
            odeint_loss(lambda y, t: y, numpy.linspace(0.0, 1.0, 3), method="euler", step_size=0.1),
            numpy.ones(2),
        ),
        (
            # Stable, linear: a fixed-step solve is accurate relative to z(t) however small,
            # so the round trip is off only by rk4's own relative error (~1e-3).
            "y' = −30y, rk4, step 0.01",
            odeint_loss(
                lambda y, t: -30 * y, numpy.array([0.0, 1.0]), method="rk4", step_size=0.01
            ),
            numpy.ones(2),
        ),
        (
            "y' = −y, dopri8",
            odeint_loss(lambda y, t: -y, numpy.linspace(0.0, 5.0, 6), method="dopri8"),
            numpy.ones(2),
        ),
    ],
)
def test_silent_on_truncation_error(name, loss, y0):
    silently(tinyad.grad(loss), y0)


PENDULUM_T = numpy.linspace(0.0, 6.0, 61)
PENDULUM_Z0 = numpy.array([2.5, 0.0])


def pendulum_fit_loss(method):
    """A student's fit of (p0, p1) to the angle of a damped pendulum (61 samples on [0, 6])."""
    data = tinyode.odeint(
        damped_pendulum, PENDULUM_Z0, PENDULUM_T, numpy.array([9.0, 0.6]), rtol=1e-10, atol=1e-10
    )[:, 0]

    def loss(p, gradient="adjoint"):
        ys = tinyode.odeint(
            damped_pendulum, PENDULUM_Z0, PENDULUM_T, p, method=method, gradient=gradient
        )
        return np.mean((ys[:, 0] - data) ** 2)

    return loss


@pytest.mark.parametrize("method", ["dopri5", "dopri8"])
def test_silent_during_a_damped_pendulum_fit(method):
    """It fired nine times in such a fit, where the adjoint equals backprop to ~1e-8."""
    loss = pendulum_fit_loss(method)
    seen = []

    def grad(p, i):
        seen.append(p)
        return tinyad.grad(loss)(p)

    p = silently(
        lambda: tinyad.optim.adam(grad, numpy.array([6.3, 0.39]), num_iters=4, step_size=0.2)
    )
    assert len(seen) == 4 and loss(p) < loss(numpy.array([6.3, 0.39]))  # the fit moved
    for q in (numpy.array([6.3, 0.39]), numpy.array([8.98, 0.59])):
        g_adjoint = silently(tinyad.grad(loss), q)
        assert relerr(g_adjoint, tinyad.grad(loss)(q, "backprop")) < 1e-6


def test_silent_on_jaxs_pendulum_test():
    """jax tests/ode_test.py test_pend_grads: y = (θ, ω), θ' = ω, ω' = −m ω − g sin θ from
    (π − 0.1, 0) on linspace(0, 1, 11), m = 0.25, g = 9.8; gradients of every input checked
    against central differences (JAX checks reverse mode to second order at 1e-3)."""

    def pend(y, t, m, g):
        return np.stack([y[1], -m * y[1] - g * np.sin(y[0])])

    def loss(y0, t, m, g):
        return np.sum(tinyode.odeint(pend, y0, t, m, g))

    args = (numpy.array([numpy.pi - 0.1, 0.0]), numpy.linspace(0.0, 1.0, 11), 0.25, 9.8)
    silently(lambda: tinyad.check_grads(loss, *args, order=2, rtol=1e-3, atol=1e-3))
