"""`odeint`: check the input, put it in the solver's form, solve in one gradient mode.

The gradient modes are strategies, each in its own module, registered here by name:

- "adjoint" (tinyode/adjoint.py): the whole solve is one tinyad primitive whose vjp
  is the adjoint method; nothing per step is kept.
- "backprop" (tinyode/backprop.py): the solver loop runs on traced values; every
  step is on the tape.
- "checkpoint" (tinyode/checkpoint.py): one primitive that keeps each accepted
  step's starting state and replays the steps under the tape on the way back.

A solve that nothing can differentiate (no traced value among y0, t and args) is the
plain solve in every mode. `Problem` is one ODE in the solver's form (y0's layout as one
array, func and the norm on it); the adjoint makes one for all of its backward solves.
The input forms (numbers, lists, pytrees, constant args) live in tinyode/inputs.py.
"""

from collections.abc import Callable
from typing import NamedTuple

import numpy

from tinyad import getval, isbox
from tinyad.backend import array_module
from tinyad.tree import tree_flatten, tree_leaves

from .inputs import (
    METHODS,
    PytreeState,
    _as_array,
    _as_times,
    _check_inputs,
    _numbers_only,
    _stacking,
    split_args,
)
from .solver import Stats, integrate, rms_norm

__all__ = ["odeint", "METHODS", "STRATEGIES"]

# gradient mode -> solve(func, z0, t, args, opts) -> (ys, info); each mode's module adds itself.
STRATEGIES = {}


class Options(NamedTuple):
    method: str
    rtol: float
    atol: float
    step_size: float | None
    first_step: float | None
    max_steps: int
    max_step: float | None
    adjoint_rtol: float
    adjoint_atol: float
    adjoint_norm: str
    norm: Callable | None  # of the error, in the solver's flat form; None: the RMS norm
    block: int | None = None  # the leading part of the flat state that feeds back (solver.py)

    def solve_kwargs(self):
        return dict(
            method=self.method,
            rtol=self.rtol,
            atol=self.atol,
            step_size=self.step_size,
            first_step=self.first_step,
            max_steps=self.max_steps,
            max_step=self.max_step,
            norm=rms_norm if self.norm is None else self.norm,
            block=self.block,
        )


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
    max_step=None,
    gradient="adjoint",
    adjoint_rtol=None,
    adjoint_atol=None,
    adjoint_norm="full",
    full_output=False,
    norm=None,
):
    """Solve dy/dt = func(y, t, *args) from y(t[0]) = y0; returns y at every t[i].

    func(y, t, *args) returns dy/dt with y's shape (a list it returns is stacked).
    y0: an array, a number, a (nested) list or tuple of numbers (converted as numpy
    does), or a pytree of arrays (a dict, or a tuple or list holding an array that is
    not 0-d): func then receives and returns that structure, and so does the result.
    t: 1-D output times, strictly increasing or strictly decreasing (t[0] is the
    initial time). Returns shape `(len(t),) + y0.shape` (for a pytree, each leaf gains
    a leading time axis), with ys[0] == y0.

    method: one of METHODS: fixed step "euler", "midpoint", "heun", "rk4" (steps of
    `step_size`, or one per output interval); adaptive "bosh3", "dopri5", "tsit5",
    "dopri8" (rtol/atol, `first_step`, `max_step`); implicit "rodas4", "kvaerno5"
    for stiff problems. gradient: how tinyad differentiates the solve with respect to
    y0, each t[i] and every floating-point leaf of args (other leaves are constants):
    "adjoint" (a backward solve, memory flat in the steps; `adjoint_rtol`,
    `adjoint_atol`, `adjoint_norm="seminorm"`), "backprop" (every step on the tape) or
    "checkpoint" (each step's state kept, steps replayed). `norm(e)`, of the scaled
    error e (shaped like y0), replaces the RMS norm of the adaptive step control.
    `full_output=True` also returns `info`: nfe, n_steps, n_rejected, njev, nlu,
    step_sizes, step_times; once a gradient has been computed through the solve,
    `info["backward"]` holds the backward pass's nfe, n_steps, n_rejected.

    >>> ys = odeint(lambda y, t, k: -k * y, 1.0, np.linspace(0, 1, 5), 0.5)
    """
    options = dict(
        method=method,
        rtol=rtol,
        atol=atol,
        step_size=step_size,
        first_step=first_step,
        max_steps=max_steps,
        max_step=max_step,
        adjoint_rtol=rtol if adjoint_rtol is None else adjoint_rtol,
        adjoint_atol=atol if adjoint_atol is None else adjoint_atol,
        adjoint_norm=adjoint_norm,
    )
    ys, info = solve(func, y0, _as_times(t), args, options, gradient, norm, checked=False)
    return (ys, info) if full_output else ys


def solve(func, y0, t, args, options, gradient, norm=None, checked=True):
    """odeint's work: y0 in the solver's form (one array z), its checks unless `checked`
    (the adjoint's backward solves, whose inputs are built right), the strategy's solve,
    and the result back in y0's form. Returns (ys, info)."""
    problem = Problem(func, y0, norm)
    z0 = problem.z0
    if not checked:
        _check_inputs(z0, t, problem.options(options), gradient)
        if getval(z0).dtype.kind == "c" and any(map(isbox, [z0, t, *tree_flatten(args)[0]])):
            raise TypeError(
                "odeint cannot differentiate through a complex state: tinyad does not "
                "differentiate complex numbers. Solve the real and imaginary parts as one real "
                "state (y = [Re z, Im z], twice the size) to get gradients"
            )
        xp = array_module(getval(z0))
        if xp is not numpy and type(t) is numpy.ndarray:
            t = xp.asarray(t)  # host times join the state's device (one explicit copy)
    ys, info = problem.solve(z0, t, args, options, gradient)
    return problem.unpack(ys), info


class Problem:
    """An ODE in the solver's form, for one func and one form of y0: y0 as one array z (a
    pytree's leaves laid out in one vector by PytreeState), func and the error norm on z,
    and the part of z that feeds back into func (`block`). odeint makes one per call; the
    adjoint one for all of its backward solves, which share a layout (one per interval).

    >>> problem = Problem(func, {"z": z0, "a": a0})
    >>> ys, info = problem.solve(problem.z0, t, args, options, "adjoint")
    >>> problem.at(ys, -1)                          # {"z": ..., "a": ...} at t[-1]
    """

    def __init__(self, func, y0, norm=None):
        self.layout = None
        if isinstance(y0, dict) or (isinstance(y0, (list, tuple)) and not _numbers_only(y0)):
            self.layout = PytreeState(y0)
            self.z0, self.func = self.layout.z0, self.layout.wrap(func)
            self.norm = self.layout.norm(norm)
            self.block = self.layout.block(getattr(func, "feedback", None))
        else:
            self.z0, self.func, self.norm, self.block = _as_array(y0), _stacking(func), norm, None

    def flat(self, y):
        """z for a y of y0's form: for a pytree, one of the same structure, shapes and
        dtypes (a ValueError if z does not come out like the first)."""
        if self.layout is None:
            return _as_array(y)
        z = self.layout.pack(y)
        if getval(z).shape != getval(self.z0).shape or getval(z).dtype != getval(self.z0).dtype:
            raise ValueError(f"a state of another form than {self.z0.shape} {self.z0.dtype}")
        return z

    def options(self, options):
        """odeint's `options` (a dict) with this problem's norm and block, as Options."""
        return Options(**options, norm=self.norm, block=self.block)

    def solve(self, z, t, args, options, gradient):
        """(ys, info): the flat solution from z at each t[i], in the gradient mode.

        A solve that nothing can differentiate (no traced value among z, t and args) is the
        plain one in every mode: the backprop strategy's, with nothing recorded (the
        primitive's machinery would only be overhead: 20 µs a call, which the adjoint's
        backward solves pay once per interval)."""
        opts = self.options(options)
        if args is not self._args:  # what args hold is read once (the adjoint's are one tuple)
            self._args, self._traced, self._rebuilt = args, _traced_args(args), None
        if self._traced or isbox(z) or isbox(t):
            return STRATEGIES[gradient](self.func, z, t, args, opts)
        # (a func closing over a traced value is recorded, as the primitive's raw solve was)
        plain = args if gradient == "backprop" else self.rebuilt(args)
        return STRATEGIES["backprop"](self.func, z, t, plain, opts)

    _args = None

    def rebuilt(self, args):
        """args as a primitive's solve hands them to func: rebuilt from their leaves (a
        dict's keys sorted, a subclass a plain one)."""
        if self._rebuilt is None:
            theta, argdef = split_args(args)
            self._rebuilt = argdef.rebuild(theta)
        return self._rebuilt

    def unpack(self, ys):
        """ys in y0's form: for a pytree, each leaf with a leading time axis."""
        return ys if self.layout is None else self.layout.unpack(ys)

    def at(self, ys, i):
        """The state at t[i] in y0's form."""
        return ys[i] if self.layout is None else self.layout.at(ys[i])


def _traced_args(args):
    return any(map(isbox, tree_leaves(args)))


def forward(y0, t, theta, func, argdef, opts, info, record=None):
    """The forward solve on raw values, shared by the adjoint and checkpoint primitives."""
    import tinyad.numpy as np

    stats = Stats()
    ys = integrate(
        func, y0, t, argdef.rebuild(theta), stats=stats, record=record, **opts.solve_kwargs()
    )
    info.update(stats.as_dict())
    return np.stack(ys)


def solve_as_primitive(prim, gradient):
    """A strategy that runs the whole solve as one tinyad primitive (adjoint, checkpoint):
    θ, the floating-point leaves of args, are its traced arguments; the rest are constants."""

    def solve(func, z0, t, args, opts):
        info = {}
        theta, argdef = split_args(args)
        ys = prim(z0, t, *theta, func=func, argdef=argdef, opts=opts, info=info)
        refuse_traced_closure(ys, gradient)
        return ys, info

    return solve


def refuse_traced_closure(ys, gradient):
    """A TypeError when func closed over a value traced on the tape this solve is recorded on.

    The primitive solves on raw values, so its result holds Boxes only of tapes
    below its own (an enclosing grad of a grad). A Box of its own tape, or of
    one above, came from func's closure: the vjp cannot differentiate that.
    """
    level, x = None, ys
    while isbox(x):
        if level is not None and x.tape.level >= level:
            raise TypeError(
                "func closes over a traced value (a parameter of an enclosing grad or vjp): "
                f'gradient="{gradient}" differentiates only y0, t and args. Pass it through '
                "args: odeint(func, y0, t, theta) with func(y, t, theta); or use "
                'gradient="backprop"'
            )
        level, x = x.tape.level, x.value
