"""The library on real CuPy arrays, against numpy. Skipped without CuPy or a CUDA device.

    pip install .[gpu]                       # cupy-cuda12x
    python -m pytest -m gpu tests/test_gpu.py

The cases are those of tests/test_backend.py (which runs them on a strict stand-in
for CuPy everywhere); here they run on the device and are compared with numpy at
tolerances that allow for CuPy's own reductions and transcendental functions.
"""

import numpy
import pytest

cupy = pytest.importorskip("cupy")
try:
    _devices = cupy.cuda.runtime.getDeviceCount()
except Exception:  # CUDA driver or runtime missing
    _devices = 0
if not _devices:
    pytest.skip("no CUDA device", allow_module_level=True)

from test_backend import (  # noqa: E402  (after the skip: these import the whole table)
    FIXED,
    PARAMS,
    PRIMITIVES,
    Y0,
    T,
    V,
    derivatives,
    dynamics,
    ode_loss,
    rosenbrock_layer,
)

import tinyad  # noqa: E402
import tinyad.numpy as np  # noqa: E402
import tinyode  # noqa: E402
from tinyad.tree import tree_flatten, tree_map  # noqa: E402
from tinyode.demo import init_params, make_data, model  # noqa: E402

pytestmark = pytest.mark.gpu


def to_gpu(tree):
    return tree_map(lambda x: cupy.asarray(x) if isinstance(x, numpy.ndarray) else x, tree)


def assert_close(got, expected, rtol=1e-9, atol=1e-12):
    """Every leaf of `got` is a CuPy array close to the numpy leaf of `expected`."""
    got_leaves, expected_leaves = tree_flatten(got)[0], tree_flatten(expected)[0]
    assert len(got_leaves) == len(expected_leaves)
    for g, e in zip(got_leaves, expected_leaves):
        assert isinstance(g, cupy.ndarray), f"left the device: got {type(g).__name__}"
        assert g.dtype == numpy.asarray(e).dtype
        numpy.testing.assert_allclose(g.get(), e, rtol=rtol, atol=atol)


@pytest.mark.parametrize("fun, args, argnums", PRIMITIVES[::3])  # a third of the table
def test_primitives_match_numpy(fun, args, argnums):
    argnums = tuple(range(len(args))) if argnums is None else argnums
    rng = numpy.random.default_rng(0)
    v = numpy.asarray(rng.standard_normal(numpy.shape(fun(*args))))
    u = [rng.standard_normal(numpy.shape(args[n])) for n in argnums]
    expected = derivatives(fun, args, v, u, argnums)
    assert_close(derivatives(fun, to_gpu(args), to_gpu(v), to_gpu(u), argnums), expected)


def test_grad_and_hessian_match_numpy():
    x, W = numpy.linspace(-0.5, 0.8, 4), numpy.random.default_rng(0).standard_normal((4, 4))
    for transform in (tinyad.grad, tinyad.hessian):
        f = transform(rosenbrock_layer)
        assert_close(f(*to_gpu((x, W))), f(x, W))


@pytest.mark.parametrize("method", tinyode.METHODS)
def test_odeint_forward_matches_numpy(method):
    kw = FIXED if method in ("euler", "midpoint", "heun", "rk4") else {}
    expected = tinyode.odeint(dynamics, Y0, T, PARAMS, method=method, **kw)
    got = tinyode.odeint(dynamics, to_gpu(Y0), T, to_gpu(PARAMS), method=method, **kw)
    assert_close(got, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("gradient", ["adjoint", "backprop", "checkpoint"])
def test_odeint_gradients_match_numpy(gradient):
    grad = tinyad.grad(ode_loss, argnum=(0, 1, 2))
    expected = grad(Y0, T, PARAMS, gradient, "dopri5", V)
    got = grad(*to_gpu((Y0, T, PARAMS)), gradient, "dopri5", to_gpu(V))
    assert_close(got, expected, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("gradient", ["adjoint", "backprop", "checkpoint"])
def test_the_demo_model_which_ignores_t(gradient):
    t, true_y = make_data(data_size=40, t_max=2.0)
    args = (init_params(0, hidden=8), true_y[::4], true_y[1::4])

    def loss(params, y0, y):
        ys = tinyode.odeint(model, y0, t[:2], params, gradient=gradient)
        return np.mean(np.abs(ys[-1] - y))

    value_and_grad = tinyad.value_and_grad(loss)
    assert_close(value_and_grad(*to_gpu(args)), value_and_grad(*args), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("gradient", ["adjoint", "backprop", "checkpoint"])
def test_float32_stays_float32_on_the_gpu(gradient):
    def loss(y0, params, t):
        ys = tinyode.odeint(dynamics, y0, t, params, gradient=gradient, rtol=1e-5, atol=1e-6)
        assert ys.dtype == numpy.float32
        return np.sum(ys**2)

    args = (Y0.astype(numpy.float32), [p.astype(numpy.float32) for p in PARAMS], T)
    value_and_grad = tinyad.value_and_grad(loss, argnum=(0, 1))
    expected = value_and_grad(*args)
    got = value_and_grad(*to_gpu(args))
    assert_close(got, expected, rtol=2e-3, atol=1e-4)  # float32 rounding, both sides
