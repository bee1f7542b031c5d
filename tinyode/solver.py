"""The solver loop: advance y' = f(y, t) through the output times, step by step.

`integrate` takes a Runge–Kutta method (tinyode/runge_kutta.py) from ts[0]
through every ts[i]: fixed steps on a grid, or adaptive steps chosen by an
error estimate and a PI controller, with the outputs between step ends read off
the method's dense output. It is written with tinyad.numpy on whatever it is
handed, so the same loop

- runs on raw arrays (the forward pass of "adjoint" and "checkpoint", and the
  adjoint's own backward solve),
- runs on traced values, each step recorded on the tape ("backprop"),
- replays one recorded step under the tape (`replay_step`, for "checkpoint").

Time running backwards (t decreasing) is solved forwards in s = −t, with
dz/ds = −f(z, −s): the loop itself only ever steps forwards. Step-size
decisions are made on raw host floats; that (one value per step) is the only
synchronisation with the array's device.
"""

import array
import functools
import math
import numbers

import numpy

import tinyad.numpy as np
from tinyad import getval, isbox
from tinyad.backend import array_module

from .errors import SolverError
from .runge_kutta import RungeKutta
from .tableaus import TABLEAUS


class Stats:
    """Counts for one solve: function evaluations, accepted and rejected steps, step sizes."""

    def __init__(self):
        self.nfe = 0
        self.n_steps = 0
        self.n_rejected = 0
        self.njev = 0  # Jacobian evaluations (implicit methods)
        self.nlu = 0  # LU factorisations (implicit methods)
        # 8 bytes a step (not a Python float each), so that the adjoint's memory stays flat
        self.step_sizes = array.array("d")
        self.step_times = array.array("d")

    def as_dict(self):
        """`info`: the counts, and the accepted steps' sizes and start times as numpy arrays."""
        return {
            "nfe": self.nfe,
            "n_steps": self.n_steps,
            "n_rejected": self.n_rejected,
            "njev": self.njev,
            "nlu": self.nlu,
            "step_sizes": numpy.frombuffer(self.step_sizes, dtype=float),
            "step_times": numpy.frombuffer(self.step_times, dtype=float),
        }


def rms_norm(x):
    """Root mean square of a raw array (of |x| for a complex one), as a host float."""
    return math.sqrt(float(sum_of_squares(x) / x.size)) if x.size else 0.0


def mixed_norm(x, parts):
    """max over (start, stop) parts of the RMS norm of x[start:stop]; one host value."""
    v = x.reshape(-1)
    squares = [sum_of_squares(v[a:b]) / (b - a) for a, b in parts if b > a]
    return math.sqrt(float(functools.reduce(array_module(v).maximum, squares)))


def sum_of_squares(x):
    """Σ|x|² of a raw array, as a 0-d array on x's device (no host read). Array methods,
    not tinyad.numpy: a norm runs once per step and is never differentiated."""
    v = x.reshape(-1)
    if v.dtype.kind == "c":
        v = abs(v)
    if v.dtype.itemsize >= 8:
        return v.dot(v)  # a BLAS dot: in float64 its rounding is far below what a norm needs
    if v.dtype.itemsize < 4:  # float16 sums in float32, as numpy.mean does: 2^16 overflows
        v = v.astype("float32")
    return (v * v).sum()  # numpy's pairwise sum: a BLAS dot rounds float32 worse


def _explicit(tableau):
    return lambda y0, block=None: RungeKutta(tableau, y0)


# Every method by name: a factory (y0, block) -> its step object. A step object provides
# step(f, s, y, h, k0) -> (y1, K), next_slope(f, s1, y1, K), error_ratio(h, K, y, y1, rtol,
# atol, norm) -> a host float, interpolate(f, s, y, h, K, θ), and `exponent`, the step-size
# controller's (None: fixed steps). `block`: only the first `block` entries of the flat
# state feed back into f (the rest is a quadrature, as the adjoint's dL/dθ), so an implicit
# method needs ∂f/∂y of that block only. tinyode/implicit.py adds the implicit methods.
STEPPERS = {name: _explicit(tableau) for name, tableau in TABLEAUS.items()}
FIXED_STEP = {name for name, tableau in TABLEAUS.items() if tableau.b_err is None}


# --- the times of a solve ---------------------------------------------------------------------


class Clock:
    """The solve's times as the loop sees them, in s = sign·t so that s increases.

    `raw` are host floats, for every decision. A time the loop uses is also kept
    as where it comes from, an anchor (i, offset) meaning s = sign·ts[i] + offset:
    an output time (offset 0), the fixed grid s_0 + n·step_size, or an adaptive
    step's start s_0 + (s_n − s_0). When ts is traced, `time` builds that very
    expression, so the tape differentiates where each time comes from.
    """

    def __init__(self, ts):
        times = [float(v) for v in getval(ts).tolist()]  # the one host read of the times
        self.sign = 1.0 if times[-1] >= times[0] else -1.0
        self.raw = [self.sign * v for v in times]
        self.ts, self.traced = ts, isbox(ts)

    def on(self, ts):
        """This clock's times, as expressions of another (traced) copy of ts: for a replay."""
        clock = Clock.__new__(Clock)
        clock.sign, clock.raw, clock.ts, clock.traced = self.sign, self.raw, ts, isbox(ts)
        return clock

    def time(self, raw, anchor):
        """The time `raw` (a host float) as the solver's s: traced when ts is."""
        if not self.traced:
            return raw
        i, offset = anchor
        s = self.ts[i] if self.sign > 0 else -self.ts[i]
        return s if offset == 0 else s + offset

    def output(self, i):
        """The output time s_i (traced when ts is)."""
        return self.time(self.raw[i], (i, 0.0))

    def user_time(self, s):
        """A host time s back in the user's t."""
        return self.sign * s


class Dynamics:
    """f(y, s) as the loop calls it: the user's func(y, t, *args) at t = sign·s, times sign.

    Counts every call (`stats.nfe`). A host time reaches func as a float32 scalar when
    y is float32, so that np.sin(t) keeps y's precision.
    """

    def __init__(self, func, args, stats, sign, y0):
        self.func, self.args, self.stats, self.sign = func, args, stats, sign
        dtype = getattr(getval(y0), "dtype", None)
        self.low = dtype if dtype in (numpy.float32, numpy.float16) else None

    def __call__(self, y, s):
        self.stats.nfe += 1
        t = s if self.sign > 0 else -s
        if self.low is not None and type(t) is float:
            t = self.low.type(t)
        dy = self.func(y, t, *self.args)
        return dy if self.sign > 0 else -dy


class Step:
    """One accepted step, enough to replay it: its start `sn` and size `h` (host floats),
    where its ends come from (`start`, `stop`: anchors, see Clock; `stop` None when the
    end moves with the start), the output it lands on (`land`), the outputs inside it
    (`outs`), and, for checkpointing, the state it started from (`y`)."""

    __slots__ = ("sn", "h", "start", "stop", "land", "outs", "y", "clock")

    def __init__(self, sn, h, start, stop=None, land=None, outs=()):
        self.sn, self.h, self.start, self.stop = sn, h, start, stop
        self.land, self.outs, self.y, self.clock = land, outs, None, None

    def span(self, clock):
        """(s, h) of the step as the solver's time and size (traced when ts is).

        With a traced ts, h = (end) − s whenever the ends hang on different times: a
        step landing on ts[i] has h = s_i − s. So moving ts[0] moves the whole grid,
        and moving an interior ts[i] moves the step landing on it and the step after.
        """
        s = clock.time(self.sn, self.start)
        if not clock.traced or self.stop is None or self.stop[0] == self.start[0]:
            return s, self.h
        return s, clock.time(None, self.stop) - s


# --- one solve ----------------------------------------------------------------------------------


class Integration:
    """The state of one solve: its method, dynamics and clock, the outputs so far, the counts."""

    def __init__(self, func, y0, ts, args, method, stats, record, clock=None, block=None):
        self.clock = Clock(ts) if clock is None else clock
        self.stats = Stats() if stats is None else stats
        self.f = Dynamics(func, args, self.stats, self.clock.sign, y0)
        self.rk = STEPPERS[method](y0, block)
        self.record, self.ys, self.on_step = record, [y0], None

    def outputs(self, step, s, y, h, K):
        """The dense output at each output time inside the step (s, h)."""
        return [
            self.rk.interpolate(self.f, s, y, h, K, (self.clock.output(i) - s) / h)
            for i in step.outs
        ]

    def accept(self, step, y, y1, outs):
        """Keep an accepted step's outputs, count it, and record it for replay."""
        self.ys.extend(outs)
        if step.land is not None:
            self.ys.append(y1)
        self.stats.n_steps += 1
        self.stats.step_sizes.append(abs(step.h))
        self.stats.step_times.append(self.clock.user_time(step.sn))
        if self.record is not None:
            step.y, step.clock = y, self.clock
            self.record.append(step)

    def stops(self, step, s, y, h, K, y1):
        """Tell `on_step` of an accepted step; True when it asks to stop (an event found)."""
        return self.on_step is not None and bool(self.on_step(self, step, s, y, h, K, y1))

    def check_budget(self, max_steps, sn):
        if self.stats.n_steps + self.stats.n_rejected >= max_steps:
            t = self.clock.user_time(sn)
            raise SolverError(
                f"max_steps={max_steps} exceeded at t={t:.6g} after {self.stats.n_steps} "
                f"accepted steps; the problem may be stiff or blow up near t={t:.6g}: loosen "
                f"rtol/atol or raise max_steps{self.stiffness_note()}"
            )

    def stiffness_note(self):
        """What an error adds when the method detected stiffness in this solve ('' if not)."""
        note = getattr(self.rk, "stiffness_note", None)
        return note() if note is not None else ""

    def check_finite(self, y, sn):
        """One host value: a non-finite derivative stops the solve with a SolverError."""
        v = getval(y)
        xp = array_module(v)
        if not bool(xp.all(xp.isfinite(v))):  # raw: no tinyad dispatch
            t = self.clock.user_time(sn)
            raise SolverError(
                f"non-finite derivative (NaN or inf) near t={t:.6g} after {self.stats.n_steps} "
                "steps: check func there, or the solution may blow up; loosen tolerances or "
                "shorten t"
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
    on_step=None,
    block=None,
):
    """Solve y' = func(y, t, *args) from ts[0] through every ts[i]; returns [y(ts[i])].

    `ts` may be traced (backprop): step control always uses its raw values.
    `record`, a list, receives one `Step` per accepted step (with its starting
    state), which is what "checkpoint" replays. `max_step` bounds adaptive steps.
    `on_step(run, step, s, y, h, K, y1)`, if given, is called after each accepted step
    (s, h: its start and size in the solver's time s = sign·t; the step's dense output is
    `run.rk.interpolate(run.f, s, y, h, K, θ)`); returning True stops the solve there.
    `block`: see STEPPERS.
    """
    run = Integration(func, y0, ts, args, method, stats, record, block=block)
    run.on_step = on_step
    k0 = run.f(y0, run.clock.output(0))
    _check_slope(k0, y0)
    run.check_finite(k0, run.clock.raw[0])
    if run.rk.exponent is None or step_size is not None:
        fixed_steps(run, y0, k0, step_size, max_steps)
    else:
        controller = Controller(run, rtol, atol, norm, max_step)
        h = abs(first_step) if first_step is not None else controller.initial_step(y0, k0)
        adaptive_steps(run, y0, k0, float(h), controller, max_steps)
    return run.ys


def fixed_steps(run, y0, k0, step_size, max_steps):
    """Steps on the grid s_0 + n·step_size, each landing exactly on the next output time
    (one step per output interval when step_size is None)."""
    raw = run.clock.raw
    y, sn, n, at = y0, raw[0], 0, (0, 0.0)
    for i in range(1, len(raw)):
        while raw[i] > sn:
            run.check_budget(max_steps, sn)
            nxt, end = raw[i], (i, 0.0)
            if step_size is not None:
                offset = (n + 1) * step_size
                gap = raw[0] + offset - raw[i]
                if gap < -1e-12 * step_size:
                    nxt, end, n = raw[0] + offset, (0, offset), n + 1
                elif gap <= 1e-12 * step_size:
                    n += 1  # the grid point is the output time
            step = Step(sn, nxt - sn, start=at, stop=end, land=i if end[0] == i else None)
            if sn != raw[0]:
                k0 = run.f(y, run.clock.time(sn, at))
            s, h = step.span(run.clock)
            y1, K = run.rk.step(run.f, s, y, h, k0)
            run.accept(step, y, y1, [])  # a fixed step lands on its output: none inside it
            if run.stops(step, s, y, h, K, y1):
                return
            # The one host value of a fixed step (no error estimate to catch NaN); a
            # non-finite k0 makes y1 non-finite, so this check covers it too.
            run.check_finite(y1, sn)
            y, sn, at = y1, nxt, end


def adaptive_steps(run, y0, k0, h, controller, max_steps):
    """Adaptive steps from s_0 to the last output time, reading the outputs between step
    ends off the dense output; the last step lands exactly on the last output time."""
    raw = run.clock.raw
    y, sn, i_out = y0, raw[0], 1
    while i_out < len(raw):
        step, y1, K, h = adaptive_step(run, controller, sn, y, k0, h, max_steps)
        while i_out < len(raw) - 1 and raw[i_out] <= sn + step.h:
            step.outs.append(i_out)  # output times inside the step; the last one is landed on
            i_out += 1
        if step.land is not None:
            i_out = len(raw)
        s, h_try = step.span(run.clock)
        run.accept(step, y, y1, run.outputs(step, s, y, h_try, K))
        if run.stops(step, s, y, h_try, K, y1):
            return
        sn = raw[-1] if step.land is not None else sn + step.h
        y, k0 = y1, run.rk.next_slope(run.f, run.clock.time(sn, (0, sn - raw[0])), y1, K)


def adaptive_step(run, controller, sn, y, k0, h, max_steps):
    """Try steps from (s_n, y) until one is accepted: returns (step, y_1, stages, next h).

    Each trial's error ratio is one host value; a rejected trial shrinks h and tries again.
    """
    raw = run.clock.raw
    while True:
        run.check_budget(max_steps, sn)
        h = controller.bounded(h, sn)
        # (an infinite end, an event search's t_max, is never landed on)
        last = sn + h - raw[-1] >= -1e-12 * max(abs(raw[-1]), 1.0) and math.isfinite(raw[-1])
        if last:  # the final step lands exactly on the last output time
            h = raw[-1] - sn
        # Its start hangs on ts[0]; the last step's end on the last output time.
        end = len(raw) - 1 if last else None
        step = Step(sn, h, (0, sn - raw[0]), None if end is None else (end, 0.0), end, [])
        s, h_try = step.span(run.clock)
        y1, K = run.rk.step(run.f, s, y, h_try, k0)
        ratio = run.rk.error_ratio(h, K, y, y1, controller.rtol, controller.atol, controller.norm)
        if ratio <= 1.0:
            return step, y1, K, controller.accepted(h, ratio)
        if not math.isfinite(ratio):  # a non-finite k0 is not cured by a smaller step
            run.check_finite(k0, sn)
        run.stats.n_rejected += 1
        h = controller.rejected(h, ratio)


class Controller:
    """Step sizes: Hairer's initial step, PI control, the bounds (Hairer & Wanner I, II.4)."""

    def __init__(self, run, rtol, atol, norm, max_step):
        self.run, self.rtol, self.atol, self.norm, self.max_step = run, rtol, atol, norm, max_step
        self.beta = 0.2 * run.rk.exponent  # factor = 0.9 r^−α r_prev^β
        self.alpha = run.rk.exponent - 0.75 * self.beta
        self.prev_ratio, self.rejected_last, self.nonfinite = 1e-4, False, False

    def initial_step(self, y0, f0):
        """A first step from the local scales of y0 and f(y0) (Hairer & Wanner I, II.4)."""
        y0, f0, norm, s0 = getval(y0), getval(f0), self.norm, self.run.clock.raw[0]
        scale = self.atol + np.abs(y0) * self.rtol
        d0, d1 = norm(y0 / scale), norm(f0 / scale)
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        d2 = norm((getval(self.run.f(y0 + h0 * f0, s0 + h0)) - f0) / scale) / h0
        if max(d1, d2) <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / (self.run.rk.tab.order + 1))
        return min(100 * h0, h1)

    def bounded(self, h, sn):
        """h within max_step, and not so small that s_n + h rounds to s_n."""
        if self.max_step is not None:
            h = min(h, self.max_step)  # torchdiffeq's max_step, JAX's hmax
        if h < 16 * math.ulp(max(abs(sn), 1.0)):
            t = self.run.clock.user_time(sn)
            why = (
                "the derivative became non-finite (NaN or inf)"
                if self.nonfinite
                else "the problem may be stiff or have a singularity"
            )
            raise SolverError(
                f"step size underflow at t={t:.6g} after {self.run.stats.n_steps} steps: {why} "
                f"near t={t:.6g}; loosen rtol/atol, or check func{self.run.stiffness_note()}"
            )
        return h

    def accepted(self, h, ratio):
        """The next step size after an accepted step with this error ratio."""
        factor = 0.9 * max(ratio, 1e-10) ** -self.alpha * self.prev_ratio**self.beta
        grow = 1.0 if self.rejected_last else 10.0
        self.prev_ratio, self.rejected_last = max(ratio, 1e-4), False
        return h * min(grow, max(0.2, factor))

    def rejected(self, h, ratio):
        """The size to try again with after a rejected step (a fifth if the ratio is NaN)."""
        self.nonfinite = not math.isfinite(ratio)
        self.rejected_last = True
        return h * (0.2 if self.nonfinite else min(1.0, max(0.2, 0.9 * ratio**-self.alpha)))


def replay_step(func, ts, args, method, step, y, stats=None, block=None, tolerances=None):
    """One recorded step replayed on (possibly traced) ts, args and y: (y_1, its outputs).

    The times are those of the forward solve (no host read), as expressions of ts.
    `tolerances`: the forward solve's (rtol, atol), for methods that iterate (kvaerno5).

    What "checkpoint" records on the tape: the same arithmetic as the forward step.
    """
    run = Integration(func, y, ts, args, method, stats, None, step.clock.on(ts), block)
    prepare = getattr(run.rk, "prepare_replay", None)
    if prepare is not None and tolerances is not None:
        prepare(*tolerances)
    s, h = step.span(run.clock)
    y1, K = run.rk.step(run.f, s, y, h, run.f(y, s))
    return y1, run.outputs(step, s, y, h, K)


def _check_slope(k, y0):
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
