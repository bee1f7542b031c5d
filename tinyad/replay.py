"""Trace once, replay many times: a tape read as a program.

A tape records, for each primitive, which earlier records its arguments came
from. Nothing else about the inputs' values is in it, unless the traced code
read a value to decide what to compute (`if x > 0`, `x[np.argmax(x)]`,
`np.where(x > 0, ...)`'s mask, `getval`): the core counts such reads
(`core.value_reads`). A tape recorded without one is a straight-line program
of its inputs, so it can be run again on new inputs by calling each
primitive's raw function in order, with no Box, no dispatch, no recording.
That is what JAX's `jit` does with its traces; the adjoint method evaluates
one `vjp` of f per step of its backward solve, so tinyode uses it there.

The backward pass is a program too. Its vjps are tinyad functions, so run on
traced values (f traced one level up, as grad of grad does) they record, on
the program's own tape, every operation the chain rule performs. Where that
backward trace read no value either (a vjp's mask, such as maximum's, is a
read), later pulls replay it as well: forward and backward, f's vjp is one
straight-line program of (inputs, g), compiled into two plain Python
functions (as torch.fx turns a graph into source); `f_vjp.source` prints them.
Otherwise the pull runs `backward` on the replayed tape.

The source reads as numpy would be written: arithmetic and indexing as numpy's
operators (`v3 = v2 * 1.81`, the same ufuncs), and the cotangents of y[0], y[1], …
added into one buffer (`v9[1] += v7`) rather than summed as arrays of zeros. A new
Replay of the same program (the adjoint makes one per gradient) takes the compiled
backward pass of the last one instead of tracing it again (`_program_key`).

>>> f_vjp = Replay(f)
>>> out, pull = f_vjp(z, t, theta)          # traces f
>>> dz, dt, dtheta = pull(g)                # traces the backward pass
>>> out, pull = f_vjp(z_new, t_new, theta)  # replays the trace on new values
>>> dz, dt, dtheta = pull(g_new)            # and the backward pass
>>> print(f_vjp.source)                     # def forward(v0, v1, v2): ...
>>> out, cts = f_vjp.vjp_leaves([z, t, *theta], g)  # both programs on flat leaves
"""

import collections
import functools
import math
import re

import numpy

from . import core
from .backend import array_module
from .core import Box, Tape, isbox, unbox
from .numpy.ops import _is_basic, add, add_at
from .transforms import _as_float_leaf, _depth, _flatten, _recording, _unflatten, vjp
from .tree import tree_leaves

__all__ = ["Replay"]


class Replay:
    """`vjp(fun, *args)` for repeated calls on arguments of one structure, shape and dtype.

    The first call traces `fun`; later calls replay that tape when it can be
    replayed (no value was read while tracing, no value of another tape is in
    it, the output is one array), and trace again otherwise. The first pull
    traces the backward pass; later pulls replay it when it read no value.
    """

    def __init__(self, fun):
        self.fun, self.tape, self.replayable = fun, None, False
        self.signature = None  # the leaves' types, shapes and dtypes the trace was made at
        self.pullback = None  # the backward program, once traced; False: not replayable
        self.key = None  # the forward program's _program_key, once traced

    def __call__(self, *args):
        """`(out, vjp_fun)` of fun at `args`, as `tinyad.vjp` returns them."""
        leaves = [x for a in args for x in tree_leaves(a)]
        if any(type(x) is Box for x in leaves):
            return vjp(self.fun, *args)  # differentiating the vjp itself: trace on the outer tape
        if self.tape is not None and _signature(leaves) != self.signature:
            self.tape = None  # other shapes or dtypes: the programs do not apply, trace again
        if self.tape is None:
            run = self._trace(args)
            self.signature = _signature(leaves)
        elif self.pullback:  # f and its backward pass compiled: two calls of plain code
            inputs = self._inputs(leaves)
            kept = self.compiled[0](*inputs)
            return kept[0], lambda g: self._pull_compiled(inputs, kept, g)
        elif self.replayable:
            run = self._replay(leaves)
        else:
            return vjp(self.fun, *args)
        if self.out is None:  # not one traced array: as vjp does it
            self.replayable = False
            return vjp(self.fun, *args)
        return run[self.out], lambda g: self._pull(run, g)

    def _trace(self, args):
        self.pullback, reads = None, core.value_reads[0]
        with _recording() as tape:
            inputs, boxed = [], []
            with _recording() as shadow:  # the same call one level up: its backward records
                self.as_is = []  # per leaf: whether it is boxed as it is (not converted)
                for arg in args:
                    leaves, treedef = _flatten(arg)
                    floats = [_as_float_leaf(x, "vjp") for x in leaves]
                    self.as_is += [x is y for x, y in zip(leaves, floats)]
                    boxes = [tape.input(x) for x in floats]
                    inputs.append((treedef, [b.index for b in boxes]))
                    boxed.append(_unflatten(treedef, [shadow.input(b) for b in boxes]))
                out = self.fun(*boxed)
        self.tape, self.inputs, self.shadow = tape, inputs, shadow
        # The program to replay: each primitive with the arguments fun called it with.
        self.program = _program(tape.records)
        self.out = None
        if isbox(out) and out.tape is shadow and isbox(out.value) and out.value.tape is tape:
            self.out, self.shadow_out = out.value.index, out.index
        self.replayable = core.value_reads[0] == reads and not any(
            map(_holds_other_tape, tape.records)
        )
        self.n_inputs = len(self.as_is)
        self.key = None
        if self.replayable:  # the program, which record is the output, the arguments' pytrees
            program = _program_key(tape.records)
            self.key = None if program is None else (program, self.out, repr(self.inputs))
        return _values(tape)

    def _compiled_before(self):
        """Take the backward program and both compiled programs of an earlier Replay that
        traced the same forward program (`_program_key`), if there is one: the adjoint
        makes a new Replay of f for each gradient, and each would trace the same backward
        pass and compile the same code again (two thirds of a first call's cost)."""
        state = _PROGRAMS.pop(self.key, None) if self.key is not None else None
        if state is None:
            return False
        _PROGRAMS[self.key] = state  # the most recently used, last
        self.__dict__.update(state)
        return True

    def _pull(self, run, g):
        """The cotangents of the inputs, one pytree per argument, from g = the output's.
        `run`: the values of every record of this call (a Tape's where there is one)."""
        fits = _fits(g, run[self.out])
        if self.pullback is None and self.replayable and fits and not self._compiled_before():
            traced = self._trace_backward(g)  # once, on the first call's tape
            if run.tape is self.tape:
                return traced
        if self.pullback and fits:
            return self._replay_backward(run, g)
        tape = run.tape
        cts = core.backward(tape, {self.out: g})
        records = tape.records
        return tuple(
            _unflatten(treedef, [cts[i] if i in cts else _zeros(records[i][1]) for i in indices])
            for treedef, indices in self.inputs  # an input the output ignores: a zero
        )

    def _trace_backward(self, g):
        """Backward over the shadow tape, whose values are Boxes of the first call's tape:
        the chain rule's operations are recorded there, after f's. Returns that pull."""
        tape, reads, first = self.tape, core.value_reads[0], len(self.tape.records)
        depth, _depth[0] = _depth[0], self.shadow.level  # tapes a vjp opens go above both
        try:
            seed = tape.input(g)
            cts = core.backward(self.shadow, {self.shadow_out: seed})
        finally:
            _depth[0] = depth
        outs = []  # per input leaf: its cotangent (a Box of `tape`), or a constant zero
        for treedef, indices in self.inputs:  # the shadow's inputs come in the same order
            leaves = [cts.get(i) for i in indices]
            zeros = [_zeros(tape.records[i][1]) for i in indices]
            outs.append((treedef, [z if ct is None else ct for z, ct in zip(zeros, leaves)]))
        new = tape.records[first:]
        self.pullback = False
        if core.value_reads[0] == reads and not any(map(_holds_other_tape, new)):
            self.first, self.backward_program = first, _program(new[1:])
            self.pullback = [
                (treedef, [ct.index if _on(ct, tape) else _Constant(ct) for ct in leaves])
                for treedef, leaves in outs
            ]
            self._compile(tape.records)
        return tuple(
            _unflatten(treedef, [ct.value if _on(ct, tape) else ct for ct in leaves])
            for treedef, leaves in outs
        )

    def _compile(self, records):
        """f and its backward pass as two Python functions of straight-line code (as
        torch.fx turns a graph into a module's source): `self.source` shows them.

        forward(inputs) returns f's output and the values the backward pass reads;
        backward(those values, g) returns the inputs' cotangents (their records' values).
        A third, vjp(inputs, g), is the two bodies in one function: (out, cotangents).
        """
        first, n = self.first, self.n_inputs
        # f's values that the backward pass reads: forward returns them beside its output
        reads = {p for *_, parents in self.backward_program for _, p in parents if p < first}
        kept = [self.out] + sorted(reads - {self.out})
        results = sorted({i for _, leaves in self.pullback for i in leaves if type(i) is int})
        env = {}
        forward = _code("forward", [f"v{i}" for i in range(n)], records[n:first], n, kept, env)
        params = [f"v{i}" for i in kept] + [f"v{first}"]  # v<first> is g
        backward = _code("backward", params, records[first + 1 :], first + 1, results, env)
        self.source = forward + "\n" + backward
        ids = [i for _, leaves in self.pullback for i in leaves]  # per input leaf, in order
        cotangents = [f"v{i}" if type(i) is int else _constant(env, i.value) for i in ids]
        both = _vjp_code(forward, backward, n, first, self.as_is, [f"v{self.out}", *cotangents])
        exec(_compiled(self.source), env)
        env["float64"] = numpy.float64  # what _as_float_leaf makes of a Python float
        exec(_compiled(both), env)
        self.compiled, self.kept = (env["forward"], env["backward"], env["vjp"]), kept
        self.position = {i: k for k, i in enumerate(results)}  # record index -> place in result
        out = records[self.out][1]
        self.out_aval = (out.shape, out.dtype)
        if self.key is not None:
            _PROGRAMS[self.key] = {name: getattr(self, name) for name in _COMPILED_STATE}
            while len(_PROGRAMS) > _PROGRAMS_KEPT:
                del _PROGRAMS[next(iter(_PROGRAMS))]  # the least recently used

    def vjp_leaves(self, leaves, g):
        """`(out, cotangents)` by the compiled programs alone, on the flat input `leaves`
        (one list, the arguments' leaves in order) and g: the cotangent of each input
        leaf, in that order, with no pytree built. None when there are no compiled
        programs for these leaves (not yet traced, not replayable, another signature) or
        g is not a raw cotangent shaped like the output: then call the Replay itself.

        >>> out, (dz, dt, *dtheta) = f_vjp.vjp_leaves([z, t, *theta], g)
        """
        run = self.compiled_for(leaves, g)
        if run is None:
            return None
        out, *cotangents = run(*leaves, g)
        return out, cotangents

    def compiled_for(self, leaves, g):
        """The compiled vjp as one plain function, `run(*leaves, g) -> (out, *cotangents)`,
        checked once here for `leaves` and g: `run` then takes any leaves and g of the same
        types, shapes and dtypes, and checks nothing itself (its source is f's forward and
        backward programs in one function). None where vjp_leaves returns None.

        For a caller that knows its calls share one signature: within one solve, the
        adjoint's augmented dynamics differ only in the values of z, a and t.

        >>> run = f_vjp.compiled_for([z, t, *theta], g)
        >>> out, dz, dt, *dtheta = run(z, t, *theta, g)
        """
        if not self.pullback or _signature(leaves) != self.signature:
            return None
        shape, dtype = self.out_aval
        if isbox(g) or getattr(g, "shape", None) != shape or getattr(g, "dtype", None) != dtype:
            return None
        return self.compiled[2]

    def pulls(self, leaves, gs):
        """`(out, rows)` by the compiled programs alone: f run once at the flat input
        `leaves`, and each cotangent g of `gs` pulled back, rows[k] holding the cotangent of
        each input leaf for gs[k]: for gs the unit vectors, the rows of f's Jacobian. None
        where compiled_for is None.

        >>> out, rows = f_vjp.pulls([y, t], numpy.eye(y.size))
        >>> J = numpy.stack([dy for dy, dt in rows])
        """
        if not len(gs) or self.compiled_for(leaves, gs[0]) is None:
            return None
        kept = self.compiled[0](*self._inputs(leaves))
        backward, position = self.compiled[1], self.position
        ids = [i for _, leaves in self.pullback for i in leaves]  # per input leaf, in order
        rows = []
        for g in gs:
            results = backward(*kept, g)
            rows.append([results[position[i]] if type(i) is int else i.value for i in ids])
        return kept[0], rows

    def _inputs(self, leaves):
        """The input leaves as the trace boxed them (floats as float arrays)."""
        return [x if same else _as_float_leaf(x, "vjp") for x, same in zip(leaves, self.as_is)]

    def _replay(self, leaves):
        """The recorded program run on new input leaves, each primitive on raw values:
        every record's value, and a new Tape of them (for `backward`)."""
        values = _Values(self._inputs(leaves))
        values.tape = Tape(self.tape.level)
        values.tape.records.extend((None, x, (), {}, ()) for x in values)
        _run(self.program, values, values.tape)
        return values

    def _replay_backward(self, values, g):
        """The compiled backward pass on the values of a replay or of the first call."""
        return self._cotangents(self.compiled[1](*[values[i] for i in self.kept], g))

    def _pull_compiled(self, inputs, kept, g):
        if not _fits(g, kept[0]):  # a traced g (grad of grad), or one of another shape
            return self._pull(self._replay(inputs), g)
        return self._cotangents(self.compiled[1](*kept, g))

    def _cotangents(self, results):
        """The backward program's results as one pytree per argument."""
        position = self.position
        return tuple(
            _unflatten(treedef, [results[position[i]] if type(i) is int else i.value for i in ids])
            for treedef, ids in self.pullback
        )


# The compiled backward passes of the last forward programs traced, by `_program_key`.
_PROGRAMS, _PROGRAMS_KEPT = {}, 64
_COMPILED_STATE = (
    "first", "backward_program", "pullback", "source", "compiled", "kept", "position",
    "out_aval",
)  # fmt: skip


class _NotLiteral(Exception):
    pass


def _program_key(records):
    """A key that is the same for two traces only if they are the same program: the
    inputs' types, shapes and dtypes, and per primitive its vjp rule, where its traced
    arguments come from and its constants, or None where a constant is not a literal.

    Only literals (numbers, None, strings, dtypes, and tuples and slices of them) make a
    key: an array constant can be changed in place between two gradients (an annealed
    coefficient, say), and a backward pass traced with the old one may hold a value
    computed from it (power's vjp computes y − 1 from a constant exponent y).
    """
    key = []
    try:
        for prim, ans, args, kwargs, parents in records:
            if prim is None:  # an input
                key.append((type(ans), getattr(ans, "shape", None), getattr(ans, "dtype", None)))
                continue
            traced = dict(parents)
            consts = tuple(
                ("v", traced[n]) if n in traced else _literal_key(x) for n, x in enumerate(args)
            )
            named = tuple((k, _literal_key(v)) for k, v in kwargs.items() if k != "saved")
            key.append((prim, prim.rule, consts, named))
    except _NotLiteral:
        return None
    return tuple(key)


def _literal_key(x):
    """x as a hashable key that tells apart any two different literals (1, 1.0, True, -0.0
    and 0.0 included); _NotLiteral for anything else (an array, a list)."""
    t = type(x)
    if t is tuple:
        return (tuple, tuple(map(_literal_key, x)))
    if t is slice:
        return (slice, _literal_key(x.start), _literal_key(x.stop), _literal_key(x.step))
    if x is None or x is Ellipsis or t in (bool, int, float, complex, str):
        return (t, repr(x))
    if isinstance(x, numpy.generic):
        return (t, x.tobytes())
    if isinstance(x, (numpy.dtype, type)):
        return (t, x)
    raise _NotLiteral


@functools.lru_cache(maxsize=64)
def _compiled(source):
    """The code object of a program's source: the same f traced again (each adjoint call
    traces its f afresh) gives the same source, with its constants in a new env."""
    return compile(source, "<tinyad.replay>", "exec")


class _Values(list):
    """The value of every record of one call, in order; `tape`: its Tape, if it has one."""

    tape = None


def _values(tape):
    values = _Values(record[1] for record in tape.records)
    values.tape = tape
    return values


def _run(program, values, tape):
    """Each primitive of `program` called on raw values, its traced arguments read from
    `values` (earlier records), its result appended there and recorded on `tape`."""
    for prim, args, kwargs, parents in program:
        fresh = list(args)
        for n, parent in parents:
            fresh[n] = values[parent]
        ans, kw = core.with_residuals(prim.fun(*fresh, **kwargs), kwargs)
        values.append(ans)
        tape.records.append((prim, ans, fresh, kw, parents))


class _Constant:
    """A cotangent that the backward trace found constant (a zero of the right shape)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _code(name, params, records, start, results, env):
    """The source of `def name(*params)`: one line per record (its value v<index>), each
    primitive's raw function called on earlier values and on constants kept in `env`;
    it returns the values `results` (record indices) as a tuple."""
    lines = [f"def {name}({', '.join(params)}):"]
    into = _accumulated(records, start, results)
    for k, (prim, _, args, kwargs, parents) in enumerate(records, start):
        if into.get(k) == "absorbed":
            continue
        if k in into:  # v_k = v_acc + add_at(g, index): g added into v_acc's own buffer
            acc, (_, g), index = into[k]
            lines.append(f"    v{k} = v{acc}")
            if _is_basic(index):
                lines.append(f"    v{k}[{_constant(env, index)}] += v{g}")
            else:  # an integer-array index: entries picked twice add twice, as add_at's
                env["scatter_add"] = _scatter_add
                lines.append(f"    scatter_add(v{k}, {_constant(env, index)}, v{g})")
            continue
        slots = [None] * len(args)
        for n, parent in parents:
            slots[n] = f"v{parent}"
        for n, x in enumerate(args):
            if slots[n] is None:  # a constant of the trace: a number, an axis, an array
                slots[n] = _constant(env, x)
        named = {key: _constant(env, v) for key, v in kwargs.items() if key != "saved"}
        fun = f"{re.sub(r'[^0-9a-zA-Z_]', '_', prim.name)}_{k}"
        env[fun] = prim.fun
        options = [f"{key}={v}" for key, v in named.items()]
        if prim.operator is not None and _operands(args, parents) and "saved" not in kwargs:
            call = prim.operator.format(*slots, **named)  # numpy's operator: v3 * 1.81
        elif _as_method(prim, args, parents, kwargs):  # the array's method: v9.reshape((-1, 50))
            call = f"{slots[0]}.{prim.method[0]}({', '.join(slots[1:] + options)})"
        else:
            call = f"{fun}({', '.join(slots + options)})"
        lines.append(f"    v{k} = {call}.value" if "saved" in kwargs else f"    v{k} = {call}")
    lines.append(f"    return ({''.join(f'v{i}, ' for i in results)})")
    return "\n".join(lines) + "\n"


def _vjp_code(forward, backward, n, first, as_is, returns):
    """The source of `def vjp(v0, …, v<n-1>, g)`: the bodies of the forward and backward
    programs in one function, returning `returns`. The inputs the trace converted, Python
    floats (a time t) boxed as float64 numbers, are converted first, as the trace did."""
    inputs = [f"v{i}" for i in range(n)]
    lines = [f"def vjp({', '.join(inputs + [f'v{first}'])}):"]
    lines += [f"    v{i} = float64(v{i})" for i in range(n) if not as_is[i]]
    lines += forward.splitlines()[1:-1] + backward.splitlines()[1:-1]  # without def, return
    lines.append(f"    return ({''.join(f'{r}, ' for r in returns)})")
    return "\n".join(lines) + "\n"


def _accumulated(records, start, results):
    """The sums of scatters in a backward program, to be accumulated in place.

    Indexing's vjp is add_at: zeros of x's shape with g at the index. An f that takes y
    apart entry by entry (y[0], y[1], …) gets one per use, and the chain rule sums them,
    v_k = v_acc + add_at(g, index), one new array each. Where v_acc is a buffer of v_k's
    shape and dtype that nothing else reads (itself an add_at, or such a sum), g is added
    into it instead (autograd's SparseObject does the same): half of a Jacobian's pull on
    HIRES. The same values, except that −0.0 + 0.0 is not computed (it would give 0.0).

    Returns {k: (acc, (argnum, g), index)} for each such sum and {k: "absorbed"} for each
    add_at it takes in (not computed on its own).
    """
    uses = collections.Counter(p for *_, parents in records for _, p in parents)
    uses.update(results)
    offset = {k: r for k, r in enumerate(records, start)}
    fresh, into = set(), {}  # fresh: buffers made by this program that nothing else reads
    for k, (prim, ans, args, kwargs, parents) in offset.items():
        if prim is add_at:
            fresh.add(k)
            continue
        if prim is not add or len(parents) != 2 or kwargs:
            continue
        for (_, acc), (n, scatter) in (parents, parents[::-1]):
            if not (acc in fresh and offset.get(scatter, (None,))[0] is add_at and acc != scatter):
                continue
            if uses[acc] != 1 or uses[scatter] != 1 or not _same_aval(ans, offset, acc, scatter):
                continue
            into[k] = (acc, offset[scatter][4][0], offset[scatter][3]["index"])
            into[scatter] = "absorbed"
            fresh.add(k)
            break
    return into


def _same_aval(ans, offset, *ks):
    """Whether the records ks hold arrays of ans's shape and dtype."""
    aval = (getattr(ans, "shape", None), getattr(ans, "dtype", None))
    return all((getattr(v, "shape", 0), getattr(v, "dtype", 0)) == aval for v in
               (offset[k][1] for k in ks)) and aval[0] is not None  # fmt: skip


def _scatter_add(out, index, g):
    array_module(out).add.at(out, index, g)


def _operands(args, parents):
    """Whether the operator is the ufunc's call here: each argument a traced array or numpy
    scalar (a Python float, which a user's primitive may return, would do Python's
    arithmetic) or a number (a numpy scalar would not convert a list or a tuple)."""
    traced = {n for n, _ in parents}
    return all(
        _plain(x) if n in traced else type(x) in (int, float, bool) for n, x in enumerate(args)
    )


def _as_method(prim, args, parents, kwargs):
    """Whether the call is prim's array method on its first argument, as its fun makes it:
    that argument traced and an array (fun converts anything else first)."""
    if prim.method is None or len(args) > prim.method[1] or "saved" in kwargs:
        return False
    # an array, or a numpy scalar where it has the method too (it has no .dot)
    first = args[0]
    return (
        any(n == 0 for n, _ in parents)
        and hasattr(first, "shape")
        and hasattr(first, prim.method[0])
    )


def _plain(x):
    """A numpy scalar, a numpy array (not a subclass: numpy.matrix's * is a matrix product)
    or another module's array."""
    if isinstance(x, numpy.ndarray):
        return type(x) is numpy.ndarray
    return hasattr(x, "dtype")


def _constant(env, x):
    """A name for the constant x in `env`: a literal for numbers, None and tuples of them."""
    if _literal(x):
        return repr(x)
    name = f"c{len(env)}"
    env[name] = x
    return name


def _literal(x):
    """Whether repr(x) reads back as x: None, a bool, int, str, finite float, or a tuple of them."""
    if type(x) is tuple:
        return all(map(_literal, x))
    return x is None or type(x) in (bool, int, str) or (type(x) is float and math.isfinite(x))


def _program(records):
    """The records as a program: each primitive, its arguments, its options, where its
    traced arguments come from (the residuals `saved` are recomputed by the call)."""
    return [
        (prim, args, {k: v for k, v in kwargs.items() if k != "saved"}, parents)
        for prim, _, args, kwargs, parents in records
        if prim is not None
    ]


def _signature(leaves):
    return [(type(x), getattr(x, "shape", None), getattr(x, "dtype", None)) for x in leaves]


def _on(x, tape):
    return isbox(x) and x.tape is tape


def _fits(g, out):
    """Whether g is a raw cotangent of out's shape and dtype (as the program was traced)."""
    return (
        not isbox(g)
        and getattr(g, "shape", None) == out.shape
        and getattr(g, "dtype", None) == out.dtype
    )


def _holds_other_tape(record):
    """A record that holds a traced value (of an outer tape): replaying would drop its trace."""
    prim, ans, args, kwargs, parents = record
    return isbox(ans) or any(isbox(a) for a in args) or any(map(isbox, kwargs.values()))


def _zeros(v):
    v = unbox(v)
    return array_module(v).zeros_like(v)
