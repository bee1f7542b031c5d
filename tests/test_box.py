"""A traced value behaves like an ndarray, refuses what would lose its gradient, and agrees
with HIPS autograd on composite functions."""

import math

import numpy
import pytest
from helpers_numpy import check, rand, well_conditioned

import tinyad
import tinyad.numpy as np
from tinyad.backend import array_module


def traced(fun, x):
    """fun(box) for a Box of x, inside a trace (for inspecting what a Box does)."""
    out = []
    tinyad.trace(lambda b: out.append(fun(b)), x)
    return out[0]


# ---- numpy arrays and scalars on the left of an operator


@pytest.mark.parametrize(
    "fun",
    [
        lambda x: numpy.ones(3) + x,
        lambda x: numpy.arange(3.0) - x,
        lambda x: numpy.full(3, 2.0) * x,
        lambda x: numpy.ones(3) / (x + 3.0),
        lambda x: numpy.full(3, 1.5) ** x,
        lambda x: numpy.ones((2, 3)) @ x,
        lambda x: numpy.float64(2.0) * x,
        lambda x: numpy.float32(0.5) - x,
        lambda x: [1.0, 2.0, 3.0] + x,
        lambda x: 2 ** (-x),
        lambda x: -x + abs(x) + (+x),
    ],
)
def test_numpy_values_on_the_left_of_an_operator_are_traced(fun):
    x = rand((3,), "nonzero")
    check(fun, x)
    assert numpy.allclose(traced(fun, x).value, fun(x))


def test_comparisons_give_raw_boolean_arrays():
    x = numpy.array([-1.0, 0.0, 2.0])
    for fun, want in [
        (lambda b: b < 0, x < 0),
        (lambda b: b <= 0, x <= 0),
        (lambda b: b > 0, x > 0),
        (lambda b: b >= 0, x >= 0),
        (lambda b: b == 0, x == 0),
        (lambda b: b != 0, x != 0),
        (lambda b: 0 < b, 0 < x),
        (lambda b: numpy.zeros(3) >= b, 0 >= x),
        (lambda b: b > b * 2, x > x * 2),
    ]:
        got = traced(fun, x)
        assert type(got) is numpy.ndarray and got.dtype == bool
        assert numpy.array_equal(got, want)


def test_attributes_and_methods_of_a_box():
    x = rand((2, 3))
    assert traced(lambda b: (b.shape, b.ndim, b.size, b.dtype, len(b)), x) == (
        (2, 3),
        2,
        6,
        numpy.float64,
        2,
    )
    check(lambda x: x.T, x)
    check(lambda x: x.reshape(3, 2) + x.reshape((3, 2)) + x.reshape(-1).reshape(3, 2), x)
    check(lambda x: x.ravel() + x.flatten(), x)
    check(lambda x: x.transpose() + x.transpose(1, 0) + x.transpose((1, 0)), x)
    check(lambda x: x.swapaxes(0, 1), x)
    check(lambda x: x[None].squeeze(0) + x.squeeze(), x)
    check(lambda x: x.dot(x.T), x)
    check(lambda x: x.clip(-0.5, 0.5), numpy.array([-1.0, -0.2, 0.3, 0.9]))
    check(lambda x: x.repeat(2, axis=0), x)
    assert traced(lambda b: b.astype(numpy.float32).dtype, x) == numpy.float32


# ---- refusals: never a silent constant


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda b: numpy.sin(b), "numpy.sin"),
        (lambda b: numpy.exp(b), "numpy.exp"),
        (lambda b: numpy.sum(b), "numpy.sum"),
        (lambda b: numpy.concatenate([b, b]), "numpy.concatenate"),
        (lambda b: numpy.linalg.norm(b), "numpy.linalg.norm"),
        (lambda b: numpy.add.reduce(b), "numpy.add.reduce"),
        (lambda b: numpy.sort(b), "numpy.sort"),
        (lambda b: numpy.add(b, 1.0, out=numpy.empty(3)), "numpy.add"),
    ],
)
def test_raw_numpy_on_a_traced_value_raises_typeerror_naming_it(call, name):
    with pytest.raises(TypeError, match=name.replace(".", r"\.") + " was called on a traced"):
        tinyad.grad(lambda x: np.sum(call(x)))(numpy.ones(3))


def test_the_message_points_to_the_tinyad_function_when_there_is_one():
    with pytest.raises(TypeError, match=r"use tinyad\.numpy\.sin"):
        tinyad.grad(lambda x: numpy.sin(x))(1.0)
    with pytest.raises(TypeError, match=r"use tinyad\.numpy\.linalg\.norm"):
        tinyad.grad(lambda x: numpy.linalg.norm(x))(numpy.ones(2))
    with pytest.raises(TypeError, match=r"tinyad\.numpy has no median"):
        tinyad.grad(lambda x: numpy.median(x))(numpy.ones(2))


def test_converting_a_traced_value_to_numpy_or_python_raises():
    for convert in [numpy.asarray, numpy.array, float, math.sin]:
        with pytest.raises(TypeError, match="drop the gradient"):
            tinyad.grad(lambda x: convert(x))(1.5)


def test_in_place_assignment_into_a_traced_array_raises():
    def f(x):
        x[0] = 0.0
        return np.sum(x)

    with pytest.raises(TypeError, match="in-place assignment"):
        tinyad.grad(f)(numpy.ones(3))


def test_unwrapped_numpy_functions_refuse_traced_values_by_name():
    # on constants they are numpy's own; on a traced value a TypeError names them
    assert numpy.array_equal(np.nancumsum(numpy.array([3.0, 1.0])), [3.0, 4.0])
    for name in ["nancumsum", "percentile", "median"]:
        with pytest.raises(TypeError, match=rf"numpy\.{name} was called on a traced value"):
            tinyad.grad(lambda x, name=name: np.sum(getattr(np, name)(x)))(numpy.ones(3))
    for module, attr in [(np, "fft"), (np.linalg, "qr")]:
        with pytest.raises(AttributeError, match=f"{attr} is not provided"):
            getattr(module, attr)
    with pytest.raises(AttributeError, match="has no attribute 'not_a_numpy_name'"):
        np.not_a_numpy_name  # noqa: B018


def test_non_differentiable_helpers_pass_through_with_unboxing():
    x = numpy.array([[3.0, -1.0, 2.0], [0.0, 5.0, numpy.nan]])
    assert traced(np.argmax, x[0]) == 0
    assert traced(lambda b: np.argmin(b[0]), x) == 1
    assert traced(np.shape, x) == (2, 3) and traced(np.ndim, x) == 2 and traced(np.size, x) == 6
    assert numpy.array_equal(traced(np.isnan, x), numpy.isnan(x))
    zeros = traced(np.zeros_like, x.astype(numpy.float32))
    assert type(zeros) is numpy.ndarray and zeros.dtype == numpy.float32
    assert traced(lambda b: np.ones_like(b).shape, x) == (2, 3)
    assert traced(lambda b: np.allclose(b, x, equal_nan=True), x)
    assert np.random.default_rng(0).standard_normal(2).shape == (2,)
    np.random.seed(0)
    assert np.random.randn(3).shape == (3,)
    assert np.pi == numpy.pi and np.newaxis is None and np.float32 is numpy.float32


def test_constructors_trace_a_traced_fill_value_or_refuse_traced_data():
    assert tinyad.grad(lambda x: np.sum(np.full((2, 3), x)))(1.0) == 6.0
    assert tinyad.grad(lambda x: np.sum(np.full_like(numpy.ones(2), x)))(1.0) == 2.0
    with pytest.raises(TypeError, match="numpy.linspace"):
        tinyad.grad(lambda x: np.sum(np.linspace(0.0, x, 3)))(1.0)


# ---- float32 end to end


def test_float32_stays_float32_through_a_network_and_its_gradient():
    rng = numpy.random.default_rng(0)
    W = rng.standard_normal((4, 3)).astype(numpy.float32)
    x = rng.standard_normal((5, 4)).astype(numpy.float32)

    def loss(W):
        h = np.tanh(x @ W + 1.0) ** 2 / 3.0
        return np.mean(np.logsumexp(h, axis=1)) + 0.1 * np.linalg.norm(W) + np.max(h) - h[0, 1]

    value, g = tinyad.value_and_grad(loss)(W)
    assert value.dtype == numpy.float32 and g.dtype == numpy.float32
    h = tinyad.hessian(lambda w: loss(w.reshape(4, 3)))(W.ravel())
    assert h.dtype == numpy.float32


# ---- against an independent implementation: HIPS autograd

COMPOSITES = [
    (
        "softmax-cross-entropy",
        lambda np, W, x: (
            -np.sum((x @ W) - np.log(np.sum(np.exp(x @ W), axis=1, keepdims=True))) / 5
        ),
    ),
    ("mlp", lambda np, W, x: np.sum(np.tanh(np.tanh(x @ W) @ W.T) ** 2)),
    (
        "norms",
        lambda np, W, x: (
            np.linalg.norm(W)
            + np.linalg.norm(W[0], 1.5)
            + np.sum(np.linalg.norm(x, axis=1))
            + np.linalg.norm(W[2], 3)
        ),
    ),
    ("einsum", lambda np, W, x: np.sum(np.einsum("ij,jk,ik->i", x, W, x @ W) ** 2)),
    (
        "reductions",
        lambda np, W, x: np.prod(np.max(W, axis=0)) + np.var(x @ W, axis=0).sum() + np.std(W),
    ),
    (
        "shapes",
        lambda np, W, x: np.sum(
            np.concatenate([W, W**2], axis=1).T[::2]
            * np.stack([W[:, 0], W[:, 1]])[:, :, None].sum()
        ),
    ),
    (
        "linalg",
        lambda np, W, x: (
            np.linalg.det(W[:3] + 3 * np.eye(3))
            + np.sum(np.linalg.solve(W[:3] + 3 * np.eye(3), x[:3, :3]))
            + np.sum(np.linalg.inv(W[:3] + 3 * np.eye(3)))
        ),
    ),
    (
        "elementwise",
        lambda np, W, x: np.sum(
            np.sqrt(W**2 + 1) * np.sin(W) / np.cosh(W)
            + np.where(W > 0, W, 0.5 * W)
            + np.abs(W) ** 1.5
        ),
    ),
]


@pytest.mark.parametrize("name, fun", COMPOSITES, ids=[c[0] for c in COMPOSITES])
def test_gradients_and_hessians_agree_with_autograd(name, fun):
    autograd = pytest.importorskip("autograd")
    anp = pytest.importorskip("autograd.numpy")
    W = rand((4, 3), seed=1)
    x = rand((5, 4), seed=2)
    ours = tinyad.grad(lambda W: fun(np, W, x))(W)
    theirs = autograd.grad(lambda W: fun(anp, W, x))(W)
    assert numpy.allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    v = rand((4, 3), seed=3)
    hvp = tinyad.grad(lambda W: np.sum(tinyad.grad(lambda W: fun(np, W, x))(W) * v))(W)
    theirs = autograd.grad(lambda W: anp.sum(autograd.grad(lambda W: fun(anp, W, x))(W) * v))(W)
    assert numpy.allclose(hvp, theirs, rtol=1e-8, atol=1e-10)


def test_slogdet_agrees_with_autograd():
    autograd = pytest.importorskip("autograd")
    anp = pytest.importorskip("autograd.numpy")
    a = well_conditioned((3, 3), seed=4)
    ours = tinyad.grad(lambda a: np.linalg.slogdet(a)[1])(a)
    theirs = autograd.grad(lambda a: anp.linalg.slogdet(a)[1])(a)
    assert numpy.allclose(ours, theirs)


# ---- CuPy: every family runs on the device and its gradient stays there


def _linalg_mix(W):
    A = W[:3] + 3 * array_module(tinyad.getval(W)).eye(3)  # the identity of W's array module
    return (
        np.linalg.norm(W)
        + np.linalg.det(A)
        + np.sum(np.linalg.inv(A))
        + np.linalg.slogdet(A)[1]
        + np.sum(np.linalg.solve(A, W[:3, 0]))
    )


GPU_FUNCTIONS = [
    ("elementwise", lambda W, x: np.sum(np.tanh(W) * np.exp(-(W**2)) + np.abs(W) ** 1.5)),
    ("binary", lambda W, x: np.sum(np.maximum(W, 0.1) / (1 + W**2) + np.where(W > 0, W, 0))),
    (
        "reductions",
        lambda W, x: (
            np.sum(np.logsumexp(W, axis=0))
            + np.var(W)
            + np.prod(W[0])
            + np.max(W)
            + np.std(W, axis=1).sum()
            + np.cumsum(W, axis=1).sum()
        ),
    ),
    (
        "products",
        lambda W, x: (
            np.sum((x @ W) ** 2)
            + np.sum(np.einsum("ij,ij->i", W, W))
            + np.sum(np.dot(x, W))
            + np.sum(np.tensordot(W, W, ([0], [0])))
        ),
    ),
    (
        "shapes",
        lambda W, x: (
            np.sum(np.concatenate([W, W.T.reshape(4, 3)]) ** 2)
            + np.sum(np.stack([W, W])[:, 1:, ::2] ** 3)
            + np.sum(np.repeat(W, [1, 2, 0], axis=1) ** 2)
            + np.sum(np.tile(W, 2)[[0, 0, 3]] ** 2)
            + np.sum(np.diagonal(W) ** 2)
        ),
    ),
    ("linalg", lambda W, x: _linalg_mix(W)),
]


@pytest.mark.gpu
@pytest.mark.parametrize("name, fun", GPU_FUNCTIONS, ids=[c[0] for c in GPU_FUNCTIONS])
def test_cupy_arrays_stay_on_the_device_through_value_gradient_and_hvp(name, fun):
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError:
        pytest.skip("no CUDA device")
    W, x = rand((4, 3), "nonzero", seed=1), rand((5, 4), seed=2)
    Wd, xd = cupy.asarray(W), cupy.asarray(x)
    value, g = tinyad.value_and_grad(fun)(Wd, xd)
    assert isinstance(g, cupy.ndarray) and g.shape == W.shape
    v = rand((4, 3), seed=3)
    hvp = tinyad.grad(lambda W: np.sum(tinyad.grad(fun)(W, xd) * cupy.asarray(v)))(Wd)
    assert isinstance(hvp, cupy.ndarray)
    want_value, want_g = tinyad.value_and_grad(fun)(W, x)
    want_hvp = tinyad.grad(lambda W: np.sum(tinyad.grad(fun)(W, x) * v))(W)
    assert numpy.allclose(cupy.asnumpy(value), want_value)
    assert numpy.allclose(cupy.asnumpy(g), want_g) and numpy.allclose(cupy.asnumpy(hvp), want_hvp)


def test_every_primitive_has_a_vjp_and_a_numpy_name():
    from tinyad.core import Primitive
    from tinyad.numpy import linalg, ops

    prims = [v for m in (ops, linalg) for v in vars(m).values() if isinstance(v, Primitive)]
    assert len(prims) > 70
    for prim in prims:
        assert prim.rule is not None, prim.name
        module = numpy.linalg if prim.name in linalg.__all__ else numpy
        twin = prim.name.split(".")[0]
        # the exceptions: indexing, scipy's logsumexp, the ndarray method, tanh's derivative
        exceptions = ("getitem", "logsumexp", "astype", "sech2")
        assert hasattr(module, twin) or twin in exceptions, prim.name
