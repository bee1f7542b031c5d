"""tinyad/fastpath.py's flat hot loops do exactly what core.py's readable ones do.

Each program is traced and differentiated twice, once with core's
`Primitive.__call__` and `backward` and once with fastpath's, and the tapes
(primitive names, parents) and the gradients must be identical, bit for bit.
"""

import numpy
import pytest

import tinyad
import tinyad.numpy as np
from tinyad import core, fastpath

RNG = numpy.random.default_rng(3)
X = RNG.standard_normal((3, 4))
Y = RNG.standard_normal(4)

PROGRAMS = {
    "chain": lambda x, y: np.sum(np.exp(np.tanh(np.sin(x) * 2.0))),
    "two arguments": lambda x, y: np.sum((x @ y) ** 2) + np.sum(x[0] * y),
    "broadcasting": lambda x, y: np.sum(x / (1.0 + y**2) - y),
    "variadic": lambda x, y: np.sum(np.concatenate([x, y[None, :], x * 2.0]) ** 2),
    "array-like": lambda x, y: np.mean([x[0, 0], y[1] + 2.0, np.sum(x)]),
    "reused value": lambda x, y: np.sum(x * x * x) + np.sum(y * y),
    "nested grad": lambda x, y: np.sum(tinyad.grad(lambda z: np.sum(np.sin(z * x)))(y) ** 2),
    "einsum": lambda x, y: np.einsum("ij,j->", x, y),
}


def _run(program):
    tape = tinyad.trace(program, X, Y)
    layout = [(r[0] and r[0].name, r[4]) for r in tape.records]
    grads = tinyad.grad(program, argnum=(0, 1))(X, Y)
    hvp = tinyad.hvp(lambda x: program(x, Y), X, numpy.ones_like(X))
    return layout, grads, hvp


@pytest.mark.parametrize("name", PROGRAMS)
def test_fast_and_plain_loops_give_identical_tapes_and_gradients(name, monkeypatch):
    fast = _run(PROGRAMS[name])
    monkeypatch.setattr(core.Primitive, "__call__", fastpath.plain_call)
    monkeypatch.setattr(core, "backward", fastpath.plain_backward)
    plain = _run(PROGRAMS[name])
    assert fast[0] == plain[0]
    for a, b in zip(fast[1], plain[1]):
        assert numpy.array_equal(a, b)
    assert numpy.array_equal(fast[2], plain[2])


def test_the_fast_loops_are_installed_unless_asked_not_to():
    assert fastpath.PLAIN or core.backward is fastpath.backward
    assert fastpath.PLAIN or core.Primitive.__call__ is fastpath.primitive_call


def test_both_backward_passes_name_a_missing_vjp(monkeypatch):
    @tinyad.primitive
    def half(x, y):
        return x * y

    tinyad.defvjp(half, lambda g, ans, x, y: g * y)
    for backward in (fastpath.backward, fastpath.plain_backward):
        monkeypatch.setattr(core, "backward", backward)
        with pytest.raises(NotImplementedError, match=r"'half'.*argument 1"):
            tinyad.grad(half, argnum=1)(1.0, 2.0)
