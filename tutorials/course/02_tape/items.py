"""Assignment 2, a tape: the graded items and their probes (see ../probing.py).

The probes build tapes with the notebook's own (given) Tape, Var and primitives. `records`
runs forward passes through the student's `apply` and reports what went on which tape;
`accumulate` and `unbroadcast` call those functions directly; `backward` walks tapes that
the probe wrote record by record (so it does not depend on `apply`); `nested` runs the
student's `grad`, nested up to three deep, and with that everything else.
"""

import os
import sys

import numpy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from probing import Exact, Item, memo, need, rng  # noqa: E402

ASSIGNMENT = "02_tape"
NOTEBOOK = "tape.ipynb"


class Given:
    """The notebook's given machinery and primitives, looked up when first used."""

    def __init__(self, ns):
        self.ns = ns

    def __getattr__(self, name):
        return need(self.ns, name)


def names_of(tape):
    return Exact([r.prim.name if r.prim is not None else "input" for r in tape.records])


def parents_of(tape):
    return Exact([[[int(a), int(i)] for a, i in r.parents] for r in tape.records])


def describe_var(x, tape):
    """Exact: is x a Var, on `tape`, and at which record."""
    return Exact(
        {
            "type": type(x).__name__,
            "on this tape": getattr(x, "tape", None) is tape,
            "record": int(x.index) if hasattr(x, "index") else None,
        }
    )


def probe_records(ns):
    G = Given(ns)
    x0 = rng(200).standard_normal(3)

    def run(fun):
        tape = G.Tape(1)
        out = fun(tape.push(None, x0))
        return tape, out

    cases = {
        "sum_(sin(x) * exp(x))": lambda x: G.sum_(G.sin(x) * G.exp(x)),
        "2.0 * x + ones(3)": lambda x: 2.0 * x + numpy.ones(3),
        "sum_(x, axis=0, keepdims=True)": lambda x: G.sum_(x, axis=0, keepdims=True),
        "x * x": lambda x: x * x,
        "cos(x) @ x": lambda x: G.cos(x) @ x,
    }
    for text, fun in cases.items():
        traced = memo(lambda fun=fun: run(fun))
        yield f"{text}: the record names", lambda t=traced: names_of(t()[0])
        yield f"{text}: the parents", lambda t=traced: parents_of(t()[0])
        yield f"{text}: the output", lambda t=traced: describe_var(t()[1], t()[0])
        yield f"{text}: the output's value", lambda t=traced: G.getval(t()[1])
        yield (
            f"{text}: kwargs and which args are Vars",
            lambda t=traced: Exact(
                [
                    [sorted(r.kwargs.items()), [type(a).__name__ for a in r.args]]
                    for r in t()[0].records
                ]
            ),
        )

    @memo
    def nested():
        outer, inner = G.Tape(1), G.Tape(2)
        u = outer.push(None, 0.5)
        v = inner.push(None, 3.0)
        return outer, inner, u * v

    yield "u * v, u on a level-1 tape and v on level 2: inner tape", lambda: parents_of(nested()[1])
    yield "u * v, u on a level-1 tape and v on level 2: outer tape", lambda: parents_of(nested()[0])
    yield (
        "u * v, u on a level-1 tape and v on level 2: the output",
        lambda: describe_var(nested()[2], nested()[1]),
    )
    yield (
        "u * v, u on a level-1 tape and v on level 2: the inner record's value",
        lambda: describe_var(nested()[1].records[-1].value, nested()[0]),
    )
    yield (
        "u * v, u on a level-1 tape and v on level 2: the outer record's args",
        lambda: Exact([type(a).__name__ for a in nested()[0].records[-1].args]),
    )
    yield "u * v, u on a level-1 tape and v on level 2: the value", lambda: G.getval(nested()[2])


def probe_accumulate(ns):
    accumulate = need(ns, "accumulate")

    def two_arrays():
        cts, a, b = {}, numpy.ones(3), numpy.arange(3.0)
        accumulate(cts, 2, a)
        accumulate(cts, 2, b)
        return cts, a

    def same_twice():
        cts, a = {5: numpy.full(2, 7.0)}, numpy.array([1.0, 2.0])
        accumulate(cts, 0, a)
        accumulate(cts, 0, a)
        return cts, a

    def floats():
        cts = {}
        accumulate(cts, 1, 0.5)
        accumulate(cts, 1, 0.25)
        return cts, None

    cases = {
        "ones(3) then arange(3) into cts[2]": two_arrays,
        "the same array twice into cts[0], cts[5] there before": same_twice,
        "0.5 then 0.25 into cts[1]": floats,
    }
    for text, run in cases.items():
        run = memo(run)
        yield f"{text}: the keys", lambda run=run: Exact(sorted(int(k) for k in run()[0]))
        yield f"{text}: the values", lambda run=run: [run()[0][k] for k in sorted(run()[0])]
        if text != "0.5 then 0.25 into cts[1]":
            yield f"{text}: the first array afterwards (unchanged)", lambda run=run: run()[1]


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
    G = Given(ns)
    for k, (g_shape, shape) in enumerate(UNBROADCAST_CASES):
        g = rng(210 + k).standard_normal(g_shape)
        case = f"unbroadcast(g, {shape}) with g of shape {g_shape}"
        yield case, lambda g=g, shape=shape: unbroadcast(g, shape)

        @memo
        def traced(g=g, shape=shape):
            tape = G.Tape(1)
            return tape, unbroadcast(tape.push(None, g), shape)

        yield f"{case}, g a Var: the result", lambda t=traced: describe_var(t()[1], t()[0])
        yield f"{case}, g a Var: its value", lambda t=traced: G.getval(t()[1])


def record(G, tape, prim, *args, **kwargs):
    """One record on a one-level tape, written without the student's apply."""
    raw = [a.value if isinstance(a, G.Var) else a for a in args]
    parents = tuple((i, a.index) for i, a in enumerate(args) if isinstance(a, G.Var))
    return tape.push(prim, prim.fun(*raw, **kwargs), raw, kwargs, parents)


def probe_backward(ns):
    backward = need(ns, "backward")
    G = Given(ns)
    X, b = rng(220).standard_normal((3, 4)), rng(221).standard_normal(4)
    A, g34 = rng(222).standard_normal((2, 3)), rng(223).standard_normal((3, 4))

    def chain():
        tape = G.Tape(1)
        x = tape.push(None, X[0])
        s, e = record(G, tape, G.sin, x), record(G, tape, G.exp, x)
        return tape, record(G, tape, G.sum_, record(G, tape, G.multiply, s, e))

    def broadcast():
        tape = G.Tape(1)
        x, y = tape.push(None, X), tape.push(None, b)
        h = record(G, tape, G.add, x, y)  # b is broadcast
        p = record(G, tape, G.multiply, h, h)  # h is read twice
        dead = record(G, tape, G.exp, x)  # does not reach the output
        out = record(G, tape, G.sum_, record(G, tape, G.sin, p))
        return tape, {"out": out, "p": p, "dead": dead}

    def matmul():
        tape = G.Tape(1)
        x = tape.push(None, X)
        m = record(G, tape, G.matmul, A, x)
        return tape, record(G, tape, G.sum_, record(G, tape, G.sum_, m, axis=1))

    def one_step():
        tape = G.Tape(1)
        return tape, record(G, tape, G.cos, tape.push(None, b))

    walks = {  # description: (the walk, the input records it must reach)
        "sum(sin(x) * exp(x)) from its output": (lambda: backward(*_at(chain()), 1.0), [0]),
        "sum(sin((X + b)^2)) from its output, b broadcast": (
            lambda: backward(*_at(broadcast(), "out"), 1.0),
            [0, 1],
        ),
        "(X + b)^2 from its record, g an array": (
            lambda: backward(*_at(broadcast(), "p"), g34),
            [0, 1],
        ),
        "exp(X) (a branch off the output) from its record": (
            lambda: backward(*_at(broadcast(), "dead"), numpy.ones((3, 4))),
            [0],
        ),
        "sum(sum(A @ X, axis=1)) from its output": (lambda: backward(*_at(matmul()), 1.0), [0]),
        "cos(b), one record after the input": (lambda: backward(*_at(one_step()), b), [0]),
    }
    for text, (walk, inputs) in walks.items():
        walk = memo(walk)
        yield (
            f"backward of {text}: the records returned",
            lambda w=walk: Exact(sorted(int(k) for k in w())),
        )
        for k in inputs:
            yield (
                f"backward of {text}: the cotangent of record {k}",
                lambda w=walk, k=k: _get(w(), k),
            )


def _at(built, name=None):
    tape, outs = built
    out = outs[name] if name else outs
    return tape, out.index


def _get(cts, index):
    if index not in cts:
        raise LookupError(f"backward returned no cotangent for record {index}")
    return cts[index]


def probe_nested(ns):
    grad = need(ns, "grad")
    G = Given(ns)
    x3, x4 = rng(230).standard_normal(3), rng(231).standard_normal(4)
    B, A, v = (
        rng(232).standard_normal((3, 4)),
        rng(233).standard_normal((3, 4)),
        rng(234).standard_normal(4),
    )

    def f(x):
        return G.sin(x) * x * x

    cases = {
        "grad(sum(sin(x) * exp(x)))": lambda: grad(lambda x: G.sum_(G.sin(x) * G.exp(x)))(x3),
        "grad(sin(x) x^2) at 0.7": lambda: grad(f)(0.7),
        "grad(grad(sin(x) x^2)) at 0.7": lambda: grad(grad(f))(0.7),
        "grad(grad(grad(sin(x) x^2))) at 0.7": lambda: grad(grad(grad(f)))(0.7),
        "grad(lambda x: x * grad(lambda y: x + y)(1.0))(2.0)": lambda: grad(
            lambda x: x * grad(lambda y: x + y)(1.0)
        )(2.0),
        "grad(lambda x: x * grad(lambda y: x * y)(2.0))(3.0)": lambda: grad(
            lambda x: x * grad(lambda y: x * y)(2.0)
        )(3.0),
        "the Hessian of sum(exp(x + B)) times v": lambda: grad(
            lambda x: G.sum_(grad(lambda x: G.sum_(G.exp(x + B)))(x) * v)
        )(x4),
        "the Hessian of sum(sin(A @ x)) times v": lambda: grad(
            lambda x: G.sum_(grad(lambda x: G.sum_(G.sin(A @ x)))(x) * v)
        )(x4),
        "grad of a function that ignores x": lambda: grad(lambda x: G.sum_(G.exp(B)))(x4),
        "grad(lambda x: x * grad(lambda y: x * x)(1.0))(3.0), the inner one ignoring y": lambda: (
            grad(lambda x: x * grad(lambda y: x * x)(1.0))(3.0)
        ),
        "grad(sum(exp(x) * B)) over a broadcast x": lambda: grad(
            lambda x: G.sum_(G.exp(x) * B + x)
        )(x4),
    }
    yield from cases.items()

    def non_scalar():
        try:
            grad(lambda x: G.sin(x))(x4)
        except TypeError:
            return Exact("TypeError")
        return Exact("no error")

    yield "grad of a non-scalar function raises", non_scalar

    def depth():
        try:
            grad(lambda x: 1 / 0)(x4)  # fun raises: DEPTH must still go back
        except ZeroDivisionError:
            pass
        grad(grad(f))(0.7)
        return Exact([int(d) for d in need(ns, "DEPTH")])

    yield "DEPTH after the traces end (also after one that raised)", depth


ITEMS = [
    Item("records", 3, "records: apply", probe_records),
    Item("accumulate", 2, "accumulating cotangents", probe_accumulate),
    Item("unbroadcast", 3, "undoing broadcasting", probe_unbroadcast),
    Item("backward", 4, "the reverse walk", probe_backward),
    Item("nested", 4, "nested derivatives: grad with levels", probe_nested),
]
