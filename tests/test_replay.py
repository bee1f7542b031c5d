"""tinyad.replay: a tape traced once and replayed on new values gives what tracing again gives.

Random programs of tests/differential.py are traced at one point and replayed
at another; wherever the trace read no value, the replay's output and vjp must
equal a fresh `tinyad.vjp` bit for bit. Code that reads values (a branch, a
comparison, argmax, an index taken from a traced value) must not be replayed.
"""

import numpy
import pytest
from differential import _objective, generate

import tinyad
import tinyad.numpy as np
from tinyad.replay import Replay


def test_random_programs_replay_exactly_or_are_traced_again():
    replayed = 0
    for seed in range(150):
        program = generate(seed)
        F = _objective(np, np.logsumexp, program, program.function(), program.weights)
        theta = program.theta
        other = theta + numpy.asarray(0.01 * program.direction, theta.dtype)
        f_vjp = Replay(F)
        f_vjp(theta)  # traced here, replayed below
        out, pull = f_vjp(other)
        want_out, want_pull = tinyad.vjp(F, other)
        g = numpy.ones_like(numpy.asarray(want_out))
        assert numpy.array_equal(out, want_out), program.source()
        assert numpy.array_equal(pull(g)[0], want_pull(g)[0]), program.source()
        replayed += f_vjp.replayable
    assert replayed > 75  # most random programs read no value (where/clip/max masks do)


X = numpy.array([0.5, -1.5, 2.0])
READS = {
    "if on a value": lambda x: np.sum(x) if np.sum(x) > 0 else -np.sum(x),
    "comparison mask": lambda x: np.sum(np.where(x > 0, x, 0.0)),
    "argmax index": lambda x: x[np.argmax(x)],
    "traced index": lambda x: np.sum(x[np.array([0, 1])]) * 1.0,
    "bool": lambda x: np.sum(x) * float(bool(np.sum(x * 0.0 + 1.0))),
}


@pytest.mark.parametrize("name", READS)
def test_code_that_reads_values_is_traced_again_not_replayed(name):
    fun = READS[name]
    f_vjp = Replay(fun)
    f_vjp(X)
    if name != "traced index":
        assert not f_vjp.replayable
    for x in (X, -X, X[::-1].copy()):  # the branch, mask or index changes with x
        out, pull = f_vjp(x)
        want_out, want_pull = tinyad.vjp(fun, x)
        assert numpy.array_equal(out, want_out)
        assert numpy.array_equal(pull(1.0)[0], want_pull(1.0)[0])


def test_primitives_with_value_dependent_vjps_replay_correctly():
    # maximum, abs, clip, sort: the masks live in the vjps, which run on the replayed values
    fun = lambda x: np.sum(np.maximum(x, 0.0) + np.abs(x) * np.clip(x, -1, 1)) + np.sort(x)[0]
    f_vjp = Replay(fun)
    f_vjp(X)
    assert f_vjp.replayable
    for x in (X, -X, numpy.array([3.0, 0.1, -0.2])):
        out, pull = f_vjp(x)
        assert out == pytest.approx(fun(x))
        numpy.testing.assert_array_equal(pull(1.0)[0], tinyad.grad(fun)(x))


def test_a_closure_over_an_outer_traced_value_is_not_replayed():
    def outer(w):
        f_vjp = Replay(lambda x: np.sum(w * x))
        f_vjp(X)
        assert not f_vjp.replayable
        return f_vjp(X)[1](1.0)[0][0]

    assert tinyad.grad(outer)(2.0) == pytest.approx(1.0)
