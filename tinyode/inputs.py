"""What users hand to odeint, checked and put into the one form the solver takes.

Whatever form y0 has (a number, a list, a pytree of arrays), the solver sees one
float or complex array z and a `func` on it; `PytreeState` converts on the way in
and back to the user's structure on the way out. The leaves of args that are not
floating-point arrays are kept out of the tape (`split_args`).
"""

import functools
import itertools
import math
import numbers

import numpy

import tinyad.numpy as np
from tinyad import getval, isbox
from tinyad.backend import array_module
from tinyad.tree import tree_flatten, tree_unflatten

from . import implicit  # noqa: F401  (registers rodas4 and kvaerno5 in STEPPERS)
from .solver import FIXED_STEP, STEPPERS

GRADIENTS = ("adjoint", "backprop", "checkpoint")
METHODS = tuple(STEPPERS)  # every method by name, from the tableaus (and implicit.py's)


def _check_inputs(y0, t, opts, gradient):
    """Every bad-input error that can be raised before solving starts (y0 already an array)."""
    method, step_size, max_steps = opts.method, opts.step_size, opts.max_steps
    if method not in STEPPERS:
        raise ValueError(f"unknown method {method!r}; choose one of METHODS: {', '.join(METHODS)}")
    if gradient not in GRADIENTS:
        raise ValueError(f"unknown gradient {gradient!r}; choose one of {', '.join(GRADIENTS)}")
    if opts.adjoint_norm not in ("full", "seminorm"):
        raise ValueError(f"adjoint_norm must be 'full' or 'seminorm', got {opts.adjoint_norm!r}")
    tv = getval(t)
    shape = getattr(tv, "shape", None)
    if shape is None or len(shape) != 1:
        got = "a scalar" if shape in (None, ()) else f"shape {shape}"
        raise ValueError(
            f"t must be a 1-D array of output times, got {got}; e.g. t = np.array([0.0, 1.0])"
        )
    # On the host list, in Python: t is short, and numpy's calls on a few numbers cost more
    # than the loops (10 µs each, in a training loop)
    times = numpy.asarray(tv.tolist(), dtype=float).tolist()  # numpy's conversion (None: NaN)
    if not times:
        raise ValueError("t is empty; it needs the initial time t[0] and the output times")
    if not all(map(math.isfinite, times)):
        raise ValueError(f"t must be finite, got {numpy.asarray(times)}")
    steps = [b - a for a, b in zip(times, times[1:])]
    if 0.0 in steps:
        i = steps.index(0.0)
        raise ValueError(
            f"t has a repeated time {times[i]} (t[{i}] == t[{i + 1}]); "
            "times must be strictly increasing or strictly decreasing"
        )
    if steps and not (all(d > 0 for d in steps) or all(d < 0 for d in steps)):
        raise ValueError(
            "t must be strictly increasing or strictly decreasing (monotonic), got "
            f"{numpy.asarray(times)}"
        )
    yv = getval(y0)
    xp = array_module(yv)
    if not bool(xp.all(xp.isfinite(yv))):
        raise ValueError("y0 must be finite; it contains NaN or inf")
    for name in ("rtol", "atol", "adjoint_rtol", "adjoint_atol"):
        _check_tolerance(name, getattr(opts, name), yv.dtype)
    for name in ("step_size", "first_step", "max_step"):
        _check_positive(name, getattr(opts, name))
    if opts.max_step is not None and (method in FIXED_STEP or step_size is not None):
        fixed = f"method={method!r}" + (" with a step_size" if step_size is not None else "")
        raise ValueError(
            f"max_step bounds the steps of adaptive methods, but {fixed} takes fixed steps; "
            "set step_size instead"
        )
    if isinstance(max_steps, bool) or not (isinstance(max_steps, int) and max_steps > 0):
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")


def _check_tolerance(name, v, dtype):
    """A tolerance is a positive number (or an array of them); an rtol the dtype can meet."""
    v = getval(v)
    if isinstance(v, (list, tuple)) and _numbers_only(v):
        v = numpy.asarray(v)
    kind = getattr(getattr(v, "dtype", None), "kind", None)
    # (a float or an int first: the ABC check numbers.Real is slow)
    number = type(v) in (float, int) or (isinstance(v, numbers.Real) and not isinstance(v, bool))
    if not (number or kind in ("f", "i", "u")):
        raise TypeError(
            f"{name} must be a positive number (or an array of them), got {v!r} "
            f"({type(v).__name__})"
        )
    # A number, as tolerances mostly are, needs no array (numpy.min of one costs 5 µs a call)
    smallest = float(v) if not kind else float(numpy.min(numpy.asarray(v.tolist())))
    if not smallest > 0:
        raise ValueError(f"{name} must be positive, got {v}")
    # Every number of the state carries a relative rounding error of eps: an rtol far below it
    # cannot be met, and the steps would shrink until max_steps ran out (float32's eps is 1.2e-7,
    # so rtol=1e-12 on a float32 state is a float64 setting carried over by mistake). scipy's
    # solve_ivp raises such an rtol with a warning; asking again is clearer than solving to a
    # tolerance nobody asked for. eps/10 lets the default rtol=1e-7 through for float32.
    eps = _epsilon(dtype)
    if name.endswith("rtol") and smallest < eps / 10:
        raise ValueError(
            f"{name}={smallest:g} is below what {dtype} can resolve (its machine epsilon is "
            f"{eps:.3g}): no step can be that accurate, and the solver would shrink its steps "
            f"until max_steps ran out. Use {name} >= {eps / 10:.3g}, or solve in float64 "
            "(y0.astype(numpy.float64))"
        )


@functools.cache
def _epsilon(dtype):
    """The machine epsilon of a float or complex dtype (numpy.finfo costs µs a call), else 0."""
    return float(numpy.finfo(dtype).eps) if dtype.kind in "fc" else 0.0


def _check_positive(name, v):
    """An optional step option: None, or a positive number."""
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(getval(v), numbers.Real):
        raise TypeError(f"{name} must be a positive number or None, got {v!r} ({type(v).__name__})")
    if not v > 0:
        raise ValueError(f"{name} must be positive, got {v}")


# --- the forms of y0 ---------------------------------------------------------------------------


def _as_array(x, what="y0"):
    """One number or array of y0 as a float or complex array, as scipy converts it.

    Integers and bools become float64; a traced value is kept as it is (so its
    gradient flows: `x[0]` or `np.sum(x)` as y0).
    """
    if isbox(x):
        return x  # tinyad traces float arrays only
    v = x
    if isinstance(v, (list, tuple)):
        if any(map(isbox, tree_flatten(v)[0])):
            return np.array(v)  # traced numbers among them: stacked on the tape
        try:
            v = numpy.asarray(v)
        except ValueError as e:
            raise ValueError(f"{what} is a ragged list ({e}); give it one shape") from None
    if not hasattr(v, "dtype"):
        v = numpy.asarray(v)  # a Python number
    kind = v.dtype.kind
    if kind in "fc":
        return array_module(v).asarray(v)  # a numpy scalar as a 0-d array
    if kind in "biu":
        return v.astype(numpy.float64)
    raise TypeError(f"{what} must be numbers (float, int or complex), got {v!r} ({v.dtype})")


def _numbers_only(tree):
    """A (nested) list or tuple of numbers, as scipy's users write y0.

    A number is anything 0-d, traced or not (`x[0]`, `np.sum(x)`), so that
    whether y0 is an array or a pytree never depends on what is differentiated.
    """
    if isinstance(tree, (list, tuple)):
        return all(_numbers_only(x) for x in tree)
    v = getval(tree)
    return isinstance(v, numbers.Number) or getattr(v, "shape", None) == ()


def _stacking(func):
    """func for an array state: a list or tuple it returns is stacked, as scipy does."""

    def array_func(y, t, *args):
        dy = func(y, t, *args)
        return np.array(dy) if isinstance(dy, (list, tuple)) else dy

    return array_func


def _structure(treedef):
    """A treedef with lists and tuples alike: func may return a list for a tuple state."""
    if treedef is None:
        return None
    kind, keys, children = treedef
    return ("sequence" if kind in (list, tuple) else kind, keys, [_structure(c) for c in children])


class PytreeState:
    """A pytree y0 (a dict, or a tuple or list holding arrays), solved as one flat vector z.

    `func` receives and returns the pytree; each leaf of the result has a leading
    time axis, as in JAX's odeint. z has the leaves' common dtype; func sees each
    leaf in its own dtype.
    """

    def __init__(self, y0):
        leaves, self.treedef = tree_flatten(y0)
        if not leaves:
            raise ValueError(f"y0 is an empty pytree ({y0!r}); it needs at least one array")
        leaves = [_as_array(x, "each leaf of y0") for x in leaves]
        self.shapes = [tuple(getval(x).shape) for x in leaves]
        self.dtypes = [getval(x).dtype for x in leaves]
        self.bounds = list(itertools.accumulate((math.prod(s) for s in self.shapes), initial=0))
        flat = [x.reshape(-1) for x in leaves]  # array methods: a traced leaf has them too
        self.z0 = join(flat)
        # Where each leaf lies in z, and whether its dtype is z's (then no cast is needed)
        z_dtype = getval(self.z0).dtype
        self.layout = [
            (slice(a, b), shape, dtype, dtype == z_dtype)
            for a, b, shape, dtype in zip(self.bounds, self.bounds[1:], self.shapes, self.dtypes)
        ]

    def leaves(self, z, lead=()):
        """The leaves held in z[..., :] (with `lead`, the shape of z's leading axes)."""
        parts = []
        for where, shape, dtype, same in self.layout:
            # Array methods, which a traced z has too: on raw values no tape is involved.
            part = z[..., where].reshape(lead + shape)
            if not same and getval(part).dtype != dtype:
                part = (np.real(part) if dtype.kind == "f" else part).astype(dtype)
            parts.append(part)
        return parts

    def wrap(self, func):
        """func on the flat z: unpack z into the pytree, pack func's pytree result.

        A func with a method `on_layout(state, fallback)` (the adjoint's augmented dynamics)
        is asked for its own flat version instead: from `state.parts()` it reads its parts
        of z and writes dy/dt in z's order, with no pytree built per call; `fallback` is
        this pytree path, for what it does not handle."""
        if hasattr(func, "on_layout"):
            return func.on_layout(self, fallback=self._wrapped(func))
        return self._wrapped(func)

    def _wrapped(self, func):
        def flat_func(z, t, *args):
            return self.pack(func(tree_unflatten(self.treedef, self.leaves(z)), t, *args))

        return flat_func

    def pack(self, dy):
        """func's pytree result as one flat vector; its structure and shapes checked once
        (they do not change between calls of a func on the same state)."""
        leaves, treedef = tree_flatten(dy)
        if treedef != self.treedef or not self.checked:
            self.check(leaves, treedef)
        flat = [x.ravel() if hasattr(x, "ravel") else np.ravel(x) for x in leaves]
        return join(flat)

    checked = False

    def check(self, leaves, treedef):
        """A ValueError naming what differs when func's result is not shaped like y."""
        if _structure(treedef) != _structure(self.treedef):
            expected = tree_unflatten(self.treedef, [_Shape(s) for s in self.shapes])
            got = tree_unflatten(treedef, [_Shape(x) for x in leaves])
            raise ValueError(
                f"func(y, t, *args) returned {got}, but y is {expected}; func must return "
                "dy/dt with the structure of y"
            )
        for path, x, shape in zip(_paths(self.treedef), leaves, self.shapes):
            if x is None or tuple(np.shape(x)) != shape:
                raise ValueError(
                    f"func(y, t, *args) returned {_Shape(x)!r} for y{path}, which has shape "
                    f"{shape}; each leaf of dy/dt must have the shape of its leaf of y"
                )
        self.checked = True

    def parts(self):
        """{key: [(slice of z, shape, dtype), ...]} for a dict state, each top-level key's
        leaves in z's order (the keys sorted, as tree_flatten orders them)."""
        if self._parts is None:  # asked for by the dynamics, the norm and the block alike
            names, children = self.treedef[1], self.treedef[2]
            starts = list(itertools.accumulate(map(_count, children), initial=0))
            self._parts = {
                k: [(where, shape, dtype) for where, shape, dtype, _ in self.layout[a:b]]
                for k, a, b in zip(names, starts, starts[1:])
            }
        return self._parts

    _parts = None

    def block(self, keys):
        """(start, stop) of the flat z held by the dict entries `keys` (adjacent in sorted
        order), or None: the part of the state that feeds back into func (solver.py)."""
        if keys is None or self.treedef[0] is not dict:
            return None
        return self.span(min(keys)).start, self.span(max(keys)).stop

    def span(self, key):
        """The slice of z that holds the dict entry `key` (its leaves lie side by side)."""
        names, children = self.treedef[1], self.treedef[2]
        k = names.index(key)
        first = sum(map(_count, children[:k]))  # the leaves before key's
        return slice(self.bounds[first], self.bounds[first + _count(children[k])])

    def norm(self, norm):
        """A norm of the pytree error as the solver calls it, on the flat z (None stays None).
        A norm with a method `on_layout(state)` (the adjoint's) gives its own flat version."""
        if norm is None:
            return None
        if hasattr(norm, "on_layout"):
            return norm.on_layout(self)
        return lambda e: norm(tree_unflatten(self.treedef, self.leaves(e)))

    def at(self, z):
        """One flat state z back in the pytree's form."""
        return tree_unflatten(self.treedef, self.leaves(z))

    def unpack(self, ys):
        """ys of shape (len(t), size of z) as the pytree, each leaf shaped (len(t),) + leaf."""
        return tree_unflatten(self.treedef, self.leaves(ys, lead=tuple(np.shape(ys)[:1])))


def join(flat):
    """1-D arrays joined end to end: on the tape when one is traced, else in their own
    module (numpy or CuPy), with nothing to record and no look for a Box in each."""
    if any(map(isbox, flat)):
        return np.concatenate(flat)
    return array_module(flat[0]).concatenate(flat)


class _Shape:
    """A leaf in an error message: its shape (a pytree of these shows a structure)."""

    def __init__(self, x):
        self.text = (
            f"array{x}" if isinstance(x, tuple) else "None" if x is None else f"array{np.shape(x)}"
        )

    def __repr__(self):
        return self.text


def _count(treedef):
    """How many leaves a treedef has."""
    return 1 if treedef is None else sum(_count(c) for c in treedef[2])


def _paths(treedef, prefix=""):
    """Each leaf's index path, as in y['a'][0]."""
    if treedef is None:
        return [prefix]
    kind, keys, children = treedef
    names = keys if kind is dict else range(len(children))
    return [p for k, c in zip(names, children) for p in _paths(c, f"{prefix}[{k!r}]")]


def _as_times(t):
    """A list of times as an array; a traced time inside the list keeps its gradient."""
    if isinstance(t, (list, tuple)):
        if any(isbox(x) for x in t):
            return np.stack([x if isbox(x) else float(x) for x in t])
        return numpy.asarray(t, dtype=float)
    tv = getval(t)
    if not isbox(t) and getattr(getattr(tv, "dtype", None), "kind", None) in ("b", "i", "u"):
        return t.astype(numpy.float64)
    return t


# --- args ---------------------------------------------------------------------------------------


def _differentiable(x):
    """A leaf of args that the tape may differentiate: a traced value or a real float array."""
    if isbox(x):
        return True
    return isinstance(x, float) or getattr(getattr(x, "dtype", None), "kind", None) == "f"


def split_args(args):
    """(θ, argdef): the floating-point leaves of args, and how to rebuild args from them."""
    leaves, treedef = tree_flatten(args)
    slots = [i for i, x in enumerate(leaves) if _differentiable(x)]
    constants = list(leaves)
    for i in slots:
        constants[i] = None  # θ's values are handed to the primitive, not kept here
    return [leaves[i] for i in slots], ArgsDef(treedef, slots, constants)


class ArgsDef:
    """How to rebuild `args` from θ, its floating-point leaves.

    The other leaves (ints, bools, strings, None, integer arrays) are constants:
    they are kept here and reach func unchanged, and the tape never sees them.
    """

    def __init__(self, treedef, slots, constants):
        self.treedef, self.slots, self.constants = treedef, slots, constants
        self.all_theta = len(slots) == len(constants)

    def rebuild(self, theta):
        """args with the leaves θ (raw or traced) put back among the constants."""
        if self.all_theta:
            return tree_unflatten(self.treedef, list(theta))
        leaves = list(self.constants)
        for i, x in zip(self.slots, theta):
            leaves[i] = x
        return tree_unflatten(self.treedef, leaves)
