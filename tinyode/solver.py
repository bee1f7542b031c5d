"""The one stepping loop behind every method and every gradient mode.

`integrate` advances y' = f(y, t, *args) through the output times `ts` with an
explicit Runge–Kutta tableau (tinyode/tableaus.py). It is written with
tinyad.numpy operations on whatever it is handed, so the same loop

- runs on raw arrays (nothing recorded: the forward pass of "adjoint" and
  "checkpoint", and the adjoint's own backward solve),
- runs on traced values, each step recorded on the tape ("backprop"),
- replays a recorded schedule of accepted steps under the tape ("checkpoint").

Step-size decisions are made on raw floats: one host value per step (the
error ratio of an adaptive step, the finiteness of a fixed step's result) is
the only synchronisation with the array's device; the rest of the loop only
queues array operations. Arrays are made by tinyad.numpy operations on the
inputs, so they stay in the inputs' array module (numpy, CuPy).
"""

import array
import math
import numbers

import numpy

import tinyad.numpy as np
from tinyad import getval, isbox
from tinyad.backend import array_module
from tinyad.tree import tree_flatten

from .errors import SolverError
from .tableaus import TABLEAUS


class Stats:
    """Counts for one solve: function evaluations, accepted and rejected steps, step sizes."""

    def __init__(self):
        self.nfe = 0
        self.n_steps = 0
        self.n_rejected = 0
        # 8 bytes a step (not a Python float each), so that the adjoint's memory stays flat
        self.step_sizes = array.array("d")
        self.step_times = array.array("d")

    def as_dict(self):
        """`info`: the counts, and the accepted steps' sizes and start times as numpy arrays."""
        return {
            "nfe": self.nfe,
            "n_steps": self.n_steps,
            "n_rejected": self.n_rejected,
            "step_sizes": numpy.frombuffer(self.step_sizes, dtype=float),
            "step_times": numpy.frombuffer(self.step_times, dtype=float),
        }


def rms_norm(x):
    """Root mean square of a raw array (of |x| for a complex one), as a host float."""
    if x.dtype.kind == "c":
        x = np.abs(x)  # the norm on |x|²: x·x of a complex x is not a size
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def mixed_norm(x, parts):
    """max over (start, stop) parts of the RMS norm of x[start:stop]; one host value."""
    v = x.reshape(-1)
    if v.dtype.kind == "c":
        v = np.abs(v)
    squares = [np.mean(v[a:b] * v[a:b]) for a, b in parts if b > a]
    return float(np.sqrt(np.max(np.stack(squares))))


def _combine(y, h, coeffs, ks):
    """y + h Σ coeffs[i] k_i, skipping the tableau's zero coefficients."""
    acc = None
    for c, k in zip(coeffs, ks):
        # Only a Python number is tested: bool() of a traced weight would sync the device.
        if not isinstance(c, (int, float)) or c != 0:
            acc = c * k if acc is None else acc + c * k
    return y if acc is None else y + h * acc


_LOW_PRECISION = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float16))


class Stepper:
    """Evaluates stages of one tableau; counts every call of `func`."""

    def __init__(self, func, args, tableau, stats):
        self.func, self.args, self.tab, self.stats = func, args, tableau, stats

    def f(self, y, t):
        self.stats.nfe += 1
        dtype = getattr(getval(y), "dtype", None)
        if type(t) is float and dtype in _LOW_PRECISION:
            t = dtype.type(t)  # a host time as a float32 scalar: np.sin(t) keeps y float32
        return self.func(y, t, *self.args)

    def step(self, t, y, h, k1):
        """One step from (t, y) with slope k1 = f(y, t). Returns (y1, ks)."""
        tab = self.tab
        ks = [k1]
        y1 = None
        for i in range(1, len(tab.c)):
            yi = _combine(y, h, tab.a[i], ks)
            if tab.fsal and i == len(tab.c) - 1:
                y1 = yi  # the FSAL stage is evaluated at y_{n+1} itself
            ks.append(self.f(yi, t + tab.c[i] * h))
        if y1 is None:
            y1 = _combine(y, h, tab.b, ks)
        return y1, ks

    def dense(self, t, y, h, ks, theta):
        """y(t + θh) = y + h Σ B_i(θ) k_i; evaluates the method's extra dense stages once."""
        tab = self.tab
        if len(ks) < len(tab.c) + len(tab.dense_c):
            for c, row in zip(tab.dense_c, tab.dense_a):
                ks.append(self.f(_combine(y, h, row, ks), t + c * h))
        # B_i(θ) in float64 (host floats, or θ's own precision when θ is traced), multiplied
        # into k_i in y's: dopri8's power-form coefficients reach 545 and cancel in the sum,
        # so weights summed in float32 would lose ~545 ulps of the interpolant.
        weights = [sum(p * theta ** (j + 1) for j, p in enumerate(row)) for row in tab.dense_p]
        return _combine(y, h, weights, ks)

    def error3(self, h, ks):
        """dopri8's second (3rd-order) estimate h Σ b_err3_i k_i, on raw values."""
        return _combine(0.0, h, self.tab.b_err3, [getval(k) for k in ks])

    def last_stage(self, ks):
        """f(y_{n+1}) of an FSAL method: the next step's k1."""
        return ks[len(self.tab.c) - 1]

    def error(self, h, ks):
        """The embedded error estimate h Σ b_err_i k_i, on raw values."""
        return _combine(0.0, h, self.tab.b_err, [getval(k) for k in ks])


class BufferedStepper(Stepper):
    """The same steps on raw arrays, faster: the stages live in one preallocated buffer
    K (one row per stage) and each combination Σ a_ij k_j is one matrix product.

    Used whenever nothing is traced (the forward pass of "adjoint" and "checkpoint",
    the adjoint's backward solve); `Stepper`'s term-by-term sums are what the tape
    records in "backprop" and what a reader should learn from: the arithmetic is the same.
    """

    def __init__(self, func, args, tableau, stats, y0):
        super().__init__(func, args, tableau, stats)
        xp = array_module(y0)
        s, s_all = len(tableau.c), len(tableau.c) + len(tableau.dense_c)
        A = numpy.zeros((s_all, s_all))
        for i, row in enumerate(tableau.a + tableau.dense_a):
            A[i, : len(row)] = row
        as_xp = lambda m: xp.asarray(numpy.asarray(m, dtype=y0.dtype))  # noqa: E731
        self.A, self.b = as_xp(A), as_xp(tableau.b)
        self.b_err = as_xp(tableau.b_err) if tableau.b_err is not None else None
        self.b_err3 = as_xp(tableau.b_err3) if tableau.b_err3 is not None else None
        # The dense-output coefficients stay float64 on the host: see dense().
        self.P = numpy.asarray(tableau.dense_p, dtype=float) if tableau.dense_p else None
        self.K = xp.empty((s_all,) + y0.shape, dtype=y0.dtype)
        self.rows = self.K.reshape(s_all, -1)  # a view: K[i] and rows[i] share memory
        self.s, self.shape, self.dense_ready = s, y0.shape, False

    def _combine(self, y, h, weights, n):
        return y + h * (weights @ self.rows[:n]).reshape(self.shape)

    def step(self, t, y, h, k1):
        tab, K = self.tab, self.K
        K[0] = k1
        y1 = None
        for i in range(1, self.s):
            yi = self._combine(y, h, self.A[i, :i], i)
            if tab.fsal and i == self.s - 1:
                y1 = yi
            K[i] = self.f(yi, t + tab.c[i] * h)
        if y1 is None:
            y1 = self._combine(y, h, self.b, self.s)
        self.dense_ready = not tab.dense_c
        return y1, K  # K[i] is k_i; K[s - 1] is overwritten by the next step, after K[0]

    def dense(self, t, y, h, ks, theta):
        tab, s = self.tab, self.s
        if not self.dense_ready:
            for j, c in enumerate(tab.dense_c):
                self.K[s + j] = self.f(
                    self._combine(y, h, self.A[s + j, : s + j], s + j), t + c * h
                )
            self.dense_ready = True
        # B_i(θ) = Σ_j P_ij θ^(j+1) in float64 on the host (θ is a host float here), cast once
        # to y's dtype and copied to its device: dopri8's P_ij reach 545 and cancel in the sum,
        # which in float32 cost ~545 ulps of the interpolant (tsit5's reach 88).
        weights = self.P @ theta ** numpy.arange(1, self.P.shape[1] + 1)
        weights = array_module(self.K).asarray(weights, dtype=self.K.dtype)
        return self._combine(y, h, weights, len(weights))

    def error(self, h, ks):
        return h * (self.b_err @ self.rows[: self.s]).reshape(self.shape)

    def error3(self, h, ks):
        return h * (self.b_err3 @ self.rows[: self.s]).reshape(self.shape)

    def last_stage(self, ks):
        return self.K[self.s - 1].copy()  # a copy: a rejected next step overwrites the buffer


def error_ratio(err, y0, y1, rtol, atol, norm):
    """RMS(err / (atol + rtol·max(|y0|, |y1|))) as a host float; ≤ 1 means accept."""
    err, y0, y1 = getval(err), getval(y0), getval(y1)
    scale = atol + rtol * np.maximum(np.abs(y0), np.abs(y1))
    return norm(err / scale)


def combined_error_ratio(err5, err3, y0, y1, rtol, atol, norm):
    """Hairer's DOP853 estimate ‖e5‖² / sqrt(‖e5‖² + 0.01 ‖e3‖²), which behaves like h^8."""
    n5 = error_ratio(err5, y0, y1, rtol, atol, norm)
    n3 = error_ratio(err3, y0, y1, rtol, atol, norm)
    return n5 * n5 / math.sqrt(n5 * n5 + 0.01 * n3 * n3) if n5 > 0 else n5


def initial_step(stepper, t0, y0, f0, direction, rtol, atol, norm, order):
    """Hairer, Nørsett & Wanner, Solving ODEs I, II.4: a first step from the local scales."""
    y0, f0 = getval(y0), getval(f0)
    scale = atol + np.abs(y0) * rtol
    d0, d1 = norm(y0 / scale), norm(f0 / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    f1 = getval(stepper.f(y0 + direction * h0 * f0, t0 + direction * h0))
    d2 = norm((f1 - f0) / scale) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100 * h0, h1)


def _check_finite(k, t, stats):
    """One host value per check: a non-finite derivative stops the solve with a SolverError."""
    if not bool(np.all(np.isfinite(getval(k)))):
        raise SolverError(
            f"non-finite derivative (NaN or inf) near t={t:.6g} after {stats.n_steps} steps: "
            "check func there, or the solution may blow up; loosen tolerances or shorten t"
        )


def _time(ts, traced, where, raw):
    """A time of the solve as the solver's `t`: the host float `raw`, or, when ts is traced,
    the expression ts[i] + offset (where = (i, offset)) whose value it is.

    Every time the solver visits is an output time ts[i] (offset 0), a point of the fixed
    grid t0 + n·step_size, i.e. (0, n·step_size), or an adaptive step's start (0, tn − t0):
    so the tape differentiates where each time comes from, no more and no less.
    """
    if not traced:
        return raw
    i, offset = where
    return ts[i] if offset == 0 else ts[i] + offset


class Step:
    """One accepted step, enough to replay it: start time, size, the output it lands on,
    the outputs it interpolates, (for checkpointing) its starting state, and where its ends
    come from: `start` = (i, offset), the start is ts[i] + offset; `stop`, the same for its
    end, or None when the end moves with the start (h is then the constant `hs`)."""

    __slots__ = ("tn", "hs", "land", "outs", "y", "start", "stop")

    def __init__(self, tn, hs, land, outs, y, start, stop):
        self.tn, self.hs, self.land, self.outs, self.y = tn, hs, land, outs, y
        self.start, self.stop = start, stop


def step_span(ts, traced, step):
    """(t, h): the step's start time and size as the solver's t and h.

    With a traced ts, h = (end) − t whenever the two ends hang on different times: a step
    landing on ts[i] has h = ts[i] − t, the step leaving ts[i] for the grid point
    t0 + m·step_size has h = ts[0] + m·step_size − ts[i]. So moving ts[0] moves the whole
    grid, and moving an interior ts[i] moves the step that lands on it and the step after.
    """
    t = _time(ts, traced, step.start, step.tn)
    if not traced or step.stop is None or step.stop[0] == step.start[0]:
        return t, step.hs
    return t, _time(ts, traced, step.stop, None) - t


def take_step(stepper, ts, traced, y, k1, step):
    """Advance one planned step; returns (y1, ks, outputs for step.outs)."""
    t, h = step_span(ts, traced, step)
    y1, ks = stepper.step(t, y, h, k1)
    return y1, ks, interpolate(stepper, ts, traced, t, y, h, ks, step.outs)


def interpolate(stepper, ts, traced, t, y, h, ks, indices):
    """Dense output at ts[i] for i in `indices`, from the stages of the step (t, y, h)."""
    times = ts if traced else stepper.t_raw
    return [stepper.dense(t, y, h, ks, (times[i] - t) / h) for i in indices]


def _check_shape(k, y0):
    """func's first result: an array (or number) of y's shape, complex only for a complex y."""
    k, y0 = getval(k), getval(y0)
    if k is None:
        raise TypeError(
            "func(y, t, *args) returned None; it must return dy/dt with the shape of y "
            "(is its return statement missing?)"
        )
    kind = getattr(getattr(k, "dtype", None), "kind", None)
    if not (kind in ("b", "i", "u", "f", "c") or (kind is None and isinstance(k, numbers.Number))):
        raise TypeError(
            f"func(y, t, *args) returned {type(k).__name__} {k!r}; it must return dy/dt, "
            "an array with the shape of y"
        )
    ks, ys = getattr(k, "shape", ()), getattr(y0, "shape", ())
    if ks != ys:
        raise ValueError(
            f"func(y, t, *args) returned shape {ks}, but y has shape {ys}; func must return "
            "dy/dt with the shape of y"
        )
    if (kind == "c" or isinstance(k, complex)) and y0.dtype.kind != "c":
        raise TypeError(
            f"func(y, t, *args) returned complex values ({getattr(k, 'dtype', 'complex')}) for "
            f"a real y ({y0.dtype}): the solver would drop their imaginary part. Pass a "
            "complex y0, e.g. y0.astype(complex)"
        )


def integrate(
    func,
    y0,
    ts,
    args,
    *,
    method,
    rtol,
    atol,
    step_size=None,
    first_step=None,
    max_steps=100_000,
    max_step=None,
    norm=rms_norm,
    stats=None,
    record=None,
):
    """Solve y' = func(y, t, *args) from ts[0] through every ts[i]; returns [y(ts[i])].

    `ts` may be traced (backprop): step control always uses its raw values.
    `record`, a list, receives one `Step` per accepted step (with its starting
    state), which is what "checkpoint" replays. `max_step` bounds adaptive steps.
    """
    tab = TABLEAUS[method]
    stats = Stats() if stats is None else stats
    stepper = Stepper(func, args, tab, stats)
    t_raw = stepper.t_raw = [float(v) for v in getval(ts).tolist()]
    traced, t0, t_end = isbox(ts), t_raw[0], t_raw[-1]
    direction = 1.0 if t_end >= t0 else -1.0
    k1 = stepper.f(y0, _time(ts, traced, (0, 0.0), t0))
    _check_shape(k1, y0)
    _check_finite(k1, t0, stats)
    if not (traced or isbox(y0) or isbox(k1) or any(map(isbox, tree_flatten(args)[0]))):
        stepper = BufferedStepper(func, args, tab, stats, y0)  # nothing to record: raw arrays
        stepper.t_raw = t_raw
    ys = [y0]

    def accept(step, y, y1, outs):
        """Keep the outputs of an accepted step, count it, and record it for replay."""
        ys.extend(outs)
        if step.land is not None:
            ys.append(y1)
        stats.n_steps += 1
        stats.step_sizes.append(abs(step.hs))
        stats.step_times.append(step.tn)
        if record is not None:
            step.y = y
            record.append(step)

    if tab.b_err is None or step_size is not None:
        # Fixed steps on the grid t0 + n·step_size, landing exactly on each ts[i]
        # (an adaptive method given a step_size steps like this too, without error control).
        # `at` says where the current time comes from: (0, n·step_size) on the grid, (i, 0.0)
        # on the output time ts[i] (see _time).
        y, tn, n, at = y0, t0, 0, (0, 0.0)
        for i in range(1, len(t_raw)):
            while (t_raw[i] - tn) * direction > 0:
                _check_budget(stats, max_steps, tn)
                nxt, end = t_raw[i], (i, 0.0)
                if step_size is not None:
                    offset = direction * (n + 1) * step_size
                    gap = (t0 + offset - t_raw[i]) * direction
                    if gap < -1e-12 * step_size:
                        nxt, end, n = t0 + offset, (0, offset), n + 1
                    elif gap <= 1e-12 * step_size:
                        n += 1  # the grid point is the output time
                land = i if end[0] == i else None
                step = Step(tn, nxt - tn, land, (), None, start=at, stop=end)
                if tn != t0:
                    k1 = stepper.f(y, _time(ts, traced, at, tn))
                y1, _, outs = take_step(stepper, ts, traced, y, k1, step)
                accept(step, y, y1, outs)
                y = y1
                # The one host value of a fixed step (no error estimate to catch NaN); a
                # non-finite k1 makes y1 non-finite, so this check covers it too.
                _check_finite(y, tn, stats)
                tn, at = nxt, end
        return ys

    y, tn, i_out = y0, t0, 1
    h = (
        float(abs(first_step))
        if first_step is not None
        else initial_step(stepper, t0, y0, k1, direction, rtol, atol, norm, tab.order)
    )
    k = tab.error_order + 1 if tab.b_err3 is None else 8  # the estimate shrinks like h^k
    beta = 0.2 / k  # PI control (Hairer II.4): factor = 0.9 r^-α r_prev^β
    alpha = 1.0 / k - 0.75 * beta
    prev_ratio, rejected_last, nonfinite = 1e-4, False, False
    while i_out < len(t_raw):
        _check_budget(stats, max_steps, tn)
        if max_step is not None:
            h = min(h, max_step)  # torchdiffeq's max_step, JAX's hmax
        if h < 16 * math.ulp(max(abs(tn), 1.0)):
            why = (
                "the derivative became non-finite (NaN or inf)"
                if nonfinite
                else "the problem may be stiff or have a singularity"
            )
            raise SolverError(
                f"step size underflow at t={tn:.6g} after {stats.n_steps} steps: {why} near "
                f"t={tn:.6g}; loosen rtol/atol, or check func"
            )
        hs = direction * h
        last = (tn + hs - t_end) * direction >= -1e-12 * max(abs(t_end), 1.0)
        if last:  # the final step lands exactly on the last output time
            hs = t_end - tn
        # A trial step; only its raw error estimate decides (traced values are not read).
        # The step's start hangs on ts[0]; the last one's end on the last output time.
        end = len(t_raw) - 1 if last else None
        step = Step(
            tn, hs, end, [], None, start=(0, tn - t0), stop=None if end is None else (end, 0.0)
        )
        t, h_try = step_span(ts, traced, step)
        y1, ks = stepper.step(t, y, h_try, k1)
        err = stepper.error(hs, ks)
        # The one host value per step (two for dopri8): every decision below is made on it.
        if tab.b_err3 is None:
            ratio = error_ratio(err, y, y1, rtol, atol, norm)
        else:
            err3 = stepper.error3(hs, ks)
            ratio = combined_error_ratio(err, err3, y, y1, rtol, atol, norm)
        if not ratio <= 1.0:  # rejected (also when the ratio is NaN)
            nonfinite = not math.isfinite(ratio)
            if nonfinite:  # a non-finite k1 is not cured by a smaller step: stop now
                _check_finite(k1, tn, stats)
            stats.n_rejected += 1
            h = abs(hs) * (0.2 if nonfinite else min(1.0, max(0.2, 0.9 * ratio**-alpha)))
            rejected_last = True
            continue
        outs = step.outs  # the output times inside (tn, tn + hs]; the last one is landed on
        while i_out < len(t_raw) - last and (t_raw[i_out] - (tn + hs)) * direction <= 0:
            outs.append(i_out)
            i_out += 1
        if last:
            i_out = len(t_raw)
        # Interpolate with the stages just computed (no re-evaluation).
        accept(step, y, y1, interpolate(stepper, ts, traced, t, y, h_try, ks, outs))
        tn = t_end if last else tn + hs
        y = y1
        # k1 is checked for NaN only if the next error ratio is not finite (no sync here).
        k1 = (
            stepper.last_stage(ks)
            if tab.fsal
            else stepper.f(y1, _time(ts, traced, (0, tn - t0), tn))
        )
        factor = 0.9 * max(ratio, 1e-10) ** -alpha * prev_ratio**beta
        h = abs(hs) * min(1.0 if rejected_last else 10.0, max(0.2, factor))
        prev_ratio, rejected_last = max(ratio, 1e-4), False
    return ys


def _check_budget(stats, max_steps, tn):
    if stats.n_steps + stats.n_rejected >= max_steps:
        raise SolverError(
            f"max_steps={max_steps} exceeded at t={tn:.6g} after {stats.n_steps} accepted "
            f"steps; the problem may be stiff or blow up near t={tn:.6g}: loosen rtol/atol or "
            "raise max_steps"
        )
