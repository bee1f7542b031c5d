"""Assignment 1, vjps: the graded items and their probes (see ../probing.py).

Each vjp is evaluated in two ways, on fixed random inputs:
- first order: the vjp called directly, `vjp(g, ans, *args)` on plain arrays (its values
  and its shape: a vjp must return an array of its argument's shape);
- second order: the gradient of ⟨w, vjp(g, ans(args), *args)⟩ with respect to every
  argument and to g, with `ans` computed by tinyad.numpy's own forward pass. A vjp written
  with plain numpy is right at first order and wrong (or an error) here.
Both go through only the vjp of the item, so each item's points depend on that answer alone
(`add_vjps` also calls the student's `unbroadcast`, as the notebook asks).
"""

import inspect
import os
import sys

import numpy

import tinyad
import tinyad.numpy as tnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from probing import Item, memo, need, rng  # noqa: E402

ASSIGNMENT = "01_vjps"
NOTEBOOK = "vjps.ipynb"


def shape_text(shape):
    return f"of shape {tuple(shape)}"


def vjp_probes(ns, vjp_name, argnum, traced_forward, args, kwargs, seed):
    """Keys and thunks for one vjp on one case: first order and the gradient of the vjp."""
    vjp = need(ns, vjp_name)
    names = list(inspect.signature(traced_forward).parameters)[: len(args)]
    r = rng(seed)
    ans = numpy.asarray(tinyad.getval(traced_forward(*args, **kwargs)))
    g = r.standard_normal(ans.shape)
    w = r.standard_normal(numpy.shape(args[argnum]))
    options = "".join(f", {k}={v}" for k, v in kwargs.items())
    case = ", ".join(f"{n} {shape_text(numpy.shape(a))}" for n, a in zip(names, args))
    call = f"{vjp_name}(g, ans, {', '.join(names)}{options})"

    yield f"{call} with {case}", lambda: vjp(g, ans, *args, **kwargs)

    def inner(*xs_and_g):
        *xs, v = xs_and_g
        return tnp.sum(w * vjp(v, traced_forward(*xs, **kwargs), *xs, **kwargs))

    wrt = names + ["g"]
    second = memo(lambda: tinyad.grad(inner, argnum=tuple(range(len(wrt))))(*args, g))
    for k, name in enumerate(wrt):
        yield (
            f"d/d{name} <w, {call}> (second order) with {case}",
            lambda k=k: second()[k],
        )


def _matmul(A, B):
    return tnp.matmul(A, B)


def _tanh(x):
    return tnp.tanh(x)


def _sum(x, axis=None, keepdims=False):
    return tnp.sum(x, axis=axis, keepdims=keepdims)


def _logsumexp(x, axis=None, keepdims=False):
    return tnp.logsumexp(x, axis=axis, keepdims=keepdims)


def _add(x, y):
    return tnp.add(x, y)


def probe_tanh(ns):
    for k, shape in enumerate([(), (5,), (3, 4), (2, 3, 2)]):
        x = rng(10 + k).standard_normal(shape)
        yield from vjp_probes(ns, "my_tanh_vjp", 0, _tanh, (x,), {}, 20 + k)


MATMUL_SHAPES = [((3, 4), (4, 2)), ((1, 5), (5, 1)), ((4, 4), (4, 3)), ((3, 3), (3, 3))]


def probe_matmul(which):
    def probe(ns):
        for k, (a, b) in enumerate(MATMUL_SHAPES):
            A, B = rng(30 + k).standard_normal(a), rng(40 + k).standard_normal(b)
            argnum = "AB".index(which)
            yield from vjp_probes(ns, f"my_matmul_vjp_{which}", argnum, _matmul, (A, B), {}, 50 + k)

    return probe


SUM_CASES = [
    ((3, 4), None, False),
    ((3, 4), 0, False),
    ((3, 4), 1, False),
    ((3, 4), -1, True),
    ((3, 4), None, True),
    ((2, 3, 4), 1, False),
    ((2, 3, 4), 2, True),
    ((2, 3, 4), -3, False),
    ((5,), 0, False),
    ((4, 1), 1, False),
]


def probe_sum(ns):
    for k, (shape, axis, keepdims) in enumerate(SUM_CASES):
        x = rng(60 + k).standard_normal(shape)
        kwargs = {"axis": axis, "keepdims": keepdims}
        yield from vjp_probes(ns, "my_sum_vjp", 0, _sum, (x,), kwargs, 70 + k)


LSE_CASES = [
    ((5,), None, False),
    ((3, 4), None, False),
    ((3, 4), 0, False),
    ((3, 4), 1, True),
    ((2, 3, 4), -1, False),
    ((2, 3, 4), 1, True),
    ((2, 3, 4), None, True),
]


def probe_logsumexp_forward(ns):
    lse = need(ns, "my_logsumexp")
    for k, (shape, axis, keepdims) in enumerate(LSE_CASES):
        x = rng(80 + k).standard_normal(shape)
        yield (
            f"my_logsumexp(x, axis={axis}, keepdims={keepdims}) with x {shape_text(shape)}",
            lambda x=x, axis=axis, keepdims=keepdims: lse(x, axis=axis, keepdims=keepdims),
        )
    # Rows near +1000 and -1000: exp overflows (or all of a row underflows) unless each row's
    # own maximum is subtracted first.
    rows = numpy.array([[1000.0, 1000.0, 999.0], [-1000.0, -1001.0, -1000.0]])
    yield "my_logsumexp(rows, axis=1), rows near +1000 and -1000", lambda: lse(rows, axis=1)
    yield "my_logsumexp(rows), rows near +1000 and -1000", lambda: lse(rows[:1])
    big = numpy.array([1000.0, 1000.0, -1000.0])
    yield "my_logsumexp([1000, 1000, -1000])", lambda: lse(big)


def probe_logsumexp_vjp(ns):
    for k, (shape, axis, keepdims) in enumerate(LSE_CASES):
        x = rng(90 + k).standard_normal(shape)
        kwargs = {"axis": axis, "keepdims": keepdims}
        yield from vjp_probes(ns, "my_logsumexp_vjp", 0, _logsumexp, (x,), kwargs, 100 + k)


UNBROADCAST_CASES = [
    ((2, 3, 4), (3, 4)),
    ((2, 3, 4), (3, 1)),
    ((3, 4), (1, 4)),
    ((3, 4), ()),
    ((3, 4), (3, 4)),
    ((2, 3, 4), (2, 1, 4)),
    ((2, 3, 4), (4,)),
    ((2, 3, 4), (1, 1)),
    ((5,), (1,)),
]


def probe_unbroadcast(ns):
    unbroadcast = need(ns, "unbroadcast")
    for k, (g_shape, shape) in enumerate(UNBROADCAST_CASES):
        g = rng(110 + k).standard_normal(g_shape)
        w = rng(120 + k).standard_normal(shape)
        case = f"unbroadcast(g, {shape}) with g {shape_text(g_shape)}"
        yield case, lambda g=g, shape=shape: unbroadcast(g, shape)
        yield (
            f"d/dg <w, {case}> (second order)",
            lambda g=g, shape=shape, w=w: tinyad.grad(lambda g: tnp.sum(w * unbroadcast(g, shape)))(
                g
            ),
        )


ADD_SHAPES = [
    ((3, 4), (4,)),
    ((4,), (3, 4)),
    ((3, 1), (1, 4)),
    ((2, 3, 4), (3, 1)),
    ((3, 4), ()),
    ((2, 3), (2, 3)),
    ((2, 1, 4), (3, 1)),
]


def probe_add(ns):
    for k, (x_shape, y_shape) in enumerate(ADD_SHAPES):
        x, y = rng(130 + k).standard_normal(x_shape), rng(140 + k).standard_normal(y_shape)
        yield from vjp_probes(ns, "my_add_vjp_x", 0, _add, (x, y), {}, 150 + k)
        yield from vjp_probes(ns, "my_add_vjp_y", 1, _add, (x, y), {}, 160 + k)


ITEMS = [
    Item("tanh_vjp", 2, "the vjp of tanh", probe_tanh),
    Item("matmul_vjp_A", 2, "the vjp of matmul for A", probe_matmul("A")),
    Item("matmul_vjp_B", 2, "the vjp of matmul for B", probe_matmul("B")),
    Item("sum_vjp", 3, "the vjp of sum along an axis", probe_sum),
    Item("logsumexp_forward", 2, "a stable logsumexp", probe_logsumexp_forward),
    Item("logsumexp_vjp", 3, "the vjp of logsumexp", probe_logsumexp_vjp),
    Item("unbroadcast", 3, "unbroadcast", probe_unbroadcast),
    Item("add_vjps", 3, "the vjps of a broadcasting add", probe_add),
]
