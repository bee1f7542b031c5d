"""Flat copies of the two hot loops of tinyad/core.py, for speed. Read core.py instead.

`core.Primitive.__call__` (record one call on the tape) and `core.backward`
(the chain rule over the tape) are written to be read. Every traced
operation runs the first and every gradient the second, so their Python
overhead is most of the cost of small arrays (tests/bench B1). The versions
here do the same work with the common cases written out flat:

- a call whose Box arguments are all on one tape records there directly
  (anything else, nested tapes or array-likes, goes to core's version);
- the backward pass calls a per-argument vjp straight from the primitive's
  table and checks the common cotangent (right shape and dtype) inline.

They are installed when tinyad is imported, unless TINYAD_PLAIN=1 is set in
the environment, which runs core's versions. tests/test_fastpath.py checks
that both give the same tapes and the same gradients.
"""

import os

from . import core
from .core import Box, Saved, _holds_box, fit_cotangent, with_residuals

PLAIN = os.environ.get("TINYAD_PLAIN") == "1"
plain_call = core.Primitive.__call__
plain_backward = core.backward


def primitive_call(self, *args, **kwargs):
    """core.Primitive.__call__ for the common case: every Box argument on one tape."""
    tape = None
    for i, x in enumerate(args):
        t = type(x)
        if t is Box:
            if tape is None:
                tape, raw, parents, nested = x.tape, list(args), [], False
            elif x.tape is not tape:
                return plain_call(self, *args, **kwargs)  # Boxes of several tapes
            raw[i] = x.value
            parents.append((i, x.index))
            nested = nested or type(x.value) is Box
        elif (t is list or t is tuple) and _holds_box(x):
            return plain_call(self, *args, **kwargs)  # an array-like holding Boxes
    if tape is None:
        out = self.fun(*args, **kwargs)
        return out.value if type(out) is Saved else out
    ans = self(*raw, **kwargs) if nested else self.fun(*raw, **kwargs)
    if nested or type(ans) is Saved:
        ans, kwargs = with_residuals(ans, kwargs)
    return tape.record(self, ans, raw, kwargs, tuple(parents))


def backward(tape, seeds):
    """core.backward with the per-argument vjps called from the table and the cotangent check
    inlined."""
    records = tape.records
    cts, inputs = dict(seeds), {}
    for i in range(max(cts), -1, -1):
        g = cts.pop(i, None)
        if g is None:
            continue
        prim, ans, args, kwargs, parents = records[i]
        if prim is None:
            inputs[i] = g
            continue
        table = prim.vjps
        every = None if table else prim.rule(tuple(n for n, _ in parents), g, ans, *args, **kwargs)
        for k, (n, parent) in enumerate(parents):
            if every is not None:
                ct = every[k]
            else:  # a vjp per argument, straight from the table
                fn = table.get(n)
                ct = fn(g, ans, *args, **kwargs) if fn is not None else prim.missing(n)
            if ct is None:
                continue
            x = args[n]
            try:
                fits = ct.shape == x.shape and ct.dtype == x.dtype
            except AttributeError:
                fits = False
            if not fits:
                ct = fit_cotangent(ct, x, prim.name, n)
            prev = cts.get(parent)
            cts[parent] = ct if prev is None else prev + ct
    return inputs


if not PLAIN:
    core.Primitive.__call__ = primitive_call
    core.backward = backward
