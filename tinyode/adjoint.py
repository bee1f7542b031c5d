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
import warnings

import numpy

import tinyad
import tinyad.numpy as np
from tinyad import getval
from tinyad.backend import array_module

from .errors import BacksolveWarning, SolverError
from .odeint import forward, solve
from .solver import rms_norm

DRIFT_FACTOR = 10.0  # warn when the reconstructed z is off by 10× what the tolerances allow


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

    def augmented(s, t, leaves):
        """d/dt [z, a, dL/dθ, dL/dt] = [f, −aᵀ∂f/∂z, −aᵀ∂f/∂θ, −aᵀ∂f/∂t]."""
        z, a = s[:n], s[n : 2 * n]
        dz, f_vjp = tinyad.vjp(f, z, t, leaves)
        da, dt, dleaves = f_vjp(-a)
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
        _check_drift(s[:n], np.ravel(ys[i - 1]), t[i - 1], opts, steps)
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


def _check_drift(z, z_stored, t, opts, steps):
    """Warn when the backward solve's z has left the stored forward trajectory.

    The tolerances bound each step's local error, so a reconstruction through
    `steps` steps (forward and backward) may be off by about `steps` tolerances on
    a well-behaved problem; an unstable backsolve is off by orders of magnitude more.
    """
    z, z_stored = getval(z), getval(z_stored)
    rtol = max(opts.rtol, opts.adjoint_rtol)
    atol = max(opts.atol, opts.adjoint_atol)
    scale = atol + rtol * np.maximum(np.abs(z), np.abs(z_stored))
    error = rms_norm((z - z_stored) / scale) / max(steps, 1)
    if not error <= DRIFT_FACTOR:
        warnings.warn(
            f"the adjoint's backward solve drifted from the forward trajectory at t="
            f"{float(getval(t)):.6g}: its error is {error:.3g}× what rtol/atol allow over "
            f"the {steps} steps there and back (more than {DRIFT_FACTOR:g}×), so the gradient "
            "may be wrong; continuing from the stored state. Backsolve is unstable on this "
            'problem: use gradient="checkpoint".',
            BacksolveWarning,
            stacklevel=2,
        )


def _forward_steps(info, t):
    """For each output interval [t_{i-1}, t_i], how many accepted forward steps began in it."""
    times = [float(v) for v in getval(t).tolist()]
    sign = 1.0 if times[-1] >= times[0] else -1.0
    starts = numpy.asarray(info.get("step_times", ()), dtype=float) * sign
    edges = numpy.searchsorted(starts, numpy.asarray(times) * sign)
    return numpy.diff(edges)


tinyad.defvjp_all(odeint_adjoint, adjoint_vjp)
