"""Tests of tinyode's implicit methods (tinyode/implicit.py) and stiffness detection.

* The coefficients: Butcher's order conditions on rooted trees (as tests/test_tableaus.py
  checks the explicit methods), in the form Hairer & Wanner (II, IV.7) give for
  Rosenbrock methods; stiff accuracy and L-stability from the stability function.
* The steps: exact Jacobians, observed convergence orders on a linear and a nonlinear
  problem, the derivative of a step through the linear solves.
* The stiff reference problems: Van der Pol at ε = 1e-6 and Robertson's kinetics to
  t = 1e11 (the values of the issue, and scipy's Radau at tight tolerances), a Newton
  iteration that diverges (diffrax #752), a stiff neural-ODE-like field (diffrax #319).
"""

import math

import numpy as onp
import pytest
from test_tableaus import density, nodes, trees

import tinyad
import tinyad.numpy as np
import tinyode
from tinyode import StiffnessWarning
from tinyode.implicit import (
    IMPLICIT_TABLEAUS,
    KVAERNO5,
    RODAS4,
    Factored,
    Kvaerno5Step,
    Rodas4Step,
    jacobian_at,
)
from tinyode.solver import Stats
from tinyode.stages import stages
from tinyode.stiffness import STABILITY_BOUNDARY, THRESHOLD, StiffnessDetector, h_lambda
from tinyode.tableaus import TABLEAUS

TOL = 1e-13  # conditions hold up to the rounding of the published coefficients
FAIL = 1e-4  # a condition of the next order fails by more than this
THETAS = (0.2, 0.5, 0.83)


# --------------------------------------------------------------------------------------
# Coefficients
# --------------------------------------------------------------------------------------


def lower(rows, s):
    """An (s, s) strictly lower triangular matrix from rows of lengths 0, 1, ..., s−1."""
    out = onp.zeros((s, s))
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def rosenbrock_standard_form(tab):
    """(α, Γ, b, b̂) of k_i = h f(y + Σ α_ij k_j) + hJ Σ γ_ij k_j, y1 = y + Σ b_i k_i."""
    s = len(tab.c)
    linalg = pytest.importorskip("scipy.linalg")
    gamma_inv = onp.eye(s) / tab.gamma - lower(tab.C, s)
    Gamma = linalg.solve_triangular(gamma_inv, onp.eye(s), lower=True)
    alpha = lower(tab.a, s) @ Gamma
    return alpha, Gamma, onp.asarray(tab.m) @ Gamma, onp.asarray(tab.m_hat) @ Gamma


def rosenbrock_weights(alpha, Gamma):
    """Φ(t) of a Rosenbrock method: a node with one child carries α + Γ (J acts once on
    that child's increment, at y_n), a node with several children carries α (Hairer &
    Wanner II, IV.7, the trees of Table 7.1). The conditions are then Σ b_i Φ_i(t) = 1/γ(t).
    """
    beta = alpha + Gamma

    def phi(tree):
        if len(tree) == 1:
            return beta @ phi(tree[0])
        out = onp.ones(len(alpha))
        for child in tree:
            out = out * (alpha @ phi(child))
        return out

    return phi


def worst_residual(weights, phi, order, theta=1.0):
    return max(abs(weights @ phi(t) - theta ** nodes(t) / density(t)) for t in trees(order))


def assert_order(weights, phi, order, theta=1.0):
    for n in range(1, order + 1):
        r = worst_residual(weights, phi, n, theta)
        assert r < TOL, f"an order-{n} condition fails by {r:.2e}"
    assert worst_residual(weights, phi, order + 1, theta) > FAIL


def test_rodas4_nodes_and_time_weights():
    """Σ_j α_ij = c_i and Σ_j γ_ij = d_i: the transformed data are one consistent method."""
    alpha, Gamma, _, _ = rosenbrock_standard_form(RODAS4)
    onp.testing.assert_allclose(alpha.sum(axis=1), RODAS4.c, rtol=0, atol=1e-14)
    onp.testing.assert_allclose(Gamma.sum(axis=1), RODAS4.d, rtol=0, atol=4e-15)
    assert onp.all(onp.diag(Gamma) == RODAS4.gamma)


def test_rodas4_order_conditions():
    alpha, Gamma, b, b_hat = rosenbrock_standard_form(RODAS4)
    phi = rosenbrock_weights(alpha, Gamma)
    assert_order(b, phi, RODAS4.order)
    assert_order(b_hat, phi, RODAS4.error_order)


@pytest.mark.parametrize("theta", THETAS)
def test_rodas4_dense_output_order(theta):
    """(1−θ) y + θ (y1 + (1−θ)(w2 + θ w3)) has the order-3 continuous conditions at θ."""
    alpha, Gamma, _, _ = rosenbrock_standard_form(RODAS4)
    phi = rosenbrock_weights(alpha, Gamma)
    m, d2, d3 = (onp.asarray(v) for v in (RODAS4.m, *RODAS4.dense))
    weights = (theta * m + theta * (1 - theta) * (d2 + theta * d3)) @ Gamma
    assert_order(weights, phi, RODAS4.dense_order, theta)


def test_rodas4_is_stiffly_accurate_and_l_stable():
    alpha, Gamma, b, b_hat = rosenbrock_standard_form(RODAS4)
    beta = alpha + Gamma
    # y1 and ŷ1 are the last two stages' arguments (plus their own J-term): b = β_6, b̂ = β_5
    onp.testing.assert_allclose(b, beta[5], rtol=0, atol=1e-13)
    onp.testing.assert_allclose(b_hat, beta[4], rtol=0, atol=1e-13)

    def R(z, weights=b):  # the stability function 1 + z bᵀ (I − zB)⁻¹ 1
        return 1 + z * weights @ onp.linalg.solve(onp.eye(6) - z * beta, onp.ones(6))

    assert abs(R(-1e12)) < 1e-10 and abs(R(-1e12, b_hat)) < 1e-10  # L-stable, both
    for y in onp.linspace(0.0, 1e3, 2001):  # A-stable: |R| ≤ 1 on the imaginary axis
        assert abs(R(1j * y)) <= 1 + 1e-12
    assert abs(R(-1.0) - math.exp(-1.0)) < 1e-3


def esdirk_matrix(tab):
    A = lower(tab.a, len(tab.c))
    A[onp.arange(1, len(tab.c)), onp.arange(1, len(tab.c))] = tab.gamma
    return A


def rk_weights(A):
    def phi(tree):
        out = onp.ones(len(A))
        for child in tree:
            out = out * (A @ phi(child))
        return out

    return phi


def test_kvaerno5_structure():
    A = esdirk_matrix(KVAERNO5)
    onp.testing.assert_allclose(A.sum(axis=1), KVAERNO5.c, rtol=0, atol=4e-15)
    assert A[0].tolist() == [0.0] * 7  # the explicit first stage
    assert onp.array_equal(A[-1], KVAERNO5.b)  # stiffly accurate: y_{n+1} = Y_7
    assert KVAERNO5.c[-1] == 1.0
    assert [len(row) for row in KVAERNO5.predictor] == list(range(7))


def test_kvaerno5_predictor_rows_interpolate_the_slopes():
    """Row i holds Lagrange weights at c_i through the stages it uses: exact for slopes
    polynomial in c to one degree less than that number of stages. Row 6 uses z_5 alone,
    at the same c = 1, exact for any slope."""
    c = onp.asarray(KVAERNO5.c)
    for i, row in enumerate(KVAERNO5.predictor[1:], start=1):
        row = onp.asarray(row)
        used = onp.flatnonzero(row)
        degree = 6 if i == 6 else len(used) - 1
        for q in range(degree + 1):
            assert row @ c[:i] ** q == pytest.approx(c[i] ** q, rel=1e-13), (i, q)
    assert KVAERNO5.predictor[6] == (0.0,) * 5 + (1.0,) and c[5] == c[6]


def test_kvaerno5_first_guess_extends_the_last_interpolant():
    """Stage 1's first Newton guess is h times the slope of the last step's cubic Hermite
    interpolant at t + c_1 h: exact when the solution is a cubic in t."""
    y, dy = (lambda t: t**3 - 2 * t), (lambda t: 3 * t**2 - 2)
    stepper = Kvaerno5Step(onp.zeros(1))
    s0, h0, s, h = 0.3, 0.2, 0.5, 0.25
    stepper.last = tuple(onp.array([v]) for v in (y(s0), dy(s0), y(s), dy(s)))
    stepper.last = (s0, h0, *stepper.last)
    guess = stepper._guess(1, None, s, h)
    assert guess == pytest.approx(h * dy(s + KVAERNO5.c[1] * h), rel=1e-13)
    stepper.last = (s0, h0 / 10, *stepper.last[2:])  # θ = 10.5: too far, the predictor row
    Z = stages(onp.array([7.0]), 7, s, onp.zeros(1), h)
    assert stepper._guess(1, Z, s, h) == pytest.approx(7.0)


def test_kvaerno5_nan_quadrature_does_not_reach_the_retry():
    """A NaN in the part that does not feed back (block < n) fails the trial; the smaller
    retry from the same start must not inherit it through `_guess`."""
    y, k0 = onp.array([1.0, 0.0]), onp.array([-1.0, 1.0])
    stepper = Kvaerno5Step(y, block=1)
    y1, _ = stepper.step(Counted(lambda y, s: np.stack([-y[0], onp.nan])), 0.0, y, 0.1, k0)
    assert onp.isnan(y1[1])
    y1, _ = stepper.step(Counted(lambda y, s: np.stack([-y[0], y[0]])), 0.0, y, 0.02, k0)
    assert y1 == pytest.approx([math.exp(-0.02), 1 - math.exp(-0.02)], rel=1e-8)


def test_kvaerno5_quadrature_has_the_local_order():
    """The part that does not feed back (block < n, the adjoint's dL/dθ) is read off
    Newton's evaluations of f, one iteration behind z_b. Its local error must still fall
    like h⁶ (measured: 57 to 62 times per halving). When one iteration could end a stage,
    it fell like h⁴ (14 times)."""
    y, k0 = onp.array([1.0, 0.0]), onp.array([-1.0, 1.0])
    f = Counted(lambda y, s: np.stack([-y[0], y[0] ** 2 + s]))  # q(h) = ∫ e^{-2s} + s ds
    errors = []
    for h in (0.2, 0.1, 0.05, 0.025):
        y1, _ = Kvaerno5Step(y, block=1).step(f, 0.0, y, h, k0)
        errors.append(abs(y1[1] - ((1 - math.exp(-2 * h)) / 2 + h * h / 2)))
    assert all(e / e_half > 40 for e, e_half in zip(errors, errors[1:])), errors


def test_kvaerno5_newton_starts_close():
    """HIRES at rtol 1e-8: 12.2 evaluations of f per step (6 implicit stages, 1 to 3
    iterations each); 17.1 with OrdinaryDiffEq.jl's guess for the last stage, z_0 for the
    first and κ = 0.03."""
    _, info = tinyode.odeint(
        hires, HIRES_Y0, onp.array([0.0, HIRES_END]), method="kvaerno5", rtol=1e-8,
        atol=1e-12, full_output=True,
    )  # fmt: skip
    assert info["nfe"] / info["n_steps"] < 13.0


def test_kvaerno5_order_conditions():
    A = esdirk_matrix(KVAERNO5)
    phi = rk_weights(A)
    b = onp.asarray(KVAERNO5.b)
    assert_order(b, phi, KVAERNO5.order)
    assert_order(b - onp.asarray(KVAERNO5.b_err), phi, KVAERNO5.error_order)


def test_kvaerno5_is_l_stable():
    A = esdirk_matrix(KVAERNO5)
    b = onp.asarray(KVAERNO5.b)

    def R(z):
        return 1 + z * b @ onp.linalg.solve(onp.eye(7) - z * A, onp.ones(7))

    def R_stiffly_accurate(z):  # y1 = Y_7, so R(z) = e_7ᵀ (I − zA)⁻¹ 1, with no cancellation
        return onp.linalg.solve(onp.eye(7) - z * A, onp.ones(7))[-1]

    for z in (-1e3, -1e6, -1e9, -1e12):  # R(z) ~ 6.5/|z| → 0: L-stable
        assert abs(R_stiffly_accurate(z)) < 10 / abs(z)
    assert R(-1e3) == pytest.approx(R_stiffly_accurate(-1e3), rel=1e-9)
    for y in onp.linspace(0.0, 1e3, 2001):
        assert abs(R(1j * y)) <= 1 + 1e-12


def test_names():
    assert list(IMPLICIT_TABLEAUS) == ["rodas4", "kvaerno5"]
    assert not set(IMPLICIT_TABLEAUS) & set(TABLEAUS)


# --------------------------------------------------------------------------------------
# Jacobians and linear solves
# --------------------------------------------------------------------------------------


def vdp(y, t, eps):
    return np.stack([y[1], ((1 - y[0] ** 2) * y[1] - y[0]) / eps])


class Counted:
    """f(y, s) with the solver's counts, as the loop hands it to a step (a `Dynamics`)."""

    def __init__(self, f):
        self.f, self.stats = f, Stats()

    def __call__(self, y, s):
        self.stats.nfe += 1
        return self.f(y, s)


def test_jacobian_is_exact_and_costs_one_call():
    y, t, eps = onp.array([1.3, -0.7]), 0.4, 1e-3
    f = Counted(lambda y, t: vdp(y, t, eps))
    value, J, ft = jacobian_at(f, y, t, slice(0, 2), f.stats)
    exact = onp.array([[0.0, 1.0], [(-2 * y[0] * y[1] - 1) / eps, (1 - y[0] ** 2) / eps]])
    onp.testing.assert_array_equal(value, vdp(y, t, eps))
    onp.testing.assert_allclose(J, exact, rtol=1e-15, atol=0)
    assert ft.tolist() == [0.0, 0.0]
    assert (f.stats.nfe, f.stats.njev, f.stats.nlu) == (1, 1, 0)

    def g(y, t):  # non-autonomous: ∂f/∂t = (cos t · y0, −2 sin 2t)
        return np.stack([np.sin(t) * y[0], np.cos(2 * t) + y[1] * y[0]])

    _, J, ft = jacobian_at(g, y, t, slice(0, 2), f.stats)
    onp.testing.assert_allclose(J, [[math.sin(t), 0.0], [y[1], y[0]]], rtol=1e-15)
    onp.testing.assert_allclose(ft, [math.cos(t) * y[0], -2 * math.sin(2 * t)], rtol=1e-15)
    _, J, ft = jacobian_at(g, y, t, slice(0, 1), f.stats)  # the part y[:1] only
    onp.testing.assert_allclose(J, [[math.sin(t)]], rtol=1e-15)
    assert ft.shape == (1,)


def test_factored_solve_is_backward_stable():
    """inv(M) and one refinement step: the residual of LU's solve on a cond 1e12 matrix."""
    rng = onp.random.RandomState(0)
    U, _ = onp.linalg.qr(rng.randn(6, 6))
    V, _ = onp.linalg.qr(rng.randn(6, 6))
    M = U @ onp.diag(onp.logspace(0, 12, 6)) @ V.T
    b = rng.randn(6)
    stats = Stats()
    x = Factored(M, stats).solve(b)
    assert stats.nlu == 1
    backward_error = onp.linalg.norm(b - M @ x) / (onp.linalg.norm(M, 2) * onp.linalg.norm(x))
    assert backward_error < 10 * onp.finfo(float).eps
    lapack = onp.linalg.solve(M, b)
    assert onp.linalg.norm(x - lapack) / onp.linalg.norm(lapack) < 1e12 * 1e-15


# --------------------------------------------------------------------------------------
# Convergence orders, with fixed steps
# --------------------------------------------------------------------------------------


def fixed_steps(method, f, y0, t0, t1, n):
    """n steps of size (t1 − t0)/n through odeint (kvaerno5's Newton to rtol 1e-10, its
    tolerance before any error ratio is asked for)."""
    ys, info = tinyode.odeint(
        f, y0, onp.array([t0, t1]), method=method, step_size=(t1 - t0) / n, full_output=True
    )
    assert info["n_steps"] == n
    return ys[-1], info


def prothero_robinson(y, t):
    """y' = −(y − sin t) + cos t: linear and non-autonomous; y = sin t + e^{−t} y(0)."""
    return -(y - np.sin(t)) + np.cos(t)


def rotation(y, t):
    """u' = −r² v, v' = r² u with r² = u² + v² conserved: a rotation at speed r²."""
    r2 = y[0] ** 2 + y[1] ** 2
    return np.stack([-r2 * y[1], r2 * y[0]])


def forced_pendulum(y, t):
    """θ'' = −sin θ + 0.3 cos t: nonlinear and non-autonomous (∂f/∂t ≠ 0)."""
    return np.stack([y[1], -np.sin(y[0]) + 0.3 * np.cos(t)])


def pendulum_reference(t):
    integrate = pytest.importorskip("scipy.integrate")
    sol = integrate.solve_ivp(
        lambda t, y: [y[1], -math.sin(y[0]) + 0.3 * math.cos(t)], (0.0, t), [1.0, 0.0],
        method="DOP853", rtol=1e-13, atol=1e-14,
    )  # fmt: skip
    return sol.y[:, -1]


PROBLEMS = {
    "linear": (prothero_robinson, onp.array([1.0]), lambda t: onp.sin(t) + onp.exp(-t)),
    "nonlinear": (forced_pendulum, onp.array([1.0, 0.0]), pendulum_reference),
}


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("method", list(IMPLICIT_TABLEAUS))
def test_convergence_order(method, problem):
    """Global errors at t = 2 with 10, 20 and 40 steps fall by 2^order each halving."""
    f, y0, exact = PROBLEMS[problem]
    order = IMPLICIT_TABLEAUS[method].order
    errors = []
    for n in (10, 20, 40):
        y, _ = fixed_steps(method, f, y0, 0.0, 2.0, n)
        errors.append(onp.max(onp.abs(y - exact(2.0))))
    observed = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert all(abs(p - order) < 0.3 for p in observed), observed


STEPS = {"rodas4": Rodas4Step, "kvaerno5": Kvaerno5Step}


def one_step(method, f, s, y, h, y0_for=None):
    """One trial step of the method's step object from (s, y): (step object, y1, K, f)."""
    F = Counted(f)
    step = STEPS[method](y if y0_for is None else y0_for)
    y1, K = step.step(F, s, y, h, F(y, s))
    return step, y1, K, F


@pytest.mark.parametrize("method", list(IMPLICIT_TABLEAUS))
def test_local_error_estimate_and_dense_output_orders(method):
    """Over one step from the exact solution: the estimate ~ h^(q+1), the dense output's
    error at θ = 0.4 ~ h^4 (order 3)."""
    y0 = onp.array([1.2, 0.0])
    exact = lambda t: 1.2 * onp.array([onp.cos(1.44 * t), onp.sin(1.44 * t)])  # noqa: E731
    tab = IMPLICIT_TABLEAUS[method]
    est, dense = [], []
    for h in (0.1, 0.05):
        step, y1, K, F = one_step(method, rotation, 0.0, y0, h)
        # rtol 0, atol 1: the ratio is the estimate itself, in the max norm
        est.append(step.error_ratio(h, K, y0, y1, 0.0, 1.0, lambda x: onp.max(onp.abs(x))))
        dense.append(onp.max(onp.abs(step.interpolate(F, 0.0, y0, h, K, 0.4) - exact(0.4 * h))))
    assert abs(math.log2(est[0] / est[1]) - (tab.error_order + 1)) < 0.5
    assert abs(math.log2(dense[0] / dense[1]) - 4) < 0.5


def _branchy(y, t):  # reads a value: which branch runs depends on y[0]
    if y[0] > 0:
        return np.stack([-y[0] * y[1], np.sin(t) * y[0]])
    return np.stack([y[1] ** 3, -y[0]])


@pytest.mark.parametrize(
    "f, calls",
    [
        (lambda y, t: np.stack([y[1] * np.cos(t), -1e3 * (y[0] ** 2 - 1) * y[1] - y[0]]), 1),
        # maximum's vjp reads a mask: f replays, its backward runs on the replayed values
        (lambda y, t: np.maximum(y, 0.5) * np.exp(-t * y[::-1]), 1),
        (lambda y, t: np.where(y > 0, y**2, -y) + t, 8),  # where's mask is read in f: traced
        (_branchy, 8),
    ],
    ids=["smooth", "maximum", "where", "python-if"],
)
def test_replayed_jacobian_follows_values(f, calls):
    """The Jacobians of one solve replay f's recording (`_FlatState.replay`): at points on
    both sides of every branch and mask, each equals a fresh trace's, bit for bit."""
    state = Rodas4Step(onp.zeros(2))
    F = Counted(f)
    points = [(onp.array([0.7, -0.3]), 0.1), (onp.array([0.9, 0.2]), 0.3),
              (onp.array([-0.6, 0.8]), 0.2), (onp.array([0.4, -1.1]), 0.0)]  # fmt: skip
    for y, t in points + points:
        s = onp.asarray(t)
        replayed = jacobian_at(state.on_flat(F), y, s, slice(0, 2), F.stats, state.replay(F))
        fresh = jacobian_at(state.on_flat(f), y, s, slice(0, 2), F.stats)
        for a, b in zip(replayed, fresh):
            onp.testing.assert_array_equal(a, b)
    assert F.stats.nfe == calls  # replayed where nothing read a value to choose a branch


def test_rodas4_counts():
    """Per accepted step one Jacobian (it gives f(y_n) too) and five more stages, one LU per
    trial; a rejected trial reuses the Jacobian. Outside the steps: f(y0), the initial
    step's trial evaluation, and the next step's Jacobian after the last. Only the first
    Jacobian calls func (it records f); the others replay the recording, and `nfe` counts
    the calls func really gets."""
    calls = []

    def counted(y, t, eps):
        calls.append(t)
        return vdp(y, t, eps)

    ys, info = tinyode.odeint(
        counted, onp.array([2.0, 0.0]), onp.array([0.0, 0.5]), 1e-3, method="rodas4",
        rtol=1e-6, atol=1e-6, full_output=True,
    )  # fmt: skip
    trials = info["n_steps"] + info["n_rejected"]
    assert info["n_rejected"] > 0
    assert info["njev"] == info["n_steps"] + 1
    assert info["nlu"] == trials
    assert info["nfe"] == len(calls) == 2 + 1 + 5 * trials


# --------------------------------------------------------------------------------------
# Derivatives through a step
# --------------------------------------------------------------------------------------


def test_rodas4_step_derivative_is_exact():
    """Traced, a step differentiates through J(y), the solves and the stages: the
    gradient of the discrete step matches its central differences."""

    def step(y0, theta):
        f = lambda y, t: np.stack([-theta * y[0] * y[1], theta * y[0] - y[1] ** 3])  # noqa: E731
        _, y1, _, _ = one_step("rodas4", f, 0.1, y0, 0.3, y0_for=tinyad.getval(y0))
        return np.sum(y1**2)

    tinyad.check_grads(step, onp.array([0.8, 0.5]), 1.7, rtol=1e-8)


def test_kvaerno5_step_derivative_matches_differences():
    """Newton on traced values with a raw M: the derivative of the discrete step (the
    same iterations) matches its central differences."""

    def step(y0, theta):
        f = lambda y, t: np.stack([-theta * y[0] * y[1], theta * y[0] - y[1] ** 3])  # noqa: E731
        stepper = Kvaerno5Step(tinyad.getval(y0))
        stepper.tolerances = (1e-12, 1e-12)
        F = Counted(f)
        y1, K = stepper.step(F, 0.1, y0, 0.2, F(y0, 0.1))
        assert not K.failed
        return np.sum(y1**2)

    tinyad.check_grads(step, onp.array([0.8, 0.5]), 1.7, rtol=1e-8)


# --------------------------------------------------------------------------------------
# Stiff reference problems
# --------------------------------------------------------------------------------------

VDP_REF = onp.array([1.706167732170483, -0.8928097010247975])


@pytest.mark.parametrize("method", list(IMPLICIT_TABLEAUS))
def test_van_der_pol(method):
    """ε = 1e-6, y0 = (2, 0), t ∈ [0, 2] (the test set's scaling): a few thousand steps,
    where an explicit method needs over a million (scipy's RK45: 1.16 million)."""
    integrate = pytest.importorskip("scipy.integrate")
    ys, info = tinyode.odeint(
        vdp, onp.array([2.0, 0.0]), onp.array([0.0, 2.0]), 1e-6, method=method,
        rtol=1e-6, atol=1e-6, full_output=True,
    )  # fmt: skip
    assert onp.max(onp.abs(ys[-1] / VDP_REF - 1)) < 1e-5
    radau = integrate.solve_ivp(
        lambda t, y: [y[1], ((1 - y[0] ** 2) * y[1] - y[0]) / 1e-6], (0.0, 2.0), [2.0, 0.0],
        method="Radau", rtol=1e-6, atol=1e-6,
    )  # fmt: skip
    counts = {k: info[k] for k in ("n_steps", "n_rejected", "nfe", "njev", "nlu")}
    print(method, counts, "Radau:", len(radau.t) - 1, radau.nfev, radau.njev, radau.nlu)
    assert info["n_steps"] < 3 * (len(radau.t) - 1)
    assert info["n_steps"] < 3000


def vdp_mu(y, t, mu):  # the classic scaling: cycles of length about (3 − 2 ln 2) mu
    return np.stack([y[1], mu * ((1 - y[0] ** 2) * y[1]) - y[0]])


# y(3 mu) from (2, 0), by scipy's Radau at rtol 1e-12, atol 1e-14 (11 s each, too slow
# for every run; rtol 1e-10 agrees to 9 digits)
VDP_CYCLES = {
    1e3: (-1.5106069367440127, 0.0011783800007311082),
    3e3: (-1.5096614306115441, 0.00039342442980484413),
    1e4: (-1.509433119729379, 0.00011807312733915529),
}


@pytest.mark.parametrize("method", list(IMPLICIT_TABLEAUS))
@pytest.mark.parametrize("mu, rtol", [(1e3, 3e-4), (3e3, 1e-4), (1e4, 1e-3), (1e4, 1e-5)])
def test_van_der_pol_over_cycles(method, mu, rtol):
    """Three time units per mu, about four relaxation cycles, at loose tolerances. A J
    taken on the other branch of the cycle once let kvaerno5's Newton stop on unsolved
    stages: these solves ended 700 to 90,000 tolerances off, without an error."""
    y0, t, ref = onp.array([2.0, 0.0]), onp.array([0.0, 3 * mu]), onp.array(VDP_CYCLES[mu])
    atol = 1e-3 * rtol
    ys = tinyode.odeint(vdp_mu, y0, t, mu, method=method, rtol=rtol, atol=atol)
    error = onp.abs(ys[-1] - ref) / (atol + rtol * onp.abs(ref))
    assert onp.max(error) < 30  # tolerances are local: a global error of a few is usual


def robertson(y, t):
    k1, k2, k3 = 0.04, 3e7, 1e4
    return np.stack(
        [
            -k1 * y[0] + k3 * y[1] * y[2],
            k1 * y[0] - k3 * y[1] * y[2] - k2 * y[1] ** 2,
            k2 * y[1] ** 2,
        ]
    )


ROBER_1E5 = onp.array([1.786592110e-2, 7.274751470e-8, 9.821340060e-1])
ROBER_1E11 = onp.array([2.083340149701255e-8, 8.333360770334713e-14, 9.999999791665050e-1])


@pytest.fixture(scope="module")
def robertson_radau():
    """scipy's Radau at rtol 1e-10 (atol 1e-18), the reference at t = 40, 1e5 and 1e11."""
    integrate = pytest.importorskip("scipy.integrate")

    def f(t, y):
        return [
            -0.04 * y[0] + 1e4 * y[1] * y[2],
            0.04 * y[0] - 1e4 * y[1] * y[2] - 3e7 * y[1] ** 2,
            3e7 * y[1] ** 2,
        ]

    def jac(t, y):
        return [
            [-0.04, 1e4 * y[2], 1e4 * y[1]],
            [0.04, -1e4 * y[2] - 6e7 * y[1], -1e4 * y[1]],
            [0.0, 6e7 * y[1], 0.0],
        ]

    times = [40.0, 1e5, 1e11]
    sol = integrate.solve_ivp(
        f, (0.0, 1e11), [1.0, 0.0, 0.0], method="Radau", rtol=1e-10, atol=1e-18,
        t_eval=times, jac=jac,
    )  # fmt: skip
    assert sol.success
    return sol.y.T


def test_robertson_reference_values(robertson_radau):
    """The issue's reference values, against scipy's Radau at rtol 1e-10."""
    onp.testing.assert_allclose(robertson_radau[1], ROBER_1E5, rtol=1e-8)
    onp.testing.assert_allclose(robertson_radau[2], ROBER_1E11, rtol=1e-6)


@pytest.mark.parametrize("method", list(IMPLICIT_TABLEAUS))
def test_robertson_to_1e11(method, robertson_radau):
    times = onp.array([0.0, 40.0, 1e5, 1e11])
    ys, info = tinyode.odeint(
        robertson, onp.array([1.0, 0.0, 0.0]), times, method=method, rtol=1e-8, atol=1e-14,
        full_output=True,
    )  # fmt: skip
    onp.testing.assert_allclose(ys[1:], robertson_radau, rtol=1e-5)
    onp.testing.assert_allclose(ys[2], ROBER_1E5, rtol=1e-5)
    onp.testing.assert_allclose(ys[3], ROBER_1E11, rtol=1e-5)
    assert info["n_steps"] < 5000


def square(y, t):
    return y**2


def test_newton_divergence_fails_the_step():
    """y' = y² from y = 1 with h = 2: stage 2's equation Y = 1.52 + 0.52 Y² has no real
    root, so Newton cannot converge; the trial says so (an infinite error ratio, a NaN
    y1) instead of handing back its last iterate (diffrax #752 accepted such a step)."""
    step, y1, K, _ = one_step("kvaerno5", square, 0.0, onp.array([1.0]), 2.0)
    assert K.failed and onp.isnan(y1).all()
    assert step.error_ratio(2.0, K, onp.array([1.0]), y1, 1e-9, 1e-12, onp.max) == math.inf


def test_newton_divergence_rejects_and_shrinks():
    """In the loop, the failed trial is rejected and h shrunk until Newton converges, and
    the solve is right: y = 1/(1 − t)."""
    ys, info = tinyode.odeint(
        square, onp.array([1.0]), onp.array([0.0, 0.5]), method="kvaerno5", rtol=1e-9,
        atol=1e-12, first_step=2.0, full_output=True,
    )  # fmt: skip
    assert info["n_rejected"] >= 1
    assert onp.all(info["step_sizes"] <= 0.5)
    assert abs(ys[-1, 0] - 2.0) < 1e-7


def stiff_network(y, t, W1, b1, W2, rates):
    """A neural-ODE-like field with decay rates from 1 to 1e4 (diffrax #319's setting)."""
    return W2 @ np.tanh(W1 @ y + b1) - rates * y


@pytest.mark.parametrize("method", list(IMPLICIT_TABLEAUS))
def test_stiff_neural_ode(method):
    integrate = pytest.importorskip("scipy.integrate")
    rng = onp.random.RandomState(3)
    W1, b1, W2 = rng.randn(16, 4), rng.randn(16), rng.randn(4, 16)
    rates = onp.array([1.0, 10.0, 1e3, 1e4])
    args = (W1, b1, W2, rates)
    y0 = rng.randn(4)

    def f(t, y):
        return W2 @ onp.tanh(W1 @ y + b1) - rates * y

    ref = integrate.solve_ivp(f, (0.0, 5.0), y0, method="BDF", rtol=1e-11, atol=1e-13)
    bdf = integrate.solve_ivp(f, (0.0, 5.0), y0, method="BDF", rtol=1e-7, atol=1e-9)
    ys, info = tinyode.odeint(
        stiff_network, y0, onp.array([0.0, 5.0]), *args, method=method, rtol=1e-7, atol=1e-9,
        full_output=True,
    )  # fmt: skip
    onp.testing.assert_allclose(ys[-1], ref.y[:, -1], rtol=1e-5)
    assert info["n_steps"] < 3 * (len(bdf.t) - 1)  # BDF: 376 steps


# --------------------------------------------------------------------------------------
# Stiffness detection
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(STABILITY_BOUNDARY))
def test_stability_boundaries(name):
    """|R(x)| ≤ 1 on [−boundary, 0] and not beyond (to the 4 digits stored)."""
    tab = TABLEAUS[name]
    s = len(tab.c)
    A, b = lower(tab.a, s), onp.asarray(tab.b)

    def R(x):
        return 1 + x * b @ onp.linalg.solve(onp.eye(s) - x * A, onp.ones(s))

    edge = STABILITY_BOUNDARY[name]
    assert all(abs(R(-x)) <= 1 for x in onp.linspace(0.0, edge - 1e-4, 500))
    assert abs(R(-(edge + 1e-4))) > 1
    assert THRESHOLD[name] < edge


@pytest.mark.parametrize("name", list(STABILITY_BOUNDARY))
def test_h_lambda_on_a_linear_problem(name):
    """For y' = λy the last two stages differ by λ(y1 − y6): the estimate is |hλ| exactly."""
    tab = TABLEAUS[name]
    lam, h, y = -250.0, 0.013, onp.array([0.7, -0.2])
    ks = [lam * y]
    for i in range(1, len(tab.c)):
        yi = y + h * sum(a * k for a, k in zip(tab.a[i], ks))
        ks.append(lam * yi)
    y1 = y + h * sum(w * k for w, k in zip(tab.b, ks))
    assert h_lambda(tab, y, h, ks, y1) == pytest.approx(abs(h * lam), rel=1e-9)


def test_detector_counts_as_dopri5_does():
    """Tests at every 1000th step until one is positive; 15 positive in a row declare
    stiffness (one warning); 6 negative in a row reset the count."""
    tab = TABLEAUS["dopri5"]
    y = onp.array([1.0])

    def stages(hl):  # the stages of y' = λy for a step with hλ = −hl (h = 0.01)
        lam, h = -hl / 0.01, 0.01
        ks = [lam * y]
        for i in range(1, 7):
            ks.append(lam * (y + h * sum(a * k for a, k in zip(tab.a[i], ks))))
        return h, ks, y + h * sum(w * k for w, k in zip(tab.b, ks))

    det = StiffnessDetector(tab)
    stiff, calm = stages(3.3), stages(1.0)
    for _ in range(999):  # untested steps, however stiff
        assert not det.accepted(0.0, y, stiff[0], stiff[1], stiff[2])
    assert det.positive == 0
    for _ in range(10):  # the 1000th step tests positive; every step is tested from then on
        det.accepted(0.0, y, *stiff)
    assert det.positive == 10
    for _ in range(6):
        det.accepted(0.0, y, *calm)
    assert det.positive == 0
    n = 0
    with pytest.warns(StiffnessWarning, match=r"t=5.01.*rodas4.*kvaerno5"):
        while not det.accepted(5.01, y, *stiff):
            n += 1
    assert det.stiff_at == 5.01
    assert "stiffness was detected at t=5.01" in det.note()
    assert not det.accepted(6.0, y, *stiff)  # once per solve


@pytest.mark.parametrize("method", ["dopri5", "tsit5"])
def test_explicit_methods_warn_once_on_robertson(method):
    """dopri5 and tsit5 on Robertson's kinetics: one StiffnessWarning, at the user's line,
    naming the time and both implicit methods (DOPRI5 declares stiffness after the test at
    step 1000 and 14 more positive ones); the solve then runs out of steps."""
    with pytest.warns(StiffnessWarning) as caught:
        with pytest.raises(tinyode.SolverError, match="max_steps"):
            tinyode.odeint(
                robertson, onp.array([1.0, 0.0, 0.0]), onp.array([0.0, 40.0]), method=method,
                rtol=1e-6, atol=1e-10, max_steps=3000,
            )  # fmt: skip
    stiff = [w for w in caught if issubclass(w.category, StiffnessWarning)]
    assert len(stiff) == 1
    message = str(stiff[0].message)
    assert "rodas4" in message and "kvaerno5" in message and method in message
    t = float(message.split("t=")[1].split(":")[0])
    assert 0.0 < t < 40.0
    assert stiff[0].filename == __file__


def test_no_stiffness_warning_on_a_long_nonstiff_solve():
    """A harmonic oscillator over 300 periods (tens of thousands of steps): steps limited by
    accuracy, so every test (one per 1000 steps) is negative. Warnings are errors here."""
    ys, info = tinyode.odeint(
        lambda y, t: np.stack([y[1], -y[0]]), onp.array([1.0, 0.0]), onp.array([0.0, 2000.0]),
        method="dopri5", rtol=1e-10, atol=1e-12, full_output=True,
    )  # fmt: skip
    assert info["n_steps"] > 10_000


# --------------------------------------------------------------------------------------
# Gradients through stiff solves
# --------------------------------------------------------------------------------------


def robertson_rates(y, t, log_k):
    """Robertson's kinetics with the rates k = exp(log_k): what a fit to data would vary."""
    k = np.exp(log_k)
    return np.stack(
        [
            -k[0] * y[0] + k[2] * y[1] * y[2],
            k[0] * y[0] - k[2] * y[1] * y[2] - k[1] * y[1] ** 2,
            k[1] * y[1] ** 2,
        ]
    )


LOG_K = onp.log(onp.array([0.04, 3e7, 1e4]))
GRAD_TIMES = onp.array([0.0, 0.5, 2.0, 10.0])
GRAD_WEIGHTS = onp.array([1.0, 1e4, 1.0])  # y2 is ~1e-5: weighted to count as much


@pytest.fixture(scope="module")
def robertson_gradient():
    """dL/dlog_k by central differences (h = 1e-5) of scipy's Radau at rtol 1e-12."""
    integrate = pytest.importorskip("scipy.integrate")

    def loss(log_k):
        k = onp.exp(log_k)

        def f(t, y):
            return [
                -k[0] * y[0] + k[2] * y[1] * y[2],
                k[0] * y[0] - k[2] * y[1] * y[2] - k[1] * y[1] ** 2,
                k[1] * y[1] ** 2,
            ]

        def jac(t, y):
            return [
                [-k[0], k[2] * y[2], k[2] * y[1]],
                [k[0], -k[2] * y[2] - 2 * k[1] * y[1], -k[2] * y[1]],
                [0.0, 2 * k[1] * y[1], 0.0],
            ]

        sol = integrate.solve_ivp(
            f, (0.0, GRAD_TIMES[-1]), [1.0, 0.0, 0.0], method="Radau", rtol=1e-12,
            atol=1e-16, t_eval=GRAD_TIMES[1:], jac=jac,
        )  # fmt: skip
        return float(onp.sum(sol.y.T @ GRAD_WEIGHTS))

    return onp.array([(loss(LOG_K + 1e-5 * e) - loss(LOG_K - 1e-5 * e)) / 2e-5 for e in onp.eye(3)])


# What each method's gradient reaches at rtol 1e-9 (measured: rodas4 3.6e-8, kvaerno5
# 1.0e-6 with backprop and 3.6e-6 with checkpoint; the step control watches y, not its
# sensitivities, and an ESDIRK's stage order 2 shows in them on stiff components).
GRADIENT_RTOL = {"rodas4": 1e-6, "kvaerno5": 1e-5}


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint", "adjoint"])
@pytest.mark.parametrize("method", list(IMPLICIT_TABLEAUS))
def test_robertson_rate_gradients(method, gradient, robertson_gradient):
    """Backprop and checkpoint differentiate through the stages and linear solves (rodas4:
    J(y) itself; kvaerno5: the stage equations by the implicit function theorem). The
    adjoint solves a backwards along z re-solved forward (z itself cannot be solved
    backwards here: its fast mode grows like e^{2000 t} that way)."""

    def loss(log_k):
        ys = tinyode.odeint(
            robertson_rates, onp.array([1.0, 0.0, 0.0]), GRAD_TIMES, log_k, method=method,
            rtol=1e-9, atol=1e-12, gradient=gradient,
        )  # fmt: skip
        return np.sum(ys[1:] @ GRAD_WEIGHTS)

    got = tinyad.grad(loss)(LOG_K)
    onp.testing.assert_allclose(got, robertson_gradient, rtol=GRADIENT_RTOL[method])


def hires(y, t):
    """HIRES (Schäfer 1975; Hairer & Wanner's test set): 8 species, stiffness ratio ~1e4."""
    return np.stack(
        [
            -1.71 * y[0] + 0.43 * y[1] + 8.32 * y[2] + 0.0007,
            1.71 * y[0] - 8.75 * y[1],
            -10.03 * y[2] + 0.43 * y[3] + 0.035 * y[4],
            8.32 * y[1] + 1.71 * y[2] - 1.12 * y[3],
            -1.745 * y[4] + 0.43 * y[5] + 0.43 * y[6],
            -280 * y[5] * y[7] + 0.69 * y[3] + 1.71 * y[4] - 0.43 * y[5] + 0.69 * y[6],
            280 * y[5] * y[7] - 1.81 * y[6],
            -280 * y[5] * y[7] + 1.81 * y[6],
        ]
    )


HIRES_Y0 = onp.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057])
HIRES_END = 321.8122


@pytest.fixture(scope="module")
def hires_radau():
    """HIRES at t = 321.8122 by scipy's Radau at rtol 1e-12."""
    integrate = pytest.importorskip("scipy.integrate")

    def f(t, y):
        return onp.asarray(hires(onp.asarray(y), t))

    sol = integrate.solve_ivp(f, (0.0, HIRES_END), HIRES_Y0, method="Radau", rtol=1e-12, atol=1e-16)
    assert sol.success
    return sol.y[:, -1]


@pytest.mark.parametrize("method", list(IMPLICIT_TABLEAUS))
def test_hires(method, hires_radau):
    ys, info = tinyode.odeint(
        hires, HIRES_Y0, onp.array([0.0, HIRES_END]), method=method, rtol=1e-6, atol=1e-10,
        full_output=True,
    )  # fmt: skip
    onp.testing.assert_allclose(ys[-1], hires_radau, rtol=1e-5)  # measured 1e-7, 3e-6
    assert info["n_steps"] < 1000  # scipy's Radau: 210 steps, BDF 327 (tests/bench B8)


def prothero_robinson(y, t):
    """Prothero and Robinson's y' = λ(y − cos t) − sin t, λ = −10⁴: y = cos t from y(0) = 1.
    Stiff where the solution is smooth, the classic test of a stiff error estimate."""
    return -1e4 * (y - np.cos(t)) - np.sin(t)


# RODAS's embedded solution loses order where a problem is stiff and its solution smooth
# (Hairer & Wanner II, VI.7's Prothero–Robinson analysis of Rosenbrock methods): its
# estimate falls like h² to h³, not h⁴, so rodas4 keeps the tolerance with far more steps
# than needed (8202 on Prothero–Robinson at 1e-8, 2286 on HIRES, 0.04 and 0.007 units off).
# Steinebach's Rodas4P coefficients are built against it.
_ORDER_REDUCTION = pytest.mark.xfail(
    strict=True, reason="rodas4's estimate loses order on Prothero–Robinson-like problems"
)
_CASES = [("prothero_robinson", 1e-4), ("prothero_robinson", 1e-6),
          ("prothero_robinson", 1e-8), ("hires", 1e-8)]  # fmt: skip


@pytest.mark.parametrize("method", list(IMPLICIT_TABLEAUS))
@pytest.mark.parametrize("problem, rtol", _CASES)
def test_error_estimate_keeps_tolerance(method, problem, rtol, hires_radau, request):
    """The global error at the end, in units of rtol·|y| + atol, stays below 3.

    kvaerno5's estimate filtered by (I − hγJ)⁻¹ ended 1.2, 38 and 76 units out on
    Prothero–Robinson (10 steps of up to 3.6 at rtol 1e-6) and 10 out on HIRES at 1e-8;
    unfiltered, 0.007, 0.06, 1.4 and 0.4. A bound on the steps keeps the estimate from
    being safe only by being useless (Radau: 8, 21, 69 steps; HIRES 1e-8, 640)."""
    if problem == "hires":
        f, y0, t1, atol, ref = hires, HIRES_Y0, HIRES_END, 1e-4 * rtol, hires_radau
    else:
        f, y0, t1, atol = prothero_robinson, onp.array([1.0]), 10.0, 1e-3 * rtol
        ref = onp.array([math.cos(10.0)])
    ys, info = tinyode.odeint(
        f, y0, onp.array([0.0, t1]), method=method, rtol=rtol, atol=atol, full_output=True
    )
    units = onp.max(onp.abs(ys[-1] - ref) / (rtol * onp.abs(ref) + atol))
    assert units < 3, f"{units:.3g} tolerance units off in {info['n_steps']} steps"
    if (method, rtol) == ("rodas4", 1e-8):
        request.applymarker(_ORDER_REDUCTION)  # the accuracy above is still asserted
    assert info["n_steps"] < 1000


def test_a_solver_error_after_detected_stiffness_says_so():
    import warnings

    import tinyad.numpy as tnp

    def rober(y, t):
        return tnp.stack(
            [
                -0.04 * y[0] + 1e4 * y[1] * y[2],
                0.04 * y[0] - 1e4 * y[1] * y[2] - 3e7 * y[1] ** 2,
                3e7 * y[1] ** 2,
            ]
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tinyode.StiffnessWarning)
        with pytest.raises(tinyode.SolverError, match=r"stiffness was detected.*rodas4"):
            tinyode.odeint(
                rober,
                onp.array([1.0, 0.0, 0.0]),
                onp.array([0.0, 1e5]),
                rtol=1e-6,
                atol=1e-10,
                max_steps=20_000,
            )


@pytest.mark.parametrize("method", list(IMPLICIT_TABLEAUS))
def test_adjoint_reads_z_along_a_forward_resolve(method):
    """The stiff adjoint's z(t): the forward re-solve's dense output, accurate between and
    continuous at the knots, and from the step before a knot (the backward solve's side)."""
    from tinyode.adjoint import ForwardPath
    from tinyode.inputs import split_args
    from tinyode.odeint import Options

    theta, argdef = split_args((LOG_K,))
    opts = Options(method, 1e-9, 1e-12, None, None, 100_000, None, 1e-9, 1e-12, "full", None)
    z0 = onp.array([1.0, 0.0, 0.0])
    path = ForwardPath(robertson_rates, argdef, theta, z0, onp.array([0.0, 2.0]), opts)
    times = onp.linspace(0.0, 2.0, 9)
    reference = tinyode.odeint(
        robertson_rates, z0, times, LOG_K, method="rodas4", rtol=1e-12, atol=1e-16
    )
    for t, z in zip(times, reference):
        onp.testing.assert_allclose(path(t), z, rtol=1e-6, atol=1e-14)
    knot = path.knots[len(path.knots) // 2]
    k = path.starts.index(knot)
    onp.testing.assert_allclose(path(knot), path(knot * (1 + 1e-13)), rtol=1e-10)
    s0, h, y, K = path.steps[k - 1]  # the step that ends at the knot, at its θ there: (knot −
    # s0)/h, 1 to rounding (not exactly 1: s0 + h rounds), where the step after it has θ = 0
    theta = (path.sign * knot - s0) / h
    assert abs(theta - 1.0) < 1e-12
    onp.testing.assert_array_equal(
        path(knot), path.run.rk.interpolate(path.run.f, s0, y, h, K, theta)
    )


def test_stiff_adjoint_needs_no_backward_solve_of_z():
    """On Robertson to t = 1e5 the stiff adjoint's backward pass is a's alone: no z is solved
    backwards (that fails within the first interval), so there is no BacksolveWarning, and
    the gradient at rtol 1e-6 matches checkpoint's at rtol 1e-10 (measured 1.2e-5)."""
    import warnings

    def loss(log_k, gradient, rtol, atol):
        ys = tinyode.odeint(
            robertson_rates, onp.array([1.0, 0.0, 0.0]), onp.array([0.0, 1e5]), log_k,
            method="kvaerno5", rtol=rtol, atol=atol, gradient=gradient,
        )  # fmt: skip
        return ys[-1, 0]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = tinyad.grad(loss)(LOG_K, "adjoint", 1e-6, 1e-10)
    reference = tinyad.grad(loss)(LOG_K, "checkpoint", 1e-10, 1e-14)
    onp.testing.assert_allclose(got, reference, rtol=1e-4)


@pytest.mark.parametrize("rtol", [1e-6, 1e-8, 1e-10])
def test_kvaerno5_checkpoint_replays_every_step(rtol):
    """Checkpoint replays each accepted kvaerno5 step with a fresh stepper: its Newton works
    to the solve's tolerances, and where the simplified iteration fails (another J, another
    η than the forward's), a full Newton iteration solves the stage equations. Without that,
    Robertson's gradient to t = 1e5 came out exactly zero at rtol 1e-8 and 13× too small at
    1e-10, and outputs inside a step raised a TypeError at rtol 1e-6."""
    t = onp.concatenate([[0.0], onp.logspace(-4, 5, 10)])

    def loss(log_k, gradient):
        ys = tinyode.odeint(
            robertson_rates, onp.array([1.0, 0.0, 0.0]), t, log_k, method="kvaerno5",
            rtol=rtol, atol=1e-12, gradient=gradient,
        )  # fmt: skip
        return np.sum(ys[1:, 0])

    replayed = tinyad.grad(loss)(LOG_K, "checkpoint")
    recorded = tinyad.grad(loss)(LOG_K, "backprop")
    assert onp.all(onp.abs(replayed) > 1e-3)
    onp.testing.assert_allclose(replayed, recorded, rtol=1e-5)


def _robertson(y, t, k):
    return np.stack(
        [
            -k[0] * y[0] + k[2] * y[1] * y[2],
            k[0] * y[0] - k[2] * y[1] * y[2] - k[1] * y[1] ** 2,
            k[1] * y[1] ** 2,
        ]
    )


SOLVES = {  # (func, y0, t, args): the forms a user reaches, each stiff enough to need J
    "Robertson, rates in args": (
        _robertson, onp.array([1.0, 0.0, 0.0]), onp.array([0.0, 1.0, 40.0]),
        (onp.array([0.04, 3e7, 1e4]),),
    ),
    "Van der Pol float32": (
        lambda y, t, eps: vdp(y, t, eps), onp.array([2.0, 0.0], onp.float32),
        onp.array([0.0, 0.3, 0.5]), (1e-3,),
    ),
    "non-autonomous, an int arg": (
        lambda y, t, n: -50.0 * (y**3 - np.cos(n * t)), onp.array([0.5, -1.5]),
        onp.linspace(0.0, 1.0, 4), (2,),
    ),
    "a dict state": (
        lambda y, t: {"u": -100.0 * y["u"] + y["v"], "v": -y["v"] * np.sin(t)},
        {"u": onp.array([1.0, 2.0]), "v": onp.array(0.5)}, onp.array([0.0, 0.5, 1.0]), (),
    ),
    "a mask read in f": (
        lambda y, t: np.where(y > 0.2, -80.0 * y, -2.0 * y) + 0.1 * t,
        onp.array([1.0, 0.3]), onp.array([0.0, 0.2, 0.6]), (),
    ),
}  # fmt: skip


@pytest.mark.parametrize("method", ["rodas4", "kvaerno5"])
@pytest.mark.parametrize("name", list(SOLVES))
def test_solves_are_the_same_with_jacobians_traced_afresh(name, method, monkeypatch):
    """The Jacobians of a solve replay f's recording; with every Jacobian traced afresh
    instead (no replay), each solve takes the same steps to the same numbers, bit for bit."""
    from tinyode.implicit import _FlatState

    func, y0, t, args = SOLVES[name]

    def solve():
        return tinyode.odeint(
            func, y0, t, *args, method=method, rtol=1e-6, atol=1e-9, full_output=True
        )

    ys, info = solve()
    monkeypatch.setattr(_FlatState, "replay", lambda self, f: None)
    ys_fresh, info_fresh = solve()
    for a, b in zip(tinyad.tree_flatten(ys)[0], tinyad.tree_flatten(ys_fresh)[0]):
        onp.testing.assert_array_equal(a, b)
    assert info["njev"] == info_fresh["njev"] > 1
    assert info["n_steps"] == info_fresh["n_steps"]
    # a replayed Jacobian calls nothing: f is called njev - 1 times fewer, unless f reads a value
    saved = info_fresh["nfe"] - info["nfe"]
    assert saved == (0 if name == "a mask read in f" else info["njev"] - 1)


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint"])
def test_kvaerno5_second_derivatives_through_its_newton_steps(gradient):
    """A gradient of a gradient through kvaerno5's stages: one Newton step from the raw
    solution gives the first derivative only (the second came out 4.5% off, silently); k
    nested tapes take k steps with M on the tape. Against dopri5 at the same tolerance and
    central differences of the first derivative."""

    def f(y, t, k):
        return np.stack([-k * y[0] * y[1], k * y[0] - 0.5 * y[1] ** 2])

    y0, T = onp.array([1.0, 0.5]), onp.linspace(0.0, 1.0, 4)

    def loss(k, method, gradient):
        ys = tinyode.odeint(f, y0, T, k, method=method, rtol=1e-10, atol=1e-12, gradient=gradient)
        return np.sum(ys**2)

    d1 = tinyad.grad(lambda k: loss(k, "kvaerno5", gradient))
    d2 = float(tinyad.grad(d1)(1.3))
    reference = float(tinyad.grad(tinyad.grad(lambda k: loss(k, "dopri5", "backprop")))(1.3))
    central = (d1(1.3 + 1e-4) - d1(1.3 - 1e-4)) / 2e-4
    assert d2 == pytest.approx(reference, rel=1e-5)
    assert d2 == pytest.approx(central, rel=1e-4)
