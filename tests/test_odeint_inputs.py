"""odeint called the way users call it: every form of y0, args and t, and their gradients.

One problem throughout, y' = -k y on every leaf of the state, so each form has a
closed form y(t) = y0 e^{-k (t - t0)}. Gradients are checked in every gradient mode
against central differences of the same loss.
"""

import math
import warnings

import numpy
import pytest

import tinyad
import tinyad.numpy as np
import tinyode
from tinyad.tree import tree_flatten, tree_map

MODES = ["adjoint", "backprop", "checkpoint"]
ADAPTIVE = ["bosh3", "dopri5", "tsit5", "dopri8"]
K = 0.7
T = [0.0, 0.4, 1.1]  # a list of times, as users write them
TIGHT = dict(rtol=1e-10, atol=1e-12)


def decay(y, t, k):
    """y' = -k y, leaf by leaf, for any structure of y."""
    return tree_map(lambda v: -k * v, y)


def central_differences(loss, arg, eps=1e-6):
    """d loss / d arg by central differences, as one vector over arg's leaves."""
    x, unflatten = tinyad.flatten(arg)
    x = numpy.asarray(x, dtype=float)
    grad = numpy.zeros_like(x)
    for i in range(x.size):
        e = numpy.zeros_like(x)
        e[i] = eps
        grad[i] = (loss(unflatten(x + e)) - loss(unflatten(x - e))) / (2 * eps)
    return grad


def as_vector(tree):
    return numpy.concatenate([numpy.ravel(tinyad.getval(x)) for x in tree_flatten(tree)[0]])


def assert_gradient(loss, arg, got):
    expected = central_differences(loss, arg)
    numpy.testing.assert_allclose(as_vector(got), expected, rtol=1e-6, atol=1e-9)


def sin_sum(ys):
    """A nonlinear loss over every leaf of a result."""
    return sum(np.sum(np.sin(leaf)) for leaf in tree_flatten(ys)[0])


# --- the table of y0 forms: (y0, the result's y(t0): its structure, dtypes and values) ---

F32 = numpy.float32
Y0_FORMS = {
    "python float": (1.5, numpy.array(1.5)),
    "python int": (2, numpy.array(2.0)),
    "bool": (True, numpy.array(1.0)),
    "numpy float64 scalar": (numpy.float64(1.5), numpy.array(1.5)),
    "numpy float32 scalar": (F32(1.5), numpy.array(1.5, F32)),
    "numpy int scalar": (numpy.int64(3), numpy.array(3.0)),
    "0-d array": (numpy.array(1.5), numpy.array(1.5)),
    "list": ([1.0, 2.0], numpy.array([1.0, 2.0])),
    "list of ints": ([1, 2], numpy.array([1.0, 2.0])),
    "tuple of numbers": ((1.0, 2, numpy.float64(0.5)), numpy.array([1.0, 2.0, 0.5])),
    "nested list": ([[1.0, 2.0], [3.0, 4.0]], numpy.array([[1.0, 2.0], [3.0, 4.0]])),
    "list of complex numbers": ([1 + 2j, -1j], numpy.array([1 + 2j, -1j])),
    "float32 array": (numpy.array([1.0, 2.0], F32), numpy.array([1.0, 2.0], F32)),
    "int array": (numpy.array([1, 2]), numpy.array([1.0, 2.0])),
    "complex array": (numpy.array([1 + 2j, -1j]), numpy.array([1 + 2j, -1j])),
    "dict pytree": (
        {"x": numpy.array([1.0, 2.0]), "v": 0.5},
        {"x": numpy.array([1.0, 2.0]), "v": numpy.array(0.5)},
    ),
    "tuple pytree": (
        (numpy.array([1.0, 2.0]), numpy.array(3.0)),
        (numpy.array([1.0, 2.0]), numpy.array(3.0)),
    ),
    "list pytree": (
        [numpy.ones((1, 2)), numpy.arange(3.0)],
        [numpy.ones((1, 2)), numpy.arange(3.0)],
    ),
    "nested pytree": (
        {"a": (numpy.ones(2), 2), "b": [numpy.zeros((2, 1))]},
        {"a": (numpy.ones(2), numpy.array(2.0)), "b": [numpy.zeros((2, 1))]},
    ),
    "pytree of mixed dtypes": (
        {"a": numpy.array([1.0, 2.0], F32), "b": numpy.array([3.0])},
        {"a": numpy.array([1.0, 2.0], F32), "b": numpy.array([3.0])},
    ),
}


def structure(tree):
    """The containers of a pytree, with its leaves' shapes and dtypes."""
    leaves, treedef = tree_flatten(tree)
    return treedef, [(numpy.shape(x), numpy.asarray(x).dtype) for x in leaves]


@pytest.mark.parametrize("form", Y0_FORMS)
def test_each_form_of_y0_solves_to_the_closed_form(form):
    y0, start = Y0_FORMS[form]
    tol = dict(rtol=1e-6, atol=1e-8) if F32 in [x.dtype for x in tree_flatten(start)[0]] else TIGHT
    ys = tinyode.odeint(decay, y0, T, K, **tol)
    decayed = numpy.exp(-K * numpy.asarray(T))
    expected = tree_map(
        lambda s: (decayed.reshape((-1,) + (1,) * s.ndim) * s).astype(s.dtype), start
    )
    assert structure(ys) == structure(expected)
    for got, want in zip(tree_flatten(ys)[0], tree_flatten(expected)[0]):
        assert type(got) is numpy.ndarray
        numpy.testing.assert_allclose(got, want, rtol=10 * tol["rtol"], atol=tol["atol"])


@pytest.mark.parametrize("gradient", MODES)
def test_a_pytree_state_hands_func_the_pytree(gradient):
    def func(y, t, k):
        assert isinstance(y, dict) and set(y) == {"x", "v"}
        assert tinyad.getval(y["x"]).shape == (2,) and tinyad.getval(y["v"]).shape == ()
        return {"x": y["v"] * np.ones(2), "v": -k * y["v"]}

    y0 = {"x": numpy.array([0.0, 1.0]), "v": 1.0}
    ys = tinyode.odeint(func, y0, T, K, gradient=gradient, **TIGHT)
    t = numpy.asarray(T)
    numpy.testing.assert_allclose(ys["v"], numpy.exp(-K * t), rtol=1e-8)
    x_exact = (1 - numpy.exp(-K * t))[:, None] / K + numpy.array([0.0, 1.0])
    numpy.testing.assert_allclose(ys["x"], x_exact, rtol=1e-8)


# --- gradients with respect to y0, in each form: (the argument differentiated, y0 from it) ---

Y0_GRADIENTS = {
    "python float": (1.5, lambda x: x),
    "numpy float64 scalar": (numpy.float64(1.5), lambda x: x),
    "0-d array": (numpy.array(1.5), lambda x: x),
    "x[0]": (numpy.array([1.5, 0.3]), lambda x: x[0]),
    "np.sum(x)": (numpy.array([1.5, 0.3]), lambda x: np.sum(x)),
    "array": (numpy.array([1.5, 0.3]), lambda x: x),
    "list of traced numbers": (numpy.array([1.5, 0.3]), lambda x: [x[0], 2.0 * x[1]]),
    "tuple of traced and plain numbers": (numpy.array([1.5, 0.3]), lambda x: (x[1], 0.5, 2)),
    "dict pytree": ({"x": numpy.array([1.0, 2.0]), "v": 0.5}, lambda x: x),
    "tuple pytree": ((numpy.array([1.0, 2.0]), numpy.array(3.0)), lambda x: x),
    "pytree built from x": (numpy.array([1.5, 0.3, -0.2]), lambda x: {"a": x[:2], "b": [x[2]]}),
}


@pytest.mark.parametrize("gradient", MODES)
@pytest.mark.parametrize("form", Y0_GRADIENTS)
def test_gradient_with_respect_to_each_form_of_y0(form, gradient):
    arg, build = Y0_GRADIENTS[form]

    def loss(x):
        return sin_sum(tinyode.odeint(decay, build(x), T, K, gradient=gradient, **TIGHT))

    got = tinyad.grad(loss)(arg)
    assert numpy.any(as_vector(got) != 0)
    assert_gradient(loss, arg, got)


# --- args holding constants: (args built from θ, func checking it receives them unchanged) ---


def with_int(y, t, k, n):
    assert type(n) is int
    return -k * y * n


def with_bool(y, t, k, flip):
    assert flip is True
    return k * y if not flip else -k * y


def with_none_and_str(y, t, k, nothing, name):
    assert nothing is None and name == "decay"
    return -k * y


def with_int_array(y, t, k, order):
    assert order.dtype.kind == "i"
    return -k * y + 0.1 * y[order]


def with_dict(y, t, p):
    assert type(p["n"]) is int and p["label"] == "x" and p["none"] is None
    return -p["k"] * y * p["n"] + p["c"]


def with_layers(y, t, params):
    (W, b), depth = params
    assert depth == 2
    for _ in range(depth):
        y = np.tanh(W @ y + b)
    return y


ARGS_FORMS = {
    "int": (with_int, lambda th: (th[0], 2)),
    "bool": (with_bool, lambda th: (th[0], True)),
    "None and str": (with_none_and_str, lambda th: (th[0], None, "decay")),
    "int array": (with_int_array, lambda th: (th[0], numpy.array([1, 0]))),
    "dict mixing floats and constants": (
        with_dict,
        lambda th: ({"k": th[0], "n": 2, "label": "x", "none": None, "c": th[1]},),
    ),
    "list of (W, b) and an int": (
        with_layers,
        lambda th: ([(np.reshape(th[:4], (2, 2)), th[4:6]), 2],),
    ),
}
THETA = numpy.array([0.7, -0.3, 0.2, 0.5, 0.1, -0.4])


@pytest.mark.parametrize("gradient", MODES)
@pytest.mark.parametrize("form", ARGS_FORMS)
def test_constants_among_args_reach_func_and_the_others_get_gradients(form, gradient):
    func, build = ARGS_FORMS[form]
    y0 = numpy.array([1.0, -0.5])

    def loss(y0, theta):
        return sin_sum(tinyode.odeint(func, y0, T, *build(theta), gradient=gradient, **TIGHT))

    # y0 alone, the args untraced: the constants must not break it
    g_y0 = tinyad.grad(loss)(y0, THETA)
    assert_gradient(lambda y: loss(y, THETA), y0, g_y0)
    # θ's float leaves, built inside the loss next to the constants
    g_theta = tinyad.grad(loss, argnum=1)(y0, THETA)
    assert_gradient(lambda th: loss(y0, th), THETA, g_theta)


@pytest.mark.parametrize("gradient", MODES)
def test_an_integer_argument_never_gets_a_gradient_and_the_float_one_does(gradient):
    def loss(k):
        return np.sum(tinyode.odeint(with_int, numpy.ones(2), T, k, 3, gradient=gradient))

    # y(t) = e^{-3k t}: dL/dk = Σ_i -3 t_i e^{-3 k t_i} (two components)
    t = numpy.asarray(T)
    expected = 2 * numpy.sum(-3 * t * numpy.exp(-3 * K * t))
    assert tinyad.grad(loss)(K) == pytest.approx(expected, rel=1e-6)


# --- times ---


@pytest.mark.parametrize("gradient", MODES)
def test_a_traced_time_inside_a_list_keeps_its_gradient(gradient):
    def loss(t1):
        return tinyode.odeint(decay, 1.5, [0, 0.4, t1], K, gradient=gradient, **TIGHT)[-1]

    assert tinyad.grad(loss)(1.1) == pytest.approx(-K * 1.5 * math.exp(-K * 1.1), rel=1e-8)


@pytest.mark.parametrize("t", [(0.0, 0.4, 1.1), [0, 1, 2], numpy.array([0, 1, 2])])
def test_times_as_a_tuple_or_integers(t):
    ys = tinyode.odeint(decay, numpy.ones(2), t, K, **TIGHT)
    expected = numpy.exp(-K * numpy.asarray(t, dtype=float))[:, None] * numpy.ones(2)
    numpy.testing.assert_allclose(ys, expected, rtol=1e-8)


# --- func returning a list ---


def oscillator(y, t):
    return [y[1], -y[0]]  # scipy users write this


@pytest.mark.parametrize("gradient", MODES)
def test_func_may_return_a_list_which_is_stacked(gradient):
    def loss(y0):
        ys = tinyode.odeint(oscillator, y0, T, gradient=gradient, **TIGHT)
        assert tinyad.getval(ys).shape == (3, 2)
        return np.sum(ys[:, 0])

    y0 = numpy.array([1.0, 0.5])
    t = numpy.asarray(T)
    assert tinyad.getval(loss(y0)) == pytest.approx(numpy.sum(numpy.cos(t) + 0.5 * numpy.sin(t)))
    assert_gradient(loss, y0, tinyad.grad(loss)(y0))


# --- closures over traced values ---


def closure_loss(gradient, trace_y0=True):
    """func closes over k, the parameter being differentiated."""

    def loss(k):
        y0 = k * numpy.array([1.0, 0.5]) if trace_y0 else numpy.array([1.0, 0.5])
        ys = tinyode.odeint(lambda y, t: -k * y**2 + np.sin(t), y0, T, gradient=gradient, **TIGHT)
        return np.sum(ys)

    return loss


def test_backprop_differentiates_a_closure():
    loss = closure_loss("backprop")
    assert_gradient(loss, 0.8, tinyad.grad(loss)(0.8))


@pytest.mark.parametrize("gradient", ["adjoint", "checkpoint"])
def test_a_closure_beside_traced_inputs_is_a_type_error_saying_use_args(gradient):
    with pytest.raises(TypeError, match=r"closes over a traced value.*args") as e:
        tinyad.grad(closure_loss(gradient))(0.8)
    assert "Box" not in str(e.value)

    def traced_time(T1):  # the closure and t traced, y0 not
        ys = tinyode.odeint(lambda y, t: -T1 * y, numpy.ones(2), [0.0, T1], gradient=gradient)
        return np.sum(ys)

    with pytest.raises(TypeError, match=r"closes over a traced value.*args"):
        tinyad.grad(traced_time)(0.8)


@pytest.mark.parametrize("gradient", MODES)
def test_a_closure_alone_gets_the_right_gradient_never_zero(gradient):
    loss = closure_loss(gradient, trace_y0=False)
    got = tinyad.grad(loss)(0.8)
    assert got != 0
    assert_gradient(loss, 0.8, got)


@pytest.mark.parametrize("gradient", MODES)
def test_a_closure_over_an_outer_grads_parameter(gradient):
    """The inner grad differentiates y0; func closes over k, which the outer grad differentiates."""

    def inner(k):
        def loss(y0):
            ys = tinyode.odeint(lambda y, t: -k * y**2, y0, T, gradient=gradient, **TIGHT)
            return np.sum(ys[-1])

        return np.sum(tinyad.grad(loss)(numpy.array([1.0, 0.5])))

    if gradient == "adjoint":  # the backward solve would meet k on its own tape
        with pytest.raises(TypeError, match="closes over a traced value"):
            tinyad.grad(inner)(0.8)
    else:
        assert_gradient(inner, 0.8, tinyad.grad(inner)(0.8))


# --- complex states ---

OMEGA = 3.0


def test_func_returning_complex_for_a_real_state_is_a_type_error():
    with pytest.raises(TypeError, match=r"complex.*real y.*complex y0"):
        tinyode.odeint(lambda y, t: 1j * OMEGA * y, numpy.ones(1), T)


def test_a_complex_state_on_the_imaginary_axis_takes_the_real_solves_steps():
    """y' = -2y + i sin t from y0 = i is i times the real problem: the same steps, the same values.

    (The norm x·x would call every error on the imaginary axis negative, and accept it.)
    """
    t = numpy.linspace(0, 4, 9)
    kw = dict(rtol=1e-6, atol=1e-9, full_output=True)
    z, zinfo = tinyode.odeint(lambda y, t: -2 * y + 1j * np.sin(t), numpy.array([1j]), t, **kw)
    y, yinfo = tinyode.odeint(lambda y, t: -2 * y + np.sin(t), numpy.array([1.0]), t, **kw)
    assert zinfo["n_steps"] == yinfo["n_steps"] and zinfo["n_rejected"] == yinfo["n_rejected"]
    numpy.testing.assert_allclose(z.imag, y, rtol=1e-14, atol=1e-15)
    assert numpy.all(z.real == 0)


@pytest.mark.parametrize("rtol", [1e-3, 1e-6])
@pytest.mark.parametrize("method", ADAPTIVE)
def test_a_complex_oscillator_is_as_accurate_as_its_real_form(method, rtol):
    """y' = iωy against e^{iωt}, and against the same system as a real 2-vector."""
    t = numpy.linspace(0, 10, 21)
    kw = dict(method=method, rtol=rtol, atol=1e-3 * rtol)
    z = tinyode.odeint(lambda y, t: 1j * OMEGA * y, numpy.array([1.0 + 0j]), t, **kw)[:, 0]
    real = lambda y, t: np.stack([-OMEGA * y[1], OMEGA * y[0]])  # noqa: E731
    uv = tinyode.odeint(real, numpy.array([1.0, 0.0]), t, **kw)
    exact = numpy.exp(1j * OMEGA * t)
    complex_error = numpy.max(numpy.abs(z - exact))
    real_error = numpy.max(numpy.abs(uv[:, 0] + 1j * uv[:, 1] - exact))
    assert complex_error < 2 * real_error
    assert complex_error < 100 * rtol


@pytest.mark.parametrize("gradient", MODES)
def test_differentiating_through_a_complex_state_says_it_is_not_supported(gradient):
    def loss(w):
        ys = tinyode.odeint(lambda y, t, w: (1j - w) * y, [1 + 0j], T, w, gradient=gradient)
        return np.sum(np.abs(ys))

    with pytest.raises(TypeError, match="complex state.*real and imaginary parts"):
        tinyad.grad(loss)(0.5)


# --- max_step ---


@pytest.mark.parametrize("method", ADAPTIVE)
def test_max_step_bounds_every_accepted_step(method):
    t = numpy.linspace(0.0, 3.0, 4)
    _, free = tinyode.odeint(decay, numpy.ones(2), t, K, method=method, full_output=True)
    max_step = 0.5 * free["step_sizes"].max()
    ys, info = tinyode.odeint(
        decay, numpy.ones(2), t, K, method=method, max_step=max_step, full_output=True
    )
    # A step that lands on the last output time may exceed h by the 1e-12 slack of that test.
    assert info["step_sizes"].max() <= max_step * (1 + 1e-12) + 1e-12 * t[-1]
    assert info["n_steps"] >= 3.0 / max_step
    numpy.testing.assert_allclose(ys, numpy.exp(-K * t)[:, None] * numpy.ones(2), rtol=1e-6)


def test_max_step_bounds_the_adjoints_backward_steps_too():
    infos = []

    def loss(y0):
        ys, info = tinyode.odeint(decay, y0, [0.0, 3.0], K, max_step=0.05, full_output=True)
        infos.append(info)
        return np.sum(ys[-1])

    g = tinyad.grad(loss)(numpy.ones(2))
    numpy.testing.assert_allclose(g, numpy.exp(-K * 3.0) * numpy.ones(2), rtol=1e-6)
    assert infos[0]["backward"]["n_steps"] >= 3.0 / 0.05


def test_max_step_with_fixed_steps_is_refused():
    with pytest.raises(ValueError, match="max_step.*fixed steps.*step_size"):
        tinyode.odeint(decay, 1.0, T, K, method="rk4", max_step=0.1)
    with pytest.raises(ValueError, match="max_step.*step_size"):
        tinyode.odeint(decay, 1.0, T, K, step_size=0.1, max_step=0.1)


# --- bad input ---


def never_called(y, t, *args):
    raise AssertionError("odeint called func although its input was bad")


@pytest.mark.parametrize(
    "kw,error,match",
    [
        ({"rtol": "1e-6"}, TypeError, r"rtol must be a positive number.*'1e-6'"),
        ({"atol": None}, TypeError, "atol must be a positive number"),
        ({"rtol": [1e-6, -1.0]}, ValueError, "rtol must be positive"),
        ({"rtol": 0.0}, ValueError, "rtol must be positive"),  # numbers: no array made
        ({"atol": -1}, ValueError, "atol must be positive"),
        ({"rtol": float("nan")}, ValueError, "rtol must be positive"),
        ({"adjoint_atol": numpy.float64(-1e-9)}, ValueError, "adjoint_atol must be positive"),
        ({"atol": True}, TypeError, "atol must be a positive number"),
        ({"step_size": "0.1"}, TypeError, "step_size must be a positive number"),
        ({"max_step": 0.0}, ValueError, "max_step must be positive"),
        ({"max_step": "big"}, TypeError, "max_step must be a positive number"),
        ({"max_steps": True}, ValueError, "max_steps must be a positive integer"),
    ],
)
def test_bad_options_name_the_option(kw, error, match):
    with pytest.raises(error, match=match):
        tinyode.odeint(never_called, numpy.ones(2), T, **kw)


def test_an_rtol_below_the_dtypes_resolution_is_refused_before_solving():
    y0 = numpy.ones(2, numpy.float32)
    with pytest.raises(ValueError, match=r"rtol=1e-12 is below what float32 can resolve.*float64"):
        tinyode.odeint(never_called, y0, T, rtol=1e-12)
    with pytest.raises(ValueError, match="adjoint_rtol.*float32"):
        tinyode.odeint(never_called, y0, T, rtol=1e-6, adjoint_rtol=1e-12)
    with pytest.raises(ValueError, match="float64 can resolve"):
        tinyode.odeint(never_called, numpy.ones(2), T, rtol=1e-18)
    ys = tinyode.odeint(decay, y0, T, K)  # the default rtol=1e-7 is one float32 can meet
    assert ys.dtype == numpy.float32
    numpy.testing.assert_allclose(ys[-1], numpy.exp(-K * 1.1), rtol=1e-6)


@pytest.mark.parametrize(
    "func,error,match",
    [
        (lambda y, t: None, TypeError, r"returned None.*return"),
        (lambda y, t: "dy", TypeError, "returned str"),
        (lambda y, t: [y[0]], ValueError, r"returned shape \(1,\), but y has shape \(2,\)"),
    ],
)
def test_func_returning_something_else_is_a_clear_error(func, error, match):
    with pytest.raises(error, match=match):
        tinyode.odeint(func, numpy.ones(2), T)


@pytest.mark.parametrize(
    "func,match",
    [
        (
            lambda y, t: {"x": y["x"]},
            r"returned \{'x': array\(2,\)\}, but y is \{'v': array\(\), 'x': array\(2,\)\}",
        ),
        (
            lambda y, t: {"x": y["x"], "v": y["x"]},
            r"returned array\(2,\) for y\['v'\], which has shape \(\)",
        ),
        (lambda y, t: {"x": y["x"], "v": None}, r"returned None for y\['v'\]"),
        (lambda y, t: [y["v"], y["x"]], r"returned \[array\(\), array\(2,\)\], but y is \{"),
    ],
)
def test_a_pytree_func_returning_another_structure_names_both(func, match):
    with pytest.raises(ValueError, match=match):
        tinyode.odeint(func, {"x": numpy.ones(2), "v": 1.0}, T)


@pytest.mark.parametrize(
    "y0,error,match",
    [
        ([[1.0, 2.0], [3.0]], ValueError, "ragged"),
        ("1.0", TypeError, "y0 must be numbers"),
        (None, TypeError, "y0 must be numbers"),
        ({"x": "a"}, TypeError, "each leaf of y0 must be numbers"),
        ({}, ValueError, "empty pytree"),
        ([1.0, numpy.nan], ValueError, "finite"),
    ],
)
def test_bad_y0_is_a_clear_error(y0, error, match):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(error, match=match):
            tinyode.odeint(never_called, y0, T)


# --- a solve nothing differentiates, and one layout for many solves ---


@pytest.mark.parametrize("gradient", ["adjoint", "checkpoint"])
def test_a_solve_that_nothing_differentiates_is_the_plain_one_in_every_mode(gradient, monkeypatch):
    # On raw values every gradient mode gives what backprop's plain solve gives, bit for bit
    # and with the same counts, without the mode's primitive; with a traced input the mode's
    # own strategy runs.
    from tinyode.odeint import STRATEGIES

    y0 = {"a": numpy.array([1.0, 2.0]), "b": [numpy.array(0.5)]}
    want, want_info = tinyode.odeint(decay, y0, T, K, gradient="backprop", full_output=True)
    used = []
    strategy = STRATEGIES[gradient]
    monkeypatch.setitem(STRATEGIES, gradient, lambda *a: used.append(1) or strategy(*a))
    got, info = tinyode.odeint(decay, y0, T, K, gradient=gradient, full_output=True)
    assert not used
    for x, y in zip(tree_flatten(got)[0], tree_flatten(want)[0]):
        numpy.testing.assert_array_equal(x, y)
    assert info.keys() == want_info.keys()
    for key in info:
        numpy.testing.assert_array_equal(info[key], want_info[key])

    def loss(k):  # Σ_t (1 + 2) e^{−kt}, through the mode's own strategy
        return np.sum(tinyode.odeint(decay, y0, T, k, gradient=gradient, **TIGHT)["a"])

    want_grad = -3.0 * sum(t * math.exp(-K * t) for t in T)
    assert tinyad.grad(loss)(K) == pytest.approx(want_grad, rel=1e-7)
    assert used  # a traced k: the mode's strategy


def test_a_problem_solves_any_state_of_its_layout_and_refuses_another():
    # odeint's Problem, which the adjoint makes once for all of its backward solves.
    from tinyode.odeint import Problem

    y0 = {"z": numpy.ones(3), "w": [numpy.zeros((2, 2))]}
    problem = Problem(decay, y0)
    opts = dict(
        method="dopri5", rtol=1e-10, atol=1e-12, step_size=None, first_step=None,
        max_steps=1000, max_step=None, adjoint_rtol=1e-10, adjoint_atol=1e-12,
        adjoint_norm="full",
    )  # fmt: skip
    y1 = {"z": numpy.array([1.0, 2.0, 3.0]), "w": [numpy.full((2, 2), 4.0)]}
    ys, _ = problem.solve(problem.flat(y1), numpy.array([0.0, 0.5]), (K,), opts, "adjoint")
    end = problem.at(ys, -1)
    numpy.testing.assert_allclose(end["z"], y1["z"] * math.exp(-0.5 * K), rtol=1e-9)
    numpy.testing.assert_allclose(end["w"][0], 4.0 * math.exp(-0.5 * K), rtol=1e-9)
    numpy.testing.assert_array_equal(problem.unpack(ys)["z"][-1], end["z"])
    with pytest.raises(ValueError, match="another form"):
        problem.flat({"z": numpy.ones(4), "w": [numpy.zeros((2, 2))]})
    with pytest.raises(ValueError, match="another form"):
        problem.flat({"z": numpy.ones(3, numpy.float32), "w": [numpy.zeros((2, 2), numpy.float32)]})


@pytest.mark.parametrize("gradient", ["adjoint", "checkpoint"])
def test_func_gets_the_same_args_traced_or_not(gradient):
    # A dict of parameters reaches func rebuilt from its leaves (keys sorted) in the modes
    # that solve inside a primitive; a solve on raw values must hand it the same, or the
    # value a user prints differs from the one trained on. (Backprop hands func args as
    # they come, and tinyad.grad rebuilds its argument with sorted keys, as JAX does.)
    def f(y, t, p):
        w, c = p.values()  # insertion order: what func sees decides which is which
        return -w * y + c

    p = {"w": numpy.array([0.5]), "c": numpy.array([0.1])}
    y0, t = numpy.array([1.0]), numpy.linspace(0.0, 1.0, 3)
    plain = tinyode.odeint(f, y0, t, p, gradient=gradient)[-1, 0]
    traced = tinyad.value_and_grad(
        lambda p: np.sum(tinyode.odeint(f, y0, t, p, gradient=gradient)[-1])
    )
    assert traced(p)[0] == pytest.approx(float(plain), rel=1e-12)
