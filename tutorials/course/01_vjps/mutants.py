"""Seeded bugs in the solution of assignment 1, each of which its own item must catch, and
rewrites that are still right, which must keep every point (`grader.py 01_vjps --mutants`)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from probing import Mutant  # noqa: E402

TANH = "return g * (1 - ans**2)"
VJP_A = "return np.matmul(g, np.transpose(B))"
VJP_B = "return np.matmul(np.transpose(A), g)"
SUM_IF = "if axis is not None and not keepdims:\n        g = np.expand_dims(g, axis)"
SUM_RETURN = "return np.broadcast_to(g, np.shape(x))"
LSE_M = "m = onp.max(x, axis=axis, keepdims=True)"
LSE_OUT = "out = m + onp.log(onp.sum(onp.exp(x - m), axis=axis, keepdims=True))"
LSE_RETURN = "return out if keepdims else onp.squeeze(out, axis=axis)"
LSE_EXPAND = "g, ans = np.expand_dims(g, axis), np.expand_dims(ans, axis)"
LSE_VJP = "return g * np.exp(x - ans)"
LEAD = "while np.ndim(g) > len(shape):\n        g = np.sum(g, axis=0)"
KEEP = (
    "if size == 1 and np.shape(g)[axis] != 1:\n            g = np.sum(g, axis=axis, keepdims=True)"
)
ADD_X = "return unbroadcast(g, np.shape(x))"
ADD_Y = "return unbroadcast(g, np.shape(y))"

MUTANTS = [
    Mutant("tanh_vjp", "tanh_answer", TANH, "return -g * (1 - ans**2)", "sign"),
    Mutant("tanh_vjp", "tanh_answer", TANH, "return 2 * g * (1 - ans**2)", "factor 2"),
    Mutant("tanh_vjp", "tanh_answer", TANH, "return 1.01 * g * (1 - ans**2)", "factor 1.01"),
    Mutant("tanh_vjp", "tanh_answer", TANH, "return g * (1 - ans)", "1 - tanh, not 1 - tanh²"),
    Mutant(
        "tanh_vjp",
        "tanh_answer",
        TANH,
        "return g * (1 - onp.tanh(x) ** 2)",
        "raw numpy (right at first order only)",
    ),
    Mutant(
        "tanh_vjp",
        "tanh_answer",
        TANH,
        "return tinyad.vjp(np.tanh, x)[1](g)[0]",
        "tinyad's own vjp of tanh called, none written (right numbers, against the rules)",
    ),
    Mutant("matmul_vjp_A", "matmul_answer", VJP_A, "return np.matmul(g, B)", "no transpose"),
    Mutant(
        "matmul_vjp_A",
        "matmul_answer",
        VJP_A,
        "return np.matmul(np.transpose(B), np.transpose(g))",
        "transposed cotangent: Bᵀ gᵀ = (g B)ᵀ",
    ),
    Mutant(
        "matmul_vjp_A",
        "matmul_answer",
        VJP_A,
        "return onp.matmul(g, onp.transpose(B))",
        "raw numpy (right at first order only)",
    ),
    Mutant(
        "matmul_vjp_B",
        "matmul_answer",
        VJP_B,
        "return 2 * np.matmul(np.transpose(A), g)",
        "factor 2 (the issue's example)",
    ),
    Mutant(
        "matmul_vjp_B",
        "matmul_answer",
        VJP_B,
        "return 1.01 * np.matmul(np.transpose(A), g)",
        "factor 1.01",
    ),
    Mutant("matmul_vjp_B", "matmul_answer", VJP_B, "return np.matmul(A, g)", "no transpose"),
    Mutant(
        "matmul_vjp_B",
        "matmul_answer",
        VJP_B,
        "return np.matmul(np.transpose(A), np.transpose(g))",
        "transposed cotangent",
    ),
    Mutant(
        "sum_vjp",
        "sum_answer",
        SUM_IF,
        "if axis is not None and not keepdims:\n        g = np.expand_dims(g, 0)",
        "the wrong axis restored",
    ),
    Mutant(
        "sum_vjp",
        "sum_answer",
        SUM_IF,
        "if axis is not None:\n        g = np.expand_dims(g, axis)",
        "keepdims ignored (an axis restored that was kept)",
    ),
    Mutant("sum_vjp", "sum_answer", SUM_IF, "pass", "the summed axis never restored"),
    Mutant("sum_vjp", "sum_answer", SUM_RETURN, "return g", "no broadcast back"),
    Mutant(
        "sum_vjp",
        "sum_answer",
        SUM_RETURN,
        "return onp.broadcast_to(g, onp.shape(x))",
        "raw numpy (right at first order only)",
    ),
    Mutant(
        "logsumexp_forward",
        "logsumexp_answer",
        LSE_M,
        "m = 0 * onp.max(x, axis=axis, keepdims=True)",
        "no maximum subtracted: exp overflows",
    ),
    Mutant(
        "logsumexp_forward",
        "logsumexp_answer",
        LSE_M,
        "m = onp.max(x)",
        "one global maximum: a row far below it underflows",
    ),
    Mutant(
        "logsumexp_forward",
        "logsumexp_answer",
        LSE_RETURN,
        "return onp.squeeze(out, axis=axis)",
        "keepdims ignored",
    ),
    Mutant(
        "logsumexp_forward",
        "logsumexp_answer",
        LSE_OUT,
        "out = onp.log(onp.sum(onp.exp(x - m), axis=axis, keepdims=True))",
        "the maximum not added back",
    ),
    Mutant(
        "logsumexp_vjp", "logsumexp_answer", LSE_VJP, "return g * np.exp(ans - x)", "sign inside"
    ),
    Mutant(
        "logsumexp_vjp",
        "logsumexp_answer",
        LSE_VJP,
        "return 1.01 * g * np.exp(x - ans)",
        "factor 1.01",
    ),
    Mutant(
        "logsumexp_vjp",
        "logsumexp_answer",
        LSE_EXPAND,
        "g = np.expand_dims(g, axis)",
        "ans not restored along the axis",
    ),
    Mutant(
        "logsumexp_vjp",
        "logsumexp_answer",
        LSE_VJP,
        "return g * onp.exp(x - ans)",
        "raw numpy (right at first order only)",
    ),
    Mutant(
        "unbroadcast",
        "add_answer",
        KEEP,
        "if False:\n            pass",
        "no sum over the axes broadcast from size 1",
    ),
    Mutant(
        "unbroadcast",
        "add_answer",
        LEAD,
        "while False:\n        pass",
        "no sum over the leading axes",
    ),
    Mutant(
        "unbroadcast",
        "add_answer",
        LEAD,
        "if np.ndim(g) > len(shape):\n        g = np.sum(g, axis=0)",
        "if, not while: only one leading axis summed",
    ),
    Mutant(
        "unbroadcast",
        "add_answer",
        LEAD,
        "while np.ndim(g) > len(shape):\n        g = np.sum(g, axis=-1)",
        "the leading axes summed from the wrong end",
    ),
    Mutant(
        "unbroadcast",
        "add_answer",
        KEEP,
        "if size == 1 and np.shape(g)[axis] != 1:\n            g = np.sum(g, axis=axis)",
        "keepdims=False: the size-1 axis dropped",
    ),
    Mutant(
        "unbroadcast",
        "add_answer",
        LEAD,
        "while onp.ndim(g) > len(shape):\n        g = onp.sum(g, axis=0)",
        "raw numpy (right at first order only)",
    ),
    Mutant("add_vjps", "add_answer", ADD_Y, ADD_X, "y's cotangent at x's shape"),
    Mutant("add_vjps", "add_answer", ADD_X, "return g", "no sum over broadcast axes"),
    Mutant("add_vjps", "add_answer", ADD_Y, "return -unbroadcast(g, np.shape(y))", "sign"),
]

EQUIVALENT = [
    Mutant(
        "matmul_vjp_A",
        "matmul_answer",
        VJP_A,
        "return np.transpose(np.matmul(B, np.transpose(g)))",
        "(B gᵀ)ᵀ",
    ),
    Mutant("tanh_vjp", "tanh_answer", TANH, "return g / np.cosh(x) ** 2", "g / cosh²(x)"),
    Mutant(
        "matmul_vjp_B",
        "matmul_answer",
        VJP_B,
        "return np.transpose(np.matmul(np.transpose(g), A))",
        "(gᵀ A)ᵀ",
    ),
    Mutant("sum_vjp", "sum_answer", SUM_RETURN, "return g * np.ones(np.shape(x))", "g times ones"),
    Mutant(
        "unbroadcast",
        "add_answer",
        LEAD,
        "lead = np.ndim(g) - len(shape)\n    if lead > 0:\n"
        "        g = np.sum(g, axis=tuple(range(lead)))",
        "the leading axes in one sum",
    ),
]
