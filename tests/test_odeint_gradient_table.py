"""One table: every method × every gradient mode × every input (y0, each t[i], each arg).

The problem is y' = f(y, t, θ, c) = −θ·y + c·sin t, with y0 and θ of shape (2,): it
depends on t, so every t[i] matters, and it has the closed form

    y(t) = e^{−θ(t − t0)} (y0 − p(t0)) + p(t),    p(t) = c (θ sin t − cos t) / (θ² + 1).

The references:
- "backprop" and "checkpoint" give the exact gradient of the discrete solve, so they are
  compared with central differences of odeint's own output, same method and settings
  (SPEC: with fixed steps, moving t[0] moves the whole grid t0 + n·step_size; moving an
  interior t[i] moves the step that lands on it and the step after it).
- "adjoint" gives the gradient of the ODE, so it is compared with central differences of
  the closed form, within what the method's own accuracy allows.
"""

import numpy
import pytest

import tinyad
import tinyad.numpy as np
import tinyode

MODES = ["adjoint", "backprop", "checkpoint"]
FIXED = ["euler", "midpoint", "heun", "rk4"]
Y0 = numpy.array([0.8, -0.4])
THETA = numpy.array([0.7, 1.3])
C = 0.9
W = numpy.array([[0.0, 0.0], [1.0, -0.5], [0.3, 0.8], [-0.6, 0.4]])  # loss weights per output
# Output times off the grid t0 ± n·0.1 (0.37, 1.13, 1.46 and, backwards from 1.46, 0.0 are
# all off it), so the central differences below never straddle a change of step structure.
TIMES = {"increasing": numpy.array([0.0, 0.37, 1.13, 1.46]), "decreasing": None}
TIMES["decreasing"] = TIMES["increasing"][::-1].copy()


def f(y, t, theta, c):
    return -theta * y + c * np.sin(t)


def exact(y0, t, theta, c):
    """The closed form at every t[i] (numpy only: an independent reference)."""
    p = lambda s: c * (theta * numpy.sin(s) - numpy.cos(s)) / (theta**2 + 1)  # noqa: E731
    return numpy.stack([numpy.exp(-theta * (s - t[0])) * (y0 - p(t[0])) + p(s) for s in t])


def loss_of(ys):
    """A loss that weighs every output and is nonlinear in them."""
    return np.sum(W * ys) + 0.5 * np.sum(ys[1:] ** 2)


def settings(method):
    """Fixed-step methods on a grid that does not divide the output intervals; adaptive ones
    tight enough that the step controller's own dependence on the inputs (which the discrete
    gradient leaves out: step sizes are constants on the tape) is negligible. bosh3, 3rd
    order, gets a looser tolerance to keep its step count small."""
    if method in FIXED:
        return {"step_size": 0.1}
    return {"rtol": 1e-7, "atol": 1e-9} if method == "bosh3" else {"rtol": 1e-10, "atol": 1e-12}


def central(fun, x, eps=1e-6):
    """Central differences of a scalar function of one flat float vector."""
    grad = numpy.zeros_like(x)
    for k in range(x.size):
        e = numpy.zeros_like(x)
        e[k] = eps
        grad[k] = (fun(x + e) - fun(x - e)) / (2 * eps)
    return grad


def pack(y0, t, theta, c):
    return numpy.concatenate([y0, t, theta, [c]])


def unpack(x, n_t):
    return x[:2], x[2 : 2 + n_t], x[2 + n_t : 4 + n_t], x[4 + n_t]


def relerr(a, b):
    return numpy.max(numpy.abs(numpy.asarray(a) - b)) / max(numpy.max(numpy.abs(b)), 1e-300)


def check_row(method, direction, mode, **kw):
    t = TIMES[direction]
    opts = dict(method=method, **kw)

    def loss(y0, t, theta, c):
        return loss_of(tinyode.odeint(f, y0, t, theta, c, gradient=mode, **opts))

    got = pack(*tinyad.grad(loss, argnum=(0, 1, 2, 3))(Y0, t, THETA, C))
    x = pack(Y0, t, THETA, C)
    if mode == "adjoint":
        want = central(lambda x: float(loss_of(exact(*unpack(x, len(t))))), x)
        # The ODE's gradient, to the method's own accuracy: the forward solve's error on
        # this problem (measured here against the closed form), with room for the backward
        # solve's and the accumulation into the gradient.
        ys = tinyode.odeint(f, Y0, t, THETA, C, **opts)
        tol = max(1e-6, 20 * relerr(ys, exact(Y0, t, THETA, C)))
    else:
        discrete = lambda x: float(loss_of(tinyode.odeint(f, *unpack(x, len(t)), **opts)))  # noqa: E731
        want = central(discrete, x)
        tol = 1e-6
    names = ["y0[0]", "y0[1]"] + [f"t[{i}]" for i in range(len(t))] + ["θ[0]", "θ[1]", "c"]
    err = numpy.abs(got - want) / max(numpy.max(numpy.abs(want)), 1.0)
    worst = int(numpy.argmax(err))
    assert err[worst] < tol, (
        f"{method}, {mode}, {direction} t: d/d{names[worst]} is {got[worst]:.10g}, "
        f"the reference {want[worst]:.10g} (error {err[worst]:.2e} > {tol:.1e})"
    )


@pytest.mark.parametrize("direction", ["increasing", "decreasing"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", tinyode.METHODS)
def test_gradient_table(method, mode, direction):
    check_row(method, direction, mode, **settings(method))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "method, kw",
    [
        ("rk4", {}),  # fixed steps without step_size: one step per output interval
        ("dopri5", {"step_size": 0.1}),  # an adaptive method given step_size steps on the grid
        ("tsit5", {"step_size": 0.1}),
    ],
)
def test_gradient_table_other_step_plans(method, kw, mode):
    for direction in TIMES:
        check_row(method, direction, mode, **kw)


def decay_loss(t, mode):
    ys = tinyode.odeint(lambda y, t: -y, 1.0, t, method="rk4", step_size=0.01, gradient=mode)
    return ys[2]


@pytest.mark.parametrize("mode", ["backprop", "checkpoint"])
def test_time_gradient_of_fixed_steps_on_the_grid(mode):
    """The issue's example: t = [0, 1, 2] lies on the grid, y' = −y, L = y(2).

    The discrete solve is autonomous, so moving all of t together changes nothing: dL/dt[1]
    is zero to the method's accuracy and dL/dt[0] = −dL/dt[2] = e^{−2}. (It was
    [0.2707, −0.1353, −0.1353]: the step after t[1] did not move with t[1].)
    """
    t = numpy.array([0.0, 1.0, 2.0])
    got = tinyad.grad(decay_loss)(t, mode)
    want = central(lambda t: float(decay_loss(t, "adjoint")), t)
    assert numpy.max(numpy.abs(got - want)) < 1e-8
    assert numpy.max(numpy.abs(got - numpy.exp(-2.0) * numpy.array([1.0, 0.0, -1.0]))) < 1e-8


class ConstantODE:
    """torchdiffeq's tests/problems.py ConstantODE: y' = a + (y − (a t + b))⁵, y = a t + b."""

    a, b = 0.2, 3.0

    def __call__(self, y, t):
        return self.a + (y - (self.a * t + self.b)) ** 5


@pytest.mark.parametrize("mode", ["backprop", "checkpoint"])
@pytest.mark.parametrize("method, kw", [("rk4", {}), ("euler", {"step_size": 0.13})])
def test_time_jacobian_of_torchdiffeqs_constant_problem(method, kw, mode):
    """Every entry of d ys / d t (10 × 10) against central differences of the discrete solve."""
    func = ConstantODE()
    t = numpy.linspace(1.0, 8.0, 10)
    y0 = numpy.array(func.a * t[0] + func.b + 0.05)  # off the exact line: f varies with t

    def solve(t, mode="adjoint"):
        return tinyode.odeint(func, y0, t, method=method, gradient=mode, **kw)

    J = tinyad.jacobian(lambda t: solve(t, mode))(t)
    eps = 1e-6
    J_fd = numpy.stack(
        [(solve(t + e) - solve(t - e)) / (2 * eps) for e in numpy.eye(len(t)) * eps], axis=-1
    )
    wrong = numpy.abs(J - J_fd) > 1e-6 * (1 + numpy.abs(J_fd))
    assert not wrong.any(), f"{wrong.sum()} of {wrong.size} entries wrong"
