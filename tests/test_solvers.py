"""tinyode's forward solve, against closed forms and reference values from the literature."""

import math

import numpy
import pytest
import scipy.linalg

import tinyad.numpy as np
import tinyode
from tinyode import METHODS, SolverError

ADAPTIVE = ["bosh3", "dopri5", "tsit5", "dopri8"]
FIXED = ["euler", "midpoint", "heun", "rk4"]
ORDER = {
    "euler": 1,
    "midpoint": 2,
    "heun": 2,
    "rk4": 4,
    "bosh3": 3,
    "dopri5": 5,
    "tsit5": 5,
    "dopri8": 8,
    "rodas4": 4,
    "kvaerno5": 5,
}

# DETEST problem class A (Hull, Enright, Fellen & Sedgwick 1972): f, y0 and the closed form.
DETEST_A = {
    "A1": (lambda y, t: -y, 1.0, lambda t: numpy.exp(-t)),
    "A2": (lambda y, t: -0.5 * y**3, 1.0, lambda t: 1 / numpy.sqrt(1 + t)),
    "A3": (lambda y, t: y * np.cos(t), 1.0, lambda t: numpy.exp(numpy.sin(t))),
    "A4": (lambda y, t: y / 4 * (1 - y / 20), 1.0, lambda t: 20 / (1 + 19 * numpy.exp(-t / 4))),
}


def sine_rhs(y, t):
    """torchdiffeq's tests/problems.py SineODE."""
    return 2 * y / t + t**4 * np.sin(2 * t) - t**2 + 4 * t**3


def sine_exact(t):
    return (
        -0.5 * t**4 * numpy.cos(2 * t)
        + 0.5 * t**3 * numpy.sin(2 * t)
        + 0.25 * t**2 * numpy.cos(2 * t)
        - t**3
        + 2 * t**4
        + (math.pi - 0.25) * t**2
    )


@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("name", sorted(DETEST_A))
def test_detest_a_within_tolerance(method, name):
    f, y0, exact = DETEST_A[name]
    t = numpy.linspace(0, 20, 11)
    ys = tinyode.odeint(f, numpy.array(y0), t, method=method, rtol=1e-8, atol=1e-8)
    err = numpy.max(numpy.abs(ys - exact(t)) / (1e-8 + 1e-8 * numpy.abs(exact(t))))
    assert err < 50  # global error within a small multiple of the local tolerance


@pytest.mark.parametrize("method", ADAPTIVE)
def test_sine_problem_of_torchdiffeq(method):
    t = numpy.linspace(1, 8, 10)
    ys = tinyode.odeint(
        sine_rhs, numpy.array(sine_exact(1.0)), t, method=method, rtol=1e-9, atol=1e-9
    )
    assert numpy.allclose(ys, sine_exact(t), rtol=1e-6)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_linear_system_against_expm(method):
    A = numpy.array([[-0.1, 2.0, 0.0], [-2.0, -0.1, 0.3], [0.0, -0.3, -0.5]])
    y0 = numpy.array([1.0, 0.5, -1.0])
    t = numpy.linspace(0, 5, 6)
    ys = tinyode.odeint(lambda y, t: A @ y, y0, t, method=method, rtol=1e-10, atol=1e-12)
    exact = numpy.stack([scipy.linalg.expm(A * s) @ y0 for s in t])
    assert numpy.allclose(ys, exact, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_exponential_decay_backwards_in_time(method):
    t = numpy.array([2.0, 1.0, 0.0])
    ys = tinyode.odeint(
        lambda y, t: -y, numpy.array(numpy.exp(-2.0)), t, method=method, rtol=1e-9, atol=1e-12
    )
    assert numpy.allclose(ys, numpy.exp(-t), rtol=1e-7)


def arenstorf(y, t, mu=0.012277471):
    mu1 = 1 - mu
    y1, y2, v1, v2 = y[0], y[1], y[2], y[3]
    d1 = ((y1 + mu) ** 2 + y2**2) ** 1.5
    d2 = ((y1 - mu1) ** 2 + y2**2) ** 1.5
    a1 = y1 + 2 * v2 - mu1 * (y1 + mu) / d1 - mu * (y1 - mu1) / d2
    a2 = y2 - 2 * v1 - mu1 * y2 / d1 - mu * y2 / d2
    return np.stack([v1, v2, a1, a2])


ARENSTORF_Y0 = numpy.array([0.994, 0.0, 0.0, -2.00158510637908252240537862224])
ARENSTORF_T = 17.0652165601579625588917206249


@pytest.mark.parametrize(
    "method,tol,closes",
    [
        ("dopri5", 1e-10, 1e-4),
        ("tsit5", 1e-10, 1e-4),
        ("dopri8", 1e-12, 1e-6),
        ("bosh3", 1e-9, 1e-2),
    ],
)
def test_arenstorf_orbit_closes(method, tol, closes):
    ys, info = tinyode.odeint(
        arenstorf,
        ARENSTORF_Y0,
        numpy.array([0.0, ARENSTORF_T]),
        method=method,
        rtol=tol,
        atol=tol,
        full_output=True,
    )
    assert numpy.max(numpy.abs(ys[-1] - ARENSTORF_Y0)) < closes
    # adaptive: tiny steps near the close approach to the Earth, long ones far away
    sizes = numpy.array(info["step_sizes"])
    assert sizes.max() / sizes.min() > 50


def lotka_volterra(y, t):
    a, b, c, d = 1.5, 1.0, 3.0, 1.0
    return np.stack([a * y[0] - b * y[0] * y[1], -c * y[1] + d * y[0] * y[1]])


def van_der_pol(y, t, mu=1.0):
    return np.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])


@pytest.mark.parametrize("method", ADAPTIVE)
def test_reference_values(method):
    tol = 1e-12 if method != "bosh3" else 1e-10
    ys = tinyode.odeint(
        lotka_volterra,
        numpy.array([1.0, 1.0]),
        numpy.array([0.0, 10.0]),
        method=method,
        rtol=tol,
        atol=tol,
    )
    ref = numpy.array([1.0263447675750823, 0.909691078136073])
    assert numpy.allclose(ys[-1], ref, rtol=1e-7 if method != "bosh3" else 1e-5)
    ys = tinyode.odeint(
        van_der_pol,
        numpy.array([2.0, 0.0]),
        numpy.array([0.0, 20.0]),
        method=method,
        rtol=tol,
        atol=tol,
    )
    ref = numpy.array([2.0081497621749476, -0.0425088752732038])
    assert numpy.allclose(ys[-1], ref, rtol=1e-7 if method != "bosh3" else 1e-5, atol=1e-8)


# Step sizes where the global error is in the asymptotic regime and well above rounding.
# The 5th-order pairs have tiny leading error constants (tsit5 by design), so on A3 their
# 6th-order terms still dominate at usable step sizes; y' = −y over [0, 10] shows the order.
ORDER_CASES = {
    "euler": ("A3", 2.0, [0.02, 0.01, 0.005]),
    "midpoint": ("A3", 2.0, [0.04, 0.02, 0.01]),
    "heun": ("A3", 2.0, [0.04, 0.02, 0.01]),
    "rk4": ("A3", 2.0, [0.2, 0.1, 0.05]),
    "bosh3": ("A3", 2.0, [0.1, 0.05, 0.025]),
    "dopri5": ("A1", 10.0, [0.1, 0.05, 0.025]),
    "tsit5": ("A1", 10.0, [0.1, 0.05, 0.025]),
    "dopri8": ("A3", 2.0, [0.5, 0.25, 0.125]),
    "rodas4": ("A1", 10.0, [0.1, 0.05, 0.025]),  # on A3 its error changes sign near t = 2
    "kvaerno5": ("A3", 2.0, [0.2, 0.1, 0.05]),
}


@pytest.mark.parametrize("method", METHODS)
def test_measured_convergence_order(method):
    """Log-log slope of the global error against the step size, at fixed steps."""
    name, T, hs = ORDER_CASES[method]
    f, y0, exact = DETEST_A[name]
    errs = []
    for h in hs:
        ys = tinyode.odeint(f, numpy.array(y0), numpy.array([0.0, T]), method=method, step_size=h)
        errs.append(abs(ys[-1] - exact(T)) / abs(exact(T)))
    slope = numpy.polyfit(numpy.log(hs), numpy.log(errs), 1)[0]
    p = ORDER[method]
    assert abs(slope - p) < 0.3, f"{method}: measured order {slope:.2f}, nominal {p}"


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "dopri8", "bosh3"])
def test_dense_output_costs_nothing_and_keeps_accuracy(method):
    f, y0, exact = DETEST_A["A3"]
    tol = 1e-9
    _, few = tinyode.odeint(
        f,
        numpy.array(y0),
        numpy.array([0.0, 10.0]),
        method=method,
        rtol=tol,
        atol=tol,
        full_output=True,
    )
    t = numpy.linspace(0, 10, 400)
    ys, many = tinyode.odeint(
        f, numpy.array(y0), t, method=method, rtol=tol, atol=tol, full_output=True
    )
    assert many["n_steps"] == few["n_steps"]
    extra = 3 * few["n_steps"] if method == "dopri8" else 0  # dopri8's dense stages
    assert many["nfe"] <= few["nfe"] + extra
    err = numpy.abs(ys - exact(t)) / (tol + tol * numpy.abs(exact(t)))
    assert err.max() < 100


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("shape", [(), (3,), (2, 3)])
def test_state_of_any_shape_and_dtype(method, dtype, shape):
    y0 = numpy.linspace(0.5, 1.5, int(numpy.prod(shape))).reshape(shape).astype(dtype)
    t = numpy.linspace(0, 1, 5)
    kw = {"step_size": 0.01} if method in FIXED else {"rtol": 1e-5, "atol": 1e-6}
    ys = tinyode.odeint(lambda y, t: -y, y0, t, method=method, **kw)
    assert ys.shape == (5,) + shape and ys.dtype == dtype
    assert ys[0].tobytes() == y0.tobytes()
    exact = numpy.exp(-t).reshape((5,) + (1,) * len(shape)) * y0
    assert numpy.allclose(ys, exact, rtol=1e-2 if method == "euler" else 1e-4)


def test_fixed_steps_land_on_output_times():
    t = numpy.array([0.0, 0.25, 1.0])
    ys, info = tinyode.odeint(
        lambda y, t: np.ones_like(y),
        numpy.zeros(1),
        t,
        method="euler",
        step_size=0.1,
        full_output=True,
    )
    assert numpy.allclose(ys[:, 0], t)
    # grid 0, .1, .2, (.25), .3, ... 1.0: 10 grid steps plus the one landing on 0.25
    assert info["n_steps"] == 11
    _, info = tinyode.odeint(lambda y, t: -y, numpy.ones(1), t, method="rk4", full_output=True)
    assert info["n_steps"] == 2  # one step per output interval without step_size


def test_full_output_counts_every_evaluation():
    calls = []

    def f(y, t):
        calls.append(t)
        return -y

    _, info = tinyode.odeint(f, numpy.ones(2), numpy.linspace(0, 1, 3), full_output=True)
    assert info["nfe"] == len(calls)
    assert info["n_steps"] == len(info["step_sizes"]) and info["n_steps"] > 0
    assert info["n_rejected"] >= 0


def test_methods_listed():
    assert set(METHODS) == set(ORDER)


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "t,match",
    [
        (numpy.array([[0.0, 1.0]]), "1-D"),
        (numpy.array(1.0), "1-D"),
        (numpy.array([0.0, 1.0, 0.5]), "monotonic"),
        (numpy.array([0.0, 1.0, 1.0]), "repeated"),
        (numpy.array([0.0, -0.0]), "repeated"),
        (numpy.array([0.0, numpy.inf]), "finite"),
        (numpy.array([0.0, None], dtype=object), "finite"),  # converted as numpy does: NaN
    ],
)
def test_bad_times(t, match):
    with pytest.raises(ValueError, match=match):
        tinyode.odeint(lambda y, t: -y, numpy.ones(2), t)


def test_func_returning_another_shape_names_both():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        tinyode.odeint(lambda y, t: np.ones(3), numpy.ones(2), numpy.array([0.0, 1.0]))


def test_non_finite_y0():
    with pytest.raises(ValueError, match="finite"):
        tinyode.odeint(lambda y, t: -y, numpy.array([1.0, numpy.nan]), numpy.array([0.0, 1.0]))


@pytest.mark.parametrize(
    "kw", [{"rtol": -1e-6}, {"atol": 0.0}, {"step_size": 0.0}, {"step_size": -0.1}]
)
def test_bad_tolerances_and_steps(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        tinyode.odeint(lambda y, t: -y, numpy.ones(2), numpy.array([0.0, 1.0]), **kw)


def test_unknown_method_lists_methods():
    with pytest.raises(ValueError, match="dopri5.*tsit5"):
        tinyode.odeint(lambda y, t: -y, numpy.ones(2), numpy.array([0.0, 1.0]), method="rk45")


def test_blow_up_is_a_solver_error_with_time_and_steps():
    # y' = y², y(0) = 1 blows up at t = 1
    with pytest.raises(SolverError, match=r"underflow at t=(1|0\.99\d*) after \d+ steps"):
        tinyode.odeint(lambda y, t: y**2, numpy.ones(1), numpy.array([0.0, 2.0]))


def test_max_steps_is_a_solver_error():
    with pytest.raises(SolverError, match="max_steps=10.*raise max_steps"):
        tinyode.odeint(van_der_pol, numpy.array([2.0, 0.0]), numpy.array([0.0, 20.0]), max_steps=10)


def test_non_finite_derivative_is_a_solver_error():
    f = lambda y, t: np.where(t > 0.5, numpy.nan, -y)
    with pytest.raises(SolverError, match=r"non-finite.*t=0\.5"):
        tinyode.odeint(f, numpy.ones(1), numpy.array([0.0, 1.0]), method="rk4", step_size=0.1)
    with pytest.raises(SolverError, match="t=0.5"):
        tinyode.odeint(f, numpy.ones(1), numpy.array([0.0, 1.0]))


def test_times_may_be_a_list_and_y0_a_float():
    ys = tinyode.odeint(lambda y, t: -y, 1.0, [0.0, 1.0])
    assert ys.shape == (2,) and ys.dtype == numpy.float64
    assert ys[-1] == pytest.approx(numpy.exp(-1.0), rel=1e-6)


def test_integrate_towards_an_infinite_end_stops_where_on_step_says():
    # An event search solves towards t_max = inf and stops on its own: no step is "the last".
    import numpy as onp

    from tinyode.solver import integrate

    seen = []

    def stop(run, step, s, y, h, K, y1):
        seen.append(s + h)
        return float(y1[0]) < 0  # the ball has landed

    f = lambda y, t: onp.array([y[1], -9.81])
    integrate(
        f,
        onp.array([1.0, 0.0]),
        onp.array([0.0, onp.inf]),
        (),
        method="dopri5",
        rtol=1e-7,
        atol=1e-9,
        on_step=stop,
    )
    assert onp.isfinite(seen).all() and seen[-1] > onp.sqrt(2 / 9.81) > seen[-2]


@pytest.mark.parametrize(
    "x",
    [
        numpy.linspace(-3.0, 2.0, 7),
        numpy.linspace(-3.0, 2.0, 7).astype(numpy.float32),
        numpy.full(100_000, 2.0, dtype=numpy.float16),  # Σx² = 4e5 overflows float16 (6.6e4)
        numpy.array([3 + 4j, -1j, 2.0]),
        numpy.arange(12.0).reshape(3, 4),
    ],
    ids=["float64", "float32", "float16", "complex", "2-d"],
)
def test_the_error_norms_are_root_mean_squares(x):
    from tinyode.implicit import weighted_rms
    from tinyode.solver import mixed_norm, rms_norm

    exact = lambda v: math.sqrt(numpy.mean(numpy.abs(v.astype(complex).ravel()) ** 2))  # noqa: E731
    tol = 1e-3 if x.dtype == numpy.float16 else 1e-6 if x.dtype == numpy.float32 else 1e-14
    assert math.isclose(rms_norm(x), exact(x), rel_tol=tol)
    assert math.isclose(weighted_rms(x, 0.5), exact(x) / 2, rel_tol=tol)
    v = x.ravel()
    parts = [(0, 2), (2, 2), (2, v.size)]  # an empty part is skipped
    want = max(exact(v[:2]), exact(v[2:]))
    assert math.isclose(mixed_norm(x, parts), want, rel_tol=tol)
    assert rms_norm(x[:0]) == 0.0


@pytest.mark.parametrize("name", ["bosh3", "dopri5", "tsit5", "dopri8"])
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_the_interpolant_weights_are_the_tableaus_and_traced_theta_gives_the_same(name, dtype):
    # interpolate's B(θ) = P·[θ, θ², …], read off with unit stages (y = 0, h = 1), against
    # tableaus.dense_weights' sum written out term by term, for a host θ and a traced one.
    import tinyad
    from tinyode.runge_kutta import RungeKutta
    from tinyode.stages import Stages
    from tinyode.tableaus import TABLEAUS, dense_weights

    tab = TABLEAUS[name]
    rk, n = RungeKutta(tab, numpy.zeros(1, dtype)), len(tab.dense_p)
    eye = numpy.eye(n, dtype=dtype)
    scale = max(abs(x) for row in tab.dense_p for x in row)
    for theta in (0.0, 0.13, 0.5, 0.77, 1.0):
        K = Stages(eye[0])
        for row in eye[1:]:
            K.append(row)
        got = rk.interpolate(None, 0.0, numpy.zeros(n, dtype), 1.0, K, theta)
        want = numpy.asarray(dense_weights(tab, theta)).astype(dtype)
        assert got.dtype == dtype
        eps = numpy.finfo(dtype).eps
        numpy.testing.assert_allclose(got, want, rtol=0, atol=2 * eps * max(scale, 1.0))
        traced = tinyad.grad(lambda th: rk.interpolate(None, 0.0, 0 * eye[0], 1.0, K, th)[3])
        # d B_3/dθ = Σ_j (j+1) P_3j θ^j, from the traced product
        slope = sum((j + 1) * p * theta**j for j, p in enumerate(tab.dense_p[3]))
        assert traced(theta) == pytest.approx(slope, rel=1e-5, abs=1e-5)


def test_the_shared_coefficients_keep_each_dtype_and_cannot_be_changed():
    # RungeKutta's rows are made once per tableau, dtype and array module and shared by every
    # solve: a float32 solve gets float32 rows (not the float64 ones made first), and an
    # in-place change, which would alter every later solve, is refused.
    from tinyode.runge_kutta import RungeKutta
    from tinyode.tableaus import TABLEAUS

    wide = RungeKutta(TABLEAUS["dopri5"], numpy.zeros(3))
    narrow = RungeKutta(TABLEAUS["dopri5"], numpy.zeros(3, numpy.float32))
    assert wide.b.dtype == numpy.float64 and narrow.b.dtype == numpy.float32
    assert narrow.P.dtype == numpy.float64  # B_i(θ) is summed in float64 (dopri8's cancel)
    assert RungeKutta(TABLEAUS["dopri5"], numpy.ones(2)).b is wide.b  # made once
    numpy.testing.assert_array_equal(wide.b, numpy.asarray(TABLEAUS["dopri5"].b))
    with pytest.raises(ValueError, match="read-only"):
        wide.b[0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        wide.a[2][0] = 1.0
