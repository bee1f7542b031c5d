"""Implicit methods for stiff problems: "rodas4" (Rosenbrock) and "kvaerno5" (ESDIRK).

An explicit method's step is bounded by its stability region: on y' = λy it must keep
hλ inside a disc of radius ~3, however smooth y is. Stiff problems (chemical kinetics,
Van der Pol at small ε) have eigenvalues λ of ∂f/∂y far out on the negative real axis,
so an explicit method crawls. Both methods here are L-stable: their stability function
R(hλ) tends to 0 as hλ → −∞, and the step is set by accuracy alone.

Both need J = ∂f/∂y. tinyad builds it exactly from one recorded call of f: J's row i is
the vjp of f with the cotangent e_i (n reverse passes over one tape, `jacobian_at`).
Finite differences are never used.

- rodas4: Hairer & Wanner's RODAS (Solving ODEs II, IV.7; rodas.f, METH=1), a Rosenbrock
  method of order 4 with an order-3 estimate. Linearly implicit: each of its 6 stages is
  one linear solve with M = I/(hγ) − J, so one Jacobian (with ∂f/∂t) and one
  factorization of M per step, and no Newton iteration. It needs the exact J (it is not a
  W-method), which is why it suits an autodiff library.
- kvaerno5: Kværnø's ESDIRK 5(4) (BIT 44, 2004): 7 stages, the first explicit, each
  other one an implicit equation z_i = h f(Y_i), Y_i = y_n + Σ_{j<i} a_ij z_j + γ z_i,
  solved by a simplified Newton iteration with M = I − hγJ. J and the factorization are
  kept while Newton converges fast and refreshed when it slows; a diverging Newton
  rejects the step and halves it (Hairer & Wanner IV.8).

The step code is written with tinyad.numpy operations, so it runs on traced values too
(gradient="backprop" and "checkpoint" differentiate through the stages and the linear
solves). On raw arrays M is factored once per step with `numpy.linalg.inv` (LAPACK's
LU, getrf, then getri; numpy exposes no lu_factor and scipy is not a dependency), and
each solve is a matrix-vector product plus one step of iterative refinement against M,
which makes it as accurate as a backward-stable LU solve (Skeel 1980; Higham, Accuracy
and Stability of Numerical Algorithms, 2002, §12.2). On traced M (rodas4's J depends on
y) each solve is `tinyad.numpy.linalg.solve`, whose vjp differentiates it; `nlu` counts
the factorizations actually made.
"""

import math
from typing import NamedTuple

import numpy

import tinyad
import tinyad.numpy as np
from tinyad import getval, isbox
from tinyad.backend import array_module
from tinyad.tree import tree_flatten, tree_unflatten

from .errors import SolverError

# --------------------------------------------------------------------------------------
# The coefficients, as data
# --------------------------------------------------------------------------------------


class RosenbrockTableau(NamedTuple):
    """A Rosenbrock method in Hairer & Wanner's transformed form (II, IV.7, (7.25)).

    With u_i the stage unknowns and M = I/(hγ) − J:

        M u_i = f(t + c_i h, y + Σ_{j<i} a_ij u_j) + Σ_{j<i} (C_ij / h) u_j + h d_i ∂f/∂t
        y_{n+1} = y + Σ m_i u_i,       err = Σ (m_i − m̂_i) u_i

    and the dense output y(t + θh) = (1−θ) y + θ (y_{n+1} + (1−θ)(w_2 + θ w_3)),
    w_k = Σ dense[k−2][i] u_i. In the standard form k_i = h f(y + Σ α_ij k_j) + hJ Σ γ_ij k_j
    (the one the order conditions are written in) Γ = (diag(1/γ) − C)⁻¹, α = A Γ, b = m Γ.
    """

    name: str
    order: int
    error_order: int
    dense_order: int
    gamma: float
    c: tuple  # (s,) nodes: stage i is evaluated at t + c_i h
    d: tuple  # (s,) γ_i = Σ_j γ_ij, the weights of h ∂f/∂t
    a: tuple  # s rows, row i has i entries
    C: tuple  # s rows, row i has i entries
    m: tuple  # (s,) weights of y_{n+1}
    m_hat: tuple  # (s,) weights of the embedded order-3 solution
    dense: tuple  # 2 rows of s weights: w_2 and w_3 of the dense output


class ESDIRKTableau(NamedTuple):
    """A singly diagonally implicit Runge–Kutta method with an explicit first stage.

    Stage i ≥ 1 solves z_i = h f(t + c_i h, y + Σ_{j<i} a[i][j] z_j + γ z_i) (z_0 = h f(y));
    y_{n+1} = y + Σ b_i z_i and err = Σ b_err_i z_i. `predictor` row i gives Newton's
    first guess for z_i as Σ_j predictor[i][j] z_j (OrdinaryDiffEq.jl's).
    """

    name: str
    order: int
    error_order: int
    gamma: float
    c: tuple
    a: tuple  # row i holds a_ij for j < i; the diagonal a_ii = γ (i ≥ 1) is not stored
    b: tuple
    b_err: tuple
    predictor: tuple


_A5 = (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950)

# Hairer & Wanner, Solving ODEs II, IV.7; the coefficients of rodas.f (ROCOE, METH=1).
RODAS4 = RosenbrockTableau(
    name="rodas4",
    order=4,
    error_order=3,
    dense_order=3,
    gamma=0.25,
    c=(0.0, 0.386, 0.21, 0.63, 1.0, 1.0),
    d=(0.25, -0.1043, 0.1035, -0.3620000000000023e-1, 0.0, 0.0),
    a=(
        (),
        (1.544,),
        (0.9466785280815826, 0.2557011698983284),
        (3.314825187068521, 2.896124015972201, 0.9986419139977817),
        _A5,
        (*_A5, 1.0),  # stiffly accurate: stage 6 is evaluated at the embedded solution
    ),
    C=(
        (),
        (-5.6688,),
        (-2.430093356833875, -0.2063599157091915),
        (-0.1073529058151375, -9.594562251023355, -20.47028614809616),
        (7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160),
        (
            8.083246795921522,
            -7.981132988064893,
            -31.52159432874371,
            16.31930543123136,
            -6.058818238834054,
        ),
    ),
    m=(*_A5, 1.0, 1.0),
    m_hat=(*_A5, 1.0, 0.0),
    dense=(
        (
            10.12623508344586,
            -7.487995877610167,
            -34.80091861555747,
            -7.992771707568823,
            1.025137723295662,
            0.0,
        ),
        (
            -0.6762803392801253,
            6.087714651680015,
            16.43084320892478,
            24.76722511418386,
            -6.594389125716872,
            0.0,
        ),
    ),
)

# Kværnø, "Singly diagonally implicit Runge–Kutta methods with an explicit first stage",
# BIT 44 (2004) 489–502, the 5(4) pair; the digits as in diffrax's kvaerno5.py and
# OrdinaryDiffEq.jl. Stiffly accurate: b is the last row (y_{n+1} = Y_7).
_G = 0.26
_A6 = (0.13855640231268224, 0.0, -0.04245337201752043, 0.02446657898003141, 0.61943039072480676)
_A7 = (
    0.13659751177640291,
    0.0,
    -0.05496908796538376,
    -0.04118626728321046,
    0.62993304899016403,
    0.06962479448202728,
)
KVAERNO5 = ESDIRKTableau(
    name="kvaerno5",
    order=5,
    error_order=4,
    gamma=_G,
    c=(0.0, 0.52, 1.230333209967908, 0.8957659843500759, 0.43639360985864756, 1.0, 1.0),
    a=(
        (),
        (_G,),
        (0.13, 0.84033320996790809),
        (0.22371961478320505, 0.47675532319799699, -0.06470895363112615),
        (0.16648564323248321, 0.10450018841591720, 0.03631482272098715, -0.13090704451073998),
        _A6,
        _A7,
    ),
    b=(*_A7, _G),
    # b − b̂, with the embedded solution b̂ = (row 6 of the stage matrix, γ on its diagonal, 0)
    b_err=(*(x - y for x, y in zip(_A7, _A6)), _A7[5] - _G, _G),
    predictor=(
        (),
        (1.0,),
        (-1.366025403784441, 2.3660254037844357),
        (-0.19650552613122207, 0.8113579546496623, 0.38514757148155954),
        (0.10375304369958693, 0.937994698066431, -0.04174774176601781, 0.0),
        (-0.17281112873898072, 0.6235784481025847, 0.5492326806363959, 0.0, 0.0),
        (*_A6, _G),
    ),
)

IMPLICIT_TABLEAUS = {t.name: t for t in (RODAS4, KVAERNO5)}


# --------------------------------------------------------------------------------------
# Jacobians and linear solves
# --------------------------------------------------------------------------------------


class Counts:
    """What an implicit solve costs: calls of func (Jacobians included), Jacobians, LUs."""

    def __init__(self):
        self.nfe = 0
        self.njev = 0
        self.nlu = 0
        self.newton_failures = 0


def _raw_args(args):
    """args with every traced leaf replaced by its value (for a Jacobian kept out of the tape)."""
    leaves, treedef = tree_flatten(args)
    if not any(map(isbox, leaves)):
        return args
    return tree_unflatten(treedef, [getval(x) for x in leaves])


def jacobian_at(f, y, t, counts):
    """(f(y, t), ∂f/∂y, ∂f/∂t) at a flat y, exactly: one recorded call of f, n reverse passes.

    Row i of ∂f/∂y and entry i of ∂f/∂t are the cotangent e_iᵀ pulled back through the
    tape, so f itself runs once (counted in nfe). Forward mode (tinyad.jvp, one column
    per call) records f n times and passes over each tape twice: measured for n = 2, 8,
    32 (tanh(W y) sin t − y³), 0.15, 0.40, 1.2 ms by rows against 0.39, 1.9, 7.6 ms by
    columns. Traced y and t (backprop) give a traced J, so the step's derivative
    includes how J moves with y.
    """
    counts.nfe += 1
    counts.njev += 1
    value, pull = tinyad.vjp(f, y, t)
    n = int(np.size(value))
    yv = getval(y)
    eye = array_module(yv).eye(n, dtype=yv.dtype)
    rows = [pull(eye[i]) for i in range(n)]
    J = np.stack([r[0] for r in rows])
    ft = np.reshape(np.stack([r[1] for r in rows]), (n,)).astype(yv.dtype)
    return value, J, ft


class Factored:
    """A matrix M, factored once, for the solves M⁻¹ b of one step (see the module docstring)."""

    def __init__(self, M, counts):
        self.M = M
        counts.nlu += 0 if isbox(M) else 1
        self.inverse = None if isbox(M) else np.linalg.inv(M)
        self.counts = counts

    def solve(self, b):
        if self.inverse is None:  # traced M: differentiated by solve's vjp (one LU each)
            self.counts.nlu += 1
            return np.linalg.solve(self.M, b)
        x = self.inverse @ b
        return x + self.inverse @ (b - self.M @ x)  # one step of iterative refinement


def _weighted(coeffs, vectors):
    """Σ coeffs[j] vectors[j] over the nonzero coefficients; None when there are none."""
    acc = None
    for c, v in zip(coeffs, vectors):
        if c != 0.0:
            acc = c * v if acc is None else acc + c * v
    return acc


def _plus(y, dy):
    return y if dy is None else y + dy


def scaled_rms(x, scale):
    """RMS of x / scale as a host float: the one synchronisation of a decision."""
    x = getval(x) / getval(scale)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


# --------------------------------------------------------------------------------------
# rodas4
# --------------------------------------------------------------------------------------


class Trial(NamedTuple):
    """One attempted step: its end y1, its error estimate, and what its dense output needs."""

    y1: object
    err: object
    dense: tuple
    f1: object = None  # f(y1) when the method has it for free (kvaerno5), else None


class Rodas4:
    """Steps of RODAS on a flat state: `begin` at each new (t, y), then `attempt` per h."""

    tab = RODAS4
    fsal = False

    def __init__(self, f, counts):
        self.f, self.counts = f, counts

    def begin(self, t, y, f0=None):
        """J, ∂f/∂t and f(y, t) at the step's start: one Jacobian, reused by rejected tries."""
        self.point = (t, y, *jacobian_at(self.f, y, t, self.counts))
        return self.point[2]

    def attempt(self, t, y, h, f0=None):
        """One step of size h from the point `begin` was called at; never fails (f0 unused)."""
        tab, counts = self.tab, self.counts
        _, _, f0, J, ft = self.point
        n = J.shape[0]
        eye = array_module(getval(J)).eye(n, dtype=getval(J).dtype)
        M = Factored(eye / (h * tab.gamma) - J, counts)
        u = []
        for i in range(len(tab.c)):
            if i == 0:
                fi = f0
            else:
                counts.nfe += 1
                fi = self.f(_plus(y, _weighted(tab.a[i], u)), t + tab.c[i] * h)
            rhs = _plus(fi, _weighted([cij / h for cij in tab.C[i]], u))
            if tab.d[i] != 0.0:
                rhs = rhs + (h * tab.d[i]) * ft
            u.append(M.solve(rhs))
        y1 = y + _weighted(tab.m, u)
        err = _weighted([a - b for a, b in zip(tab.m, tab.m_hat)], u)
        return Trial(y1, err, (_weighted(tab.dense[0], u), _weighted(tab.dense[1], u)))

    @staticmethod
    def dense(y, trial, h, theta):
        """rodas.f's CONTRO: (1−θ) y + θ (y1 + (1−θ)(w_2 + θ w_3)), order 3."""
        w2, w3 = trial.dense
        return (1 - theta) * y + theta * (trial.y1 + (1 - theta) * (w2 + theta * w3))


# --------------------------------------------------------------------------------------
# kvaerno5
# --------------------------------------------------------------------------------------


class Kvaerno5:
    """Steps of Kværnø's ESDIRK 5(4) on a flat state, with a simplified Newton iteration.

    Hairer & Wanner II, IV.8: for each implicit stage, Δz = M⁻¹(h f(Y) − z) with the
    iteration matrix M = I − hγJ held fixed. The contraction rate θ_k = ‖Δz_k‖/‖Δz_{k−1}‖
    predicts the remaining error as θ/(1−θ)‖Δz_k‖ (their (8.10)); Newton stops when that
    is below KAPPA (in units of the tolerances), and gives up (the step is rejected) when
    θ ≥ 1 or when θ^(MAX_ITER−k)/(1−θ)‖Δz_k‖ says it cannot get there within MAX_ITER.

    J is kept from step to step, and M's factorization while h is unchanged. J is
    recomputed at the next step's start after a step whose Newton needed more than two
    iterations at a rate above 1e-3 (as scipy's Radau does), and at once after a failure
    with an old J. J never depends on traced values: the converged stages do not depend
    on M, only the speed of getting there does.
    """

    tab = KVAERNO5
    fsal = True
    KAPPA = 0.03
    MAX_ITER = 10

    def __init__(self, f, counts, scale):
        self.f, self.counts, self.scale = f, counts, scale
        self.J = None  # raw ∂f/∂y, from some step's start
        self.J_current = False  # J was evaluated at the current step's start
        self.refresh = True  # evaluate J at the next step's start
        self.M = None  # the factorization of I − hγJ, and the h it was made for
        self.M_h = None
        self.eta = 1.0  # Hairer's η, carried from stage to stage

    def begin(self, t, y, f0):
        """Take a new J at (t, y) if the last step asked for one; f0 = f(y, t) is given."""
        self.J_current = False
        if self.refresh:
            self._new_jacobian(t, y)
        return f0

    def _new_jacobian(self, t, y):
        # Raw values only (see the class docstring): its call of f is counted, its value unused.
        _, self.J, _ = jacobian_at(self.f, getval(y), getval(t), self.counts)
        self.J_current, self.refresh, self.M = True, False, None

    def after_failure(self, t, y):
        """Newton failed: refresh an old J now (the caller halves h)."""
        self.counts.newton_failures += 1
        if not self.J_current:
            self._new_jacobian(t, y)

    def keeps_factorization(self, h_new, h):
        """RADAU5's rule: a step ratio in [1, 1.2] keeps h (and M's factorization) unchanged."""
        return self.M is not None and 1.0 <= h_new / h <= 1.2

    def _matrix(self, h):
        if self.M is None or self.M_h != h:
            n = self.J.shape[0]
            eye = array_module(self.J).eye(n, dtype=self.J.dtype)
            self.M, self.M_h = Factored(eye - (h * self.tab.gamma) * self.J, self.counts), h
        return self.M

    def attempt(self, t, y, h, f0):
        """One step of size h; None if Newton failed to converge in some stage."""
        tab, counts = self.tab, self.counts
        M = self._matrix(h)
        scale = self.scale(y)
        z = [h * f0]
        slow = False
        for i in range(1, len(tab.c)):
            base = _plus(y, _weighted(tab.a[i], z))
            zi = _weighted(tab.predictor[i], z)
            ti = t + tab.c[i] * h
            previous = None
            for k in range(self.MAX_ITER):
                counts.nfe += 1
                dz = M.solve(h * self.f(base + tab.gamma * zi, ti) - zi)
                zi = zi + dz
                size = scaled_rms(dz, scale)
                if not math.isfinite(size):
                    return None
                if previous is None:
                    # Hairer's η from the last stage: one iteration may suffice when it was fast
                    self.eta = max(self.eta, numpy.finfo(float).eps) ** 0.8
                else:
                    rate = size / previous if previous > 0 else 0.0
                    if rate >= 1.0 or size * rate ** (self.MAX_ITER - 1 - k) / (1 - rate) > (
                        self.KAPPA
                    ):
                        return None  # diverging, or too slow to converge in MAX_ITER
                    slow = slow or (k >= 2 and rate > 1e-3)
                    self.eta = rate / (1 - rate)
                if self.eta * size <= self.KAPPA or size == 0.0:
                    break
                previous = size
            else:
                return None
            z.append(zi)
        self.refresh = slow
        y1 = base + tab.gamma * zi  # stiffly accurate: y_{n+1} = Y_7
        # Hairer & Wanner IV.8 (8.20): the estimate filtered by M⁻¹, so that stiff components
        # (where the raw estimate is O(1) while y is accurate) do not reject every step.
        err = M.solve(_weighted(tab.b_err, z))
        return Trial(y1, err, (f0, zi / h), f1=zi / h)

    @staticmethod
    def dense(y, trial, h, theta):
        """The cubic Hermite interpolant through (y, f0) and (y1, f1), order 3."""
        f0, f1 = trial.dense
        t2, t3 = theta * theta, theta * theta * theta
        return (
            (2 * t3 - 3 * t2 + 1) * y
            + (t3 - 2 * t2 + theta) * (h * f0)
            + (3 * t2 - 2 * t3) * trial.y1
            + (t3 - t2) * (h * f1)
        )


# --------------------------------------------------------------------------------------
# A driver for the two methods (used until they join tinyode's solver loop)
# --------------------------------------------------------------------------------------


def _flat_func(func, shape, args):
    """func on a flat state: the linear algebra is on vectors."""

    def f(z, t):
        return np.reshape(func(np.reshape(z, shape), t, *args), (-1,))

    return f


def solve_implicit(
    func,
    y0,
    ts,
    args=(),
    *,
    method,
    rtol=1e-7,
    atol=1e-9,
    first_step=None,
    max_steps=100_000,
    max_step=None,
):
    """Solve y' = func(y, t, *args) with an implicit method; returns (ys, info).

    ys[i] approximates y(ts[i]) (the dense output between steps); info holds nfe,
    njev, nlu, n_steps, n_rejected, newton_failures and the accepted step sizes.
    """
    if method not in IMPLICIT_TABLEAUS:
        raise ValueError(f"unknown implicit method {method!r}; choose rodas4 or kvaerno5")
    counts = Counts()
    shape = np.shape(y0)
    f = _flat_func(func, shape, args)
    y = np.reshape(y0, (-1,))
    t_raw = [float(v) for v in getval(ts).tolist()]
    t0, t_end = t_raw[0], t_raw[-1]
    direction = 1.0 if t_end >= t0 else -1.0
    tab = IMPLICIT_TABLEAUS[method]

    def scale(y):
        return atol + rtol * np.abs(getval(y))

    stepper = Rodas4(f, counts) if method == "rodas4" else Kvaerno5(f, counts, scale)
    ys = [y]
    tn, i_out = t0, 1
    f0 = None
    if stepper.fsal:
        counts.nfe += 1
        f0 = f(y, t0)
    h = None if first_step is None else abs(first_step)
    exponent = 1.0 / (tab.error_order + 1)
    n_steps = n_rejected = 0
    step_sizes = []
    h_acc = err_acc = None  # Gustafsson's predictive controller (HW IV.8 (8.21))
    rejected_last = False
    while i_out < len(t_raw):
        if n_steps + n_rejected >= max_steps:
            raise SolverError(
                f"max_steps={max_steps} exceeded at t={tn:.6g} after {n_steps} accepted steps"
            )
        f0 = stepper.begin(tn, y, f0)
        if h is None:
            h = _initial_step(y, f0, rtol, atol)
        if max_step is not None:
            h = min(h, max_step)
        while True:  # tries from (tn, y) until one is accepted
            if h < 16 * math.ulp(max(abs(tn), 1.0)):
                raise SolverError(f"step size underflow at t={tn:.6g} after {n_steps} steps")
            last = (tn + direction * h - t_end) * direction >= -1e-12 * max(abs(t_end), 1.0)
            hs = t_end - tn if last else direction * h
            trial = stepper.attempt(tn, y, hs, f0)
            if trial is None:  # Newton diverged: reject, shrink, maybe a new J
                n_rejected += 1
                stepper.after_failure(tn, y)
                h, rejected_last = 0.5 * abs(hs), True
                continue
            ratio = scaled_rms(trial.err, np.maximum(scale(y), scale(trial.y1)))
            if not math.isfinite(ratio):
                ratio = 1e10
            fac = min(6.0, max(0.2, 0.9 * max(ratio, 1e-10) ** -exponent))
            if ratio <= 1.0:
                break
            n_rejected += 1
            h, rejected_last = abs(hs) * min(1.0, fac), True
        if h_acc is not None:
            predictive = (h_acc / abs(hs)) * 0.9 * (err_acc / max(ratio, 1e-10) ** 2) ** exponent
            fac = min(fac, max(0.2, min(6.0, predictive)))
        h_acc, err_acc = abs(hs), max(1e-2, ratio)
        while i_out < len(t_raw) - last and (t_raw[i_out] - (tn + hs)) * direction <= 0:
            ys.append(stepper.dense(y, trial, hs, (t_raw[i_out] - tn) / hs))
            i_out += 1
        if last:
            ys.append(trial.y1)
            i_out = len(t_raw)
        n_steps += 1
        step_sizes.append(abs(hs))
        tn = t_end if last else tn + hs
        y, f0 = trial.y1, trial.f1
        h_new = abs(hs) * (min(1.0, fac) if rejected_last else fac)
        if stepper.fsal and stepper.keeps_factorization(h_new, abs(hs)):
            h_new = abs(hs)
        h, rejected_last = h_new, False
    info = {
        "nfe": counts.nfe,
        "njev": counts.njev,
        "nlu": counts.nlu,
        "n_steps": n_steps,
        "n_rejected": n_rejected,
        "newton_failures": counts.newton_failures,
        "step_sizes": numpy.asarray(step_sizes),
    }
    return np.stack([np.reshape(v, shape) for v in ys]), info


def _initial_step(y, f0, rtol, atol):
    """A first step with ‖h f0‖ ≈ 0.01 in units of the tolerances (Hairer & Wanner I, II.4)."""
    scale = atol + rtol * np.abs(getval(y))
    d0, d1 = scaled_rms(y, scale), scaled_rms(f0, scale)
    # The step controller grows h up to 6× a step, so a small start costs a few steps only.
    return 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
