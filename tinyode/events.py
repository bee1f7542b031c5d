"""`odeint_event`: solve until event_fn(y(t), t, *args) changes sign, differentiably.

Three parts, each on its own below:

1. **Search** (raw values, nothing on a tape). Inside every accepted step [t_a, t_b]
   the event function g(t) = event_fn(y(t), t, *args) is sampled on the step's dense
   output at m points (m = the interpolant's order + 1), not only at the step's end:
   so a dip of g below zero and back within one step is seen (diffrax #507 checks
   step ends only and misses it). The samples are walked in time order and the first
   wanted sign change is the event, so of two crossings in one step the earlier wins
   (diffrax #639). A zero at t0 has no sign: it is not an event (torchdiffeq #285).
2. **Location**: Illinois's regula falsi on the interpolant, to |Δt| ≤ 1e-12·max(1, |t|).
   The event time returned is the end of the last bracket where g has already changed
   sign, so a new solve started there does not find the same crossing again.
3. **Gradient** (Chen, Amos & Nickel 2021, "Learning Neural Event Functions for
   Ordinary Differential Equations"). t* is defined implicitly by

       g(z(t*; z0, t0, θ), t*, θ) = 0,

   and the implicit function theorem gives, with Φ the solve map (z0, t0, θ) ↦ z(t*)
   at a fixed end time t*,

       dt*/dθ = −(∂g/∂z · ∂Φ/∂θ + ∂g/∂θ) / (∂g/∂z · f + ∂g/∂t),
       dz*    = ∂Φ + f(z*, t*) dt*           (z_event moves with t* too).

   For cotangents (t̄, z̄) of (t*, z*), both collapse into one vjp of Φ:

       λ  = (t̄ + z̄ · f) / (∂g/∂z · f + ∂g/∂t)
       dL = (z̄ − λ ∂g/∂z) · ∂Φ − λ ∂g/∂θ.

   Φ is an ordinary `odeint(func, z0, [t0, t*], *args)` in the chosen gradient mode,
   so every mode works, with gradients wrt z0, t0 and args, and one backward solve
   serves t_event and y_event together. The forward pass does not solve again: its
   values come from the search.

The IFT needs the solve that differentiates to be the one that found t*: fixed-step
methods (no error estimate to choose steps from) take the one constant step
`fixed_step` picks at t0, and the gradient solve takes the same.
"""

import math
import numbers

import numpy

import tinyad
import tinyad.numpy as np
from tinyad import getval, isbox
from tinyad.backend import array_module
from tinyad.tree import tree_unflatten

from .errors import NoEventError, SolverError
from .odeint import (
    Options,
    PytreeState,
    _as_array,
    _check_inputs,
    _numbers_only,
    _stacking,
    odeint,
    split_args,
)
from .solver import BufferedStepper, Stats, integrate, rms_norm
from .tableaus import TABLEAUS

# --- 1. the search: the first wanted sign change among the samples of g ------------------------


def _sign(x):
    return (x > 0) - (x < 0)


class Scan:
    """Walks the samples of g in time order and stops at the first wanted sign change.

    `ref` is the last sample that had a sign (t, z, g); a zero at t0 has none, so the
    first signed sample after it becomes `ref` and t0 is never an event. `zero` is the
    first exact zero since `ref`: if the sign then changes, the event is there (if it
    does not, g only touched zero: no event).
    """

    def __init__(self, g, direction, t0, z0, g0):
        self.g, self.direction = g, direction
        self.ref = (t0, z0, g0)
        self.zero = None
        self.last = (t0, g0)  # the latest sample, for NoEventError's message
        self.found = None  # (t*, z*) once the event is located

    def step(self, t_a, t_b, dense, m):
        """Look for the event in the accepted step [t_a, t_b]; `dense(t)` is its interpolant.

        Samples g at t_a + j (t_b − t_a) / m, j = 1..m (the step's end last). Returns
        True when the event was found (then in `self.found`).
        """
        for j in range(1, m + 1):
            t = t_b if j == m else t_a + (t_b - t_a) * (j / m)
            z = dense(t)
            gt = self.g(z, t)
            self.last = (t, gt)
            s, s_ref = _sign(gt), _sign(self.ref[2])
            if s == 0:
                if self.zero is None:
                    self.zero = (t, z)
                continue
            if s_ref != 0 and s != s_ref and self.direction in (0, s):
                if self.zero is not None:
                    self.found = self.zero  # g is exactly zero there, then changes sign
                else:
                    t_ref, _, g_ref = self.ref
                    t_star = illinois(lambda t: self.g(dense(t), t), t_ref, t, g_ref, gt)
                    self.found = (t_star, dense(t_star))
                return True
            self.ref, self.zero = (t, z, gt), None  # same sign, or a crossing filtered out
        return False


# --- 2. location: regula falsi, Illinois variant ------------------------------------------------


def illinois(G, a, b, ga, gb):
    """The zero of G between a and b (G(a) = ga and G(b) = gb of opposite signs).

    Regula falsi keeps a bracket and tries where the secant through its ends is
    zero; the Illinois rule halves the value kept at an end that stayed twice in a
    row, so both ends close in (order ≈ 1.44; Dowell & Jarratt 1971). Stops when
    |b − a| ≤ 1e-12·max(1, |b|) and returns b, the end on the far side of the crossing
    (or a point where G is exactly 0). Works for a > b too (solves backwards in time).
    """
    kept = 0  # +1: the last iterate replaced b (a stayed); −1: it replaced a
    while abs(b - a) > 1e-12 * max(1.0, abs(b)):
        c = b - gb * (b - a) / (gb - ga)
        if not min(a, b) < c < max(a, b):
            c = 0.5 * (a + b)  # rounding put the secant's zero on an end: bisect
        gc = G(c)
        if gc == 0:
            return c
        if _sign(gc) == _sign(gb):
            b, gb = c, gc
            if kept == 1:
                ga = 0.5 * ga
            kept = 1
        else:
            a, ga = c, gc
            if kept == -1:
                gb = 0.5 * gb
            kept = -1
    return b


# --- the solver's accepted steps, each with its interpolant --------------------------------------


def fixed_step(func, z0, t0, args, method, rtol, stats):
    """The constant step of a fixed-step method: h = τ · rtol^(1/p).

    τ = ‖z0‖ / ‖f(z0, t0)‖ (RMS norms) is the time in which z moves by its own size,
    p the method's order: a p-th order method's global error is about (h/τ)^p relative
    to z, so this h aims it at rtol. τ = 1 when z0 or f(z0, t0) is zero. rk4 at the
    default rtol=1e-7 takes about 56 steps per τ; euler needs a loose rtol.
    """
    tab = TABLEAUS[method]
    stats.nfe += 1
    f0 = func(z0, t0, *args)
    size, speed = rms_norm(getval(z0)), rms_norm(getval(f0))
    tau = size / speed if size > 0 and speed > 0 else 1.0
    return tau * rtol ** (1.0 / tab.order)


def _hermite(t_a, h, y_a, f_a, y_b, f_b):
    """The cubic Hermite interpolant of a step from its ends' values and slopes."""

    def dense(t):
        s = (t - t_a) / h
        return (
            (1 + 2 * s) * (1 - s) ** 2 * y_a
            + s * (1 - s) ** 2 * h * f_a
            + s * s * (3 - 2 * s) * y_b
            + s * s * (s - 1) * h * f_b
        )

    return dense


def samples_per_step(method):
    """m: the interpolant's order + 1 (the cubic Hermite's 3 for fixed-step methods)."""
    return (TABLEAUS[method].dense_order or 3) + 1


def search(p, scan):
    """PROTOTYPE (until the solver loop has a per-step hook): solve in windows of growing
    length, replaying each recorded step to get its interpolant. Fills scan.found."""
    tab, m = TABLEAUS[p.opts.method], samples_per_step(p.opts.method)
    sign = 1.0 if p.t_max > p.t0 else -1.0
    z, t_a = p.z0, p.t0
    span = abs(p.t_max - p.t0) if math.isfinite(p.t_max) else 1.0
    kwargs = p.opts.solve_kwargs()
    while True:
        t_b = p.t_max if abs(p.t_max - t_a) <= span else t_a + sign * span
        record = []
        try:
            ys = integrate(
                p.rhs, z, numpy.array([t_a, t_b]), p.args, stats=p.stats, record=record, **kwargs
            )
        except SolverError:
            if p.stats.n_steps + p.stats.n_rejected < p.opts.max_steps:
                raise
            ys = None  # max_steps ran out: look for the event in the steps taken so far
        for step in record:
            replay = BufferedStepper(p.rhs, p.args, tab, Stats(), step.y)
            k1 = p.rhs(step.y, step.tn, *p.args)
            y1, ks = replay.step(step.tn, step.y, step.hs, k1)
            if tab.dense_p is None:
                f1 = p.rhs(y1, step.tn + step.hs, *p.args)
                dense = _hermite(step.tn, step.hs, step.y, k1, y1, f1)
            else:
                dense = (lambda tn, y, hs, ks, r: lambda t: r.dense(tn, y, hs, ks, (t - tn) / hs))(
                    step.tn, step.y, step.hs, ks, replay
                )
            if scan.step(step.tn, step.tn + step.hs, dense, m):
                return
        if ys is None or t_b == p.t_max:
            raise _no_event(p, scan)
        z, t_a, span = ys[-1], t_b, 4 * span


def _no_event(p, scan):
    """NoEventError at t_max, or where max_steps ran out first."""
    t_last, g_last = scan.last
    where = (
        f"before t_max={p.t_max:g}"
        if t_last == p.t_max
        else f"within max_steps={p.opts.max_steps} (t_max={p.t_max:g})"
    )
    way = {1: "upward ", -1: "downward ", 0: ""}[p.direction]
    return NoEventError(
        f"no event {where}: event_fn did not change sign {way}between t0={p.t0:g} and "
        f"t={t_last:g} (after {p.stats.n_steps} steps); its last value was {g_last:.6g}. "
        "Raise t_max or max_steps, or check event_fn and direction"
    )


# --- 3. the gradient: t* and z* as one primitive of (z0, t0, θ) ----------------------------------


@tinyad.primitive
def event_primitive(z0, t0, *theta, p):
    """[t*, z*] as one flat vector (one primitive, so one backward solve serves both)."""
    t_star, z_star = p.found
    xp = array_module(z_star)
    dtype = numpy.result_type(z_star.dtype, numpy.float64)
    return xp.concatenate([xp.asarray([t_star], dtype=dtype), z_star.reshape(-1).astype(dtype)])


def event_vjp(argnums, g, packed, z0, t0, *theta, p):
    """(dL/dz0, dL/dt0, *dL/dθ) by the implicit function theorem (module docstring)."""
    t_bar, z_bar = g[0], np.reshape(g[1:], np.shape(z0)).astype(getval(z0).dtype)
    t_star, z_star = packed[0], np.reshape(packed[1:], np.shape(z0)).astype(getval(z0).dtype)
    t_fixed = getval(t_star)  # Φ's end time is held fixed; t*'s own motion is the IFT's

    # ∂g/∂z, ∂g/∂t, ∂g/∂θ at the event (one vjp of event_fn) and f there (one call of func)
    def event_value(z, t, *theta):
        return p.event_fn(z, t, *p.argdef.rebuild(theta))

    _, g_vjp = tinyad.vjp(event_value, z_star, t_star, *theta)
    g_z, g_t, *g_theta = g_vjp(np.ones((), getval(packed).dtype))
    f_star = p.rhs(z_star, t_star, *p.argdef.rebuild(theta))
    speed = np.sum(g_z * f_star) + g_t  # dg/dt along the solution at t*
    if float(getval(speed)) == 0:
        raise ValueError(
            f"event_fn crosses zero at t={float(t_fixed):.15g} with zero speed "
            "(∂g/∂y·f + ∂g/∂t = 0): the event time is not differentiable there"
        )
    lam = (t_bar + np.sum(z_bar * f_star)) / speed

    # Φ: the solve to the fixed end time t*, differentiated in the chosen gradient mode
    resolve = {}

    def solve_map(z0, t0, *theta):
        ys, info = odeint(
            p.rhs, z0, np.stack([t0, t_fixed]), *p.argdef.rebuild(theta), **p.odeint_kwargs
        )
        resolve.update(info)
        return ys[-1]

    _, phi_vjp = tinyad.vjp(solve_map, z0, t0, *theta)
    z0_bar, t0_bar, *theta_bar = phi_vjp(z_bar - lam * g_z)
    back = resolve.get("backward", {})
    p.info["backward"] = {
        k: resolve[k] + back.get(k, 0) + (1 if k == "nfe" else 0)
        for k in ("nfe", "n_steps", "n_rejected")
    }
    theta_bar = [a - lam * b for a, b in zip(theta_bar, g_theta)]
    return (z0_bar, t0_bar, *theta_bar)


tinyad.defvjp_all(event_primitive, event_vjp)


# --- odeint_event ---------------------------------------------------------------------------------


class Problem:
    """One odeint_event call after its checks: flat state z, raw values, options."""


def odeint_event(
    func,
    y0,
    t0,
    event_fn,
    *args,
    direction=0,
    t_max=numpy.inf,
    method="dopri5",
    rtol=1e-7,
    atol=1e-9,
    max_steps=100_000,
    gradient="adjoint",
    full_output=False,
):
    """Solve dy/dt = func(y, t, *args) from y(t0) = y0 until event_fn(y, t, *args) changes sign.

    Returns `(t_event, y_event)`: the first time after t0 (before it, when
    t_max < t0) at which event_fn(y(t), t, *args), a scalar, changes sign (upward
    for direction=1, downward for −1, either for 0; up and down are along the solve,
    as in scipy), located on the method's dense output to |Δt| ≤ 1e-12·max(1, |t|),
    and y there. A zero at t0 is not an event. The dense output is checked inside
    every step, and of several crossings the earliest wins. `NoEventError` when
    there is none before t_max (or within max_steps). y0, func and args as in
    `odeint`. Differentiable in every gradient mode wrt y0, t0 and args (the event
    time by the implicit function theorem, Chen, Amos & Nickel 2021). Fixed-step
    methods take the constant step `tinyode.events.fixed_step` chooses.
    `full_output=True` also returns `info`: the search's nfe, n_steps, n_rejected,
    n_event_evals, step_size (fixed-step methods); after a gradient, `info["backward"]`.
    """
    p = Problem()
    if direction not in (-1, 0, 1) or isinstance(direction, bool):
        raise ValueError(
            f"direction must be 1 (upward), -1 (downward) or 0 (either), got {direction!r}"
        )
    if not callable(event_fn):
        raise TypeError(f"event_fn must be a function event_fn(y, t, *args), got {event_fn!r}")
    p.direction, p.event_fn_user = direction, event_fn
    t0v = _scalar_time("t0", t0)
    if not math.isfinite(t0v):
        raise ValueError(f"t0 must be finite, got {t0v}")
    p.t0 = t0v
    p.t_max = _scalar_time("t_max", t_max)
    if math.isnan(p.t_max) or p.t_max == t0v:
        raise ValueError(
            f"t_max must differ from t0={t0v:g} (a later time, or an earlier one to solve "
            f"backwards; numpy.inf by default), got {p.t_max}"
        )
    t_check = p.t_max if math.isfinite(p.t_max) else t0v + (1.0 if p.t_max > t0v else -1.0)

    if isinstance(y0, dict) or (isinstance(y0, (list, tuple)) and not _numbers_only(y0)):
        state = PytreeState(y0)
        z0, rhs = state.z0, state.wrap(func)
        structured = lambda z: tree_unflatten(state.treedef, state.leaves(z))  # noqa: E731
        unpack = structured
    else:
        z0, rhs = _as_array(y0), _stacking(func)
        structured = unpack = None
    opts = Options(
        method=method,
        rtol=rtol,
        atol=atol,
        step_size=None,
        first_step=None,
        max_steps=max_steps,
        max_step=None,
        adjoint_rtol=rtol,
        adjoint_atol=atol,
        adjoint_norm="full",
        norm_parts=None,
    )
    _check_inputs(z0, numpy.array([t0v, t_check]), opts, gradient)
    theta, argdef = split_args(args)
    traced = any(map(isbox, [z0, t0, *theta]))
    if traced and getval(z0).dtype.kind == "c":
        raise TypeError(
            "odeint_event cannot differentiate through a complex state: tinyad does not "
            "differentiate complex numbers. Solve the real and imaginary parts as one real state"
        )

    def event_flat(z, t, *a):
        return event_fn(structured(z) if structured else z, t, *a)

    p.rhs, p.event_fn, p.argdef = rhs, event_flat, argdef
    p.z0 = getval(z0)
    p.args = argdef.rebuild([getval(x) for x in theta])
    p.stats = Stats()
    n_g = [0]

    def g_raw(z, t):
        n_g[0] += 1
        return _event_value(event_flat(z, t, *p.args), t)

    if TABLEAUS[method].b_err is None:
        opts = opts._replace(step_size=fixed_step(rhs, p.z0, t0v, p.args, method, rtol, p.stats))
    p.opts = opts
    p.odeint_kwargs = dict(
        method=method,
        rtol=rtol,
        atol=atol,
        step_size=opts.step_size,
        max_steps=max_steps,
        gradient=gradient,
        full_output=True,
    )
    scan = Scan(g_raw, direction, t0v, p.z0, g_raw(p.z0, t0v))
    search(p, scan)
    p.found = scan.found
    p.info = info = p.stats.as_dict()
    info["n_event_evals"] = n_g[0]
    if opts.step_size is not None:
        info["step_size"] = opts.step_size

    t0_in = t0 if isbox(t0) else numpy.asarray(t0v)
    packed = event_primitive(z0, t0_in, *theta, p=p)
    t_event = packed[0]
    z_event = np.reshape(packed[1:], np.shape(z0)).astype(getval(z0).dtype)
    y_event = unpack(z_event) if unpack else z_event
    return (t_event, y_event, info) if full_output else (t_event, y_event)


def _scalar_time(name, t):
    """A time given as a number or a 0-d array (traced or not) as a host float."""
    v = getval(t)
    if (
        getattr(v, "shape", ()) != ()
        or not (
            isinstance(v, numbers.Real) or getattr(getattr(v, "dtype", None), "kind", "") in "fiu"
        )
        or isinstance(v, bool)
    ):
        raise ValueError(f"{name} must be a number (a scalar time), got {t!r}")
    return float(v)


def _event_value(v, t):
    """event_fn's result as a host float: a finite real scalar, or a clear error."""
    if isbox(v):
        raise TypeError(
            "event_fn (or func) closes over a traced value (a parameter of an enclosing grad "
            "or vjp): odeint_event differentiates only y0, t0 and args. Pass it through args: "
            "odeint_event(func, y0, t0, event_fn, theta) with event_fn(y, t, theta)"
        )
    size = getattr(v, "size", 1)
    if (
        size != 1
        or getattr(getattr(v, "dtype", None), "kind", "f") not in "fiub"
        or isinstance(v, complex)
    ):
        shape = getattr(v, "shape", None)
        raise ValueError(
            f"event_fn(y, t, *args) must return a real scalar, got {type(v).__name__}"
            f"{'' if shape is None else f' of shape {shape}'} {v!r}"
        )
    value = float(v.reshape(())) if hasattr(v, "reshape") else float(v)
    if not math.isfinite(value):
        raise SolverError(f"event_fn returned {value} at t={t:.6g}; it must be finite")
    return value
