"""Gradients through odeint: adjoint, backprop and checkpoint against analytic answers."""

import tracemalloc
import warnings

import numpy
import pytest
import scipy.linalg

import tinyad
import tinyad.numpy as np
import tinyode
from tinyode import BacksolveWarning

MODES = ["adjoint", "backprop", "checkpoint"]
TIGHT = dict(rtol=1e-10, atol=1e-12)


def relerr(a, b):
    return numpy.max(numpy.abs(numpy.asarray(a) - b)) / numpy.max(numpy.abs(b))


A = numpy.array([[-0.3, 1.2], [-0.8, -0.1]])
Z0 = numpy.array([1.0, -0.5])
W = numpy.array([0.7, 1.3])
T = 1.5


def linear_loss(z0, t, A, mode, method="dopri5"):
    ys = tinyode.odeint(lambda z, t, A: A @ z, z0, t, A, method=method, gradient=mode, **TIGHT)
    return np.sum(W * ys[-1])


@pytest.mark.parametrize("mode", MODES)
def test_linear_ode_against_matrix_exponential(mode):
    t = numpy.array([0.0, T])
    dz0, dt, dA = tinyad.grad(linear_loss, argnum=(0, 1, 2))(Z0, t, A, mode)
    E = scipy.linalg.expm(A * T)
    assert relerr(dz0, E.T @ W) < 1e-6
    # L = wᵀ e^{AT} z0: dL/dA = T · L_exp(AᵀT, w z0ᵀ) (the adjoint of the Fréchet derivative)
    dA_exact = T * scipy.linalg.expm_frechet(A.T * T, numpy.outer(W, Z0))[1]
    assert relerr(dA, dA_exact) < 1e-6
    dT = W @ A @ E @ Z0
    assert relerr(dt, numpy.array([-dT, dT])) < 1e-6


@pytest.mark.parametrize("mode", MODES)
def test_output_times_inside_the_interval(mode):
    t = numpy.array([0.0, 0.4, 0.9, T])
    R = numpy.array([[0.0, 0.0], [1.0, -2.0], [0.5, 0.3], [0.7, 1.3]])

    def loss(z0, t):
        ys = tinyode.odeint(lambda z, t: A @ z, z0, t, gradient=mode, **TIGHT)
        return np.sum(R * ys)

    dz0, dt = tinyad.grad(loss, argnum=(0, 1))(Z0, t)
    Es = [scipy.linalg.expm(A * s) for s in t]
    assert relerr(dz0, sum(E.T @ r for E, r in zip(Es, R))) < 1e-6
    dt_exact = [r @ A @ E @ Z0 for E, r in zip(Es, R)]
    dt_exact[0] = -sum(dt_exact[1:])  # shifting t0 shifts the whole (autonomous) trajectory
    assert relerr(dt, numpy.array(dt_exact)) < 1e-6


def spiral_mlp(y, t, params):
    """torchdiffeq's ode_demo network: tanh(y³ W1 + b1) W2 + b2."""
    (W1, b1), (W2, b2) = params
    return np.tanh(y**3 @ W1 + b1) @ W2 + b2


def mlp_params(seed=0, hidden=16):
    rng = numpy.random.default_rng(seed)
    return [
        (0.3 * rng.standard_normal((2, hidden)), 0.1 * rng.standard_normal(hidden)),
        (0.3 * rng.standard_normal((hidden, 2)), 0.1 * rng.standard_normal(2)),
    ]


def test_modes_agree_on_mlp_dynamics_with_a_batch():
    rng = numpy.random.default_rng(1)
    y0 = rng.uniform(-1, 1, (5, 2))
    t = numpy.linspace(0.0, 2.0, 12)
    R = rng.standard_normal((12, 5, 2))
    params = mlp_params()

    def loss(y0, t, params, mode):
        ys = tinyode.odeint(spiral_mlp, y0, t, params, gradient=mode, rtol=1e-9, atol=1e-10)
        return np.sum(R * ys)

    grads = {m: tinyad.grad(loss, argnum=(0, 1, 2))(y0, t, params, m) for m in MODES}
    flat = {m: tinyad.flatten(g)[0] for m, g in grads.items()}
    # checkpoint replays exactly the steps backprop differentiates
    assert relerr(flat["checkpoint"], flat["backprop"]) < 1e-10
    # the adjoint is the continuous gradient, equal to the discrete one within tolerance
    assert relerr(flat["adjoint"], flat["backprop"]) < 1e-5


@pytest.mark.parametrize("mode", MODES)
def test_pytree_parameters_and_odelayer(mode):
    layer = tinyode.ODELayer(spiral_mlp, 0.0, 1.0, gradient=mode, rtol=1e-9, atol=1e-10)
    h0 = numpy.array([[0.5, -0.2], [0.1, 0.3]])
    params = mlp_params(2)
    g = tinyad.grad(lambda p: np.sum(layer(h0, p) ** 2))(params)
    assert isinstance(g, list) and g[0][0].shape == (2, 16)
    num = tinyad.numerical_grad(lambda p: np.sum(layer(h0, p) ** 2), params, eps=1e-5)
    assert relerr(tinyad.flatten(g)[0], tinyad.flatten(num)[0]) < 1e-5
    assert layer.info["nfe"] > 0


def test_backward_statistics_are_readable():
    for mode in ["adjoint", "checkpoint"]:

        def loss(z0):
            ys, info = tinyode.odeint(
                lambda z, t: A @ z, z0, numpy.array([0.0, T]), gradient=mode, full_output=True
            )
            seen.append(info)
            return np.sum(ys[-1])

        seen = []
        tinyad.grad(loss)(Z0)
        back = seen[0]["backward"]
        assert back["nfe"] > 0 and back["n_steps"] > 0 and back["n_rejected"] >= 0


def test_seminorm_takes_fewer_backward_steps_for_the_same_gradient():
    params = mlp_params(3, hidden=32)
    y0 = numpy.random.default_rng(2).uniform(-1, 1, (8, 2))
    t = numpy.linspace(0, 1, 5)
    infos = {}

    def loss(params, norm):
        ys, infos[norm] = tinyode.odeint(
            spiral_mlp, y0, t, params, rtol=1e-6, atol=1e-8, adjoint_norm=norm, full_output=True
        )
        return np.sum(ys**2)

    g_full = tinyad.flatten(tinyad.grad(loss)(params, "full"))[0]
    g_semi = tinyad.flatten(tinyad.grad(loss)(params, "seminorm"))[0]
    assert infos["seminorm"]["backward"]["nfe"] < infos["full"]["backward"]["nfe"]
    assert relerr(g_semi, g_full) < 1e-4


def _peak_memory(mode, n_steps):
    params = mlp_params(4, hidden=32)
    y0 = numpy.random.default_rng(0).uniform(-1, 1, (64, 2))

    def loss(params):
        ys = tinyode.odeint(
            spiral_mlp,
            y0,
            numpy.array([0.0, 1.0]),
            params,
            method="rk4",
            step_size=1.0 / n_steps,
            gradient=mode,
        )
        return np.sum(ys[-1] ** 2)

    tracemalloc.start()
    tinyad.grad(loss)(params)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_adjoint_memory_does_not_grow_with_steps_but_backprop_does():
    _peak_memory("adjoint", 20)  # warm-up: the first call also imports tinyode.adjoint
    adjoint = _peak_memory("adjoint", 400) / _peak_memory("adjoint", 20)
    backprop = _peak_memory("backprop", 400) / _peak_memory("backprop", 20)
    assert adjoint < 1.5
    assert backprop > 5


@pytest.mark.parametrize("mode", MODES)
def test_second_order_through_the_solver(mode):
    """Hessian-vector products: the jacobian of the gradient against finite differences."""
    params = mlp_params(5, hidden=8)
    t = numpy.array([0.0, 0.5, 1.0])

    def loss(y0):
        ys = tinyode.odeint(spiral_mlp, y0, t, params, method="rk4", step_size=0.02, gradient=mode)
        return np.sum(ys[1:] ** 2)

    y0 = numpy.array([0.6, -0.4])
    tinyad.check_grads(loss, y0, order=2, rtol=1e-5, atol=1e-8)


def test_hessian_of_the_linear_loss_in_a():
    """Second order against the closed form: L is linear in z0, so ∂²L/∂z0² = 0, and
    ∂/∂z0 (∂L/∂T) = Aᵀ e^{AᵀT} w."""
    t = numpy.array([0.0, T])
    H = tinyad.hessian(lambda z0: linear_loss(z0, t, A, "adjoint"))(Z0)
    assert numpy.max(numpy.abs(H)) < 1e-9
    mixed = tinyad.grad(lambda z0: tinyad.grad(linear_loss, 1)(z0, t, A, "adjoint")[1])(Z0)
    exact = W @ A @ scipy.linalg.expm(A * T)
    assert relerr(mixed, exact) < 1e-6


def test_backsolve_drift_warns_on_stiff_decay():
    def loss(y0):
        ys = tinyode.odeint(lambda y, t: -30 * y, y0, numpy.array([0.0, 1.0]), rtol=1e-6, atol=1e-9)
        return np.sum(ys[-1])

    with pytest.warns(BacksolveWarning, match=r"t=0.*checkpoint"):
        tinyad.grad(loss)(numpy.ones(3))


def lorenz(y, t, s=10.0, r=28.0, b=8 / 3):
    x, yy, z = y[0], y[1], y[2]
    return np.stack([s * (yy - x), x * (r - z) - yy, x * yy - b * z])


def test_backsolve_drift_warns_on_lorenz_and_checkpoint_is_right():
    t = numpy.linspace(0, 3, 4)
    y0 = numpy.array([1.0, 0.0, 0.0])

    def loss(y0, mode):
        return np.sum(tinyode.odeint(lorenz, y0, t, gradient=mode, rtol=1e-8, atol=1e-8)[-1])

    with pytest.warns(BacksolveWarning):
        tinyad.grad(loss)(y0, "adjoint")
    with warnings.catch_warnings():
        warnings.simplefilter("error", BacksolveWarning)
        g_check = tinyad.grad(loss)(y0, "checkpoint")
    g_back = tinyad.grad(loss)(y0, "backprop")
    assert relerr(g_check, g_back) < 1e-10


def test_no_drift_warning_on_a_smooth_problem():
    with warnings.catch_warnings():
        warnings.simplefilter("error", BacksolveWarning)
        tinyad.grad(linear_loss)(Z0, numpy.linspace(0, 3, 4), A, "adjoint")


def test_against_torchdiffeq_odeint_adjoint():
    torch = pytest.importorskip("torch")
    torchdiffeq = pytest.importorskip("torchdiffeq")
    params = mlp_params(6)
    y0 = numpy.array([[2.0, 0.0], [1.0, 0.5]])
    t = numpy.linspace(0, 1, 5)

    def loss(y0, params):
        ys = tinyode.odeint(spiral_mlp, y0, t, params, rtol=1e-9, atol=1e-10)
        return np.sum(ys**2)

    g_y0, g_params = tinyad.grad(loss, argnum=(0, 1))(y0, params)

    tp = [
        (torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True))
        for W, b in params
    ]

    class Func(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ps = torch.nn.ParameterList([torch.nn.Parameter(p) for pair in tp for p in pair])

        def forward(self, t, y):
            W1, b1, W2, b2 = self.ps
            return torch.tanh(y**3 @ W1 + b1) @ W2 + b2

    f = Func().double()
    ty0 = torch.tensor(y0, requires_grad=True)
    ys = torchdiffeq.odeint_adjoint(f, ty0, torch.tensor(t), rtol=1e-9, atol=1e-10)
    (ys**2).sum().backward()
    assert relerr(g_y0, ty0.grad.numpy()) < 1e-5
    ours = tinyad.flatten(g_params)[0]
    theirs = numpy.concatenate([p.grad.numpy().ravel() for p in f.ps])
    assert relerr(ours, theirs) < 1e-5


def test_backward_blow_up_says_use_checkpoint():
    """On Lorenz over one long interval the backward z blows up before any drift check."""
    t = numpy.array([0.0, 3.0])
    y0 = numpy.array([1.0, 0.0, 0.0])
    loss = lambda y0: np.sum(tinyode.odeint(lorenz, y0, t, rtol=1e-6, atol=1e-6, max_steps=1000))
    with pytest.raises(tinyode.SolverError, match=r"backward solve.*checkpoint"):
        tinyad.grad(loss)(y0)


@pytest.mark.parametrize("norm", ["_mixed_norm", "_seminorm"])
@pytest.mark.parametrize("n_theta", [0, 3])
def test_the_adjoints_error_norm_on_the_flat_state_is_the_pytree_norm(norm, n_theta):
    # The backward solve's step control reads the error through the flat layout (no pytree
    # built per step); it must be the norm of the pytree: the largest RMS of z, a, all of
    # dL/dθ together and dL/dt (seminorm: z and a). Each part in turn is made the largest,
    # so a wrong span or a missing part changes the value.
    from tinyode import adjoint
    from tinyode.inputs import PytreeState

    rng = numpy.random.default_rng(n_theta)
    keys = ["z", "a"] + (["L_theta"] if n_theta else []) + ["L_t"]
    for big in keys:
        e = {
            "z": rng.normal(size=(3, 2)),
            "a": rng.normal(size=(3, 2)),
            "L_theta": [rng.normal(size=s) for s in [(2, 4), (4,), ()][:n_theta]],
            "L_t": numpy.array(0.5),
        }
        if big == "L_theta":  # one leaf far larger: the part's RMS is not that leaf's
            e["L_theta"][0] *= 100.0
        else:
            e[big] = 100.0 * e[big]
        state = PytreeState(e)
        parts = {
            k: numpy.concatenate([numpy.ravel(x) for x in tinyad.tree_flatten(e[k])[0]])
            for k in keys
        }
        counted = keys[:2] if norm == "_seminorm" else keys
        want = max(numpy.sqrt(numpy.mean(numpy.square(parts[k]))) for k in counted)
        pytree_norm = getattr(adjoint, norm)
        flat = state.norm(pytree_norm)
        assert flat(state.z0) == pytest.approx(pytree_norm(e), rel=1e-14)
        assert flat(state.z0) == pytest.approx(want, rel=1e-14)
