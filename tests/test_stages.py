"""tinyode/stages.py: the fast StageBuffer gives exactly what the plain Stages gives."""

import numpy
import pytest

import tinyad
import tinyad.numpy as np
import tinyode
from tinyode.stages import StageBuffer, Stages, stages

RNG = numpy.random.default_rng(0)


@pytest.mark.parametrize("shape", [(3,), (4, 2), ()])
def test_buffer_and_list_combine_the_same_stages_identically(shape):
    ks = [RNG.standard_normal(shape) for _ in range(5)]
    plain, fast = Stages(ks[0]), StageBuffer(ks[0], capacity=6)
    for k in ks[1:]:
        plain.append(k)
        fast.append(k)
    for n in range(1, 6):
        w = RNG.standard_normal(n)
        numpy.testing.assert_allclose(fast.dot(w), plain.dot(w), rtol=1e-14, atol=1e-15)
        assert fast.dot(w).shape == shape
    numpy.testing.assert_array_equal(fast[3], ks[3])


def test_traced_steps_use_the_plain_stages():
    x = numpy.ones(3)
    assert isinstance(stages(x, 7, 0.0, x, 0.1), StageBuffer)
    kinds = []

    def step(h):  # a traced step size: the stages must stay traceable
        kinds.append(type(stages(x, 7, 0.0, x, h)))
        return np.sum(h * x)

    tinyad.grad(step)(0.1)
    assert kinds == [Stages]


@pytest.mark.parametrize("method", ["dopri5", "dopri8", "tsit5", "bosh3", "rk4"])
def test_raw_and_traced_solves_take_the_same_steps(method):
    # The raw solve runs on StageBuffer, the traced one (backprop) on Stages: same numbers.
    f = lambda y, t, k: -k * y + np.sin(t)
    y0, t = numpy.array([1.0, -0.5]), numpy.linspace(0.0, 2.0, 5)
    raw, info = tinyode.odeint(f, y0, t, 0.7, method=method, full_output=True)
    seen = {}

    def traced(k):
        ys, seen["info"] = tinyode.odeint(
            f, y0, t, k, method=method, gradient="backprop", full_output=True
        )
        return np.sum(ys)

    value = tinyad.value_and_grad(traced)(0.7)[0]
    assert seen["info"]["n_steps"] == info["n_steps"] and seen["info"]["nfe"] == info["nfe"]
    assert float(value) == pytest.approx(float(raw.sum()), rel=1e-13)
