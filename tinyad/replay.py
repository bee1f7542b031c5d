"""Trace once, replay many times: a tape read as a program.

A tape records, for each primitive, which earlier records its arguments came
from. Nothing else about the inputs' values is in it, unless the traced code
read a value to decide what to compute (`if x > 0`, `x[np.argmax(x)]`,
`np.where(x > 0, ...)`'s mask): the core counts such reads
(`core.value_reads`). A tape recorded without one is a straight-line program
of its inputs, so it can be run again on new inputs by calling each
primitive's raw function in order, with no Box, no dispatch, no recording,
and then pulled back by the same `backward`. That is what JAX's `jit` does
with its traces; the adjoint method evaluates one `vjp` of f per step of its
backward solve, so tinyode uses it there.

>>> f_vjp = Replay(f)
>>> out, pull = f_vjp(z, t, theta)          # traces f
>>> out, pull = f_vjp(z_new, t_new, theta)  # replays the trace on new values
>>> dz, dt, dtheta = pull(g)
"""

from . import core
from .backend import array_module
from .core import Tape, getval, isbox
from .transforms import _as_float_leaf, _flatten, _recording, _unflatten, vjp
from .tree import tree_leaves

__all__ = ["Replay"]


class Replay:
    """`vjp(fun, *args)` for repeated calls on arguments of one structure, shape and dtype.

    The first call traces `fun`; later calls replay that tape when it can be
    replayed (no value was read while tracing, no value of another tape is in
    it, the output is one array), and trace again otherwise.
    """

    def __init__(self, fun):
        self.fun, self.tape, self.replayable = fun, None, False

    def __call__(self, *args):
        """`(out, vjp_fun)` of fun at `args`, as `tinyad.vjp` returns them."""
        if any(isbox(x) for a in args for x in tree_leaves(a)):
            return vjp(self.fun, *args)  # differentiating the vjp itself: trace on the outer tape
        if self.tape is None:
            tape = self._trace(args)
        elif self.replayable:
            tape = self._replay(args)
        else:
            return vjp(self.fun, *args)
        if self.out is None:  # not one traced array: as vjp does it
            self.replayable = False
            return vjp(self.fun, *args)
        return tape.records[self.out][1], lambda g: self._pull(tape, g)

    def _trace(self, args):
        reads = core.value_reads[0]
        with _recording() as tape:
            inputs, boxed = [], []
            for arg in args:
                leaves, treedef = _flatten(arg)
                boxes = [tape.input(_as_float_leaf(x, "vjp")) for x in leaves]
                inputs.append((treedef, [b.index for b in boxes]))
                boxed.append(_unflatten(treedef, boxes))
            out = self.fun(*boxed)
        self.tape, self.inputs = tape, inputs
        # The program to replay: each primitive with the arguments fun called it with.
        self.program = [
            (prim, args, {k: v for k, v in kwargs.items() if k != "saved"}, parents)
            for prim, _, args, kwargs, parents in tape.records
            if prim is not None
        ]
        self.out = out.index if isbox(out) and out.tape is tape else None
        self.replayable = core.value_reads[0] == reads and not any(
            map(_holds_other_tape, tape.records)
        )
        return tape

    def _pull(self, tape, g):
        """The cotangents of the inputs, one pytree per argument, from g = the output's."""
        cts = core.backward(tape, {self.out: g})
        records = tape.records
        return tuple(
            _unflatten(treedef, [cts[i] if i in cts else _zeros(records[i][1]) for i in indices])
            for treedef, indices in self.inputs  # an input the output ignores: a zero
        )

    def _replay(self, args):
        """A new tape: the recorded program run on `args`, each primitive on raw values."""
        replayed = Tape(self.tape.level)
        records = replayed.records
        for arg in args:  # the inputs come first, in the order they were traced
            for x in tree_leaves(arg):
                records.append((None, _as_float_leaf(x, "vjp"), (), {}, ()))
        for prim, rargs, kwargs, parents in self.program:
            fresh = list(rargs)
            for n, parent in parents:
                fresh[n] = records[parent][1]
            ans, kw = core.with_residuals(prim.fun(*fresh, **kwargs), kwargs)
            records.append((prim, ans, fresh, kw, parents))
        return replayed


def _holds_other_tape(record):
    """A record that holds a traced value (of an outer tape): replaying would drop its trace."""
    prim, ans, args, kwargs, parents = record
    return isbox(ans) or any(isbox(a) for a in args) or any(map(isbox, kwargs.values()))


def _zeros(v):
    v = getval(v)
    return array_module(v).zeros_like(v)
