"""`odeint`: check the input, then solve in one of three gradient modes.

- "adjoint": the whole solve is one tinyad primitive whose vjp is the adjoint
  method (tinyode/adjoint.py); nothing per step is kept.
- "backprop": the solver loop runs on traced values; every step is on the tape.
- "checkpoint": one primitive that keeps each accepted step's starting state and
  replays the steps under the tape on the way back (tinyode/checkpoint.py).
"""

from typing import NamedTuple

import numpy

import tinyad.numpy as np
from tinyad import getval
from tinyad.backend import array_module
from tinyad.tree import tree_flatten, tree_unflatten

from .solver import Stats, integrate, mixed_norm, rms_norm
from .tableaus import TABLEAUS

METHODS = ("euler", "midpoint", "heun", "rk4", "bosh3", "dopri5", "tsit5", "dopri8")
GRADIENTS = ("adjoint", "backprop", "checkpoint")


class Options(NamedTuple):
    method: str
    rtol: float
    atol: float
    step_size: float | None
    first_step: float | None
    max_steps: int
    adjoint_rtol: float
    adjoint_atol: float
    adjoint_norm: str
    # The adjoint's state [z, a, dL/dθ, dL/dt] as (start, stop) parts: its error norm is the
    # largest RMS norm of a part (each part on its own scale, as torchdiffeq does); the
    # seminorm lists only z and a. None: one RMS norm over the whole state.
    norm_parts: tuple | None

    def solve_kwargs(self):
        norm = rms_norm
        if self.norm_parts is not None:
            parts = self.norm_parts
            norm = lambda x: mixed_norm(x, parts)  # noqa: E731
        return dict(
            method=self.method,
            rtol=self.rtol,
            atol=self.atol,
            step_size=self.step_size,
            first_step=self.first_step,
            max_steps=self.max_steps,
            norm=norm,
        )


def _check_inputs(y0, t, opts, gradient):
    """Every bad-input error that can be raised before solving starts."""
    method, rtol, atol, step_size = opts.method, opts.rtol, opts.atol, opts.step_size
    first_step, max_steps, adjoint_norm = opts.first_step, opts.max_steps, opts.adjoint_norm
    adjoint_rtol, adjoint_atol = opts.adjoint_rtol, opts.adjoint_atol
    if method not in TABLEAUS:
        raise ValueError(f"unknown method {method!r}; choose one of METHODS: {', '.join(METHODS)}")
    if gradient not in GRADIENTS:
        raise ValueError(f"unknown gradient {gradient!r}; choose one of {', '.join(GRADIENTS)}")
    if adjoint_norm not in ("full", "seminorm"):
        raise ValueError(f"adjoint_norm must be 'full' or 'seminorm', got {adjoint_norm!r}")
    tv = getval(t)
    shape = getattr(tv, "shape", None)
    if shape is None or len(shape) != 1:
        got = "a scalar" if shape in (None, ()) else f"shape {shape}"
        raise ValueError(
            f"t must be a 1-D array of output times, got {got}; e.g. t = np.array([0.0, 1.0])"
        )
    times = numpy.asarray(tv.tolist(), dtype=float)
    if times.size == 0:
        raise ValueError("t is empty; it needs the initial time t[0] and the output times")
    if not numpy.all(numpy.isfinite(times)):
        raise ValueError(f"t must be finite, got {times}")
    steps = numpy.diff(times)
    if numpy.any(steps == 0):
        i = int(numpy.flatnonzero(steps == 0)[0])
        raise ValueError(
            f"t has a repeated time {times[i]} (t[{i}] == t[{i + 1}]); "
            "times must be strictly increasing or strictly decreasing"
        )
    if steps.size and not (numpy.all(steps > 0) or numpy.all(steps < 0)):
        raise ValueError(
            f"t must be strictly increasing or strictly decreasing (monotonic), got {times}"
        )
    yv = getval(y0)
    xp = array_module(yv)
    if not bool(xp.all(xp.isfinite(yv))):
        raise ValueError("y0 must be finite; it contains NaN or inf")
    for name, v in (
        ("rtol", rtol),
        ("atol", atol),
        ("adjoint_rtol", adjoint_rtol),
        ("adjoint_atol", adjoint_atol),
    ):
        if v is not None and not (numpy.all(numpy.asarray(v) > 0)):
            raise ValueError(f"{name} must be positive, got {v}")
    if step_size is not None and not step_size > 0:
        raise ValueError(f"step_size must be positive, got {step_size}")
    if first_step is not None and not first_step > 0:
        raise ValueError(f"first_step must be positive, got {first_step}")
    if not (isinstance(max_steps, int) and max_steps > 0):
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")


def _as_float(y0):
    """Integer initial states are solved in float64, as scipy does."""
    v = getval(y0)
    if isinstance(v, (int, float)):
        return numpy.asarray(v, dtype=float)
    if v.dtype.kind not in "fc":
        return v.astype(float)
    return y0


def odeint(
    func,
    y0,
    t,
    *args,
    method="dopri5",
    rtol=1e-7,
    atol=1e-9,
    step_size=None,
    first_step=None,
    max_steps=100_000,
    gradient="adjoint",
    adjoint_rtol=None,
    adjoint_atol=None,
    adjoint_norm="full",
    full_output=False,
):
    """Solve dy/dt = func(y, t, *args) from y(t[0]) = y0; returns y at every t[i].

    Shape `(len(t),) + y0.shape`. Differentiable under every tinyad transformation
    with respect to y0, each t[i] and every leaf of args, by the method `gradient`
    names. `full_output=True` also returns `info`: nfe, n_steps, n_rejected,
    step_sizes, step_times; once a gradient has been computed through the
    solve, `info["backward"]` holds the backward pass's nfe, n_steps, n_rejected.
    """
    opts = Options(
        method=method,
        rtol=rtol,
        atol=atol,
        step_size=step_size,
        first_step=first_step,
        max_steps=max_steps,
        adjoint_rtol=rtol if adjoint_rtol is None else adjoint_rtol,
        adjoint_atol=atol if adjoint_atol is None else adjoint_atol,
        adjoint_norm=adjoint_norm,
        norm_parts=None,
    )
    if isinstance(t, (list, tuple)):
        t = numpy.asarray(t, dtype=float)
    _check_inputs(y0, t, opts, gradient)
    y0 = _as_float(y0)
    xp = array_module(getval(y0))
    if xp is not numpy and type(t) is numpy.ndarray:
        t = xp.asarray(t)  # host times join the state's device (one explicit copy)
    ys, info = solve(func, y0, t, args, opts, gradient)
    return (ys, info) if full_output else ys


def solve(func, y0, t, args, opts, gradient):
    """`odeint` after its checks: (ys, info). The adjoint's backward pass calls this too."""
    info = {}
    leaves, treedef = tree_flatten(args)
    if gradient == "backprop":
        stats = Stats()
        ys = np.stack(integrate(func, y0, t, args, stats=stats, **opts.solve_kwargs()))
        info.update(stats.as_dict())
        return ys, info
    if gradient == "adjoint":
        from .adjoint import odeint_adjoint

        ys = odeint_adjoint(y0, t, *leaves, func=func, treedef=treedef, opts=opts, info=info)
    else:
        from .checkpoint import odeint_checkpoint

        ys = odeint_checkpoint(
            y0, t, *leaves, func=func, treedef=treedef, opts=opts, info=info, memo={}
        )
    return ys, info


def forward(y0, t, leaves, func, treedef, opts, info, record=None):
    """The forward solve on raw values, shared by the adjoint and checkpoint primitives."""
    stats = Stats()
    args = tree_unflatten(treedef, list(leaves))
    ys = integrate(func, y0, t, args, stats=stats, record=record, **opts.solve_kwargs())
    info.update(stats.as_dict())
    return np.stack(ys)
