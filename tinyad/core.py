"""The tape: reverse-mode differentiation in one screen.

A *primitive* is a function on raw arrays paired with one vjp per argument.
While a function is traced, its inputs are wrapped in `Box`es; a primitive
called on a Box runs on the raw values and appends one record to the Box's
`Tape` (a Wengert list: primitive, inputs, output). `backward` walks that list
once, last record first, turning the cotangent of each output into cotangents
of its inputs with the primitive's vjp:

    vjp(g, ans, *args, **kwargs) = gᵀ ∂ans/∂args[argnum]

Higher order comes for free because vjps are written with tinyad's own
primitives: while an outer tape is recording, `g`, `ans` and `args` are Boxes
of that outer tape, so the backward pass of an inner tape is itself recorded.
Each tape has a `level` (its nesting depth); a primitive records on the
highest-level tape among its arguments and passes the rest through, which keeps
nested tapes from confusing each other's values (perturbation confusion).

This module knows nothing about numpy: arrays are anything with `.shape`,
`.dtype`, `.sum` and `.reshape`; `tinyad.numpy` supplies the primitives and
the Box's operators.
"""

import inspect
from typing import NamedTuple

from . import tape_view
from .backend import array_module

__all__ = [
    "Box",
    "Tape",
    "Saved",
    "primitive",
    "defvjp",
    "defvjp_argnum",
    "defvjp_all",
    "getval",
    "isbox",
]


class Tape:
    """A Wengert list: `records[i] = (primitive, ans, args, kwargs, parents)`.

    `parents` is a tuple of `(argnum, record index)` for the traced arguments;
    inputs of the traced function are records whose primitive is None.
    """

    __slots__ = ("records", "level")

    def __init__(self, level):
        self.records = []
        self.level = level

    def record(self, prim, ans, args, kwargs, parents):
        self.records.append((prim, ans, args, kwargs, parents))
        return Box(ans, self, len(self.records) - 1)

    def input(self, value):
        """Start a trace from `value`: a record with no primitive."""
        return self.record(None, value, (), {}, ())

    # Printing, plotting and the memory count live in tinyad/tape_view.py.
    def __str__(self):
        return tape_view.format_tape(self)

    __repr__ = __str__

    def plot(self, ax=None):
        """Draw the graph with matplotlib; returns the Axes."""
        return tape_view.plot_tape(self, ax)

    def nbytes(self):
        """Bytes the tape keeps alive for the backward pass (each array once)."""
        return tape_view.kept_bytes(self)


class Box:
    """A value being traced: `value` is the raw array (or a Box of an outer tape)."""

    __slots__ = ("value", "tape", "index")

    def __init__(self, value, tape, index):
        self.value = value
        self.tape = tape
        self.index = index

    def __repr__(self):
        return f"Box({self.value!r}, level={self.tape.level})"

    def __bool__(self):
        return bool(read_value(self))

    def __len__(self):
        return len(self.value)

    def __setitem__(self, key, value):
        raise TypeError(
            "in-place assignment into a traced array is not supported: the tape has "
            "recorded this array, and changing it would make the gradient wrong. Build a "
            "new array instead (np.where, np.concatenate, or x + np.zeros_like(x) tricks)."
        )

    def __float__(self):
        raise TypeError(
            "a traced value cannot be converted to a Python number (float(), int(), or a "
            "math.* / raw numpy function was called on it): that would silently drop the "
            "gradient. Use tinyad.numpy (import tinyad.numpy as np; np.sin, np.exp, ...)."
        )

    __int__ = __index__ = __complex__ = __float__


# How a (nested) list or tuple holding traced values becomes one traced array, as numpy turns
# array-likes into arrays. This module knows nothing about numpy: tinyad.numpy sets it to its
# `asarray`, which stacks the entries.
array_from_list = None


def _holds_box(x):
    """Whether x is a Box, or a (nested) list or tuple holding one."""
    if type(x) is Box:
        return True
    if type(x) is list or type(x) is tuple:
        for item in x:
            if type(item) is Box or (
                (type(item) is list or type(item) is tuple) and _holds_box(item)
            ):
                return True
    return False


# How many times a traced value was read as a number that steers the computation: bool(x),
# a comparison, an index, argmax, a mask a vjp takes from raw values... A tape recorded with
# such a read is only valid for the values it was recorded at, so tinyad/replay.py replays
# only tapes (and backward passes) recorded without one.
value_reads = [0]


def getval(x):
    """The raw value under every Box. Reading a traced value so is counted (`value_reads`):
    what is computed from it is a constant to the tape.

    >>> getval(box)        # the array a traced value holds
    """
    if type(x) is Box:
        value_reads[0] += 1
        return unbox(x)
    return x


read_value = getval  # the name the vjps use where a value steers what they compute


def unbox(x):
    """The raw value under every Box, for its shape, dtype or array module only (not counted)."""
    while type(x) is Box:
        x = x.value
    return x


def isbox(x):
    """Whether x is a traced value.

    >>> isbox(x)          # True inside grad(f)(x) while f runs
    """
    return type(x) is Box


class Primitive:
    # A function on raw arrays that records itself on the tape when given Boxes. (A comment, not
    # a docstring: each instance carries its function's __doc__ in a slot.)

    def __init__(self, fun):
        self.fun = fun
        self.name = self.__name__ = fun.__name__
        self.vjps = {}  # argnum -> vjp(g, ans, *args, **kwargs): the table defvjp fills
        # The one stored rule, whichever defvjp form set it:
        # rule(argnums, g, ans, *args, **kwargs) -> the cotangents of args[n] for n in argnums.
        self.rule = self._no_rule
        self.__doc__ = fun.__doc__
        self.__wrapped__ = fun

    # How tinyad/replay.py writes a call in a compiled program, if not as `fun(args)`: a
    # template of numpy's own operator for the same ufunc, "{0} * {1}", or the name and
    # positional arity of the array method that fun calls, ("reshape", 2) (tinyad/numpy/ops.py).
    operator = None
    method = None

    def __repr__(self):
        return f"<primitive {self.name}>"

    def __call__(self, *args, **kwargs):
        """Run on raw values; record on the innermost tape among the arguments, if any."""
        for a in args:
            if (type(a) is list or type(a) is tuple) and _holds_box(a):
                return self(*_lift_array_likes(args), **kwargs)  # [x, x + 2.0]: one array
        tape = _top_tape(args)
        if tape is None:  # no Box: a plain call (as in the vjps of a first-order backward pass)
            out = self.fun(*args, **kwargs)
            return out.value if type(out) is Saved else out
        raw, parents = list(args), []
        for i, x in enumerate(args):
            if type(x) is Box and x.tape is tape:
                raw[i] = x.value
                parents.append((i, x.index))
            elif type(x) is Box and x.tape.level == tape.level:
                raise ValueError(
                    f"{self.name}: a traced value from a finished trace was used again; "
                    "do not keep Boxes from inside grad/vjp after it returns"
                )
        # Boxes of outer tapes may remain among `raw` (or inside x.value): the call records
        # on those tapes too, one level at a time.
        nested = any(type(x) is Box for x in raw)
        ans = self(*raw, **kwargs) if nested else self.fun(*raw, **kwargs)
        ans, kwargs = with_residuals(ans, kwargs)
        return tape.record(self, ans, raw, kwargs, tuple(parents))

    def _no_rule(self, argnums, *args, **kwargs):
        self.missing(argnums[0])

    def missing(self, argnum):
        raise NotImplementedError(
            f"the vjp of primitive '{self.name}' with respect to argument {argnum} is not "
            f"defined; add it with tinyad.defvjp({self.name}, ...) or pass the argument as a "
            "constant"
        )


class Saved(NamedTuple):
    """What a primitive may return instead of its result: the result and residuals for its vjp
    (JAX's custom_vjp, torch's save_for_backward). The residuals are kept in the record, where
    `tape.nbytes()` counts them, and reach the vjp as the keyword argument `saved`.
    They are raw values, constants to any outer tape: a vjp that must itself be
    differentiated (grad of grad) recomputes from its arguments whatever depends on them.

    >>> @tinyad.primitive
    ... def solve_keeping_steps(y0, t):
    ...     ys, steps = run_solver(y0, t)
    ...     return tinyad.Saved(ys, steps)       # the vjp gets saved=steps
    """

    value: object
    residuals: object


def with_residuals(ans, kwargs):
    """(result, kwargs of its record): residuals a primitive saved ride in kwargs as `saved`."""
    if type(ans) is Saved:
        return ans.value, {**kwargs, "saved": ans.residuals}
    if type(ans) is Box:  # recorded on an outer tape first (nested): that record holds them
        outer = ans.tape.records[ans.index][3]
        if "saved" in outer:
            return ans, {**kwargs, "saved": outer["saved"]}
    return ans, kwargs


def _top_tape(args):
    """The highest-level (innermost) tape among the Box arguments, or None."""
    tape = None
    for x in args:
        if type(x) is Box and (tape is None or x.tape.level > tape.level):
            tape = x.tape
    return tape


def _lift_array_likes(args):
    return [array_from_list(a) if type(a) is not Box and _holds_box(a) else a for a in args]


def primitive(fun):
    """Make `fun` (a function on raw arrays) a primitive that tinyad can trace.

    >>> @tinyad.primitive
    ... def softplus(x):
    ...     return numpy.logaddexp(0.0, x)
    """
    return Primitive(fun)


# Three ways to give a primitive its vjps, all stored as one rule.


def defvjp(prim, *vjps):
    """Attach one vjp per positional argument: `vjp(g, ans, *args, **kwargs)`; None skips one.

    >>> defvjp(softplus, lambda g, ans, x: g * (1 - np.exp(-ans)))
    """
    if not isinstance(prim, Primitive):
        raise TypeError(f"defvjp expects a function decorated with @tinyad.primitive, got {prim!r}")
    for argnum, fn in enumerate(vjps):
        if fn is not None:
            _check_vjp_signature(prim, argnum, fn)
            prim.vjps[argnum] = fn

    table = prim.vjps

    def rule(argnums, g, ans, *args, **kwargs):
        return [(table.get(n) or prim.missing(n))(g, ans, *args, **kwargs) for n in argnums]

    prim.rule = rule


def defvjp_argnum(prim, fn):
    """One vjp for every argument: `fn(argnum, g, ans, *args, **kwargs)` (variadic primitives).

    >>> defvjp_argnum(_concatenate, lambda n, g, ans, *arrays, axis=0: ...)
    """

    def rule(argnums, g, ans, *args, **kwargs):
        return [fn(n, g, ans, *args, **kwargs) for n in argnums]

    prim.rule = rule


def defvjp_all(prim, fn):
    """One call for all arguments: `fn(argnums, g, ans, *args, **kwargs)` returns a tuple of
    cotangents, one per positional argument (those not in `argnums` may be None).

    For primitives whose cotangents come out of one computation (the ODE adjoint);
    `argnums` says which are needed, so work for the others can be skipped.

    >>> defvjp_all(odeint_adjoint, adjoint_vjp)     # tinyode/adjoint.py
    """

    def rule(argnums, g, ans, *args, **kwargs):
        every = fn(argnums, g, ans, *args, **kwargs)
        return [every[n] for n in argnums]

    prim.rule = rule


def _check_vjp_signature(prim, argnum, fn):
    """Refuse, at definition time, a vjp that cannot be called as vjp(g, ans, *args)."""
    try:
        params = inspect.signature(prim.fun).parameters.values()
        vjp_sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check
        return
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return  # fun(*args): how many arguments a call passes is known only then
    required = [p for p in params if p.default is p.empty]
    names = [p.name for p in required if p.kind in kinds]
    keywords = {p.name: None for p in required if p.kind is inspect.Parameter.KEYWORD_ONLY}
    if "saved" in vjp_sig.parameters:  # the residuals of a primitive that returns Saved
        keywords["saved"] = None
    try:
        vjp_sig.bind("g", "ans", *names, **keywords)
    except TypeError:
        raise TypeError(
            f"the vjp for argument {argnum} of primitive '{prim.name}' has the signature "
            f"{fn.__name__}{vjp_sig}, but it is called as vjp(g, ans, {', '.join(names)}): g is "
            "the output's cotangent, ans the output, then the primitive's own arguments"
        ) from None


def backward(tape, seeds):
    """The chain rule, once over the tape in reverse, from `seeds` {record index: cotangent}.

    Each record turns the cotangent g of its output into cotangents of its traced
    inputs with its primitive's vjps, and adds them to theirs. Returns
    {record index: cotangent} for the tape's input records. A record's cotangent
    is dropped as soon as it has been pulled back.
    """
    cts, inputs = dict(seeds), {}
    for i in range(max(cts), -1, -1):
        g = cts.pop(i, None)
        if g is None:  # this record does not reach the outputs
            continue
        prim, ans, args, kwargs, parents = tape.records[i]
        if prim is None:  # an input of the traced function
            inputs[i] = g
            continue
        argnums = tuple(n for n, _ in parents)
        for (n, parent), ct in zip(parents, prim.rule(argnums, g, ans, *args, **kwargs)):
            if ct is not None:  # None: a zero cotangent
                ct = fit_cotangent(ct, args[n], prim.name, n)
                cts[parent] = cts[parent] + ct if parent in cts else ct
    return inputs


def shape_of(x):
    """The shape of an array, a number or a traced value, as a tuple."""
    v = unbox(x)
    s = getattr(v, "shape", None)
    return tuple(s) if s is not None else tuple(array_module(v).shape(v))


def dtype_of(x):
    """The dtype of an array, a number or a traced value."""
    v = unbox(x)
    dt = getattr(v, "dtype", None)
    return dt if dt is not None else array_module(v).asarray(v).dtype


def fit_cotangent(ct, x, name, argnum):
    """The one place that undoes broadcasting and checks a vjp's result.

    A vjp may return its cotangent at the broadcast output shape; it is summed
    back to the argument's shape here and cast to the argument's float dtype.
    """
    try:  # the common case: already right
        if ct.shape == x.shape and ct.dtype == x.dtype:
            return ct
    except AttributeError:
        pass
    shape, cshape = shape_of(x), shape_of(ct)
    if cshape != shape:
        lead = len(cshape) - len(shape)
        axes = list(range(lead))  # to sum: the axes broadcasting added in front ...
        fits = lead >= 0
        for k, n in enumerate(shape if fits else ()):
            m = cshape[lead + k]
            if n == 1 and m != 1:
                axes.append(lead + k)  # ... and those it stretched from size 1
            fits = fits and (n == m or n == 1)
        if not fits:
            raise ValueError(
                f"vjp of '{name}' for argument {argnum} returned shape {cshape}; expected the "
                f"argument's shape {shape}, or a shape that {shape} broadcasts to (the core "
                "sums it back)"
            )
        if len(axes) > lead or not shape:
            ct = ct.sum(axis=tuple(axes), keepdims=True).reshape(shape)
        else:  # only axes added in front: the sum has the argument's shape already
            ct = ct.sum(axis=tuple(axes))
    xdt, cdt = dtype_of(x), dtype_of(ct)
    if cdt != xdt:
        if cdt.kind not in "fc" or (xdt.kind == "f" and cdt.kind == "c"):
            raise ValueError(
                f"vjp of '{name}' for argument {argnum} returned dtype {cdt}; expected a "
                f"cotangent of the argument's dtype {xdt}"
            )
        if xdt.kind in "fc":
            ct = ct.astype(xdt) if hasattr(ct, "astype") else array_module(x).asarray(ct, xdt)
    return ct
