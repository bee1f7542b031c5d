"""Implicit methods for stiff problems: "rodas4" (Rosenbrock) and "kvaerno5" (ESDIRK).

An explicit method's step is bounded by its stability region: on y' = λy it must keep
hλ inside a disc of radius ~3, however smooth y is. Stiff problems (chemical kinetics,
Van der Pol at small ε) have eigenvalues λ of ∂f/∂y far out on the negative real axis,
so an explicit method crawls. Both methods here are L-stable: their stability function
R(hλ) tends to 0 as hλ → −∞, and the step is set by accuracy alone.

Both need J = ∂f/∂y. tinyad builds it exactly from one recorded call of f: J's row i is
the vjp of f with the cotangent e_i (n reverse passes over one tape, `jacobian_at`).
The recording is made once per solve and replayed for the next Jacobians, where f read no
value to choose what to compute (`_FlatState.replay`). Finite differences are never used.

- rodas4: Hairer & Wanner's RODAS (Solving ODEs II, IV.7; rodas.f, METH=1), a Rosenbrock
  method of order 4 with an order-3 estimate. Linearly implicit: each of its 6 stages is
  one linear solve with M = I/(hγ) − J, so one Jacobian (with ∂f/∂t) and one
  factorization of M per step, and no Newton iteration. It needs the exact J (it is not a
  W-method), which is why it suits an autodiff library.
- kvaerno5: Kværnø's ESDIRK 5(4) (BIT 44, 2004): 7 stages, the first explicit, each
  other one an implicit equation z_i = h f(Y_i), Y_i = y_n + Σ_{j<i} a_ij z_j + γ z_i,
  solved by a simplified Newton iteration with M = I − hγJ. J is kept from step to step
  while Newton converges fast and refreshed when it slows, M is factored once per step
  size; a diverging Newton rejects the step (an infinite error ratio: the loop shrinks h
  and a stale J is replaced) (Hairer & Wanner IV.8).

Both are step objects of the solver loop (tinyode/solver.py, STEPPERS); the part of the
state that does not feed back into f (the adjoint's dL/dθ, `block`) is a quadrature and
needs no Jacobian.

The step code is written with tinyad.numpy operations, so it runs on traced values too
(gradient="backprop" and "checkpoint" differentiate through the stages and the linear
solves). On raw arrays M is factored once per trial step with `numpy.linalg.inv` (LAPACK's
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
from tinyad.replay import Replay
from tinyad.tree import tree_flatten, tree_unflatten

from .errors import SolverError
from .solver import STEPPERS, Dynamics
from .stages import stages

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
    first guess for z_i as Σ_j predictor[i][j] z_j: the slopes so far, interpolated at c_i.
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
    # Rows 1–5 as OrdinaryDiffEq.jl's (Lagrange through z_0 … z_2 at c_i). Row 6 is z_5:
    # stages 5 and 6 are both at c = 1 and Y_6 − Y_5 is the error estimate, so z_5 is
    # within hJ·err of z_6, where OrdinaryDiffEq's guess Ŷ − y (an increment, not a slope)
    # started Newton 10⁵ tolerances away on HIRES: 3.7 iterations for stage 6, now 1.5.
    predictor=(
        (),
        (1.0,),
        (-1.366025403784441, 2.3660254037844357),
        (-0.19650552613122207, 0.8113579546496623, 0.38514757148155954),
        (0.10375304369958693, 0.937994698066431, -0.04174774176601781, 0.0),
        (-0.17281112873898072, 0.6235784481025847, 0.5492326806363959, 0.0, 0.0),
        (0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
    ),
)

IMPLICIT_TABLEAUS = {t.name: t for t in (RODAS4, KVAERNO5)}


# --------------------------------------------------------------------------------------
# Jacobians and linear solves
# --------------------------------------------------------------------------------------


def jacobian_at(f, y, s, part, stats, replay=None):
    """(f(y, s), J, f_s) at a flat y: J = ∂f_b/∂y_b and f_s = ∂f_b/∂s for the part
    b = y[part] (a slice) that feeds back into f, exactly, from one recorded call of f.
    `replay`: a `tinyad.replay.Replay` of f, to replay f's recording instead of tracing
    it again (see `_FlatState.replay`).

    Row i of J and entry i of f_s are the cotangent e_iᵀ pulled back through the tape
    (one reverse pass per row), so f itself runs once. Forward mode (tinyad.jvp, one column
    per call) records f n times and passes over each tape twice: measured for n = 2, 8,
    32 (tanh(W y) sin t − y³), 0.15, 0.40, 1.2 ms by rows against 0.39, 1.9, 7.6 ms by
    columns. Traced y and s (backprop) give a traced J, so the step's derivative
    includes how J moves with y.
    """
    stats.njev += 1
    yv = getval(y)
    xp = array_module(yv)
    if not isbox(s):  # a host time as a 0-d array of y's dtype (a float would be float64)
        s = xp.asarray(s, dtype=yv.dtype)
    # f's recording compiled (tinyad/replay.py): f run once, the rows pulled by its programs
    pulled = None
    if replay is not None and replay.pullback and not (isbox(y) or isbox(s)):
        pulled = replay.pulls([y, s], xp.eye(yv.size, dtype=yv.dtype)[part])
    if pulled is not None:
        value, rows = pulled
        return value, xp.stack([dy[part] for dy, _ in rows]), xp.stack([ds for _, ds in rows])
    value, pull = tinyad.vjp(f, y, s) if replay is None else replay(y, s)
    eye = xp.eye(int(np.size(value)), dtype=yv.dtype)
    rows = [pull(eye[i]) for i in range(part.start, part.stop)]
    J = np.stack([r[0][part] for r in rows])
    fs = np.stack([_reshape(r[1], ()) for r in rows])
    return value, J, fs


class Factored:
    """A matrix M, factored once, for the solves M⁻¹ b of one step (see the module docstring)."""

    def __init__(self, M, stats):
        self.M, self.stats, self.inverse = M, stats, None
        if not isbox(M):  # LAPACK's getrf (the LU), then getri, in M's own module
            self.inverse = array_module(M).linalg.inv(M)
            stats.nlu += 1

    def solve(self, b, refine=True):
        """M⁻¹ b. `refine=False` inside Newton's iteration, which corrects the residual itself."""
        if self.inverse is None:  # traced M: differentiated by solve's vjp (one LU each)
            self.stats.nlu += 1
            return np.linalg.solve(self.M, b)
        if not refine:  # inside Newton, on raw values: ndarray.dot (matmul's @ costs twice
            return self.inverse.dot(b)  # as much on vectors this small, for the same numbers)
        x = self.inverse @ b
        return x + self.inverse @ (b - self.M @ x)  # one step of iterative refinement


_EPS = float(numpy.finfo(float).eps)  # (numpy.finfo costs microseconds per call)

# Gauss–Legendre's 3 nodes and weights on [0, 1] (order 6): rodas4's quadrature of the part
# of the state that does not feed back (the adjoint's dL/dθ), on the dense output.
_GAUSS = ((0.5 - math.sqrt(15) / 10, 5 / 18), (0.5, 8 / 18), (0.5 + math.sqrt(15) / 10, 5 / 18))


class _FlatState:
    """What both methods share: the state as a flat vector z, f on it, coefficient rows.

    `block` (the solver's, see solver.STEPPERS): the part z_b = z[lo:hi] that feeds back
    into f; the rest, z_q, does not (a quadrature, such as the adjoint's dL/dθ). None, or
    an int n for (0, n), or (lo, hi). Only z_b needs a Jacobian and linear solves.
    """

    def __init__(self, y0, block):
        like = getval(y0)
        self.shape, self.n = like.shape, int(like.size)
        if block is None:
            block = (0, self.n)
        elif isinstance(block, int):
            block = (0, block)
        self.part = slice(int(block[0]), int(block[1]))
        self.whole = self.part.start == 0 and self.part.stop == self.n
        self.xp, self.dtype = array_module(like), like.dtype
        self._replay = None  # (f, a Replay of the flat f): see `replay`

    def replay(self, f):
        """f's vjp on the flat state, traced at the first Jacobian of this solve and
        replayed at the next ones (tinyad/replay.py; traced again where it cannot be).

        A Jacobian is then n pulls of one straight-line program, with no tape to record
        or walk: HIRES's (n = 8) took 3.0 ms traced, 1.3 ms replayed. A replay calls no
        func, so `nfe` (calls of func) does not count it; `njev` does. `f` is the solve's
        Dynamics (or its raw copy), whose func and args are fixed for the solve.
        """
        if self._replay is None or self._replay[0] is not f:
            self._replay = (f, Replay(self.on_flat(f)))
        return self._replay[1]

    def row(self, coeffs):
        """Coefficients as an array of the state's dtype in its module (for `Stages.dot`)."""
        return self.xp.asarray(numpy.asarray(coeffs, dtype=float), dtype=self.dtype)

    def eye(self):
        """The identity on z_b (made once: read-only, shared by every M of the solve)."""
        if self._eye is None:
            self._eye = self.xp.eye(self.part.stop - self.part.start, dtype=self.dtype)
            if isinstance(self._eye, numpy.ndarray):
                self._eye.flags.writeable = False
        return self._eye

    _eye = None

    def flat(self, y):
        return _reshape(y, (-1,))

    def shaped(self, z):
        return _reshape(z, self.shape)

    def on_flat(self, f):
        """f on the flat state (f itself for a 1-D state, which is flat already)."""
        shape = self.shape
        if len(shape) == 1:
            return f
        return lambda z, s: _reshape(f(_reshape(z, shape), s), (-1,))

    def with_part(self, z, v):
        """The flat z with its part z_b replaced by v."""
        if self.whole:
            return v
        lo, hi = self.part.start, self.part.stop
        return np.concatenate([z[:lo], v, z[hi:]])

    def ratio(self, err, y, y1, rtol, atol, norm):
        """‖err / (atol + rtol·max(|y|, |y1|))‖ of a flat err, as a host float."""
        y, y1 = getval(y), getval(y1)  # raw: its own module's functions, no dispatch
        scale = atol + rtol * self.xp.maximum(abs(y), abs(y1))
        return norm(self.shaped(getval(err)) / scale)


# --------------------------------------------------------------------------------------
# rodas4
# --------------------------------------------------------------------------------------


class RosenbrockStages(NamedTuple):
    """What a rodas4 step leaves for its error ratio and dense output (the K of the loop)."""

    U: object  # the stage unknowns u_i (block part), stacked
    y1: object  # y_{n+1}, block part (flat)
    w2: object  # the dense output's two vectors
    w3: object


class Rodas4Step(_FlatState):
    """rodas4 in the solver loop: one Jacobian per step (its call of f is f(y, s)), one
    factorization of M = I/(hγ) − J per trial, six stages.

    The part z_q that does not feed back (see `block`) is a quadrature: integrated by
    Gauss–Legendre's 3 nodes on the dense output of z_b, so that only z_b's Jacobian is
    needed; order 4 as the method's (the dense output is of order 3, the rule of 6). Its
    error is not estimated: it follows z_b's, which is.
    """

    tab = RODAS4
    exponent = 1.0 / (RODAS4.error_order + 1)

    def __init__(self, y0, block=None):
        super().__init__(y0, block)
        tab = self.tab
        self.a = [self.row(r) for r in tab.a]
        self.C = [self.row(r) for r in tab.C]
        self.m = self.row(tab.m)
        self.e = self.row([x - y for x, y in zip(tab.m, tab.m_hat)])
        self.dense_rows = [self.row(r[:5]) for r in tab.dense]
        self.point = None  # (y, s, f(y, s), J, ∂f/∂s): where the Jacobian was taken

    def _start(self, f, s, y):
        """f(y, s), J and ∂f/∂s, computed once for all trials from (s, y)."""
        p = self.point
        if p is None or p[0] is not y or p[1] != float(getval(s)):
            f0, J, fs = jacobian_at(
                self.on_flat(f), self.flat(y), s, self.part, f.stats, self.replay(f)
            )
            self.point = (y, float(getval(s)), f0, J, fs)
        return self.point[2:]

    def step(self, f, s, y, h, k0):
        """(y1, K) from (s, y) with step h; k0 is not needed (f(y, s) comes with J)."""
        tab, part = self.tab, self.part
        f0, J, fs = self._start(f, s, y)
        F, z = self.on_flat(f), self.flat(y)
        M = Factored(self.eye() / (h * tab.gamma) - J, f.stats)
        U = None
        for i in range(len(tab.c)):
            if i == 0:
                rhs = f0[part] + (h * tab.d[0]) * fs
            else:
                fi = F(self.with_part(z, z[part] + U.dot(self.a[i])), s + tab.c[i] * h)
                rhs = fi[part] + U.dot(self.C[i]) / h
                if tab.d[i] != 0.0:
                    rhs = rhs + (h * tab.d[i]) * fs
            u = M.solve(rhs)
            if U is None:
                U = stages(u, len(tab.c), s, y, h)
            else:
                U.append(u)
        y1_b = z[part] + U.dot(self.m)
        K = RosenbrockStages(U, y1_b, U.dot(self.dense_rows[0]), U.dot(self.dense_rows[1]))
        return self.shaped(self._dense(F, s, z, h, K, 1.0)), K

    def error_ratio(self, h, K, y, y1, rtol, atol, norm):
        err = K.U.raw_dot(self.e)
        if not self.whole:  # the quadrature's error is not estimated
            err = self.with_part(self.xp.zeros(self.n, dtype=self.dtype), err)
        return self.ratio(err, y, y1, rtol, atol, norm)

    def next_slope(self, f, s1, y1, K):
        """f(y1, s1), from the next step's Jacobian (taken here, once)."""
        return self.shaped(self._start(f, s1, y1)[0])

    def _dense(self, F, s, z, h, K, theta):
        """The flat state at s + θh: z_b by rodas.f's CONTRO, (1−θ) y + θ (y1 + (1−θ)(w2 +
        θ w3)) (order 3); z_q + ∫ f_q over [s, s + θh] on it (f_q does not read z_q)."""
        y_b = (1 - theta) * z[self.part] + theta * (K.y1 + (1 - theta) * (K.w2 + theta * K.w3))
        if self.whole:
            return y_b
        total = None
        for x, w in _GAUSS:
            y_bx = (1 - theta * x) * z[self.part] + (theta * x) * (
                K.y1 + (1 - theta * x) * (K.w2 + (theta * x) * K.w3)
            )
            term = w * F(self.with_part(z, y_bx), s + (theta * x) * h)
            total = term if total is None else total + term
        return self.with_part(z + (theta * h) * total, y_b)

    def interpolate(self, f, s, y, h, K, theta):
        return self.shaped(self._dense(self.on_flat(f), s, self.flat(y), h, K, theta))


# --------------------------------------------------------------------------------------
# kvaerno5
# --------------------------------------------------------------------------------------


class ESDIRKStages(NamedTuple):
    """What a kvaerno5 step leaves for the loop: its stages z_i (flat), the slopes at
    both ends (for the dense output), and whether Newton failed."""

    Z: object
    y1: object
    f0: object
    f1: object
    failed: bool = False


class Kvaerno5Step(_FlatState):
    """Kværnø's ESDIRK 5(4) in the solver loop, with a simplified Newton iteration.

    Hairer & Wanner II, IV.8: for each implicit stage, Δz = M⁻¹(h f(Y) − z) with the
    iteration matrix M = I − hγJ held fixed. The contraction rate θ_k = ‖Δz_k‖/‖Δz_{k−1}‖
    predicts the remaining error as θ/(1−θ)‖Δz_k‖ (their (8.10)); Newton stops when that
    is below KAPPA (in units of the tolerances), and gives up when θ ≥ 1 or when
    θ^(MAX_ITER−k)/(1−θ)‖Δz_k‖ says it cannot get there within MAX_ITER iterations: the
    error ratio is then infinite, so the loop rejects the step and shrinks it.

    J is kept from step to step (one Jacobian costs a reverse pass per row); M is
    factored again whenever h changes. RADAU5 keeps M for step ratios in [1, 1.2] by
    holding h, which the loop's controller decides here; using an M made for another h
    let Newton stop early on the rate carried over from the last stage, and the error
    estimate (which sees Newton's error) jumped 100-fold at a 20 % larger step. J is
    recomputed at the next step after a step whose Newton needed more than two iterations
    at a rate above SLOW_RATE, when the state has moved far from where J was taken (MOVED),
    and at once when Newton fails with an old J. J is taken on
    raw values even when y is traced: the converged stages do not depend on M, only the
    speed of getting there does (see `_differentiable`).

    The Newton tolerances are those the loop last passed to `error_ratio` (before the
    first one, rtol 1e-10 and atol 1e-12: a first trial iterated a little further).
    The part z_q that does not feed back (block < n) needs no iteration: its stages are
    z_q,i = h f_q(Y_i), read off the same evaluations of f (see `_sizes`).
    """

    tab = KVAERNO5
    exponent = 1.0 / (KVAERNO5.error_order + 1)
    # Hairer & Wanner advise κ between 0.1 and 0.01; 0.1 took a quarter fewer evaluations
    # than 0.03 on tests/bench/b8_stiff.py at the same steps and errors.
    KAPPA = 0.1
    MAX_ITER = 10
    EXTEND = 2.5  # `_guess` extends the last step's interpolant to at most θ = 2.5
    # A stage whose measured rate (from its third iteration on) exceeds SLOW_RATE asks for
    # a new J (RADAU5: 1e-3 after any iteration; HIRES at rtol 1e-8 then takes 183 J, not 73).
    SLOW_ITER, SLOW_RATE = 2, 0.05
    # So does a state in which some component moved by more than MOVED of its size since J
    # was taken. A J from Van der Pol's jump (y' = -3684) kept for the slow branch after it
    # (y' ≈ 7e-5) made M⁻¹ so small along y that Newton's steps, not its errors, shrank: the
    # stages stopped 900 tolerances from the solution, and 13 of 20 solves (mu = 300 … 1e4,
    # rtol 1e-3 … 1e-5, T = 3 mu) ended 100 to 90,000 tolerances off, without an error.
    MOVED = 0.5

    def __init__(self, y0, block=None):
        super().__init__(y0, block)
        tab = self.tab
        self.a = [self.row(r) for r in tab.a]
        self.predictor = [self.row(r) for r in tab.predictor]
        self.b, self.b_err = self.row(tab.b), self.row(tab.b_err)
        self.tolerances = (1e-10, 1e-12)
        self.J = None  # raw ∂f_b/∂z_b
        self.J_at = None  # (y, s) where J was taken
        self.refresh = True  # take a new J at the next step
        self.M, self.M_h = None, None  # the factorization of I − hγJ, and its h
        self.eta = 1.0  # Hairer's η, carried from stage to stage
        self.last = None  # (s, h, y, f(y), y1, f(y1)) of the last solve, for `_guess`

    def _jacobian(self, f, s, y):
        F, z = self.on_flat(f), getval(self.flat(y))
        _, J, _ = jacobian_at(F, z, getval(s), self.part, f.stats, self.replay(f))
        self.J, self.J_at = getval(J), (y, float(getval(s)))
        self.refresh, self.M = False, None

    def _moved(self, y):
        """Whether some component of y differs from where J was taken by more than MOVED
        of its size (the larger of the two, or atol)."""
        y, yJ = getval(y), getval(self.J_at[0])  # raw: its own module's functions
        d = abs(y - yJ) / (self.xp.maximum(abs(y), abs(yJ)) + self.tolerances[1])
        return float(d.max()) > self.MOVED

    def _matrix(self, f, h):
        """M = I − hγJ, factored for this h (rejected trials from one start differ in h)."""
        if self.M is None or h != self.M_h:
            self.M = Factored(self.eye() - (h * self.tab.gamma) * self.J, f.stats)
            self.M_h = h
        return self.M

    def step(self, f, s, y, h, k0):
        tab = self.tab
        here = (y, float(getval(s)))
        raw_f = _raw_dynamics(f)
        if self.J is None or self.refresh or self._moved(y):
            self._jacobian(raw_f, s, y)
        h_raw = float(getval(h))
        M = self._matrix(f, h_raw)
        stages_raw = self._newton(self.on_flat(raw_f), float(getval(s)), y, h_raw, k0, M)
        if stages_raw is None and self.replaying:  # an accepted step, replayed: no retry,
            # so no failed step either (its NaN would reach the gradient): this raises instead
            stages_raw = self._newton_exact(raw_f, float(getval(s)), y, h_raw, k0)
        if stages_raw is None:
            return self._failed(y, here, k0)
        if not _traced(f, y, s, h, k0):
            Z = stages_raw
            y1 = self.flat(y) + Z.dot(self.b)  # stiffly accurate: y_{n+1} = Y_7
        else:
            Z, y1 = self._differentiable(f, s, y, h, k0, stages_raw)
        y1 = self.shaped(y1)
        return y1, ESDIRKStages(Z, y1, k0, self.shaped(Z[len(tab.c) - 1] / h))

    def _newton(self, F, s, y, h, k0, M):
        """The stages z_0 … z_6 (flat, raw, stacked) by simplified Newton, or None if it
        failed."""
        tab = self.tab
        rtol, atol = self.tolerances
        y, k0 = getval(y), getval(k0)
        weight = 1 / (atol + rtol * abs(y)).reshape(-1)  # raw: array methods, no dispatch
        z = self.flat(y)
        Z = stages(h * self.flat(k0), len(tab.c), s, y, h)
        slow = False
        for i in range(1, len(tab.c)):
            base = z + Z.dot(self.a[i])
            zi = self._stage(F, base, s + tab.c[i] * h, h, self._guess(i, Z, s, h), M, weight)
            if zi is None:
                return None
            slow = slow or self.slow
            Z.append(zi)
        self.refresh = slow
        self.last = (s, h, z, Z[0] / h, base + tab.gamma * zi, zi / h)
        return Z

    def _stage(self, F, base, ti, h, zi, M, weight):
        """The stage equation z = h f(base + γz, t_i), by simplified Newton from the guess
        zi: its solution, or None where Newton diverges or converges too slowly. Sets
        `slow` where it converged with a rate above SLOW_RATE from iteration SLOW_ITER on."""
        gamma, kappa, part = self.tab.gamma, self.KAPPA, self.part
        previous, self.slow = None, False
        for k in range(self.MAX_ITER):
            # raw even when func closes over traced values: Newton is never differentiated
            r = h * getval(F(base + gamma * zi, ti)) - zi
            dz = self.with_part(r, M.solve(r[part], refine=False))  # rest: z_q,i = h f_q(Y_i)
            zi = zi + dz
            size, lag = self._sizes(dz, weight)
            if not math.isfinite(size + lag):
                return None
            if previous is None:
                # Hairer's η from the last stage: one iteration may suffice when it was fast
                self.eta = max(self.eta, _EPS) ** 0.8
            else:
                rate = size / previous if previous > 0 else 0.0
                left = self.MAX_ITER - 1 - k  # iterations still allowed
                if rate >= 1.0 or size * rate**left / (1 - rate) > kappa:
                    return None  # diverging, or too slow
                self.slow = self.slow or (k >= self.SLOW_ITER and rate > self.SLOW_RATE)
                self.eta = rate / (1 - rate)
            if (self.eta * max(size, lag) <= kappa and (k or self.whole)) or size == lag == 0.0:
                return zi
            previous = size
        return None

    def _sizes(self, dz, weight):
        """Newton's step on z_b and on z_q, in units of the tolerances (0 for z_q if there
        is none). z_q,i = h f_q(Y) is read at the iterate before z_b's last update, so its
        change lags z_b's by one iteration: its error is the next change, about the rate
        times this one, and unknown before iteration 1. Without it, one iteration ended a
        stage 1,700 tolerances of z_q away, and dL/dθ of the adjoint on Robertson at rtol
        1e-6 was 2e-5 off (now 4e-7)."""
        if self.whole:
            return weighted_rms(dz, weight), 0.0
        part = self.part
        size = weighted_rms(dz[part], weight[part])
        lo, hi = part.start, part.stop
        rest = dz[hi:] if lo == 0 else np.concatenate([dz[:lo], dz[hi:]])
        at = weight[hi:] if lo == 0 else np.concatenate([weight[:lo], weight[hi:]])
        return size, weighted_rms(rest, at)

    def _guess(self, i, Z, s, h):
        """Newton's first z_i: the predictor row, except for stages 1 and 2, which lie at
        or beyond the step's end where the predictor extrapolates this step's few slopes.
        Stage 1 (this step has only z_0 = h f(y), a guess off by O(h²)): h times the slope
        at t + c_1 h of the last solve's cubic Hermite interpolant, extended past its end
        (off by O(h³)). Stage 2 (c_2 = 1.23): the slopes at the last solve's start, at t
        and at stage 1, extrapolated by their parabola, where the predictor's line through
        the last two is off by O(h²). HIRES at rtol 3e-8: 3.3 iterations for stage 1 and
        2.75 for stage 2 with the predictor, 2.2 and 2.3 with these."""
        if i > 2 or self.last is None:
            return Z.dot(self.predictor[i])
        s0, h0, y0, f0, y1, f1 = self.last
        if i == 2:
            back = (s0 - s) / h  # the last solve's start, in this step's units (< 0)
            if not -self.EXTEND <= back <= -0.1:  # nodes too close or too far: the predictor
                return Z.dot(self.predictor[i])
            c1, c2 = self.tab.c[1], self.tab.c[2]
            w0 = c2 * (c2 - c1) / (back * (back - c1))  # Lagrange weights at c_2 of the
            w1 = (c2 - back) * (c2 - c1) / (back * c1)  # nodes back, 0 and c_1
            w2 = (c2 - back) * c2 / ((c1 - back) * c1)
            return (w0 * h) * f0 + w1 * Z[0] + w2 * Z[1]
        theta = (s + self.tab.c[1] * h - s0) / h0
        if not 0.0 < theta <= self.EXTEND:  # a cubic far outside its step guesses worse
            return Z.dot(self.predictor[i])
        t2 = theta * theta
        slope = (6 * t2 - 6 * theta) * (y0 - y1) / h0 + (3 * t2 - 4 * theta + 1) * f0
        return h * (slope + (3 * t2 - 2 * theta) * f1)

    def prepare_replay(self, rtol, atol):
        """Replaying an accepted step (checkpoint): Newton to the forward solve's tolerances,
        and where the simplified iteration fails (its J and η are not the forward's), a full
        Newton iteration instead, since there is no smaller step to retry with."""
        self.tolerances, self.replaying = (rtol, atol), True

    replaying = False

    def _newton_exact(self, f, s, y, h, k0):
        """The stages by Newton's method with J at every iterate (quadratic convergence
        where the simplified iteration with one J stalls); a SolverError if it fails."""
        tab, part, F = self.tab, self.part, self.on_flat(f)
        rtol, atol = self.tolerances
        y, k0 = getval(y), getval(k0)
        weight = 1 / np.reshape(atol + rtol * np.abs(y), (-1,))[part]
        z = self.flat(y)
        Z = stages(h * self.flat(k0), len(tab.c), s, y, h)
        for i in range(1, len(tab.c)):
            base = z + Z.dot(self.a[i])
            zi = Z.dot(self.predictor[i])
            for _ in range(4 * self.MAX_ITER):
                Y, ti = base + tab.gamma * zi, s + tab.c[i] * h
                value, J, _ = jacobian_at(F, Y, ti, part, f.stats, self.replay(f))
                r = h * getval(value) - zi
                M = Factored(self.eye() - (h * tab.gamma) * getval(J), f.stats)
                dz = self.with_part(r, M.solve(r[part]))
                zi = zi + dz
                size = weighted_rms(dz[part], weight)
                if size <= 1e-3 * self.KAPPA:
                    break
            else:
                raise SolverError(
                    f"replaying the accepted kvaerno5 step at t={s:.6g} (h={h:.3g}): Newton's "
                    "method did not converge on its stage equations"
                )
            Z.append(zi)
        return Z

    def _differentiable(self, f, s, y, h, k0, stages_raw):
        """The stages on the tape, from Newton's raw solution z*: for each stage one full
        Newton step z = z* + M*⁻¹(h f(Y) − z*) with M* = I − hγ ∂f/∂y at Y = base + γz*.

        Its value improves z* (quadratically); its derivative is exactly the implicit
        function theorem's, dz = M*⁻¹ h (∂f/∂y d(base) + ∂f/∂θ dθ + …), the derivative of
        the stage equation z = h f(base + γz) itself. Differentiating Newton's iterations
        instead would give it only to the iteration's contraction, which is slower for the
        derivative than for the value (kvaerno5's rows of tests/test_odeint_gradient_table.py
        were off by 1.6e-5 that way, where 1e-6 is allowed).

        A k-th derivative (k nested tapes: a gradient of a gradient has 2) needs k such steps,
        each with M on the tape (∂f/∂y traced at the traced Y): one step from the constant z*
        has the right first derivative only, and a second derivative 4.5% off on a 2-species
        problem, without an error (tests/test_implicit.py).
        """
        tab, part = self.tab, self.part
        raw_f = _raw_dynamics(f)
        F, raw_F, z = self.on_flat(f), self.on_flat(raw_f), self.flat(y)
        h_raw = float(getval(h))
        order = _order(s, y, h, k0, *tree_flatten(getattr(f, "args", ()))[0])
        Z = stages(h * self.flat(k0), len(tab.c), s, y, h)
        for i in range(1, len(tab.c)):
            base = z + Z.dot(self.a[i])
            ti = s + tab.c[i] * h
            zi = stages_raw[i]
            for _ in range(order):
                Y = base + tab.gamma * zi
                if order == 1:  # M's own derivative multiplies the residual, ~0: M raw
                    _, J, _ = jacobian_at(
                        raw_F, getval(Y), getval(ti), part, f.stats, self.replay(raw_f)
                    )
                    M = Factored(self.eye() - (h_raw * tab.gamma) * getval(J), f.stats)
                else:
                    _, J, _ = jacobian_at(F, Y, ti, part, f.stats)
                    M = Factored(self.eye() - (h * tab.gamma) * J, f.stats)
                r = h * F(Y, ti) - zi
                zi = zi + self.with_part(r, M.solve(r[part]))
            Z.append(zi)
        return Z, base + tab.gamma * Z[len(tab.c) - 1]

    def _failed(self, y, here, k0):
        """Newton did not converge: an old J is replaced now; the loop shrinks h."""
        if self.J_at is None or self.J_at[0] is not here[0] or self.J_at[1] != here[1]:
            self.refresh = True
        nan = self.xp.full(self.shape, numpy.nan, dtype=self.dtype)
        return nan, ESDIRKStages(None, nan, k0, None, failed=True)

    def error_ratio(self, h, K, y, y1, rtol, atol, norm):
        """The embedded estimate y_{n+1} − ŷ_{n+1} = Y_7 − Y_6, unfiltered.

        Both solutions are stiffly accurate and L-stable, so stiff components leave no O(1)
        term in it. Filtering it by M⁻¹ = (I − hγJ)⁻¹, as Hairer's SDIRK4 does, shrinks it
        by 1/|hγλ| where λ is stiff and the error is not: on Prothero and Robinson's
        y' = −10⁴(y − cos t) − sin t the filtered estimate accepted steps of 3 at rtol 1e-6
        and ended 38 times outside the tolerance, and HIRES at rtol 1e-8 ended 10 times
        outside it (tests/test_implicit.py, test_error_estimate_keeps_tolerance).
        """
        self.tolerances = (rtol, atol)
        if K.failed:
            return math.inf
        return self.ratio(K.Z.raw_dot(self.b_err), y, y1, rtol, atol, norm)

    def next_slope(self, f, s1, y1, K):
        """f(y1, s1) ≈ z_7/h, the last stage's slope (exact when Newton has converged)."""
        return K.f1

    def interpolate(self, f, s, y, h, K, theta):
        """The cubic Hermite interpolant through (y, f0) and (y1, f1), order 3."""
        t2, t3 = theta * theta, theta * theta * theta
        return (
            (2 * t3 - 3 * t2 + 1) * y
            + (t3 - 2 * t2 + theta) * (h * K.f0)
            + (3 * t2 - 2 * t3) * K.y1
            + (t3 - t2) * (h * K.f1)
        )


def _traced(f, *values):
    """Whether the step records on a tape: a traced value, or traced leaves of f's args."""
    return any(map(isbox, values)) or _traced_args(f)


def _order(*values):
    """How many nested tapes record a step: the deepest nesting of Boxes among `values`
    (1 for a gradient, 2 for a gradient of a gradient; 0 where nothing is traced)."""
    deepest = 0
    for x in values:
        depth = 0
        while isbox(x):
            x, depth = x.value, depth + 1
        deepest = max(deepest, depth)
    return deepest


def _traced_args(f):
    """Whether f's args hold a traced leaf; looked at once per solve (its args are fixed)."""
    if not hasattr(f, "args"):
        return False
    if getattr(f, "traced_args", None) is None:
        f.traced_args = any(map(isbox, tree_flatten(f.args)[0]))
    return f.traced_args


def _raw_dynamics(f):
    """f with raw args (the same counts), for what is never differentiated: Newton, J.
    Made once per solve (f's args are fixed for it), so that J's replay is kept."""
    if not _traced_args(f):
        return f
    if getattr(f, "raw", None) is None:
        leaves, treedef = tree_flatten(f.args)
        raw = tree_unflatten(treedef, [getval(x) for x in leaves])
        f.raw = Dynamics(f.func, raw, f.stats, f.sign, 0)
        f.raw.low = f.low  # the same precision of host times
    return f.raw


def weighted_rms(x, weight):
    """RMS of x·weight (weight = 1/scale) of raw arrays as a host float: the one
    synchronisation of a Newton iteration. A BLAS dot (0.6 µs, where the loop's pairwise sum
    takes 6): Newton's estimates of its own error need no last bits."""
    v = (x * weight).reshape(-1)
    if v.dtype.kind == "c":
        v = abs(v)
    elif v.dtype.itemsize < 4:  # float16 squares overflow from 256 on
        v = v.astype("float32")
    return math.sqrt(float(v.dot(v)) / v.size) if v.size else 0.0


STEPPERS["rodas4"] = Rodas4Step
STEPPERS["kvaerno5"] = Kvaerno5Step


def _reshape(x, shape):
    """x.reshape(shape): the array method, which a traced x has too, skips tinyad's dispatch
    on raw values (0.2 against 2.1 µs; the Newton iterations reshape at every call of f)."""
    return x.reshape(shape) if hasattr(x, "reshape") else np.reshape(x, shape)
