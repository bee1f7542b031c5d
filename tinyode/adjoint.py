"""The adjoint sensitivity method (Chen et al. 2018), with nothing but tinyad's vjps.

For a loss L of the outputs z(t_i), the adjoint a(t) = dL/dz(t) obeys

    da/dt       = −aᵀ ∂f/∂z
    d(dL/dθ)/dt = −aᵀ ∂f/∂θ
    d(dL/dt)/dt = −aᵀ ∂f/∂t

Solved backwards from t_N, together with z itself (dz/dt = f), as one ODE on
the augmented state [z, a, dL/dθ, dL/dt]. Between outputs the state is carried
by `solve` (the same odeint, so this backward pass is itself differentiable);
at each t_i the cotangent of ys[i] is added to a. All three products come from
one `tinyad.vjp` of f per evaluation: no Jacobian is ever built.
"""

import builtins
import math
import os
import sys
import warnings

import numpy

import tinyad
import tinyad.numpy as np
from tinyad import getval
from tinyad.backend import array_module
from tinyad.replay import Replay

from .errors import BacksolveWarning, SolverError
from .odeint import forward, solve
from .solver import rms_norm
from .tableaus import TABLEAUS

# Warn when the reconstructed z is off by 10× more than both what the tolerances allow and
# what the solves' own errors explain (see _check_drift).
DRIFT_FACTOR = 10.0


@tinyad.primitive
def odeint_adjoint(y0, t, *leaves, func, argdef, opts, info):
    return forward(y0, t, leaves, func, argdef, opts, info)


def adjoint_vjp(argnums, g, ys, y0, t, *leaves, func, argdef, opts, info):
    """(dL/dy0, dL/dt, *dL/dθ) from g = dL/dys, by backward solves of the augmented state."""
    shape, n = np.shape(y0), int(np.size(y0))
    p = builtins.sum(int(np.size(x)) for x in leaves)
    dtype = getval(ys).dtype
    xp = array_module(getval(ys))  # numpy or CuPy: the new arrays join the state's module

    def f(z, t, leaves):
        """f on a flat z: the dynamics as the augmented state sees them."""
        return np.ravel(func(np.reshape(z, shape), t, *argdef.rebuild(leaves)))

    # One vjp of f per evaluation of the augmented dynamics: f is traced once and its tape
    # replayed on each new (z, t, θ) when it can be (tinyad/replay.py), else traced again.
    f_vjp = Replay(f)

    def augmented(s, t, leaves):
        """d/dt [z, a, dL/dθ, dL/dt] = [f, −aᵀ∂f/∂z, −aᵀ∂f/∂θ, −aᵀ∂f/∂t]."""
        z, a = s[:n], s[n : 2 * n]
        dz, pull = f_vjp(z, t, leaves)
        da, dt, dleaves = pull(-a)
        if not tinyad.isbox(dt) and array_module(dt) is not xp:
            dt = xp.zeros((), dtype)  # f ignores t: its zero cotangent was made like t, on the host
        dtheta = [np.ravel(d) for d in dleaves]  # θ's leaves packed into the state vector
        return np.concatenate([dz, da, *dtheta, np.reshape(dt, (1,)).astype(dtype)])

    parts = ((0, n), (n, 2 * n), (2 * n, 2 * n + p), (2 * n + p, 2 * n + p + 1))
    backward_opts = opts._replace(
        rtol=opts.adjoint_rtol,
        atol=opts.adjoint_atol,
        step_size=_backward_step(opts),
        first_step=None,
        # "seminorm" leaves dL/dθ and dL/dt out of the error norm (Kidger, Chen & Lyons 2021)
        norm_parts=parts[:2] if opts.adjoint_norm == "seminorm" else parts,
    )
    counts = {"nfe": 0, "n_steps": 0, "n_rejected": 0}
    forward_steps = _forward_steps(info, t)

    def resolve(z, i):
        """z solved forward again from t_{i-1} to t_i, on raw values (for _check_drift); its
        evaluations of func count in info["backward"]["nfe"]."""
        scratch = {}
        theta = [getval(x) for x in leaves]
        z_i = forward(
            np.reshape(z, shape), getval(t)[i - 1 : i + 1], theta, func, argdef, opts, scratch
        )[1]
        counts["nfe"] += scratch["nfe"]
        return np.ravel(z_i)

    a = np.ravel(g[-1])
    dtheta = xp.zeros(p, dtype=dtype)  # dL/dθ, all of θ's leaves as one vector
    dt0 = xp.zeros(1, dtype=dtype)  # accumulates dL/dt_0
    t_bars = []
    for i in range(len(ys) - 1, 0, -1):
        z_i = np.ravel(ys[i])
        if 1 in argnums:  # dL/dt wanted (one more evaluation of f per output time)
            # Moving t_i moves the measurement along the trajectory: dL/dt_i = g_iᵀ f(z(t_i), t_i).
            t_bar = np.sum(np.ravel(g[i]) * f(z_i, t[i], leaves))
            counts["nfe"] += 1
            t_bars.append(t_bar)
            dt0 = dt0 - t_bar
        state = np.concatenate([z_i, a, dtheta, dt0])
        times = np.stack([t[i], t[i - 1]])
        try:
            path, sub = solve(augmented, state, times, (list(leaves),), backward_opts, "adjoint")
            # The next interval starts with the step size this one ended with (the last
            # accepted step before the one clipped onto the output time).
            backward_opts = backward_opts._replace(first_step=float(sub["step_sizes"][-2:][0]))
        except SolverError as e:
            raise SolverError(
                f"the adjoint's backward solve from t={float(getval(t[i])):.6g} to "
                f"t={float(getval(t[i - 1])):.6g} failed: {e}. Solving z backwards is unstable "
                'on this problem (stiff or chaotic dynamics): use gradient="checkpoint", or '
                "more output times so the backward solve restarts from stored states"
            ) from e
        for k in counts:
            counts[k] += sub[k]
        s = path[1]
        steps = int(forward_steps[i - 1]) + sub["n_steps"]
        _check_drift(s[:n], ys, i, t, opts, steps, resolve)
        a = s[n : 2 * n] + np.ravel(g[i - 1])
        dtheta, dt0 = s[2 * n : 2 * n + p], s[2 * n + p :]
    info["backward"] = counts
    dt = None
    if 1 in argnums:
        dt = np.concatenate([dt0, np.stack(t_bars[::-1])]) if t_bars else dt0
        dt = np.reshape(dt, np.shape(t))
    dleaves, start = [], 0
    for x in leaves:  # unpack dL/dθ into the shapes of θ's leaves
        size = int(np.size(x))
        dleaves.append(np.reshape(dtheta[start : start + size], np.shape(x)))
        start += size
    return (np.reshape(a, shape), dt, *dleaves)


def _backward_step(opts):
    """Fixed-step methods take the same step size backwards."""
    return opts.step_size


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
    z_back, z_stored = getval(z_back), np.ravel(getval(ys[i - 1]))
    drift = _relative_norm(z_back - z_stored, z_stored, opts)
    if drift <= DRIFT_FACTOR * max(steps, 1):
        return
    explained = 0.0  # a forward re-solve that fails explains nothing
    if math.isfinite(drift):
        z_i = np.ravel(getval(ys[i]))
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
    tab = TABLEAUS.get(opts.method)  # an implicit method is not here: it is adaptive
    fixed = opts.step_size is not None or (tab is not None and tab.b_err is None)
    rtol = max(opts.rtol, opts.adjoint_rtol)
    atol = 0.0 if fixed else max(opts.atol, opts.adjoint_atol)
    scale = max(atol + rtol * rms_norm(z), sys.float_info.min)  # z ≡ 0: still a number
    return rms_norm(x) / scale


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


def _forward_steps(info, t):
    """For each output interval [t_{i-1}, t_i], how many accepted forward steps began in it."""
    times = [float(v) for v in getval(t).tolist()]
    sign = 1.0 if times[-1] >= times[0] else -1.0
    starts = numpy.asarray(info.get("step_times", ()), dtype=float) * sign
    edges = numpy.searchsorted(starts, numpy.asarray(times) * sign)
    return numpy.diff(edges)


tinyad.defvjp_all(odeint_adjoint, adjoint_vjp)
