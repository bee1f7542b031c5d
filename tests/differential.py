"""Random programs run by tinyad and by HIPS autograd; central finite differences referee.

A program is straight-line numpy code: a few inputs x0, x1, ... and one new value per line,
each line one primitive of tinyad.numpy applied to earlier values, for example

    def program(np, logsumexp, x0, x1):
        # x0: (2, 3) float64
        # x1: (3,) float64
        v0 = np.tanh(x0)
        v1 = np.linalg.norm(v0, ord=np.inf, axis=1)
        v2 = v0 @ x1
        return [v1, v2]

The same source runs with `np` = tinyad.numpy and with `np` = autograd.numpy. Of the
scalar F = Σ_k sum(out_k · w_k) (fixed random weights w_k) both compute the value, the
gradient ∇F and a Hessian-vector product ∇(∇F · u) with respect to every input. When the
two disagree, central finite differences of F in float64 with plain numpy decide who is
right. Every program gets one verdict:

- agree: tinyad and autograd agree (or both match the finite differences);
- autograd-wrong: tinyad matches the finite differences, autograd does not (or raises);
- tinyad-wrong: autograd matches, tinyad does not, or tinyad raises, warns (a
  RuntimeWarning) or returns a gradient of the wrong dtype;
- undecided: the finite differences cannot decide (a kink within the step, both far off).

Values are kept on safe domains when the program is generated: each line is evaluated with
numpy, and a line whose value is non-finite, huge, or within a few hundredths of a kink
(abs at 0, a tie in max that is not exact, clip at a bound, ...) is drawn again. Exact ties
(max of repeated copies, maximum(x, x), relu zeros) are kept on purpose: there the
conventions of tinyad's SPEC (|x|' = 0 at 0, ties share the gradient evenly, the gradient
of a norm at 0 is 0) are what central differences give too.

Run from the command line:  python tests/differential.py --start 0 --count 20000 --jobs 2
"""

import argparse
import math
import multiprocessing
import os
import pickle
import re
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field

import autograd
import autograd.numpy as anp
import numpy
from autograd.scipy.special import logsumexp as autograd_logsumexp

import tinyad
import tinyad.numpy as tnp

# ----------------------------------------------------------------- programs

MAX_SIZE = 48  # entries of any value: keeps a program fast and finite differences cheap
MAX_NDIM = 4
MAX_ABS = 1e4  # a value larger than this is drawn again
KINK_MARGIN = 0.02  # the least distance to a kink, unless exactly on it
INPUT_SHAPES = [(), (3,), (4,), (2, 3), (3, 3), (3, 4), (2, 2, 3), (4, 1), (1, 3), (2, 3, 2)]


@dataclass
class Program:
    """One random program: its source, input shapes, point θ and the fixed vectors w, u."""

    seed: int
    dtype: numpy.dtype
    shapes: list  # of the inputs x0, x1, ...
    lines: list  # "v3 = np.sin(x0)", ...
    outputs: list  # names of the returned values
    theta: numpy.ndarray  # every input, flattened and joined
    weights: list  # w_k, one per output, of its shape
    direction: numpy.ndarray  # u, like theta
    families: set = field(default_factory=set)
    largest: float = 1.0  # max |entry| of any value in the program

    def source(self):
        args = ", ".join(f"x{i}" for i in range(len(self.shapes)))
        text = [f"def program(np, logsumexp, {args}):"]
        text += [f"    # x{i}: {s} {self.dtype.name}" for i, s in enumerate(self.shapes)]
        text += ["    " + line for line in self.lines]
        text.append(f"    return [{', '.join(self.outputs)}]")
        return "\n".join(text)

    def function(self):
        scope = {}
        exec(compile(self.source(), f"<program {self.seed}>", "exec"), scope)
        return scope["program"]


def _margin_ok(distance):
    """True when every entry is exactly on a kink (distance 0) or safely away from it."""
    d = numpy.abs(numpy.asarray(distance, dtype=numpy.float64))
    return bool(numpy.all((d == 0) | (d >= KINK_MARGIN)))


def _gaps(x, axis, largest=True):
    """How far the extreme entry along `axis` (None: all) is from the nearest entry that is
    not exactly equal to it (inf when there is none): max and min are kinked there."""
    x = numpy.asarray(x, dtype=numpy.float64)
    if axis is None:
        x = x.reshape(1, -1)
        axis = (1,)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    axes = tuple(a % x.ndim for a in axes)
    kept = [a for a in range(x.ndim) if a not in axes]
    x = numpy.transpose(x, kept + list(axes)).reshape([x.shape[a] for a in kept] + [-1])
    if not largest:
        x = -x
    top = numpy.max(x, axis=-1, keepdims=True)
    rest = numpy.max(numpy.where(x < top, x, -numpy.inf), axis=-1, keepdims=True)
    return top - rest


def _f(x):
    """A short literal for a float."""
    return repr(round(float(x), 2))


class _Draft:
    """A program under construction: the pool of values, evaluated with numpy as it grows."""

    def __init__(self, rng, dtype, depth):
        self.rng, self.dtype, self.depth = rng, dtype, depth
        self.values = {}  # name -> numpy value (in the program's dtype)
        self.order = []  # names, oldest first
        self.lines, self.used, self.families = [], set(), set()
        self.scope = {"np": numpy, "logsumexp": _numpy_logsumexp}

    def add_input(self, name, value):
        self.values[name] = value
        self.order.append(name)

    def pick(self, ok=lambda v: True):
        """A name from the pool whose value passes `ok`, preferring the newest ones."""
        names = [n for n in self.order if ok(self.values[n])]
        if not names:
            return None
        if self.rng.random() < 0.5:
            return names[-1]
        return names[self.rng.integers(len(names))]

    def emit(self, expr, family):
        """Evaluate `expr`; if its value is acceptable, append `v<k> = expr` and return v<k>.

        None when the program has its `depth` lines already, or the value is refused.
        """
        if len(self.lines) >= self.depth:
            return None
        with numpy.errstate(all="raise"), warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                value = eval(expr, self.scope, dict(self.values))
            except (ArithmeticError, ValueError, TypeError, IndexError, Warning):
                return None
        value = numpy.asarray(value)
        if (
            value.dtype != self.dtype
            or value.size == 0
            or value.size > MAX_SIZE
            or value.ndim > MAX_NDIM
            or not numpy.all(numpy.isfinite(value))
            or numpy.max(numpy.abs(value)) > MAX_ABS
        ):
            return None
        name = f"v{len(self.lines)}"
        self.used.update(n for n in self.order if _mentions(expr, n))
        self.lines.append(f"{name} = {expr}")
        self.values[name] = value
        self.order.append(name)
        self.families.add(family)
        return name


def _numpy_logsumexp(a, axis=None, keepdims=False):
    """log Σ exp(a) by its definition, shifted by max a: the reference's own logsumexp
    (scipy.special.logsumexp is the same, at ten times the cost on small arrays)."""
    m = numpy.max(a, axis=axis, keepdims=True)
    out = numpy.log(numpy.sum(numpy.exp(a - m), axis=axis, keepdims=True)) + m
    return out if keepdims else numpy.squeeze(out, axis=axis)


def _mentions(expr, name):
    """Whether `expr` uses the variable `name` (as a whole word)."""
    return re.search(rf"\b{name}\b", expr) is not None


# Each builder returns (expression, family) or None when the pool has nothing it fits.
# `d` is the _Draft; v is a name in the pool, x its value.


def _unary(d):
    v = d.pick()
    x = d.values[v]
    rng = d.rng
    smooth = ["np.arctan", "np.tanh", "np.arcsinh", "np.square"]
    # function: the largest |x| it takes (exp overflows, sin oscillates too fast to difference)
    bounded = {
        "np.exp": 4,
        "np.expm1": 4,
        "np.exp2": 5,
        "np.sinh": 4,
        "np.cosh": 4,
        "np.tan": 1.2,
        "np.sin": 10,
        "np.cos": 10,
    }
    # function: (x is in its domain, a safe argument built from v otherwise)
    domains = {
        "np.log": (x.min() > 0.1, f"({v} ** 2 + 0.5)"),
        "np.log2": (x.min() > 0.1, f"({v} ** 2 + 0.5)"),
        "np.log10": (x.min() > 0.1, f"({v} ** 2 + 0.5)"),
        "np.sqrt": (x.min() > 0.1, f"({v} ** 2 + 0.5)"),
        "np.cbrt": (numpy.abs(x).min() > 0.1, f"({v} ** 2 + 0.5)"),
        "np.reciprocal": (numpy.abs(x).min() > 0.2, f"({v} ** 2 + 1)"),
        "np.log1p": (x.min() > -0.8, f"{v} ** 2"),
        "np.arcsin": (numpy.abs(x).max() < 0.9, f"0.9 * np.tanh({v})"),
        "np.arccos": (numpy.abs(x).max() < 0.9, f"0.9 * np.tanh({v})"),
        "np.arctanh": (numpy.abs(x).max() < 0.9, f"0.9 * np.tanh({v})"),
        "np.arccosh": (x.min() > 1.1, f"({v} ** 2 + 1.5)"),
    }
    kinked = ["np.abs", "np.absolute", "abs", "np.sign", "np.floor"]
    kinds, weights = ["smooth", "bounded", "domain", "kinked", "negative"], [3, 2, 3, 1, 1]
    kind = rng.choice(kinds, p=numpy.array(weights) / sum(weights))
    if kind == "smooth":
        return f"{rng.choice(smooth)}({v})", "elementwise"
    if kind == "negative":
        return (f"-{v}" if rng.random() < 0.5 else f"np.negative({v})"), "elementwise"
    if kind == "bounded":
        fun = str(rng.choice(list(bounded)))
        if numpy.abs(x).max() >= bounded[fun]:
            return None
        return f"{fun}({v})", "elementwise"
    if kind == "domain":
        fun = str(rng.choice(list(domains)))
        inside, safe = domains[fun]
        return f"{fun}({v if inside else safe})", "elementwise"
    fun = str(rng.choice(kinked))
    if fun == "np.floor":
        if not _margin_ok(x - numpy.round(x)):
            return None
    elif not _margin_ok(x):
        return None
    return f"{fun}({v})", "kinks"


def _broadcast(*shapes):
    try:
        return numpy.broadcast_shapes(*shapes)
    except ValueError:
        return None


def _partner(d, v, literal=0.25):
    """A second operand for v: a pool name whose shape broadcasts with v's, or a literal."""
    if d.rng.random() < literal:
        return _f(d.rng.uniform(0.5, 2.0) * d.rng.choice([-1, 1])), None
    shape = d.values[v].shape

    def fits(y):
        out = _broadcast(shape, y.shape)
        return out is not None and math.prod(out) <= MAX_SIZE

    w = d.pick(fits)
    return w, d.values[w]


def _binary(d):
    rng = d.rng
    v = d.pick()
    x = d.values[v]
    w, y = _partner(d, v)
    yv = float(w) if y is None else y
    op = str(rng.choice(["+", "-", "*", "/", "**", "maximum", "minimum", "function"]))
    if op in "+-*":
        return f"{v} {op} {w}", "binary"
    if op == "function":
        fun = rng.choice(["np.add", "np.subtract", "np.multiply"])
        return (f"{fun}({v}, {w})" if rng.random() < 0.5 else f"{fun}({w}, {v})"), "binary"
    if op == "/":
        if numpy.abs(yv).min() > 0.2:
            return rng.choice([f"{v} / {w}", f"np.divide({v}, {w})"]), "binary"
        return f"{v} / ({w} ** 2 + 1)", "binary"
    if op == "**":
        form = rng.integers(4)
        if form == 0:
            return f"{v} ** {rng.choice([2, 3])}", "binary"
        if form == 1 and numpy.abs(x).max() < 4:
            return f"1.5 ** {v}", "binary"
        positive = x.min() > 0.2
        base = v if positive else f"({v} ** 2 + 0.5)"
        if form == 2 or y is None:
            return f"{base} ** {rng.choice([0.5, 1.5, -1.0])}", "binary"
        exponent = w if numpy.abs(y).max() < 2 else f"np.tanh({w})"
        return rng.choice([f"{base} ** {exponent}", f"np.power({base}, {exponent})"]), "binary"
    if not _margin_ok(x - yv):
        return None
    return f"np.{op}({v}, {w})", "binary"


def _where_clip(d):
    rng = d.rng
    v = d.pick()
    x = d.values[v]
    form = rng.integers(4)
    if form == 0:  # relu: exact zeros, which later kinks (abs, norm, max) see exactly
        if not _margin_ok(x):
            return None
        return rng.choice([f"np.maximum({v}, 0.0)", f"np.where({v} > 0, {v}, 0.0)"]), "where"
    if form == 1:
        lo, hi = sorted(round(float(b), 2) for b in rng.uniform(-1.5, 1.5, 2))
        if hi - lo < 0.1 or not (_margin_ok(x - lo) and _margin_ok(x - hi)):
            return None
        return f"np.clip({v}, {lo!r}, {hi!r})", "where"
    # where(c > t, v, w): the condition from another value, away from its threshold
    c = d.pick(lambda y: _broadcast(y.shape, x.shape) is not None)
    t = _f(numpy.median(d.values[c]))
    if not _margin_ok(d.values[c] - float(t)):
        return None
    w, y = _partner(d, v)
    if y is not None and _broadcast(x.shape, y.shape, d.values[c].shape) is None:
        return None
    if form == 2:
        return f"np.where({c} > {t}, {v}, {w})", "where"
    return f"np.where({c} < {t}, {v} * 2.0, -{v})", "where"


def _axis(rng, ndim, allow_tuple=True, allow_none=True):
    """An axis argument for a reduction over an ndim-dimensional value (negative ones too)."""
    choices = ["int"] + (["none"] if allow_none else []) + (["tuple"] if allow_tuple else [])
    kind = rng.choice(choices) if ndim > 0 else "none"
    if kind == "none" or ndim == 0:
        return None
    if kind == "tuple" and ndim >= 2:
        a, b = rng.choice(ndim, 2, replace=False)
        return (int(a) - ndim * int(rng.integers(2)), int(b))
    return int(rng.integers(-ndim, ndim))


def _reduction(d):
    rng = d.rng
    fun = str(rng.choice(["sum", "mean", "prod", "max", "min", "var", "std", "cumsum", "lse"]))
    v = d.pick(lambda y: y.ndim >= 1)
    if v is None:
        return None
    if fun in ("max", "min") and rng.random() < 0.3:  # exact ties: two copies of each entry
        v = d.emit(f"np.stack([{v}, {v}])", "shape")
        if v is None:
            return None
        axis = 0 if rng.random() < 0.5 else None
    else:
        axis = _axis(rng, d.values[v].ndim, allow_tuple=fun != "cumsum")
    x = d.values[v]
    keep = bool(rng.integers(2))
    axes = tuple(range(x.ndim)) if axis is None else numpy.atleast_1d(axis) % x.ndim
    count = math.prod(x.shape[a] for a in numpy.atleast_1d(axes))
    args = ("" if axis is None else f", axis={axis}") + (", keepdims=True" if keep else "")
    if fun == "cumsum":
        return f"np.cumsum({v}{args})", "reductions"
    if fun == "lse":
        return f"logsumexp({v}{args})", "reductions"
    if fun == "prod" and count > 6:
        return None
    if fun in ("max", "min"):
        if not _margin_ok(_gaps(x, axis, largest=fun == "max")):
            return None
    if fun in ("var", "std"):
        ddof = int(rng.integers(2)) if count >= 2 else 0
        if ddof:
            args += ", ddof=1"
        if fun == "std" and numpy.min(numpy.std(x, axis=axis, ddof=ddof)) < KINK_MARGIN:
            return None  # the square root's kink at 0
    if fun in ("sum", "mean", "max", "min") and rng.random() < 0.3:
        return f"{v}.{fun}({args[2:]})", "reductions"
    return f"np.{fun}({v}{args})", "reductions"


def _products(d):
    rng = d.rng
    v = d.pick(lambda y: y.ndim >= 1)
    if v is None:
        return None
    x = d.values[v]
    kind = str(rng.choice(["matmul", "dot", "outer", "tensordot", "einsum", "einsum-sublist"]))
    if kind == "outer":
        w = d.pick(lambda y: y.size * x.size <= MAX_SIZE)
        return (f"np.outer({v}, {w})" if w else None), "products"
    if kind == "matmul":

        def fits(y):
            if y.ndim == 0 or y.shape[-1 if y.ndim == 1 else -2] != x.shape[-1]:
                return False
            if x.ndim == 1 or y.ndim == 1:
                return True
            return _broadcast(x.shape[:-2], y.shape[:-2]) is not None

        w = d.pick(fits)
        if w is None:
            w = v if x.ndim == 1 else f"np.swapaxes({v}, -1, -2)"
        return rng.choice([f"{v} @ {w}", f"np.matmul({v}, {w})"]), "products"
    if kind == "dot":
        w = d.pick(lambda y: y.ndim >= 1 and y.shape[-2 if y.ndim >= 2 else 0] == x.shape[-1])
        if w is None:
            return None
        return f"np.dot({v}, {w})", "products"
    if kind == "tensordot":
        k = int(rng.integers(3))
        w = d.pick(lambda y: y.ndim >= k and x.ndim >= k and y.shape[:k] == x.shape[x.ndim - k :])
        if w is None:
            return None
        if k == 1 and rng.random() < 0.5:
            return f"np.tensordot({v}, {w}, axes=([{x.ndim - 1}], [0]))", "products"
        return f"np.tensordot({v}, {w}, {k})", "products"
    # einsum: a pattern that fits the shapes at hand
    patterns = []
    if x.ndim == 2:
        patterns += ["ij->ji", "ij->i", "ij->", "ij"]
        if x.shape[0] == x.shape[1]:
            patterns += ["ii->i", "ii"]
    if x.ndim == 3:
        patterns += ["ijk->kij", "...j->..."]
    w = d.pick(lambda y: y.ndim == 2 and x.ndim == 2 and y.shape[0] == x.shape[1])
    if w:
        patterns += ["ij,jk->ik"]
    u = d.pick(lambda y: y.shape == x.shape)
    if u and x.ndim == 2:
        patterns += ["ij,ij->i"]
    if u and x.ndim == 1:
        patterns += ["i,j->ij", "i,i->"]
    t = d.pick(lambda y: y.ndim == 1 and y.shape[0] == x.shape[-1])
    if t:
        patterns += ["...i,i->..."]
    if not patterns:
        return None
    pattern = str(rng.choice(patterns))
    names = {"ij,jk->ik": [v, w], "ij,ij->i": [v, u], "i,j->ij": [v, u], "i,i->": [v, u]}
    operands = names.get(pattern, [v, t] if "," in pattern else [v])
    if kind == "einsum" or "->" not in pattern:
        return f"np.einsum({pattern!r}, {', '.join(operands)})", "products"
    return _sublist_einsum(pattern, operands), "products"


def _sublist_einsum(pattern, operands):
    """'ij,jk->ik' with (a, b) as einsum(a, [0, 1], b, [1, 2], [0, 2])."""
    letters = sorted(set(pattern) - set(",->."))

    def sub(s):
        items = ["Ellipsis" if c == "." else str(letters.index(c)) for c in s.replace("...", ".")]
        return "[" + ", ".join(items) + "]"

    inputs, output = pattern.split("->")
    parts = [f"{x}, {sub(s)}" for x, s in zip(operands, inputs.split(","), strict=True)]
    return f"np.einsum({', '.join(parts)}, {sub(output)})"


def _square(d):
    """A well-conditioned stack of square matrices (…, n, n), n ≤ 4, as a new line."""
    v = d.pick(lambda y: y.ndim >= 2 and y.shape[-1] == y.shape[-2] and y.shape[-1] <= 4)
    if v is None:
        v = d.pick(lambda y: y.ndim == 2 and y.shape[0] <= 4)
        if v is None:
            return None
        v = d.emit(f"{v} @ {v}.T", "products")
        if v is None:
            return None
    a = d.values[v]
    with numpy.errstate(divide="ignore", invalid="ignore"):  # a singular a: cond = inf
        if numpy.max(numpy.linalg.cond(a)) < 30:
            return v
    n = a.shape[-1]
    shift = _f(2 * numpy.max(numpy.linalg.norm(a, 2, axis=(-2, -1))) + 1)
    return d.emit(f"{v} + {shift} * np.eye({n}, dtype={v}.dtype)", "linalg")


def _linalg(d):
    rng = d.rng
    kind = str(rng.choice(["norm", "norm", "inv", "solve", "det", "slogdet"]))
    if kind == "norm":
        return _linalg_norm(d)
    a = _square(d)
    if a is None:
        return None
    if kind == "inv":
        return f"np.linalg.inv({a})", "linalg"
    if kind == "det":
        return f"np.linalg.det({a})", "linalg"
    if kind == "slogdet":
        return f"np.linalg.slogdet({a})[1]", "linalg"
    matrix = d.values[a]
    shape = matrix.shape
    if len(shape) == 2:  # solve(a, a) would be the constant I: a right-hand side that is not a
        b = d.pick(lambda y: y is not matrix and y.ndim in (1, 2) and y.shape[0] == shape[0])
    else:
        b = d.pick(
            lambda y: y is not matrix and y.ndim == len(shape) and y.shape[:-1] == shape[:-1]
        )
    return (f"np.linalg.solve({a}, {b})" if b else None), "linalg"


def _linalg_norm(d):
    rng = d.rng
    v = d.pick(lambda y: y.ndim >= 1)
    if v is None:
        return None
    x = d.values[v]
    keep = ", keepdims=True" if rng.random() < 0.3 else ""
    if x.ndim >= 2 and rng.random() < 0.4:  # a matrix norm over the last two axes
        ord_ = str(
            rng.choice(["None", "'fro'", "1", "-1", "np.inf", "-np.inf", "2", "-2", "'nuc'"])
        )
        if ord_ in ("1", "-1", "np.inf", "-np.inf"):
            along = -2 if ord_ in ("1", "-1") else -1
            sums = numpy.sum(numpy.abs(x), axis=along)
            if not (_margin_ok(x) and _margin_ok(_gaps(sums, -1, largest="-" not in ord_))):
                return None
        if ord_ in ("2", "-2", "'nuc'"):  # through the SVD: distinct, nonzero singular values
            sv = numpy.linalg.svd(x.astype(numpy.float64), compute_uv=False)
            gaps = numpy.abs(numpy.diff(sv, axis=-1))
            if sv.min() < KINK_MARGIN or (gaps.size and gaps.min() < KINK_MARGIN):
                return None
        return f"np.linalg.norm({v}, ord={ord_}, axis=(-2, -1){keep})", "linalg"
    ord_ = str(rng.choice(["None", "1", "2", "3", "np.inf", "-np.inf"]))
    axis = int(rng.integers(-x.ndim, x.ndim)) if x.ndim > 1 or rng.random() < 0.5 else None
    if axis is None and x.ndim > 1:
        ord_ = "None"  # numpy: an ord with axis=None needs a 1-D or 2-D x
    if "inf" in ord_ and rng.random() < 0.3:  # exact ties: |v| and |-v| for each entry
        v = d.emit(f"np.stack([{v}, -{v}])", "shape")
        if v is None:
            return None
        x, axis = d.values[v], 0
    if ord_ in ("1", "np.inf", "-np.inf") and not _margin_ok(x):
        return None
    if "inf" in ord_ and not _margin_ok(_gaps(numpy.abs(x), axis, largest="-" not in ord_)):
        return None
    args = ("" if ord_ == "None" else f", ord={ord_}") + ("" if axis is None else f", axis={axis}")
    return f"np.linalg.norm({v}{args}{keep})", "linalg"


def _factorizations(n, parts):
    """Shapes with `parts` axes whose sizes multiply to n."""
    if parts == 1:
        return [(n,)]
    return [
        (k, *rest)
        for k in range(1, n + 1)
        if n % k == 0
        for rest in _factorizations(n // k, parts - 1)
    ]


SHAPE_OPS = ["reshape", "transpose", "swapaxes", "moveaxis", "expand_dims", "squeeze", "flip"]
SHAPE_OPS += ["tile", "repeat", "broadcast_to"]


def _shape_op(d):
    rng = d.rng
    v = d.pick()
    x = d.values[v]
    nd = x.ndim
    kind = str(rng.choice(SHAPE_OPS))
    if kind == "reshape":
        shape = list(map(int, rng.choice(_factorizations(x.size, int(rng.integers(1, 4))))))
        if rng.random() < 0.3:
            shape[rng.integers(len(shape))] = -1
        forms = [f"np.reshape({v}, {tuple(shape)})", f"{v}.reshape({tuple(shape)})"]
        return rng.choice(forms + [f"np.ravel({v})"]), "shape"
    if kind == "expand_dims":
        return f"np.expand_dims({v}, {int(rng.integers(-nd - 1, nd + 1))})", "shape"
    if kind == "broadcast_to":
        shape = (int(rng.integers(2, 4)),) + x.shape
        ones = [i for i, n in enumerate(x.shape) if n == 1]
        if ones and rng.random() < 0.5:
            shape = list(x.shape)
            shape[ones[0]] = 3
        return f"np.broadcast_to({v}, {tuple(shape)})", "shape"
    if kind == "tile":
        reps = [int(r) for r in rng.integers(1, 3, int(rng.integers(1, nd + 2)))]
        return f"np.tile({v}, {reps[0] if len(reps) == 1 else tuple(reps)})", "shape"
    if nd == 0:
        return None
    if kind == "transpose":
        perm = tuple(int(p) - nd * int(rng.integers(2)) for p in rng.permutation(nd))
        return rng.choice([f"np.transpose({v})", f"np.transpose({v}, {perm})", f"{v}.T"]), "shape"
    if kind == "swapaxes":
        a, b = rng.integers(-nd, nd, 2)
        return f"np.swapaxes({v}, {a}, {b})", "shape"
    if kind == "moveaxis":
        a, b = rng.integers(-nd, nd, 2)
        return f"np.moveaxis({v}, {a}, {b})", "shape"
    if kind == "squeeze":
        ones = [i for i, n in enumerate(x.shape) if n == 1]
        if not ones:
            return None
        axis = "" if rng.random() < 0.5 else f", axis={ones[0] - nd * int(rng.integers(2))}"
        return f"np.squeeze({v}{axis})", "shape"
    if kind == "flip":
        axis = _axis(rng, nd)
        return (f"np.flip({v})" if axis is None else f"np.flip({v}, {axis})"), "shape"
    axis = _axis(rng, nd, allow_tuple=False)  # repeat
    length = x.size if axis is None else x.shape[axis]
    repeats = (
        int(rng.integers(1, 4))
        if rng.random() < 0.5
        else [int(r) for r in rng.integers(0, 3, length)]
    )
    if repeats == [0] * length:
        return None
    return f"np.repeat({v}, {repeats}{'' if axis is None else f', axis={axis}'})", "shape"


def _join(d):
    rng = d.rng
    v = d.pick(lambda y: y.ndim >= 1)
    if v is None:
        return None
    x = d.values[v]
    kind = str(rng.choice(["concatenate", "stack", "hstack", "vstack"]))
    if kind == "stack":
        w = d.pick(lambda y: y.shape == x.shape) or v
        axis = int(rng.integers(-x.ndim - 1, x.ndim + 1))
        return f"np.stack([{v}, {w}], axis={axis})", "shape"
    axis = int(rng.integers(-x.ndim, x.ndim))
    if kind == "hstack":
        axis = 0 if x.ndim == 1 else 1
    if kind == "vstack":
        if x.ndim > 2:
            return None
        axis = 0

    def fits(y):
        if y.ndim != x.ndim:
            return False
        a = axis % x.ndim
        return y.shape[:a] + y.shape[a + 1 :] == x.shape[:a] + x.shape[a + 1 :]

    w = d.pick(fits) or v
    if kind == "concatenate":
        return f"np.concatenate([{v}, {w}], axis={axis})", "shape"
    return f"np.{kind}([{v}, {w}])", "shape"


def _index(d):
    rng = d.rng
    v = d.pick(lambda y: y.ndim >= 1)
    if v is None:
        return None
    x = d.values[v]
    n = x.shape[0]
    kind = rng.integers(6)
    if kind == 0:
        return f"{v}[{int(rng.integers(-n, n))}]", "indexing"
    if kind == 1:
        a = int(rng.integers(0, n))
        step = int(rng.choice([1, 2, -1]))
        return (f"{v}[{a}:]" if step == 1 else f"{v}[::{step}]"), "indexing"
    if kind == 2 and x.ndim >= 2:
        return f"{v}[..., {int(rng.integers(x.shape[-1]))}]", "indexing"
    if kind == 3:
        picks = [int(i) for i in rng.integers(-n, n, int(rng.integers(1, 5)))]
        return f"{v}[{picks}]", "indexing"  # repeated indices add up in the gradient
    if kind == 4 and x.ndim >= 2:
        m = x.shape[1]
        k = int(rng.integers(1, 4))
        rows = [int(i) for i in rng.integers(0, n, k)]
        cols = [int(i) for i in rng.integers(0, m, k)]
        return f"{v}[{rows}, {cols}]", "indexing"
    if kind == 5 and x.ndim >= 2:
        return f"{v}[None, :, {int(rng.integers(x.shape[1]))}]", "indexing"
    mask = [bool(b) for b in rng.integers(0, 2, n)]
    if not any(mask):
        return None
    return f"{v}[np.array({mask})]", "indexing"


BUILDERS = [  # (builder, weight)
    (_unary, 4),
    (_binary, 4),
    (_where_clip, 1.5),
    (_reduction, 3),
    (_products, 2),
    (_linalg, 2),
    (_shape_op, 3),
    (_join, 1),
    (_index, 2),
]


def generate(seed):
    """The program of `seed`: 3-12 lines, float64 or float32, 1-3 inputs."""
    rng = numpy.random.default_rng(seed)
    dtype = numpy.dtype(numpy.float32 if rng.random() < 0.35 else numpy.float64)
    depth = int(rng.integers(3, 13))
    d = _Draft(rng, dtype, depth)
    shapes = [INPUT_SHAPES[i] for i in rng.integers(len(INPUT_SHAPES), size=rng.integers(1, 4))]
    scale = rng.choice([0.5, 1.0, 1.5])
    for i, s in enumerate(shapes):
        d.add_input(f"x{i}", (scale * rng.standard_normal(s)).astype(dtype))
    builders, weights = zip(*BUILDERS, strict=True)
    p = numpy.array(weights) / sum(weights)
    for _ in range(50 * depth):
        if len(d.lines) >= depth:
            break
        built = builders[rng.choice(len(builders), p=p)](d)
        if built is not None and built[0] is not None:
            d.emit(*built)
    last = d.order[-1]
    outputs = [n for n in d.order if n.startswith("v") and (n not in d.used or n == last)]
    theta = numpy.concatenate([d.values[f"x{i}"].ravel() for i in range(len(shapes))])
    weights = [rng.standard_normal(d.values[n].shape).astype(dtype) for n in outputs]
    return Program(
        seed=seed,
        dtype=dtype,
        shapes=shapes,
        lines=d.lines,
        outputs=outputs,
        theta=theta,
        weights=weights,
        direction=rng.standard_normal(theta.shape).astype(dtype),
        families=d.families,
        largest=max(float(numpy.max(numpy.abs(v))) for v in d.values.values()),
    )


# ------------------------------------------------------------------ engines


def _unpack(np, theta, shapes):
    """The inputs x0, x1, ... as slices of the flat θ."""
    out, start = [], 0
    for s in shapes:
        n = math.prod(s)
        out.append(np.reshape(theta[start : start + n], s))
        start += n
    return out


def _objective(np, logsumexp, program, fun, weights):
    def F(theta):
        outs = fun(np, logsumexp, *_unpack(np, theta, program.shapes))
        return sum(np.sum(o * w) for o, w in zip(outs, weights, strict=True))

    return F


def _run_tinyad(program):
    F = _objective(tnp, tnp.logsumexp, program, program.function(), program.weights)
    u = program.direction
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        value, grad = tinyad.value_and_grad(F)(program.theta)
        hvp = tinyad.grad(lambda th: tnp.sum(tinyad.grad(F)(th) * u))(program.theta)
    for name, r in (("gradient", grad), ("Hessian-vector product", hvp)):
        if numpy.asarray(r).dtype != program.dtype:
            raise TypeError(f"tinyad's {name} has dtype {numpy.asarray(r).dtype}")
    return numpy.float64(value), numpy.asarray(grad, numpy.float64), numpy.asarray(hvp, float)


def _run_autograd(program):
    F = _objective(anp, autograd_logsumexp, program, program.function(), program.weights)
    u = program.direction
    with warnings.catch_warnings(), numpy.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        value, grad = autograd.value_and_grad(F)(program.theta)
        hvp = autograd.grad(lambda th: anp.sum(autograd.grad(F)(th) * u))(program.theta)
    return numpy.float64(value), numpy.asarray(grad, numpy.float64), numpy.asarray(hvp, float)


def _attempt(run, program):
    """(result, None), or (None, what went wrong): an exception is a verdict, not a failure."""
    try:
        return run(program), None
    except Exception as e:
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]


def _send(fd, obj):
    data = pickle.dumps(obj)
    os.write(fd, len(data).to_bytes(8, "little"))
    while data:
        data = data[os.write(fd, data) :]


def _receive(fd):
    """The next object sent down the pipe, or None when the other end has gone."""

    def read(n):
        out = b""
        while len(out) < n:
            chunk = os.read(fd, n - len(out))
            if not chunk:
                return None
            out += chunk
        return out

    size = read(8)
    body = size and read(int.from_bytes(size, "little"))
    return None if body is None else pickle.loads(body)


class _Sandbox:
    """Calls `_attempt(run, program)` in a forked child process, so that a crash of the child
    is an answer, not the end of the harness. The child serves program after program and is
    forked again after it dies.

    autograd can crash numpy itself: its vjp of where does not undo broadcasting, and numpy's
    add.at, handed that too-large cotangent by the vjp of indexing, segfaults (numpy 2.4).
    """

    def __init__(self, run):
        self.run, self.pid = run, None

    def _fork(self):
        child_reads, parent_writes = os.pipe()
        parent_reads, child_writes = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: answer until the parent closes its end, then leave at once
            try:
                os.close(parent_writes)
                os.close(parent_reads)
                while (program := _receive(child_reads)) is not None:
                    _send(child_writes, _attempt(self.run, program))
            finally:
                os._exit(0)
        os.close(child_reads)
        os.close(child_writes)
        self.pid, self.send, self.receive = pid, parent_writes, parent_reads

    def __call__(self, program):
        if not hasattr(os, "fork"):
            return _attempt(self.run, program)
        if self.pid is None or self.pid_owner != os.getpid():
            self.pid_owner = os.getpid()  # (a forked copy of the harness forks its own child)
            self._fork()
        _send(self.send, program)
        answer = _receive(self.receive)
        if answer is not None:
            return answer
        os.close(self.send)
        os.close(self.receive)
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        return None, f"the process died (signal {os.WTERMSIG(status)})"


_autograd = _Sandbox(lambda program: _run_autograd(program))


# Relative tolerances of (value, gradient, Hessian-vector product), measured in norm: tinyad
# against autograd, then an engine against the finite differences. In float64 the reference
# limits them (its error estimate is added); in float32 the rounding of the engines does.
AGREE_RTOL = {numpy.float64: (1e-12, 1e-9, 1e-8), numpy.float32: (1e-4, 1e-4, 1e-3)}
REF_RTOL = {numpy.float64: (1e-10, 1e-8, 1e-6), numpy.float32: (1e-4, 1e-4, 1e-3)}
H_GRAD, H_HVP = 1e-4, 2e-4  # finite-difference steps (then halved, for Richardson)


def _magnitude(program):
    """max |value| in the program · Σ_k Σ |w_k|: a bound on the size of the terms F adds up,
    hence on its rounding noise (F itself may cancel to nearly 0, as in solve(A, B)[0, 1])."""
    return program.largest * float(sum(numpy.sum(numpy.abs(w)) for w in program.weights))


def _reference(program):
    """(value, gradient, Hessian-vector product), their error estimates: float64 numpy.

    Central differences at two steps h and h/2, combined by Richardson extrapolation
    (the O(h²) error terms cancel); a third of their difference bounds what is left.
    """
    fun = program.function()
    weights = [w.astype(numpy.float64) for w in program.weights]
    F = _objective(numpy, _numpy_logsumexp, program, fun, weights)
    theta = program.theta.astype(numpy.float64)
    u = program.direction.astype(numpy.float64)
    eye = numpy.eye(theta.size)

    def grad_fd(h):
        return numpy.array([(F(theta + h * e) - F(theta - h * e)) / (2 * h) for e in eye])

    def hvp_fd(h):  # ∂/∂θ_i of the directional derivative along u
        def du(t):
            return (F(t + h * u) - F(t - h * u)) / (2 * h)

        return numpy.array([(du(theta + h * e) - du(theta - h * e)) / (2 * h) for e in eye])

    with numpy.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = F(theta)
        g1, g2 = grad_fd(H_GRAD), grad_fd(H_GRAD / 2)
        h1, h2 = hvp_fd(H_HVP), hvp_fd(H_HVP / 2)
    grad, hvp = (4 * g2 - g1) / 3, (4 * h2 - h1) / 3
    return (value, grad, hvp), (0.0, _norm(g2 - g1) / 3, _norm(h2 - h1) / 3)


def _norm(x):
    return float(numpy.linalg.norm(numpy.ravel(x)))


def _noise(scale, dtype):
    """How far rounding in `dtype` moves (value, gradient, Hessian-vector product) of terms of
    size `scale`: a result that is 0 in exact arithmetic comes out as some ulps of it."""
    eps = float(numpy.finfo(dtype).eps)
    return 10 * eps * scale, 100 * eps * scale, 1e3 * eps * scale


def _fd_noise(scale):
    """The same for the float64 finite differences: rounding of F divided by h, and by h²."""
    eps = float(numpy.finfo(numpy.float64).eps)
    return 0.0, eps * scale / (H_GRAD / 2), eps * scale / (H_HVP / 2) ** 2


def _close(a, b, rtol, noise):
    """tinyad's and autograd's (value, gradient, hvp) agree to rtol, or within the noise."""
    if not all(numpy.all(numpy.isfinite(x)) for x in (*a, *b)):
        return False
    return all(
        _norm(x - y) <= r * max(_norm(x), _norm(y)) + f
        for x, y, r, f in zip(a, b, rtol, noise, strict=True)
    )


def _error(result, ref, est, rtol, noise):
    """How far `result` is from the reference, in units of what the reference can resolve
    (≤ 1: right); infinite for a crash or a non-finite result."""
    if result is None:
        return math.inf
    worst = 0.0
    for x, r, e, rt, f in zip(result, ref, est, rtol, noise, strict=True):
        if not numpy.all(numpy.isfinite(x)):
            return math.inf
        worst = max(worst, _norm(x - r) / (10 * e + rt * _norm(r) + f))
    return worst


@dataclass
class Verdict:
    seed: int
    kind: str  # agree, autograd-wrong, tinyad-wrong, undecided
    reason: str
    program: Program
    raised: bool = False  # the engine found wrong raised (or warned) instead of answering
    cause: str = ""  # what the engine found wrong did: its exception, or "wrong values"

    def report(self):
        return f"seed {self.seed}: {self.kind} ({self.reason})\n{self.program.source()}"


def _describe(name, err, message):
    if message:
        return f"{name} raised {message}"
    if err == math.inf:
        return f"{name} gave a non-finite result"
    return f"{name} off by {err:.3g}× the tolerance"


def _cause(err, message):
    """A short name for what went wrong, to count alike failures together."""
    if message:
        return re.sub(r"\d+", "#", message)[:90]  # shapes and axes differ from case to case
    return "non-finite values" if err == math.inf else "wrong values"


def judge(seed):
    """Generate program `seed`, run it in both engines and, if they differ, referee."""
    program = generate(seed)
    dtype = program.dtype.type
    t, t_error = _attempt(_run_tinyad, program)
    a, a_error = _autograd(program)
    scale = _magnitude(program)
    if t is not None and a is not None:
        if _close(t, a, AGREE_RTOL[dtype], _noise(scale, dtype)):
            return Verdict(seed, "agree", "", program)
    ref, est = _reference(program)
    if not all(numpy.all(numpy.isfinite(r)) for r in ref):
        return Verdict(seed, "undecided", "the reference is not finite", program)
    fd_noise = _fd_noise(scale)
    quantities = ("gradient", "Hessian-vector product")
    for r, e, f, what in zip(ref[1:], est[1:], fd_noise[1:], quantities, strict=True):
        if e > 1e-3 * _norm(r) + f:
            why = f"finite differences of the {what} unsteady (a kink within the step?): {e:.2g}"
            return Verdict(seed, "undecided", why, program)
    noise = [f + g for f, g in zip(fd_noise, _noise(scale, dtype), strict=True)]
    et, ea = (_error(r, ref, est, REF_RTOL[dtype], noise) for r in (t, a))
    why = f"{_describe('tinyad', et, t_error)}; {_describe('autograd', ea, a_error)}"
    if et <= 1:
        if ea <= 1:
            return Verdict(seed, "agree", "both match finite differences; " + why, program)
        cause = _cause(ea, a_error)
        return Verdict(seed, "autograd-wrong", why, program, a_error is not None, cause)
    # tinyad is off the (steady) finite differences. In float64 rounding cannot explain that;
    # in float32 it can, unless autograd, in the same precision, does much better.
    if ea <= 1 or dtype == numpy.float64 or et > 100 * ea:
        cause = _cause(et, t_error)
        return Verdict(seed, "tinyad-wrong", why, program, t_error is not None, cause)
    return Verdict(seed, "undecided", "float32, both off the finite differences; " + why, program)


KINDS = ["agree", "autograd-wrong", "tinyad-wrong", "undecided"]


def run(seeds, jobs=1):
    """Verdicts for every seed (in order), on `jobs` processes."""
    if jobs <= 1:
        return [judge(s) for s in seeds]
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        return pool.map(judge, seeds, chunksize=50)


def summary(verdicts):
    """One line of counts; for the wrong ones, how many of them raised instead of answering."""
    counts = Counter(v.kind for v in verdicts)
    raised = Counter(v.kind for v in verdicts if v.raised)
    parts = [f"{k} {counts[k]}" + (f" ({raised[k]} raised)" if raised[k] else "") for k in KINDS]
    return f"programs {len(verdicts)}  " + "  ".join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--count", type=int, default=1000, help="number of programs")
    parser.add_argument("--jobs", type=int, default=1, help="processes")
    parser.add_argument("--show", type=int, default=3, help="programs printed per verdict")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    verdicts = run(range(args.start, args.start + args.count), args.jobs)
    for kind in KINDS[1:]:
        bad = [v for v in verdicts if v.kind == kind]
        if bad:
            families = Counter(f for v in bad for f in v.program.families)
            print(f"\n== {kind}: {len(bad)} (families involved: {dict(families)})")
            print("   seeds:", " ".join(str(v.seed) for v in bad[:50]))
            for cause, n in Counter(v.cause for v in bad).most_common(15):
                print(f"   {n:6d}  {cause}")
            for v in bad[: args.show]:
                print(v.report())
    print(f"\n{summary(verdicts)}  ({time.perf_counter() - t0:.0f} s)")
    return 1 if any(v.kind == "tinyad-wrong" for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
