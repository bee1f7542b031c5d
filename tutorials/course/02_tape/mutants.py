"""Seeded bugs in the solution of assignment 2, each of which its own item must catch, and
rewrites that are still right, which must keep every point (`grader.py 02_tape --mutants`)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from probing import Mutant  # noqa: E402

TOP = "key=lambda t: t.level"
UNWRAP = "if isinstance(x, Var) and x.tape is tape:\n            raw[argnum] = x.value"
PARENT = "parents.append((argnum, x.index))"
VALUE = "value = prim(*raw, **kwargs)"
PUSH = "return tape.push(prim, value, raw, kwargs, parents)"
ACC = "cts[index] = ct if index not in cts else cts[index] + ct"
LEAD = "while onp.ndim(getval(g)) > len(shape):\n        g = sum_(g, axis=0)"
KEEP = "g = sum_(g, axis=axis, keepdims=True)"
WALK = "for i in range(index, -1, -1):"
VJP = "ct = vjp(g, record.value, *record.args, **record.kwargs)"
FIT = "accumulate(cts, parent, unbroadcast(ct, onp.shape(getval(record.args[argnum]))))"
UP = "DEPTH[0] += 1"
TRACE = (
    "try:\n            out = fun(tape.push(None, x))\n        finally:\n            DEPTH[0] -= 1"
)
MINE = "if not (isinstance(out, Var) and out.tape is tape):"
SEED = "return backward(tape, out.index, onp.ones(()))[0]"

MUTANTS = [
    Mutant("records", "apply_answer", TOP, "key=lambda t: -t.level", "the lowest-level tape"),
    Mutant("records", "apply_answer", PARENT, "parents.append((x.index, argnum))", "pairs swapped"),
    Mutant(
        "records",
        "apply_answer",
        UNWRAP,
        "if isinstance(x, Var):\n            raw[argnum] = x.value",
        "every Var unwrapped, outer ones too (nothing recorded on the outer tape)",
    ),
    Mutant("records", "apply_answer", VALUE, "value = prim(*raw)", "kwargs dropped"),
    Mutant(
        "records",
        "apply_answer",
        PUSH,
        "return tape.push(prim, value, args, kwargs, parents)",
        "the Vars recorded as args, not their values",
    ),
    Mutant(
        "records",
        "apply_answer",
        VALUE,
        "value = prim.fun(*raw, **kwargs)",
        "prim.fun on raw args: an outer Var reaches plain numpy",
    ),
    Mutant(
        "accumulate",
        "accumulate_answer",
        ACC,
        "if index in cts:\n        cts[index] += ct\n    else:\n        cts[index] = ct",
        "in place: +=",
    ),
    Mutant("accumulate", "accumulate_answer", ACC, "cts[index] = ct", "overwrites, no sum"),
    Mutant(
        "accumulate",
        "accumulate_answer",
        ACC,
        "cts[index] = ct if index not in cts else onp.add(cts[index], ct)",
        "raw numpy add (wrong only when the cotangents are Vars, in a nested derivative)",
    ),
    Mutant("accumulate", "accumulate_answer", ACC, "cts.setdefault(index, ct)", "keeps the first"),
    Mutant(
        "unbroadcast",
        "unbroadcast_answer",
        LEAD,
        "while onp.ndim(getval(g)) > len(shape):\n        g = onp.sum(g, axis=0)",
        "raw numpy (breaks on a Var)",
    ),
    Mutant(
        "unbroadcast",
        "unbroadcast_answer",
        LEAD,
        "if onp.ndim(getval(g)) > len(shape):\n        g = sum_(g, axis=0)",
        "if, not while: only one leading axis summed",
    ),
    Mutant(
        "unbroadcast",
        "unbroadcast_answer",
        KEEP,
        "g = sum_(g, axis=axis)",
        "keepdims=False: the size-1 axis dropped",
    ),
    Mutant(
        "unbroadcast",
        "unbroadcast_answer",
        LEAD,
        "while onp.ndim(getval(g)) > len(shape):\n        g = sum_(g, axis=-1)",
        "the leading axes summed from the wrong end",
    ),
    Mutant(
        "unbroadcast",
        "unbroadcast_answer",
        KEEP,
        "pass",
        "no sum over the axes broadcast from size 1",
    ),
    Mutant(
        "backward",
        "backward_answer",
        WALK,
        "for i in range(index - 1, -1, -1):",
        "off by one: the output record skipped",
    ),
    Mutant(
        "backward",
        "backward_answer",
        WALK,
        "for i in range(index, 0, -1):",
        "off by one: record 0 never reached",
    ),
    Mutant("backward", "backward_answer", WALK, "for i in range(index + 1):", "walks forwards"),
    Mutant("backward", "backward_answer", FIT, "accumulate(cts, parent, ct)", "no unbroadcast"),
    Mutant(
        "backward",
        "backward_answer",
        FIT,
        "accumulate(cts, parent, unbroadcast(ct, onp.shape(getval(record.value))))",
        "unbroadcast to the output's shape",
    ),
    Mutant(
        "backward",
        "backward_answer",
        "vjp = record.prim.vjps[argnum]",
        "vjp = record.prim.vjps[0]",
        "every argument gets the first argument's vjp",
    ),
    Mutant(
        "backward",
        "backward_answer",
        VJP,
        "ct = vjp(g, record.args[argnum], *record.args, **record.kwargs)",
        "the argument passed as ans",
    ),
    Mutant("nested", "grad_answer", UP, "DEPTH[0] += 0", "no levels: every tape at level 0"),
    Mutant(
        "nested",
        "grad_answer",
        TRACE,
        "out = fun(tape.push(None, x))\n        DEPTH[0] -= 1",
        "DEPTH not restored when fun raises",
    ),
    Mutant(
        "nested",
        "grad_answer",
        MINE,
        "if not isinstance(out, Var):",
        "an outer tape's Var taken for this tape's output",
    ),
    Mutant(
        "nested",
        "grad_answer",
        SEED,
        "return backward(tape, out.index, 2 * onp.ones(()))[0]",
        "seed 2, not 1",
    ),
    Mutant(
        "nested",
        "grad_answer",
        "tape = Tape(DEPTH[0])",
        "tape = Tape(1)",
        "every tape at level 1",
    ),
]

EQUIVALENT = [
    Mutant(
        "accumulate",
        "accumulate_answer",
        ACC,
        "cts[index] = cts[index] + ct if index in cts else ct",
        "the same, the other way round",
    ),
    Mutant(
        "backward",
        "backward_answer",
        WALK,
        "for i in reversed(range(index + 1)):",
        "reversed(range(...))",
    ),
]
