"""`odeint_event`: solve until event_fn(y(t), t, *args) changes sign, differentiably.

Three parts, each on its own below:

1. **Search** (raw values, nothing on a tape). One solve from t0 towards t_max;
   after every accepted step [t_a, t_b] the event function g(t) = event_fn(y(t), t)
   is sampled on the step's dense output at m points (m = the interpolant's order + 1),
   not only at the step's end: so a dip of g below zero and back within one step is
   seen (diffrax #507 checks step ends only and misses it). The samples are walked in
   time order and the first wanted sign change is the event, so of two crossings in
   one step the earlier wins (diffrax #639). A zero at t0 has no sign: it is not an
   event (torchdiffeq #285). The solve stops at the step holding the event.
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
   so every mode works, with gradients wrt z0, t0 and args (and to higher order),
   and one backward solve serves t_event and y_event together. The forward pass does
   not solve twice: its values come from the search. The speed f(z*, t*) is read off
   the slope of the dense output the event was found on (see `slope`).

Fixed-step methods have no error estimate to choose steps from: they take the one
constant step `fixed_step` picks at t0, and the gradient's solve takes the same.
"""

import math
import numbers

import numpy

import tinyad
import tinyad.numpy as np
from tinyad import getval, isbox
from tinyad.backend import array_module

from .errors import NoEventError, SolverError
from .inputs import GRADIENTS, METHODS, _as_array, _numbers_only, _stacking, split_args
from .odeint import odeint
from .solver import FIXED_STEP, Stats, integrate, rms_norm
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
        self.found = None  # (t*, z*, dz/dt on the dense output at t*) once located

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
                    self.zero = (t, z, slope(dense, t, t_b - t_a))
                continue
            if s_ref != 0 and s != s_ref and self.direction in (0, s):
                if self.zero is not None:
                    self.found = self.zero  # g is exactly zero there, then changes sign
                else:
                    t_ref, _, g_ref = self.ref
                    t_star = illinois(lambda t: self.g(dense(t), t), t_ref, t, g_ref, gt)
                    self.found = (t_star, dense(t_star), slope(dense, t_star, t_b - t_a))
                return True
            self.ref, self.zero = (t, z, gt), None  # same sign, or a crossing filtered out
        return False


def slope(dense, t, h):
    """dz/dt of the interpolant at t, by a central difference over 1e-4 of the step h.

    The interpolant is a polynomial of low degree, so the truncation error is ~1e-8·h²·z'''
    and the rounding error ~1e-12·|z|/|h|. The gradient uses it as the solution's speed at
    t*: for a stiff f, f(z*) is much less accurate (it multiplies z*'s error by the stiffness).
    """
    eps = 1e-4 * h
    return (dense(t + eps) - dense(t - eps)) / (2 * eps)


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


# --- the solve: each accepted step with its interpolant -----------------------------------------

# The solver's last-step test needs a finite end time: t_max = ±inf solves towards the
# largest float instead (reached only if max_steps is not).
_FAR = float(numpy.finfo(float).max)


def search(p, scan):
    """One raw solve from t0 towards t_max, stopped at the step that holds the event.

    Each accepted step's interpolant is the method's dense output. Fixed-step methods
    have none: their step is the cubic Hermite through both ends' values and slopes,
    and the slope at the end is the next step's k0, so each fixed step is checked when
    the next has been taken (the last one with one more evaluation of f).
    """
    waiting = {}  # fixed steps: the step waiting for the slope at its end

    def check_fixed(k_b):
        sign, s, y, h, y1, k_a = waiting.pop("step")

        def dense(t):
            return y1 if t == sign * (s + h) else hermite(y, k_a, y1, k_b, h, (sign * t - s) / h)

        return scan.step(sign * s, sign * (s + h), dense, 4)

    def on_step(run, step, s, y, h, K, y1):
        sign = run.clock.sign  # the solver's time is s = sign·t, always increasing
        if p.method in FIXED_STEP:
            found = "step" in waiting and check_fixed(K[0])  # K[0] = f at this step's start
            waiting["step"], waiting["f"] = (sign, s, y, h, y1, K[0]), run.f
            return found

        def dense(t):
            if t == sign * (s + h):
                return y1
            return run.rk.interpolate(run.f, s, y, h, K, (sign * t - s) / h)

        return scan.step(sign * s, sign * (s + h), dense, samples_per_step(run.rk))

    t_end = p.t_max if math.isfinite(p.t_max) else math.copysign(_FAR, p.t_max)
    out_of_steps = None
    try:
        integrate(
            p.rhs,
            p.z0,
            numpy.array([p.t0, t_end]),
            p.args,
            method=p.method,
            rtol=p.rtol,
            atol=p.atol,
            step_size=p.step_size,
            max_steps=p.max_steps,
            stats=p.stats,
            on_step=on_step,
        )
    except SolverError as e:
        if p.stats.n_steps + p.stats.n_rejected < p.max_steps:
            raise  # not the budget: a step size underflow, a non-finite f
        out_of_steps = e
    if scan.found is None and "step" in waiting:  # the last fixed step, with f at its end
        _, s, _, h, y1, _ = waiting["step"]
        check_fixed(waiting["f"](y1, s + h))
    if scan.found is None:
        raise _no_event(p, scan, out_of_steps is not None) from out_of_steps
    return scan.found


def samples_per_step(stepper):
    """m: the interpolant's order + 1 samples of g per step (4 for a cubic)."""
    return (getattr(stepper.tab, "dense_order", None) or 3) + 1


def hermite(y_a, k_a, y_b, k_b, h, theta):
    """The cubic Hermite interpolant of a step of size h at θ ∈ [0, 1], from its ends'
    values and slopes (an O(h⁴) interpolant, as Hairer & Wanner I, II.6)."""
    return (
        (1 + 2 * theta) * (1 - theta) ** 2 * y_a
        + theta * (1 - theta) ** 2 * h * k_a
        + theta * theta * (3 - 2 * theta) * y_b
        + theta * theta * (theta - 1) * h * k_b
    )


def fixed_step(func, z0, t0, args, method, rtol, stats):
    """The constant step of a fixed-step method: h = τ · rtol^(1/p).

    τ = ‖z0‖ / ‖f(z0, t0)‖ (RMS norms) is the time in which z moves by its own size,
    p the method's order: a p-th order method's global error is about (h/τ)^p relative
    to z, so this h aims it at rtol. τ = 1 when z0 or f(z0, t0) is zero. rk4 at the
    default rtol=1e-7 takes about 56 steps per τ; euler needs a loose rtol (1e-3: 1000).
    """
    stats.nfe += 1
    size, speed = rms_norm(getval(z0)), rms_norm(getval(func(z0, t0, *args)))
    tau = size / speed if size > 0 and speed > 0 else 1.0
    return tau * rtol ** (1.0 / TABLEAUS[method].order)


def _no_event(p, scan, out_of_steps):
    """NoEventError at t_max, or where max_steps ran out first."""
    t_last, g_last = scan.last
    where = (
        f"within max_steps={p.max_steps} (t_max={p.t_max:g})"
        if out_of_steps
        else f"before t_max={p.t_max:g}"
    )
    way = {1: "upward ", -1: "downward ", 0: ""}[p.direction]
    fixed = (
        f" {p.method} takes fixed steps of {p.step_size:.3g} here (tinyode.events.fixed_step): "
        "a looser rtol takes fewer."
        if p.step_size is not None and out_of_steps
        else ""
    )
    return NoEventError(
        f"no event {where}: event_fn did not change sign {way}between t0={p.t0:g} and "
        f"t={t_last:g} (after {p.stats.n_steps} steps); its last value was {g_last:.6g}. "
        f"Raise t_max or max_steps, or check event_fn and direction.{fixed}"
    )


# --- 3. the gradient: t* and z* as one primitive of (z0, t0, θ) ----------------------------------


@tinyad.primitive
def event_primitive(z0, t0, *theta, p):
    """[t*, z*] as one flat vector (one primitive, so one backward solve serves both)."""
    t_star, z_star, _ = p.found
    xp = array_module(z_star)
    dtype = numpy.result_type(z_star.dtype, numpy.float64)
    return xp.concatenate([xp.asarray([t_star], dtype=dtype), z_star.reshape(-1).astype(dtype)])


def event_vjp(argnums, g, packed, z0, t0, *theta, p):
    """(dL/dz0, dL/dt0, *dL/dθ) by the implicit function theorem (module docstring)."""
    dtype, shape = getval(z0).dtype, np.shape(z0)
    t_bar, z_bar = g[0], np.reshape(g[1:], shape).astype(dtype)
    t_star, z_star = packed[0], np.reshape(packed[1:], shape).astype(dtype)

    # ∂g/∂z, ∂g/∂t, ∂g/∂θ at the event (one vjp of event_fn)
    def event_value(z, t, *theta):
        return p.event_fn(z, t, *p.rebuild(theta))

    _, g_vjp = tinyad.vjp(event_value, z_star, t_star, *theta)
    g_z, g_t, *g_theta = g_vjp(array_module(getval(packed)).ones((), getval(packed).dtype))
    # The solution's speed f(z*, t*): its value from the dense output the event was located
    # on (see `slope`), its derivatives, for higher orders, from f (one call of func).
    f_star = p.rhs(z_star, t_star, *p.rebuild(theta))
    f_star = f_star + (p.found[2] - getval(f_star))
    speed = np.sum(g_z * f_star) + g_t  # dg/dt along the solution at t*
    if float(getval(speed)) == 0:
        raise ValueError(
            f"event_fn crosses zero at t={float(getval(t_star)):.15g} with zero speed "
            "(∂g/∂y·f + ∂g/∂t = 0): the event time is not differentiable there"
        )
    lam = (t_bar + np.sum(z_bar * f_star)) / speed

    # Φ: the solve to t*, in the chosen mode. This vjp is wrt (z0, t0, θ) only: t*'s own
    # motion is the IFT's. (Differentiating this vjp again, t_star is traced on the outer
    # tape, so Φ's dependence on where it ends is differentiated too.)
    resolve = {}

    def solve_map(z0, t0, *theta):
        ys, info = odeint(
            p.rhs,
            z0,
            np.stack([t0, t_star]),
            *p.rebuild(theta),
            method=p.method,
            rtol=p.rtol,
            atol=p.atol,
            step_size=p.step_size,
            max_steps=p.max_steps,
            gradient=p.gradient,
            full_output=True,
        )
        resolve.update(info)
        return ys[-1]

    _, phi_vjp = tinyad.vjp(solve_map, z0, t0, *theta)
    z0_bar, t0_bar, *theta_bar = phi_vjp(z_bar - lam * g_z)
    # The gradient's cost: the solve to t*, its backward pass, and the one f above.
    back = resolve.get("backward", {})
    p.info["backward"] = {
        k: resolve[k] + back.get(k, 0) + (k == "nfe") for k in ("nfe", "n_steps", "n_rejected")
    }
    theta_bar = [a - lam * b for a, b in zip(theta_bar, g_theta)]
    return (z0_bar, t0_bar, *theta_bar)


tinyad.defvjp_all(event_primitive, event_vjp)


# --- odeint_event ---------------------------------------------------------------------------------


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
    step_sizes, step_times, n_event_evals, and step_size (fixed-step methods); after
    a gradient, `info["backward"]` holds its nfe, n_steps, n_rejected.

    >>> t_hit, y_hit = odeint_event(lambda y, t: [y[1], -9.81], [1.0, 0.0], 0.0, lambda y, t: y[0])
    """
    p = EventProblem(func, y0, t0, event_fn, args, direction, t_max, method, rtol, atol,
                     max_steps, gradient)  # fmt: skip
    p.found = search(p, Scan(p.g_raw, direction, p.t0, p.z0, p.g_raw(p.z0, p.t0)))
    p.info = info = p.stats.as_dict()
    info["n_event_evals"] = p.n_event_evals
    if p.step_size is not None:
        info["step_size"] = p.step_size

    packed = event_primitive(p.z0_in, p.t0_in, *p.theta, p=p)
    t_event = packed[0] if p.dtype.kind != "c" else np.real(packed[0])  # packed with a complex z
    z_event = np.reshape(packed[1:], p.shape).astype(p.dtype)
    y_event = p.unflatten(z_event) if p.unflatten else z_event
    return (t_event, y_event, info) if full_output else (t_event, y_event)


class EventProblem:
    """One odeint_event call after its checks: the flat state z, the args split into θ
    (floating-point leaves, differentiated) and constants, raw values for the search."""

    def __init__(self, func, y0, t0, event_fn, args, direction, t_max, method, rtol, atol,
                 max_steps, gradient):  # fmt: skip
        _check_options(event_fn, direction, method, gradient, rtol, atol, max_steps)
        self.direction, self.method, self.gradient = direction, method, gradient
        self.rtol, self.atol, self.max_steps = rtol, atol, max_steps

        self.t0 = _scalar_time("t0", t0)
        if not math.isfinite(self.t0):
            raise ValueError(f"t0 must be finite, got {self.t0}")
        self.t_max = _scalar_time("t_max", t_max)
        if math.isnan(self.t_max) or self.t_max == self.t0:
            raise ValueError(
                f"t_max must differ from t0={self.t0:g} (a later time, or an earlier one to "
                f"solve backwards; numpy.inf by default), got {self.t_max}"
            )
        self.t0_in = t0 if isbox(t0) else numpy.float64(self.t0)  # a scalar: any array module

        # The state as one array z: y0 itself, or a pytree's leaves flattened into one vector.
        if isinstance(y0, dict) or (isinstance(y0, (list, tuple)) and not _numbers_only(y0)):
            z0, unflatten = tinyad.flatten(y0)
            self.rhs = lambda z, t, *a: tinyad.flatten(func(unflatten(z), t, *a))[0]
            self.event_fn = lambda z, t, *a: event_fn(unflatten(z), t, *a)
            self.unflatten = unflatten
        else:
            z0 = _as_array(y0)
            self.rhs = _stacking(func)
            self.event_fn, self.unflatten = event_fn, None
        self.z0_in, self.z0 = z0, getval(z0)
        self.shape, self.dtype = self.z0.shape, self.z0.dtype
        xp = array_module(self.z0)
        if not bool(xp.all(xp.isfinite(self.z0))):
            raise ValueError("y0 must be finite; it contains NaN or inf")

        # args: the floating-point leaves θ are differentiated, the rest are constants
        self.theta, argdef = split_args(args)
        self.rebuild = argdef.rebuild
        self.args = self.rebuild([getval(x) for x in self.theta])
        if self.dtype.kind == "c" and any(map(isbox, [z0, t0, *self.theta])):
            raise TypeError(
                "odeint_event cannot differentiate through a complex state: tinyad does not "
                "differentiate complex numbers. Solve the real and imaginary parts as one "
                "real state"
            )

        self.stats, self.n_event_evals = Stats(), 0
        self.step_size = None
        if method in FIXED_STEP:
            self.step_size = fixed_step(self.rhs, self.z0, self.t0, self.args, method, rtol,
                                        self.stats)  # fmt: skip

    def g_raw(self, z, t):
        """event_fn on raw values, as a host float (counted in n_event_evals)."""
        self.n_event_evals += 1
        return _event_value(self.event_fn(z, t, *self.args), t)


def _check_options(event_fn, direction, method, gradient, rtol, atol, max_steps):
    """The errors odeint_event raises before solving, for its options."""
    if isinstance(direction, bool) or direction not in (-1, 0, 1):
        raise ValueError(
            f"direction must be 1 (upward), -1 (downward) or 0 (either), got {direction!r}"
        )
    if not callable(event_fn):
        raise TypeError(f"event_fn must be a function event_fn(y, t, *args), got {event_fn!r}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of METHODS: {', '.join(METHODS)}")
    if gradient not in GRADIENTS:
        raise ValueError(f"unknown gradient {gradient!r}; choose one of {', '.join(GRADIENTS)}")
    for name, v in (("rtol", rtol), ("atol", atol)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
            raise ValueError(f"{name} must be a positive number, got {v!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps <= 0:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")


def _scalar_time(name, t):
    """A time given as a number or a 0-d array (traced or not) as a host float."""
    v = getval(t)
    kind = getattr(getattr(v, "dtype", None), "kind", None)
    if (
        isinstance(v, bool)
        or getattr(v, "shape", ()) != ()
        or not (isinstance(v, numbers.Real) or kind in ("f", "i", "u"))
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
    kind = getattr(getattr(v, "dtype", None), "kind", None)
    if getattr(v, "size", 1) != 1 or isinstance(v, complex) or kind not in (None, "f", "i", "u"):
        shape = getattr(v, "shape", None)
        raise ValueError(
            f"event_fn(y, t, *args) must return a real scalar, got {type(v).__name__}"
            f"{'' if shape is None else f' of shape {shape}'} {v!r}"
        )
    value = float(v.reshape(())) if hasattr(v, "reshape") else float(v)
    if not math.isfinite(value):
        raise SolverError(f"event_fn returned {value} at t={t:.6g}; it must be finite")
    return value
