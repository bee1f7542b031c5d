"""One explicit Runge–Kutta step from a Butcher tableau: stages, error, dense output.

A step of size h from (t, y), given the slope k_0 = f(y, t):

    k_i    = f(y + h Σ_j a_ij k_j,  t + c_i h)        i = 1 … s−1
    y_1    = y + h Σ_i b_i k_i
    err    = h Σ_i e_i k_i                            (e = b − b̂: the embedded pair)
    y(t + θh) = y + h Σ_i B_i(θ) k_i                  (dense output, 0 ≤ θ ≤ 1)

The stages are stacked, K = [k_0 … k_{s−1}] (tinyode/stages.py), so every sum
above is one product of a row of coefficients with K. Written with tinyad.numpy,
the same step runs on raw arrays (numpy or CuPy) and, recorded on the tape, on
traced values ("backprop", "checkpoint").
"""

import functools
import math

import numpy

import tinyad.numpy as np
from tinyad import getval
from tinyad.backend import array_module

from .stages import stages
from .stiffness import THRESHOLD, StiffnessDetector


@functools.lru_cache(maxsize=64)
def _coefficients(tableau, dtype, xp, device):
    """The tableau's rows as arrays of `dtype` in the module xp: a, b, dense_a, e, e3 (None
    where the tableau has none) and P, B_i(θ) = Σ_j P_ij θ^(j+1), kept in float64. Made once
    per tableau, dtype, module and device (a solve of the adjoint's per output interval would
    otherwise convert them each time). Shared by every solve, so numpy's are read-only."""

    def row(c, dtype=None):
        if c is None:
            return None
        host = numpy.asarray(c, float)
        a = xp.asarray(host) if dtype is None else xp.asarray(host, dtype=dtype)
        if isinstance(a, numpy.ndarray):
            a.flags.writeable = False
        return a

    rows = lambda rs: [row(r, dtype) for r in rs]  # noqa: E731
    P = None if tableau.dense_p is None else row(tableau.dense_p)  # float64, as given
    return (
        rows(tableau.a),
        row(tableau.b, dtype),
        rows(tableau.dense_a),
        row(tableau.b_err, dtype),
        row(tableau.b_err3, dtype),
        P,
    )


class RungeKutta:
    """The step of one tableau (tinyode/tableaus.py), its error ratio and its interpolant.

    The coefficients are held as arrays of the state's dtype, in its array module.
    """

    def __init__(self, tableau, like):
        like = getval(like)
        self.tab, self.s, self.dtype = tableau, len(tableau.c), like.dtype
        self.xp = array_module(like)
        device = str(getattr(like, "device", ""))  # a CuPy array's GPU: rows live beside it
        self.a, self.b, self.dense_a, self.e, self.e3, self.P = _coefficients(
            tableau, self.dtype, self.xp, device
        )
        # The step-size controller's exponent: the error estimate shrinks like h^(1/exponent)
        # (dopri8's combined estimate like h^8, as in Hairer's dop853.f).
        if self.e is None:
            self.exponent = None  # a fixed-step method
        elif self.e3 is not None:
            self.exponent = 1.0 / 8
        else:
            self.exponent = 1.0 / (tableau.error_order + 1)
        # dopri5 and tsit5 watch for stiffness over the solve (tinyode/stiffness.py): each
        # accepted step's stages are tested in next_slope, with h and y kept by error_ratio.
        self.stiffness = StiffnessDetector(tableau) if tableau.name in THRESHOLD else None
        self.trial = None

    def combine(self, y, h, row, K):
        """y + h Σ_i row_i k_i: one product of the coefficients with the stacked stages."""
        return y + h * K.dot(row)

    def step(self, f, t, y, h, k0):
        """(y_1, K): the step from (t, y) of size h, and its stages K = [k_0 … k_{s−1}]."""
        tab, K = self.tab, stages(k0, self.s + len(self.dense_a), t, y, h)
        y1 = None
        for i in range(1, self.s):
            yi = self.combine(y, h, self.a[i], K)
            if tab.fsal and i == self.s - 1:
                y1 = yi  # the last stage is evaluated at y_1 itself: next step's k_0
            K.append(f(yi, t + tab.c[i] * h))
        if y1 is None:
            y1 = self.combine(y, h, self.b, K)
        return y1, K

    def next_slope(self, f, t1, y1, K):
        """k_0 of the next step: f(y_1, t_1), which an FSAL method has already computed.

        Called once per accepted step, so that is where stiffness is tested (DOPRI5's test
        on the last two stages, no evaluation of f).
        """
        if self.stiffness is not None and self.trial is not None and self.trial[2] <= 1.0:
            h, y, _ = self.trial
            t_end = getval(t1) if getattr(f, "sign", 1.0) > 0 else -getval(t1)  # the user's t
            self.stiffness.accepted(t_end, y, h, K, getval(y1))
        return K[self.s - 1] if self.tab.fsal else f(y1, t1)

    def stiffness_note(self):
        """What a SolverError adds once stiffness was detected in this solve ('' before)."""
        return self.stiffness.note() if self.stiffness is not None else ""

    def error_ratio(self, h, K, y, y1, rtol, atol, norm):
        """‖err / (atol + rtol·max(|y|, |y_1|))‖ as a host float; ≤ 1 accepts the step.

        Read on raw values: the step-size decision is never recorded on the tape.
        dopri8 combines two estimates as Hairer's DOP853 does,
        ‖e5‖² / sqrt(‖e5‖² + 0.01 ‖e3‖²), which behaves like h^8.
        """
        y, y1 = getval(y), getval(y1)
        scale = atol + rtol * self.xp.maximum(abs(y), abs(y1))
        ratio = norm(h * K.raw_dot(self.e) / scale)
        if self.stiffness is not None:
            self.trial = (float(getval(h)), y, ratio)  # for the stiffness test, if accepted
        if self.e3 is None or not ratio > 0:
            return ratio
        ratio3 = norm(h * K.raw_dot(self.e3) / scale)
        return ratio * ratio / math.sqrt(ratio * ratio + 0.01 * ratio3 * ratio3)

    def interpolate(self, f, t, y, h, K, theta):
        """y(t + θh) = y + h Σ_i B_i(θ) k_i, the method's own dense output.

        A method whose interpolant needs extra stages (dopri8) evaluates them once
        per step, for the first output inside it, and appends them to K.
        """
        for j in range(len(K) - self.s, len(self.dense_a)):
            c = self.tab.dense_c[j]
            K.append(f(self.combine(y, h, self.dense_a[j], K), t + c * h))
        # B(θ) = P·[θ, θ², …] (tableaus.dense_weights) in float64, cast once: dopri8's
        # power-form coefficients reach 545 and cancel, so weights summed in float32 would
        # lose hundreds of ulps of the interpolant.
        if isinstance(theta, float):
            powers = self.xp.asarray(theta ** numpy.arange(1.0, self.P.shape[1] + 1))
        else:  # a traced θ (an output time being differentiated): its powers on the tape
            powers = np.stack([theta ** (j + 1) for j in range(self.P.shape[1])])
        weights = np.astype(np.matmul(self.P, powers), self.dtype)
        return y + h * K.dot(weights)
