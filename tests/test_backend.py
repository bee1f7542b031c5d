"""The whole library on the strict CuPy stand-in (tests/strict_array.py), against numpy.

Each case runs twice: on numpy arrays, and on StrictArrays holding the same
numbers. The stand-in raises on any implicit conversion to numpy and on any
mixing with a numpy array, so a case passes only if every array the library
creates (zeros of a cotangent, a one-hot row, a solver buffer) comes from the
input's array module. The stand-in computes with numpy underneath, so the two
runs must agree to rounding, and every result must still be a StrictArray.
"""

import itertools

import numpy
import pytest
import strict_array
from helpers_numpy import rand, well_conditioned
from strict_array import StrictArray, to_device, xp
from test_numpy_binary import BINARY, OPERATORS
from test_numpy_elementwise import UNARY
from test_numpy_linalg import DOT_SHAPES, EINSUM, MATMUL_SHAPES, NORMS
from test_numpy_reductions import AXES, REDUCTIONS
from test_numpy_shape import INDEXES, JOIN_CASES, SHAPE_CASES, X3

import tinyad
import tinyad.numpy as np
import tinyode
from tinyad.backend import array_module
from tinyad.tree import tree_flatten
from tinyode.demo import init_params, make_data, model

RTOL, ATOL = 1e-12, 1e-14  # same numpy arithmetic underneath: equal to rounding


def assert_same(got, expected, rtol=RTOL, atol=ATOL):
    """Every leaf of `got` is a StrictArray equal to the numpy leaf of `expected`."""
    got_leaves, expected_leaves = tree_flatten(got)[0], tree_flatten(expected)[0]
    assert len(got_leaves) == len(expected_leaves)
    for g, e in zip(got_leaves, expected_leaves):
        assert type(g) is StrictArray, f"left the device: got {type(g).__name__}"
        assert g.dtype == numpy.asarray(e).dtype
        numpy.testing.assert_allclose(g.get(), e, rtol=rtol, atol=atol)


def derivatives(fun, args, v, u, argnums):
    """fun's value, vᵀJ (its vjp) and the gradient of vᵀJ·u (second order) for args[argnums]."""

    def loss(*a):
        return np.sum(fun(*a) * v)

    def directional(*a):
        return sum(np.sum(g * w) for g, w in zip(tinyad.grad(loss, argnums)(*a), u))

    return fun(*args), tinyad.grad(loss, argnums)(*args), tinyad.grad(directional, argnums)(*args)


def same_as_numpy(fun, *args, argnums=None):
    """fun, its gradient and second derivative agree on numpy and on the stand-in."""
    argnums = tuple(range(len(args))) if argnums is None else argnums
    rng = numpy.random.default_rng(0)
    v = numpy.asarray(rng.standard_normal(numpy.shape(fun(*args))))
    u = [rng.standard_normal(numpy.shape(args[n])) for n in argnums]
    expected = derivatives(fun, args, v, u, argnums)
    got = derivatives(fun, to_device(args), to_device(v), to_device(u), argnums)
    assert_same(got, expected)


# ---------------------------------------------------------------- the stand-in itself


def test_the_stand_in_refuses_what_cupy_refuses():
    x = xp.asarray(numpy.ones(3))
    with pytest.raises(TypeError, match="implicit conversion"):
        numpy.asarray(x)
    with pytest.raises(TypeError, match="implicit conversion"):
        x + numpy.ones(3)
    with pytest.raises(TypeError, match="implicit conversion"):
        numpy.concatenate([x, numpy.ones(3)])
    assert type(x + numpy.float64(2.0)) is StrictArray and type(x.sum()) is StrictArray
    assert array_module(x) is xp and type(xp.zeros_like(x)) is StrictArray
    before = strict_array.host_syncs
    assert float(x.sum()) == 3.0 and x.tolist() == [1.0, 1.0, 1.0]
    assert strict_array.host_syncs == before + 2


# ---------------------------------------------------------------- (a) every primitive

PRIMITIVES = []


def case(name, fun, *args, argnums=None):
    PRIMITIVES.append(pytest.param(fun, args, argnums, id=name))


for fun, domain, name in UNARY:
    case(f"{name}-2x3", fun, rand((2, 3), domain, seed=1))
    case(f"{name}-0d", fun, rand((), domain, seed=2))
for fun in (np.sign, np.floor, np.ceil, np.rint, np.round):
    case(fun.__name__, lambda x, f=fun: f(x) * x, numpy.array([-1.7, -0.2, 0.3, 2.6]))
for (fun, dx, dy, name), (sx, sy) in itertools.product(
    BINARY, [((2, 3), (2, 3)), ((2, 1), (3,)), ((), (2, 3))]
):
    case(f"{name}-{sx}-{sy}", fun, rand(sx, dx, seed=1), rand(sy, dy, seed=2))
for fun, name in OPERATORS:
    case(f"operator-{name}", fun, rand((2, 3), "positive"), rand((3,), "real"))
for fun, ref, domain, kw in REDUCTIONS:
    for axis, keepdims in itertools.product(AXES, (False, True)):
        f = lambda x, fun=fun, axis=axis, keepdims=keepdims, kw=kw: fun(  # noqa: E731
            x, axis=axis, keepdims=keepdims, **kw
        )
        case(f"{ref.__name__}{kw or ''}-axis={axis}-keepdims={keepdims}", f, rand((2, 3), domain))
for name, fun, x in SHAPE_CASES:
    case(name, fun, x)
for name, fun, args in JOIN_CASES:
    case(name, fun, *args)
for name, index in INDEXES:
    case(f"index-{name}", lambda x, i=index: x[i], X3)
for sa, sb in DOT_SHAPES:
    case(f"dot-{sa}-{sb}", np.dot, rand(sa, seed=1), rand(sb, seed=2))
for sa, sb in MATMUL_SHAPES:
    case(f"matmul-{sa}-{sb}", np.matmul, rand(sa, seed=1), rand(sb, seed=2))
for subscripts, shapes in EINSUM:
    f = lambda *ops, s=subscripts: np.einsum(s, *ops)  # noqa: E731
    case(f"einsum-{subscripts}", f, *[rand(s, seed=k) for k, s in enumerate(shapes)])
for shape, kw in NORMS:
    f = lambda x, kw=kw: np.linalg.norm(x, **kw)  # noqa: E731
    case(f"norm-{shape}-{kw}", f, rand(shape, "nonzero", seed=3))

A3, B3 = rand((3, 4), seed=1), rand((4, 2), seed=2)
case("tensordot", lambda a, b: np.tensordot(a, b, 1), A3, B3)
case("outer", np.outer, rand((3,), seed=1), rand((2,), seed=2))
case("inner", np.inner, rand((2, 3), seed=1), rand((3,), seed=2))
case("cumsum", np.cumsum, rand((2, 3)))
case("cumsum-axis", lambda x: np.cumsum(x, axis=1), rand((2, 3)))
case("where", lambda c, x, y: np.where(c, x, y), rand((2, 3)) > 0, *[rand((2, 3))] * 2,
     argnums=(1, 2))  # fmt: skip
case("clip", lambda x: np.clip(x, -0.5, 0.5), rand((2, 3)))
case("clip-arrays", np.clip, rand((2, 3)), rand((3,), seed=1) - 1, rand((3,), seed=2) + 1)
case(
    "power-array-exponent-with-zeros",
    np.power,
    rand((3,), "positive"),
    numpy.array([0.0, 1.0, 2.5]),
)
case(
    "prod-with-a-zero",
    lambda x: np.prod(x, axis=1),
    numpy.array([[1.5, 0.0, 2.0], [1.0, 2.0, 3.0]]),
)
case("max-ties", lambda x: np.max(x, axis=0), numpy.array([[1.0, 2.0], [1.0, 0.5]]))
case("astype-float32", lambda x: np.astype(x, numpy.float32) * 2.0, rand((3,)))
case("expand_dims", lambda x: np.expand_dims(x, 0), rand((2, 3)))
case("full-traced", lambda x: np.full((2, 3), x), rand(()))
case("array-of-traced-list", lambda x: np.array([x[1], -x[0] * x[1]]), rand((2,)))
case("asarray", lambda x: np.asarray(x) * 2.0, rand((2,)))
case("zeros_like", lambda x: x + np.zeros_like(x), rand((2,)))
case("inv", np.linalg.inv, well_conditioned((2, 3, 3)))
case("det", np.linalg.det, well_conditioned((3, 3)))
case("slogdet", lambda a: np.linalg.slogdet(a)[1], well_conditioned((2, 3, 3)))
case("solve", np.linalg.solve, well_conditioned((3, 3)), rand((3,)))
case("solve-matrix", np.linalg.solve, well_conditioned((3, 3)), rand((3, 2)))
case("methods", lambda x: x.T.reshape(-1).sum() + x.mean(0).max() * x.dot(x.T).min(), rand((2, 3)))


@pytest.mark.parametrize("fun, args, argnums", PRIMITIVES)
def test_primitive_value_gradient_and_second_derivative_match_numpy(fun, args, argnums):
    same_as_numpy(fun, *args, argnums=argnums)


def test_asarray_keeps_a_device_array_on_the_device():
    x = xp.asarray(rand((3,)))
    assert np.asarray(x) is x and type(np.array(x)) is StrictArray
    assert np.asarray(x, numpy.float32).dtype == numpy.float32


# ---------------------------------------------------------------- (b) the transformations


def rosenbrock_layer(x, W):
    y = np.tanh(W @ x)
    return np.sum(100.0 * (y[1:] - y[:-1] ** 2) ** 2 + (1.0 - y[:-1]) ** 2)


def test_grad_jacobian_hessian_match_numpy():
    x, W = rand((4,), seed=1), rand((4, 4), seed=2)
    for transform in (tinyad.grad, tinyad.hessian):
        assert_same(
            transform(rosenbrock_layer)(*to_device((x, W))), transform(rosenbrock_layer)(x, W)
        )
    jac = tinyad.jacobian(lambda x, W: np.tanh(W @ x))
    assert_same(jac(*to_device((x, W))), jac(x, W))
    both = tinyad.grad(rosenbrock_layer, argnum=(0, 1))
    assert_same(both(*to_device((x, W))), both(x, W))


def test_value_and_grad_of_an_mlp_and_adam_on_pytrees():
    params = tinyad.nn.init_mlp([3, 8, 2], seed=0)
    x, y = rand((5, 3), seed=1), rand((5, 2), seed=2)

    def loss(params, x, y):
        return np.mean((tinyad.nn.mlp(params, x) - y) ** 2)

    assert_same(
        tinyad.value_and_grad(loss)(*to_device((params, x, y))),
        tinyad.value_and_grad(loss)(params, x, y),
    )

    def fit(params, x, y):
        return tinyad.optim.adam(lambda p, i: tinyad.grad(loss)(p, x, y), params, num_iters=5)

    assert_same(fit(*to_device((params, x, y))), fit(params, x, y))
    out, vjp_fun = tinyad.vjp(lambda p: tinyad.nn.mlp(p, to_device(x)), to_device(params))
    assert type(out) is StrictArray and type(vjp_fun(xp.ones((5, 2)))[0][0][0]) is StrictArray
    assert "matmul" in str(tinyad.trace(lambda x: np.sin(x) @ x, xp.asarray(rand((2, 2)))))


# ---------------------------------------------------------------- (c) odeint, every method and mode


def dynamics(y, t, params):
    W, b = params
    return np.tanh(y @ W + b) * np.cos(t) - 0.5 * y


Y0, T = rand((3, 2), seed=1), numpy.linspace(0.0, 1.0, 4)
PARAMS = (rand((2, 2), seed=2), rand((2,), seed=3))
V = rand((4, 3, 2), seed=4)  # the loss weights of each output
FIXED = {"step_size": 0.1}


@pytest.mark.parametrize("method", tinyode.METHODS)
def test_odeint_forward_matches_numpy_for_every_method(method):
    kw = FIXED if method in ("euler", "midpoint", "heun", "rk4") else {}
    expected = tinyode.odeint(dynamics, Y0, T, PARAMS, method=method, **kw)
    assert_same(
        tinyode.odeint(dynamics, *to_device((Y0, T)), to_device(PARAMS), method=method, **kw),
        expected,
    )
    # Times given as numpy with the state on the device (the usual way to call it)
    assert_same(
        tinyode.odeint(dynamics, to_device(Y0), T, to_device(PARAMS), method=method, **kw), expected
    )


def ode_loss(y0, t, params, gradient, method, v):
    kw = FIXED if method == "rk4" else {}
    ys = tinyode.odeint(dynamics, y0, t, params, method=method, gradient=gradient, **kw)
    return np.sum(ys * v)


@pytest.mark.filterwarnings("ignore::tinyode.BacksolveWarning")  # rk4 backwards, on both
@pytest.mark.parametrize("method", ["dopri5", "rk4"])
@pytest.mark.parametrize("gradient", ["adjoint", "backprop", "checkpoint"])
def test_odeint_gradients_match_numpy_in_every_mode(gradient, method):
    grad = tinyad.grad(ode_loss, argnum=(0, 1, 2))
    expected = grad(Y0, T, PARAMS, gradient, method, V)
    assert_same(
        grad(*to_device((Y0, T, PARAMS)), gradient, method, to_device(V)), expected, rtol=1e-10
    )
    # numpy times, device state: gradients with respect to y0 and θ
    grad = tinyad.grad(ode_loss, argnum=(0, 2))
    got = grad(to_device(Y0), T, to_device(PARAMS), gradient, method, to_device(V))
    assert_same(got, (expected[0], expected[2]), rtol=1e-10)


@pytest.mark.parametrize("gradient", ["adjoint", "backprop", "checkpoint"])
def test_the_demo_model_which_ignores_t_matches_numpy(gradient):
    # A func that ignores t gets a zero cotangent for t, made like t (a host float):
    # the adjoint must still keep its augmented state on the device.
    t, true_y = make_data(data_size=40, t_max=2.0)
    args = (init_params(0, hidden=8), true_y[::4], true_y[1::4])

    def loss(params, y0, y):
        ys = tinyode.odeint(model, y0, t[:2], params, gradient=gradient)
        return np.mean(np.abs(ys[-1] - y))

    value_and_grad = tinyad.value_and_grad(loss)
    assert_same(value_and_grad(*to_device(args)), value_and_grad(*args), rtol=1e-10)


def test_odeint_hessian_vector_product_through_the_adjoint_matches_numpy():
    def hvp(y0, params, v, u):
        g = tinyad.grad(lambda y0: ode_loss(y0, T_, params, "adjoint", "dopri5", v))
        return tinyad.grad(lambda y0: np.sum(g(y0) * u))(y0)

    T_ = T[:2]
    u = rand((3, 2), seed=5)
    expected = hvp(Y0, PARAMS, V[:2], u)
    T_ = to_device(T[:2])
    assert_same(
        hvp(to_device(Y0), to_device(PARAMS), to_device(V[:2]), to_device(u)), expected, rtol=1e-8
    )


# ---------------------------------------------------------------- (d) float32 stays float32


@pytest.mark.parametrize("device", [False, True], ids=["numpy", "stand-in"])
@pytest.mark.parametrize("gradient", ["adjoint", "backprop", "checkpoint"])
def test_float32_stays_float32_through_a_solve_and_its_gradient(gradient, device):
    def func(y, t, params):
        assert tinyad.getval(y).dtype == numpy.float32, "the state was upcast"
        return dynamics(y, t, params)

    def loss(y0, params):
        ys = tinyode.odeint(func, y0, t, params, gradient=gradient, rtol=1e-5, atol=1e-6)
        assert tinyad.getval(ys).dtype == numpy.float32
        return np.sum(ys**2)

    y0, params = Y0.astype(numpy.float32), [p.astype(numpy.float32) for p in PARAMS]
    t = T.astype(numpy.float32)
    if device:
        y0, t, params = to_device((y0, t, params))
    value, (g_y0, g_params) = tinyad.value_and_grad(loss, argnum=(0, 1))(y0, params)
    for x in (value, g_y0, *g_params):
        assert x.dtype == numpy.float32 and (type(x) is StrictArray) == device


# ---------------------------------------------------------------- (e) host syncs per step
# Measured: a forward solve syncs exactly once per (accepted or rejected) step, plus 7 at the
# start: the times read twice (t.tolist() in the checks and in the solver), y0's finiteness,
# the first derivative's, and three norms for the first step size. dopri8 reads two values
# per step: Hairer's combined estimate needs the norms of its 5th- and 3rd-order estimates.
START = 7
PER_STEP = {"dopri5": 1, "tsit5": 1, "bosh3": 1, "dopri8": 2}


@pytest.mark.parametrize("method", sorted(PER_STEP))
def test_an_adaptive_solve_syncs_with_the_host_once_per_step(method):
    y0, t, params = to_device((Y0, numpy.linspace(0.0, 5.0, 11), PARAMS))
    strict_array.host_syncs = 0
    ys, info = tinyode.odeint(dynamics, y0, t, params, method=method, full_output=True)
    steps = info["n_steps"] + info["n_rejected"]
    assert steps > 5 and strict_array.host_syncs <= PER_STEP[method] * steps + START
    assert type(ys) is StrictArray


@pytest.mark.parametrize("gradient", ["adjoint", "backprop", "checkpoint"])
def test_gradients_sync_once_per_step_too(gradient):
    y0, t, params = to_device((Y0, numpy.linspace(0.0, 5.0, 11), PARAMS))
    info = {}

    def loss(y0, t, params):
        ys, info["solve"] = tinyode.odeint(
            dynamics, y0, t, params, gradient=gradient, full_output=True
        )
        return np.sum(ys**2)

    strict_array.host_syncs = 0
    tinyad.grad(loss, argnum=(0, 1, 2))(y0, t, params)
    forward = info["solve"]["n_steps"] + info["solve"]["n_rejected"] + START
    backward = {  # the adjoint: one backward solve per output interval, each starting up
        "adjoint": lambda b: b["n_steps"] + b["n_rejected"] + 6 * (len(t) - 1),
        "backprop": lambda b: 0,  # the backward pass is the tape: no decisions, no syncs
        "checkpoint": lambda b: 1,  # replays the recorded steps; reads t[0] once
    }[gradient](info["solve"].get("backward"))
    assert strict_array.host_syncs <= forward + backward
