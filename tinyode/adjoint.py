"""The adjoint sensitivity method (Chen et al. 2018), with nothing but tinyad's vjps.

For a loss L of the outputs z(t_i), the adjoint a(t) = dL/dz(t) obeys

    da/dt       = −aᵀ ∂f/∂z
    d(dL/dθ)/dt = −aᵀ ∂f/∂θ
    d(dL/dt)/dt = −aᵀ ∂f/∂t

Solved backwards from t_N, together with z itself (dz/dt = f), as one ODE on
the augmented state {z, a, dL/dθ, dL/dt}, a pytree laid out as one vector v. Between
outputs v is carried by odeint's own solve (one `Problem`, the state's layout, for every
interval; in this same gradient mode, so the backward pass is differentiable in turn); at
each t_i, z restarts from the stored z(t_i) and the cotangent of ys[i] is added to a.
All three products come from one vjp of f per evaluation: no Jacobian is ever built.

With the implicit methods (stiff problems) z is not solved backwards, where its fast
modes grow like e^{|λ|t}: it is re-solved forward over each interval and read from there
(AlongForward), and only {a, dL/dθ, dL/dt} is solved backwards.
"""

import bisect
import functools
import math
import os
import sys
import warnings

import numpy

import tinyad
import tinyad.numpy as np
from tinyad import getval, isbox
from tinyad.backend import array_module
from tinyad.replay import Replay
from tinyad.tree import tree_flatten

from .errors import BacksolveWarning, SolverError
from .implicit import IMPLICIT_TABLEAUS
from .inputs import PytreeState, join
from .odeint import STRATEGIES, Problem, forward, solve_as_primitive
from .solver import FIXED_STEP, Stats, integrate, mixed_norm, rms_norm, sum_of_squares

# Warn when the reconstructed z is off by 10× more than both what the tolerances allow and
# what the solves' own errors explain (see _check_drift).
DRIFT_FACTOR = 10.0


@tinyad.primitive
def odeint_adjoint(y0, t, *theta, func, argdef, opts, info):
    ys = forward(y0, t, theta, func, argdef, opts, info)
    # Saved for the vjp: where the forward steps began (8 bytes a step), which the drift
    # check reads; nothing else of the forward solve is kept.
    return tinyad.Saved(ys, info["step_times"])


def adjoint_vjp(argnums, g, ys, y0, t, *theta, func, argdef, opts, info, saved):
    """(dL/dy0, dL/dt, *dL/dθ) from g = dL/dys: per output interval, from t_i back to t_{i-1},
    one `odeint` of the augmented state {z, a, dL/dθ, dL/dt}; at each t_i, g_i joins a."""
    # Stiff problems (the implicit methods): z read from a forward re-solve, not solved back.
    along = opts.method in IMPLICIT_TABLEAUS and not _any_traced(g, ys, t, theta)
    dynamics = Augmented(func, argdef, getval(ys).dtype)
    backward = dict(  # the options of the backward solves
        opts._asdict(),
        rtol=opts.adjoint_rtol,
        atol=opts.adjoint_atol,
        first_step=None,  # Hairer's initial step on the first interval, then carried
    )
    del backward["norm"], backward["block"]
    norm = _seminorm if opts.adjoint_norm == "seminorm" else _mixed_norm
    counts = {"nfe": 0, "n_steps": 0, "n_rejected": 0}
    forward_steps = _forward_steps(saved, t)
    resolve = _resolver(func, argdef, theta, t, opts, counts, np.shape(y0))
    xp = array_module(getval(ys))
    state = {
        "a": g[-1],
        "L_theta": [xp.zeros(np.shape(x), dtype=dynamics.dtype) for x in theta],  # dL/dθ
        "L_t": xp.zeros((), dtype=dynamics.dtype),  # dL/dt_0, accumulated
    }
    if not along:
        state["z"] = ys[-1]
    # The state is carried from interval to interval as one vector v, laid out as every
    # backward solve lays it out (one `Problem`): z, a and L_t are spans of it.
    problem = None if along else Problem(dynamics, state, norm)
    layout = PytreeState(state) if along else problem.layout
    v, span = layout.z0, {key: layout.span(key) for key in state}
    t_bars = []
    args = (list(theta),)  # the augmented dynamics' args: one list for every solve
    for i in range(len(ys) - 1, 0, -1):
        if 1 in argnums:  # dL/dt wanted (one more evaluation of f per output time)
            # Moving t_i moves the measurement along the trajectory: dL/dt_i = g_iᵀ f(z(t_i), t_i).
            t_bar = np.sum(g[i] * func(ys[i], t[i], *argdef.rebuild(theta)))
            counts["nfe"] += 1
            t_bars.append(t_bar)
            v = _put(v, span["L_t"], v[span["L_t"]] - t_bar)
        if along:
            z = ForwardPath(func, argdef, theta, ys[i - 1], t[i - 1 : i + 1], opts)
            counts["nfe"] += z.nfe
            problem = Problem(AlongForward(dynamics, z), state, norm)  # state: the layout
            v, sub = _backward_solve(problem, v, t, i, args, backward, z.knots)
        else:
            # restart from the stored state (a drifted z is not carried on)
            v = _put(v, span["z"], ys[i])
            v, sub = _backward_solve(problem, v, t, i, args, backward)
        backward["first_step"] = float(sub["step_sizes"][-2:][0])  # carried to the next interval
        for k in counts:
            counts[k] += sub[k]
        if not along:
            steps = int(forward_steps[i - 1]) + sub["n_steps"]
            _check_drift(v[span["z"]], ys, i, t, opts, steps, resolve)
        v = _put(v, span["a"], v[span["a"]] + g[i - 1].reshape(-1))
    state = layout.at(v)
    info["backward"] = counts
    dt = None
    if 1 in argnums:
        dt = np.reshape(np.stack([state["L_t"], *t_bars[::-1]]), np.shape(t))
    return (state["a"], dt, *state["L_theta"])


class Augmented:
    """The augmented dynamics d/dt {z, a, L_θ, L_t} = {f, −aᵀ∂f/∂z, −aᵀ∂f/∂θ, −aᵀ∂f/∂t},
    where L_θ = dL/dθ and L_t = dL/dt.

    All three products come from one vjp of f per evaluation. f and its backward pass are
    traced once and replayed, as one straight-line program of (z, t, θ, a), on each new
    evaluation when they can be (tinyad/replay.py). Only z and a
    feed back into the dynamics; L_θ and L_t are quadratures (`feedback`, for implicit
    methods: they need ∂/∂(z, a) only).
    """

    feedback = ("a", "z")

    def __init__(self, func, argdef, dtype):
        self.vjp = Replay(lambda z, t, theta: func(z, t, *argdef.rebuild(theta)))
        self.dtype = dtype

    def __call__(self, state, t, theta):
        dz, pull = self.vjp(state["z"], t, theta)
        da, dt, dtheta = pull(-state["a"])
        return {"z": dz, "a": da, "L_theta": list(dtheta), "L_t": self._time_cotangent(dt, dz)}

    def _time_cotangent(self, dt, dz):
        """−aᵀ∂f/∂t in the state's dtype, on dz's device."""
        xp = array_module(getval(dz))
        if not tinyad.isbox(dt) and array_module(dt) is not xp:
            return xp.zeros((), self.dtype)  # f ignores t: its zero cotangent was made on the host
        return np.astype(dt, self.dtype)

    def on_layout(self, state, fallback):
        """These dynamics on the flat vector of the augmented state, as the PytreeState
        `state` lays it out: z and a read from it as views, the derivatives joined in its
        order. The same numbers as packing __call__'s dict, without a pytree built and
        walked at every evaluation (at B6's sizes that was a third of an evaluation); once
        f's vjp is compiled, it is one function of the leaves (`Replay.compiled_for`,
        checked once per solve and kind of t), called on them directly. Traced values (a
        backward pass differentiated in turn) take `fallback`, the pytree path."""
        parts = state.parts()
        ((z_at, z_shape, _),), ((a_at, a_shape, _),) = parts["z"], parts["a"]
        # run's result is (dz/dt, da/dt, dL_t/dt, *dL_θ/dt); `order` lists it in the layout's
        where = {"z": [0], "a": [1], "L_t": [2], "L_theta": range(3, 3 + len(parts["L_theta"]))}
        order = [k for key in parts for k in where[key]]
        runs = {}  # the kinds of v and t -> (θ, the compiled vjp for them and θ)

        def flat(v, t, theta):
            if isbox(v) or isbox(t):
                return fallback(v, t, theta)
            z, g = v[z_at].reshape(z_shape), -v[a_at].reshape(a_shape)
            # z and a are shaped by the layout; θ is one list for the whole solve
            key = (type(v), v.dtype, type(t), getattr(t, "dtype", None))
            theta_run, run = runs.get(key, (None, None))
            if theta_run is not theta:
                if any(map(isbox, theta)):
                    return fallback(v, t, theta)
                run = self.vjp.compiled_for([z, t, *theta], g)
                if run is None:  # f's vjp not compiled (yet): __call__, joined
                    return self._joined(parts, self({"z": z, "a": -g}, t, theta))
                runs[key] = theta, run
            out = list(run(z, t, *theta, g))
            xp = array_module(v)
            out[2] = xp.asarray(out[2], self.dtype)  # a host zero if f ignores t
            return xp.concatenate([out[k] for k in order], axis=None)  # each one flattened

        return flat

    @staticmethod
    def _joined(parts, out):
        """__call__'s dict as one flat vector in the layout's order."""
        # (traced when func closes over a traced value: refused later on)
        return join([x.reshape(-1) for key in parts for x in _as_list(out[key])])


def _as_list(x):
    return x if isinstance(x, list) else [x]


def _put(v, where, x):
    """v with v[where] replaced by x (flattened): a new vector, which the tape can record."""
    return join([v[: where.start], x.reshape(-1), v[where.stop :]])


class AlongForward:
    """d/dt {a, L_θ, L_t} = {−aᵀ∂f/∂z, −aᵀ∂f/∂θ, −aᵀ∂f/∂t} at z(t) read from the forward
    solution `z` (a ForwardPath), not solved backwards with a.

    On a stiff problem z's fast modes decay forward in time, so solved backwards they grow
    like e^{|λ|t}: Robertson's backward solve of z fails within its first interval. a itself
    is stable backwards (da/dt = −Jᵀa has J's eigenvalues), and stiff in the same way, which
    the implicit method handles: only a feeds back, and its Jacobian is n×n.
    (SciML's InterpolatingAdjoint; the memory is one interval's forward steps at a time.)
    """

    feedback = ("a",)

    def __init__(self, augmented, z):
        self.augmented, self.z = augmented, z

    def __call__(self, state, t, theta):
        derivatives = self.augmented({"z": self.z(t), **state}, t, theta)
        del derivatives["z"]
        return derivatives


class ForwardPath:
    """z(t) on [t_{i-1}, t_i]: a forward re-solve from the stored z(t_{i-1}) with the
    forward options, kept as its accepted steps and read through the method's dense output
    (differentiable in t, which rodas4's ∂f/∂t needs)."""

    def __init__(self, func, argdef, theta, z0, times, opts):
        stats, self.steps = Stats(), []

        def keep(run, step, s, y, h, K, y1):
            self.run = run
            self.steps.append((s, h, y, K))

        args = argdef.rebuild([getval(x) for x in theta])
        integrate(func, z0, getval(times), args, stats=stats, on_step=keep, **opts.solve_kwargs())
        self.nfe, self.sign = stats.nfe, self.run.clock.sign
        self.starts = [s for s, *_ in self.steps]
        # Where one step's polynomial meets the next: z(t) is continuous there, its
        # derivatives are not, and a backward step across it would see a kink.
        self.knots = [self.sign * s for s in self.starts[1:]]

    def __call__(self, t):
        s = self.sign * t
        # At a knot, the step before it: the backward solve leaves it toward earlier times,
        # and its ∂f/∂t (rodas4's) must be that side's.
        k = min(max(bisect.bisect_left(self.starts, float(getval(s))) - 1, 0), len(self.steps) - 1)
        s0, h, y, K = self.steps[k]
        return self.run.rk.interpolate(self.run.f, s0, y, h, K, (s - s0) / h)


def _any_traced(*trees):
    """Whether any leaf is traced: a backward pass that is itself differentiated."""
    return any(tinyad.isbox(x) for tree in trees for x in tree_flatten(tree)[0])


def _backward_solve(problem, v, t, i, args, options, knots=()):
    """(the flat augmented state at t_{i-1}, info), solved from v, the flat state at t_i, by
    odeint's own solve (`problem`: the augmented dynamics on the state's layout) in this
    gradient mode, so that the backward pass is differentiable in turn. The solve lands on
    the `knots` between them too (where the dynamics is not smooth)."""
    times = np.stack([t[i], *knots[::-1], t[i - 1]]) if knots else t[i - 1 : i + 1][::-1]
    try:
        ys, info = problem.solve(v, times, args, options, "adjoint")
        return ys[-1], info
    except SolverError as e:
        raise SolverError(
            f"the adjoint's backward solve from t={float(getval(t[i])):.6g} to "
            f"t={float(getval(t[i - 1])):.6g} failed: {e}. Solving z backwards is unstable "
            'on this problem (stiff or chaotic dynamics): use gradient="checkpoint", or '
            "more output times so the backward solve restarts from stored states"
        ) from e


class _LargestRMS:
    """The largest of the RMS norms of the parts `keys` of the augmented state's error,
    each on its own scale (all of θ's leaves together are one part); one host value."""

    def __init__(self, keys):
        self.keys = keys

    def __call__(self, e):
        return _largest_rms([_as_list(e[k]) for k in self.keys if k in e])

    def on_layout(self, state):
        """The same norm of the flat error, as the PytreeState `state` lays it out: each
        part is one contiguous span of it, so no pytree is built at every step."""
        parts = state.parts()
        spans = [(p[0][0].start, p[-1][0].stop) for p in map(parts.get, self.keys) if p]
        return lambda e: mixed_norm(e, spans)


_mixed_norm = _LargestRMS(("z", "a", "L_theta", "L_t"))  # every part (as torchdiffeq does)
_seminorm = _LargestRMS(("z", "a"))  # dL/dθ, dL/dt feed nothing back (Kidger, Chen & Lyons 2021)


def _largest_rms(parts):
    """max over parts (each a list of arrays) of the RMS of all their entries."""
    squares = []
    for part in parts:
        size = sum(int(getval(x).size) for x in part)
        if size:
            squares.append(sum(sum_of_squares(getval(x)) for x in part) / size)
    return math.sqrt(float(functools.reduce(array_module(squares[0]).maximum, squares)))


def _resolver(func, argdef, theta, t, opts, counts, shape):
    """z solved forward again from t_{i-1} to t_i, on raw values (for _check_drift); its
    evaluations of func count in info["backward"]["nfe"]."""

    def resolve(z, i):
        scratch = {}
        raw = [getval(x) for x in theta]
        z0 = np.reshape(z, shape)
        z_i = forward(z0, getval(t)[i - 1 : i + 1], raw, func, argdef, opts, scratch)[1]
        counts["nfe"] += scratch["nfe"]
        return np.ravel(z_i)

    return resolve


def _check_drift(z_back, ys, i, t, opts, steps, resolve):
    """Warn when the backward solve's z has left the stored forward trajectory by more than
    the two solves' own errors explain.

    At t_{i-1} the backward solve, started from the stored z(t_i), has reconstructed z_b,
    which should be the stored z(t_{i-1}). Its drift d = ‖z_b − z(t_{i-1})‖ has two causes:

    - the local errors of the forward and the backward solve over the interval: ordinary
      truncation error, what the method and its tolerances give;
    - the backward flow amplifying them: on y' = −30y an error the forward solve was allowed
      at t_i (atol, far above z(t_i) ≈ e^{−30 t_i}) grows like e^{30 Δt} on the way back, and
      Lorenz amplifies every error along its contracting directions. That is the unstable
      backsolve, and there the gradient is wrong.

    Errors are measured relative to the state, ‖x‖ = RMS(x) / (atol + rtol·RMS(z)) at the
    time they are made, in the units of the tolerances. An adaptive solve holds its local
    errors to atol + rtol·|z|; a fixed-step one has no tolerance and no absolute floor (its
    errors scale with the solution), so atol is left out of its scale.

    1. The free check: a round trip through `steps` forward and backward steps, each within
       tolerance, is off by about `steps`; d ≤ DRIFT_FACTOR·steps is accepted at no cost.
    2. Otherwise, solve z forward once more, from z_b to t_i, and measure e = ‖that − z(t_i)‖.
       Ordinary truncation error comes back as far off as it went: the forward flow carries
       the drift with it (e ≈ d on y' = ±y, a pendulum, fixed-step or adaptive), because the
       backward flow did not amplify it. An amplified drift lies along directions the forward
       flow contracts, so the re-solve returns close to z(t_i): e ≪ d. Warn when
       d > DRIFT_FACTOR · max(steps, e): beyond what the tolerances allow, and beyond what
       the solves' own errors explain.
    """
    # raw values, array methods: the check is never differentiated
    z_back, z_stored = getval(z_back), getval(ys[i - 1]).reshape(-1)
    drift = _relative_norm(z_back - z_stored, z_stored, opts)
    if drift <= DRIFT_FACTOR * max(steps, 1):
        return
    explained = 0.0  # a forward re-solve that fails explains nothing
    if math.isfinite(drift):
        z_i = getval(ys[i]).reshape(-1)
        try:
            with numpy.errstate(over="ignore", invalid="ignore"):  # z_b may be far off
                explained = _relative_norm(resolve(z_back, i) - z_i, z_i, opts)
        except SolverError:
            pass
    ratio = drift / max(steps, explained, 1)
    if ratio <= DRIFT_FACTOR:
        return
    warnings.warn(
        f"the adjoint's backward solve drifted from the forward trajectory at t="
        f"{float(getval(t[i - 1])):.6g}: its error is {ratio:.3g}× what the {steps} steps "
        f"there and back and the forward solve's own error explain (more than "
        f"{DRIFT_FACTOR:g}×), so the gradient may be wrong; continuing from the stored state. "
        'Backsolve is unstable on this problem: use gradient="checkpoint".',
        BacksolveWarning,
        stacklevel=_user_stacklevel(),
    )


def _relative_norm(x, z, opts):
    """RMS(x) in units of the tolerance at the state z: atol + rtol·RMS(z), and rtol·RMS(z)
    for fixed-step solves (no tolerance holds their error to an absolute floor)."""
    fixed = opts.step_size is not None or opts.method in FIXED_STEP
    rtol = max(opts.rtol, opts.adjoint_rtol)
    atol = 0.0 if fixed else max(opts.atol, opts.adjoint_atol)
    scale = max(atol + rtol * rms_norm(getval(z)), sys.float_info.min)  # z ≡ 0: a number
    return rms_norm(getval(x)) / scale


# Where tinyad's and tinyode's own frames live: the warning skips them.
_LIBRARY = (os.path.dirname(tinyad.__file__) + os.sep, os.path.dirname(__file__) + os.sep)


def _user_stacklevel():
    """warnings.warn's stacklevel, from the caller of this function, that names the first
    frame outside tinyad and tinyode: the user's line (Python 3.12's skip_file_prefixes,
    computed by hand for 3.10 and 3.11)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY):
        frame, level = frame.f_back, level + 1
    return level


def _forward_steps(step_times, t):
    """For each output interval [t_{i-1}, t_i], how many accepted forward steps began in it."""
    times = [float(v) for v in getval(t).tolist()]
    sign = 1.0 if times[-1] >= times[0] else -1.0
    starts = numpy.asarray(step_times, dtype=float) * sign
    edges = numpy.searchsorted(starts, numpy.asarray(times) * sign)
    return numpy.diff(edges)


tinyad.defvjp_all(odeint_adjoint, adjoint_vjp)


STRATEGIES["adjoint"] = solve_as_primitive(odeint_adjoint, "adjoint")
