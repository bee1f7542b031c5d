"""tinyad.optim (sgd, adam with autograd's semantics) and tinyad.nn (a small MLP)."""

import numpy
import pytest
from helpers_numpy import check

import tinyad
import tinyad.numpy as np
from tinyad import nn, optim

TARGET = {"w": numpy.array([[1.0, -2.0], [0.5, 3.0]]), "b": [numpy.array([0.3]), -1.0]}


def quadratic(params):
    """Σ (leaf − target)² over a pytree: minimised at TARGET."""
    return (
        np.sum((params["w"] - TARGET["w"]) ** 2)
        + np.sum((params["b"][0] - TARGET["b"][0]) ** 2)
        + (params["b"][1] - TARGET["b"][1]) ** 2
    )


def start():
    return {"w": numpy.zeros((2, 2)), "b": [numpy.zeros(1), 0.0]}


def close_to_target(params, tol):
    return (
        numpy.allclose(params["w"], TARGET["w"], atol=tol)
        and numpy.allclose(params["b"][0], TARGET["b"][0], atol=tol)
        and abs(params["b"][1] - TARGET["b"][1]) < tol
    )


def test_sgd_with_momentum_minimises_a_quadratic_on_a_pytree():
    grad = tinyad.grad(quadratic)
    out = optim.sgd(lambda p, i: grad(p), start(), step_size=0.1, num_iters=500)
    assert close_to_target(out, 1e-6)
    assert isinstance(out, dict) and out["w"].shape == (2, 2) and numpy.shape(out["b"][1]) == ()


def test_adam_minimises_a_quadratic_and_calls_back_with_params_i_and_gradient():
    grad = tinyad.grad(quadratic)
    seen = []

    def callback(params, i, g):
        seen.append(i)
        assert g["w"].shape == params["w"].shape == (2, 2)

    out = optim.adam(
        lambda p, i: grad(p), start(), callback=callback, num_iters=3000, step_size=0.05
    )
    assert seen == list(range(3000))
    assert close_to_target(out, 1e-3)


def test_optimizers_follow_autograd_step_for_step():
    autograd_optimizers = pytest.importorskip("autograd.misc.optimizers")
    grad = tinyad.grad(quadratic)
    for ours, theirs, kw in [
        (optim.sgd, autograd_optimizers.sgd, {"step_size": 0.05, "num_iters": 7, "mass": 0.5}),
        (optim.adam, autograd_optimizers.adam, {"step_size": 0.1, "num_iters": 7}),
    ]:
        a = ours(lambda p, i: grad(p), start(), **kw)
        b = theirs(lambda p, i: grad(p), start(), **kw)
        assert numpy.allclose(a["w"], b["w"]) and numpy.allclose(a["b"][0], b["b"][0])


def test_sgd_positional_signature_and_float32():
    x0 = numpy.ones(3, dtype=numpy.float32)
    out = optim.sgd(lambda x, i: 2 * x, x0, 0.1, 10)
    assert out.dtype == numpy.float32 and numpy.all(numpy.abs(out) < 1)


def test_init_mlp_shapes_and_seed():
    params = nn.init_mlp([2, 5, 3, 1], scale=0.2, seed=3)
    assert [(W.shape, b.shape) for W, b in params] == [
        ((2, 5), (5,)),
        ((5, 3), (3,)),
        ((3, 1), (1,)),
    ]
    again = nn.init_mlp([2, 5, 3, 1], scale=0.2, seed=3)
    assert all(numpy.array_equal(W, W2) for (W, _), (W2, _) in zip(params, again, strict=True))
    other = nn.init_mlp([2, 5, 3, 1], scale=0.2, seed=4)
    assert not numpy.array_equal(params[0][0], other[0][0])
    assert 0.1 < numpy.std(nn.init_mlp([50, 50], scale=0.2)[0][0]) < 0.3


def test_mlp_forward_matches_numpy_and_has_no_activation_on_the_last_layer():
    params = nn.init_mlp([2, 4, 3], seed=1)
    x = numpy.random.default_rng(0).standard_normal((6, 2))
    (W1, b1), (W2, b2) = params
    assert numpy.allclose(nn.mlp(params, x), numpy.tanh(x @ W1 + b1) @ W2 + b2)
    relu = lambda z: np.maximum(z, 0.0)
    assert numpy.allclose(
        nn.mlp(params, x, activation=relu), numpy.maximum(x @ W1 + b1, 0) @ W2 + b2
    )
    assert nn.mlp(params, x[0]).shape == (3,)


def test_mlp_gradients_with_respect_to_the_parameter_pytree():
    params = nn.init_mlp([2, 3, 1], scale=0.5, seed=2)
    x = numpy.random.default_rng(1).standard_normal((4, 2))
    check(lambda params: np.sum(nn.mlp(params, x) ** 2), params)


def test_training_an_mlp_with_adam_reduces_the_loss():
    rng = numpy.random.default_rng(0)
    x = rng.uniform(-1, 1, (32, 1))
    y = numpy.sin(3 * x)
    loss = lambda params: np.mean((nn.mlp(params, x) - y) ** 2)
    params = nn.init_mlp([1, 16, 1], scale=0.5)
    trained = optim.adam(lambda p, i: tinyad.grad(loss)(p), params, num_iters=300, step_size=0.02)
    assert loss(trained) < 0.2 * loss(params)


def test_optimizers_take_a_step_size_schedule():
    # A schedule is called with the iteration; a constant schedule equals the number.
    import tinyad.optim as optim

    grad = lambda p, i: 2 * (p - 3.0)
    seen = []
    schedule = lambda i: seen.append(i) or 0.05
    for opt in (optim.sgd, optim.adam):
        seen.clear()
        got = opt(grad, numpy.zeros(2), step_size=schedule, num_iters=30)
        numpy.testing.assert_array_equal(
            got, opt(grad, numpy.zeros(2), step_size=0.05, num_iters=30)
        )
        assert seen == list(range(30))
    decaying = optim.adam(
        grad, numpy.zeros(2), step_size=lambda i: 0.2 / (1 + 0.01 * i), num_iters=300
    )
    numpy.testing.assert_allclose(decaying, 3.0, atol=0.05)
