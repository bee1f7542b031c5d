"""tinyad.replay: a tape traced once and replayed on new values gives what tracing again gives.

Random programs of tests/differential.py are traced at one point and replayed
at another; wherever the trace read no value, the replay's output and vjp must
equal a fresh `tinyad.vjp` bit for bit. Code that reads values (a branch, a
comparison, argmax, an index taken from a traced value) must not be replayed.
"""

import math

import numpy
import pytest
from differential import _objective, generate

import tinyad
import tinyad.numpy as np
from tinyad.replay import Replay


def test_random_programs_replay_exactly_or_are_traced_again():
    replayed = fused = 0
    for seed in range(150):
        program = generate(seed)
        F = _objective(np, np.logsumexp, program, program.function(), program.weights)
        theta = program.theta
        other = theta + numpy.asarray(0.01 * program.direction, theta.dtype)
        f_vjp = Replay(F)
        out, pull = f_vjp(theta)  # traced here, replayed below
        pull(numpy.ones_like(numpy.asarray(out)))  # the backward pass traced here
        out, pull = f_vjp(other)
        want_out, want_pull = tinyad.vjp(F, other)
        g = numpy.ones_like(numpy.asarray(want_out))
        assert numpy.array_equal(out, want_out), program.source()
        assert numpy.array_equal(pull(g)[0], want_pull(g)[0]), program.source()
        replayed += f_vjp.replayable
        fused += bool(f_vjp.pullback)  # and the backward pass replayed
    # 119 and 29 measured: the vjps of maximum, minimum, max, min, clip and prod read masks,
    # those of logsumexp, arctan and arcsinh the shifts that keep them from overflowing
    assert fused > 25
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


# Vjps (and one forward) that read a value to decide what they compute: a mask, a shift
# that keeps exp from overflowing, a permutation, a sign. Traced at x0 and replayed at x1,
# where that value differs, a replay that kept the value read at x0 would be wrong there.
A0 = numpy.array([[2.0, 0.3], [0.1, 1.0]])  # det > 0
A1 = numpy.array([[0.1, 1.0], [2.0, 0.3]])  # det < 0


@tinyad.primitive
def relu_by_hand(x):
    return numpy.maximum(x, 0.0)


# A user's vjp that takes its mask from the raw value, as tutorial 03's primitives may.
tinyad.defvjp(relu_by_hand, lambda g, ans, x: g * (tinyad.getval(x) > 0))

VALUE_READS = {
    "getval in f": (lambda x: np.sum(x * (tinyad.getval(x) > 0)), X, -X),
    "getval in a user's vjp": (lambda x: np.sum(relu_by_hand(x) * x), X, -X),
    "max": (lambda x: np.max(x) * 1.0, X, X[::-1].copy()),
    "prod at a zero": (lambda x: np.prod(x), X, numpy.array([0.5, 0.0, 2.0])),
    "cumprod at a zero": (lambda x: np.sum(np.cumprod(x)), X, numpy.array([0.5, 0.0, 2.0])),
    "sort": (lambda x: np.sum(np.sort(x) * numpy.arange(3.0)), X, -X),
    "logaddexp shift": (lambda x: np.sum(np.logaddexp(x, 2.0 * x)), X, 400.0 * X),
    "logsumexp shift": (lambda x: np.logsumexp(x), X, numpy.array([1000.0, 999.0, 0.0])),
    "mod quotient": (lambda x: np.sum(np.mod(3.0, x)), X + 2.0, X + 0.1),
    "arctan2 scale": (lambda x: np.sum(np.arctan2(x, 1.0)), X, 1e200 * X),
    "inf-norm mask": (lambda x: np.linalg.norm(x, numpy.inf), X, X[::-1].copy()),
    "matrix 1-norm mask": (lambda a: np.linalg.norm(a, 1), A0, A1),
    "slogdet sign": (lambda a: np.sum(np.linalg.slogdet(a)[0] * a), A0, A1),
}


@pytest.mark.parametrize("name", VALUE_READS)
def test_a_value_read_while_tracing_is_never_replayed_stale(name):
    fun, x0, x1 = VALUE_READS[name]
    f_vjp = Replay(fun)
    out, pull = f_vjp(x0)  # traced at x0, its vjp too
    pull(numpy.ones_like(numpy.asarray(out)))
    with numpy.errstate(all="ignore"):
        out, pull = f_vjp(x1)
        want_out, want_pull = tinyad.vjp(fun, x1)
        g = numpy.ones_like(numpy.asarray(want_out))
        got, want = pull(g)[0], want_pull(g)[0]
    assert numpy.isfinite(want).all()
    numpy.testing.assert_array_equal(out, want_out)
    numpy.testing.assert_array_equal(got, want)


def test_arguments_of_another_shape_or_dtype_are_traced_again():
    # The backward program sums broadcast cotangents over the axes of the traced shapes: a
    # batch of another size, or float32 for float64, must not reuse it.
    w = numpy.array([0.3, -0.7])
    fun = lambda z, b: np.sum(np.tanh(z * w + b) ** 2)  # noqa: E731
    f_vjp = Replay(fun)
    for z, b in [
        (numpy.ones((4, 2)), numpy.array(0.5)),
        (numpy.ones((4, 2)), numpy.array(0.5)),  # replayed, forward and backward
        (numpy.ones((3, 1, 2)), numpy.array([0.5, 0.1])),
        (numpy.ones((4, 2), numpy.float32), numpy.array(0.5, numpy.float32)),
        (numpy.ones(2), 0.5),
    ]:
        for _ in range(2):
            out, pull = f_vjp(z, b)
            want_out, want_pull = tinyad.vjp(fun, z, b)
            got, want = pull(numpy.ones_like(want_out)), want_pull(numpy.ones_like(want_out))
            assert numpy.array_equal(out, want_out)
            for x, y in zip(got, want):
                assert numpy.shape(x) == numpy.shape(y)
                assert numpy.asarray(x).dtype == numpy.asarray(y).dtype
                numpy.testing.assert_array_equal(x, y)


def test_the_adjoint_replays_an_mlp_forward_and_backward():
    # tinyode's augmented dynamics on the demo's kind of f: after one traced evaluation,
    # every later one runs the two programs (no Box, no backward pass over a tape).
    from tinyad.tree import tree_leaves as leaves
    from tinyode.adjoint import Augmented
    from tinyode.inputs import split_args

    rng = numpy.random.default_rng(0)
    theta = [rng.normal(size=(2, 8)), rng.normal(size=8), rng.normal(size=(8, 2))]
    func = lambda z, t, W1, b1, W2: np.tanh(z**3 @ W1 + b1) @ W2  # noqa: E731
    flat, argdef = split_args(tuple(theta))
    dynamics = Augmented(func, argdef, numpy.dtype(float))
    z, a = rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
    state = {"z": z, "a": a, "L_theta": [0 * x for x in theta], "L_t": numpy.zeros(())}
    for t in (0.0, 0.3, 0.7):
        got = dynamics(state, t, flat)
        out, pull = tinyad.vjp(lambda z, t, th: func(z, t, *th), state["z"], t, theta)
        want = pull(-state["a"])
        numpy.testing.assert_array_equal(got["z"], out)
        numpy.testing.assert_array_equal(got["a"], want[0])
        for x, y in zip(got["L_theta"], leaves(want[2])):
            numpy.testing.assert_array_equal(x, y)
        state = {**state, "z": z + t, "a": a - t}
    assert dynamics.vjp.replayable and dynamics.vjp.pullback


def test_the_compiled_program_reads_like_the_chain_rule():
    f_vjp = Replay(lambda x, w: np.sum(np.sin(x) * w))
    x, w = numpy.array([0.3, 1.2]), numpy.array([2.0, -1.0])
    out, pull = f_vjp(x, w)
    pull(1.0 * numpy.ones_like(out))
    forward, backward = f_vjp.source.split("\n\n")
    assert forward.startswith("def forward(v0, v1):") and "sin_" in forward
    assert backward.startswith("def backward(") and "cos_" in backward  # sin's vjp: g·cos x
    out, pull = f_vjp(2 * x, w)  # the compiled functions
    dx, dw = pull(numpy.float64(1.0))
    numpy.testing.assert_array_equal(dx, numpy.cos(2 * x) * w)
    numpy.testing.assert_array_equal(dw, numpy.sin(2 * x))


def test_shape_methods_are_written_as_the_array_methods_with_the_same_values():
    """reshape, transpose, sum … call the array's method (their fun does, after _as_array):
    a program writes that call, without the primitive's wrapper, and replays bitwise."""

    def f(x, w):
        y = np.reshape(x, (3, 2)).T @ np.swapaxes(w, 0, 1)  # (2, 3) @ (3, 4)
        z = np.squeeze(np.ravel(y)[None, :], 0)
        return np.sum(np.mean(np.reshape(z, (2, 4)), 0) ** 2) + np.sum(np.sin(x)[0])

    x, w = numpy.linspace(-1.0, 1.0, 6), numpy.arange(12.0).reshape(4, 3) / 7
    f_vjp = Replay(f)
    out, pull = f_vjp(x, w)
    pull(numpy.float64(1.0))
    for name in ("reshape", "transpose", "swapaxes", "ravel", "squeeze", "sum", "mean"):
        assert f".{name}(" in f_vjp.source, name
    for scale in (1.0, -2.5):
        out, pull = f_vjp(scale * x, w)
        want_out, want_pull = tinyad.vjp(f, scale * x, w)
        assert out == want_out
        for got, want in zip(pull(numpy.float64(1.0)), want_pull(1.0)):
            numpy.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_the_adjoint_on_its_flat_layout_equals_the_pytree_path(dtype):
    # Augmented.on_layout, the fast path the backward solves run, against PytreeState's
    # pytree path (unpack z into the dict, call, pack the dict): the same vector, bit for bit.
    from tinyode.adjoint import Augmented
    from tinyode.inputs import PytreeState, split_args

    rng = numpy.random.default_rng(1)
    theta = ({"W": rng.normal(size=(3, 6)).astype(dtype)}, rng.normal(size=6).astype(dtype))
    func = lambda z, t, p, b: np.tanh(z @ p["W"] * np.cos(t) + b) @ p["W"].T  # noqa: E731
    flat, argdef = split_args(theta)
    dynamics = Augmented(func, argdef, numpy.dtype(dtype))
    z, a = rng.normal(size=(4, 3)).astype(dtype), rng.normal(size=(4, 3)).astype(dtype)
    state = PytreeState(
        {"z": z, "a": a, "L_theta": [0 * x for x in flat], "L_t": numpy.zeros((), dtype)}
    )
    fast, slow = state.wrap(dynamics), state._wrapped(dynamics)
    assert fast.__qualname__.startswith("Augmented.on_layout")
    v = state.z0
    for t in map(dtype, (0.0, 0.4, 1.1)):  # the solver's host times come in y's precision
        got, want = fast(v, t, flat), slow(v, t, flat)
        assert got.dtype == want.dtype == dtype
        numpy.testing.assert_array_equal(got, want)
        v = v + dtype(0.1) * got


def test_adjoint_gradients_are_the_same_without_the_flat_layout(monkeypatch):
    # The whole adjoint (y0, every t_i and a pytree of parameters) with the flat path and
    # with the pytree path: the same steps, the same gradient, bit for bit.
    import tinyode
    from tinyode.adjoint import Augmented

    rng = numpy.random.default_rng(2)
    params = {"W": rng.normal(size=(2, 5)), "b": rng.normal(size=5), "V": rng.normal(size=(5, 2))}
    y0, ts = rng.normal(size=(3, 2)), numpy.linspace(0.0, 1.0, 4)

    def loss(y0, ts, params):
        f = lambda y, t, p: np.tanh(y**3 @ p["W"] + p["b"]) @ p["V"] - 0.1 * t * y  # noqa: E731
        return np.sum(tinyode.odeint(f, y0, ts, params, rtol=1e-6, atol=1e-8) ** 2)

    grad = tinyad.grad(loss, argnum=(0, 1, 2))
    used, on_layout = [], Augmented.on_layout
    counted = lambda *a, **k: used.append(1) or on_layout(*a, **k)  # noqa: E731
    monkeypatch.setattr(Augmented, "on_layout", counted)
    fast = grad(y0, ts, params)
    assert len(used) == 1  # one flat layout, made once, for every interval's backward solve
    monkeypatch.delattr(Augmented, "on_layout")
    slow = grad(y0, ts, params)
    for x, y in zip(tinyad.tree_flatten(fast)[0], tinyad.tree_flatten(slow)[0]):
        numpy.testing.assert_array_equal(x, y)


def test_vjp_leaves_runs_the_compiled_programs_or_declines():
    # Replay.vjp_leaves, the adjoint's per-evaluation call: once both programs are compiled
    # it returns exactly what the Replay's own pull returns, as a flat list of leaves; for
    # any call the programs were not made for it returns None (the caller then traces).
    f_vjp = Replay(lambda z, t, th: np.tanh(z @ th[0] + th[1]) * np.cos(t))
    rng = numpy.random.default_rng(3)
    z, th = rng.normal(size=(4, 3)), [rng.normal(size=(3, 5)), rng.normal(size=5)]
    g = rng.normal(size=(4, 5))
    assert f_vjp.vjp_leaves([z, 0.2, *th], g) is None  # nothing traced yet
    out, pull = f_vjp(z, 0.2, th)
    assert f_vjp.vjp_leaves([z, 0.2, *th], g) is None  # f traced, its backward pass not yet
    pull(g)
    for t in (0.2, 0.9):
        z2 = z + t
        got_out, got = f_vjp.vjp_leaves([z2, t, *th], g)
        want_out, want_pull = tinyad.vjp(lambda z, t, th: f_vjp.fun(z, t, th), z2, t, th)
        dz, dt, (dw, db) = want_pull(g)
        numpy.testing.assert_array_equal(got_out, want_out)
        for x, y in zip(got, [dz, dt, dw, db]):
            numpy.testing.assert_array_equal(x, y)
    assert f_vjp.vjp_leaves([z[:2], 0.2, *th], g[:2]) is None  # another shape
    assert f_vjp.vjp_leaves([z.astype(numpy.float32), 0.2, *th], g) is None  # another dtype
    assert f_vjp.vjp_leaves([z, 0.2, *th], g[:, :2]) is None  # g not shaped like the output
    assert f_vjp.vjp_leaves([z, 0.2, *th], g.astype(numpy.float32)) is None


def test_compiled_for_checks_once_then_runs_any_call_of_that_signature():
    # Replay.compiled_for, what the adjoint's flat dynamics keep for a whole solve: made at
    # one point, its run (f's forward and backward programs as one function) gives
    # tinyad.vjp's values bit for bit at others of the same signature, a float t
    # converted as the trace did, and is None wherever vjp_leaves declines.
    f_vjp = Replay(lambda z, t, th: np.sin(z * t) @ th[0] + th[1] * t)
    rng = numpy.random.default_rng(4)
    z, th = rng.normal(size=(3, 2)), [rng.normal(size=(2, 4)), rng.normal(size=4)]
    g = rng.normal(size=(3, 4))
    assert f_vjp.compiled_for([z, 0.3, *th], g) is None  # nothing compiled yet
    f_vjp(z, 0.3, th)[1](g)
    run = f_vjp.compiled_for([z, 0.3, *th], g)
    for t in (0.3, -1.7, 2.5):
        z2, g2 = z * t, g + t
        got_out, *got = run(z2, t, *th, g2)
        want_out, want_pull = tinyad.vjp(f_vjp.fun, z2, t, th)
        dz, dt, (dw, db) = want_pull(g2)
        numpy.testing.assert_array_equal(got_out, want_out)
        for x, y in zip(got, [dz, dt, dw, db]):
            numpy.testing.assert_array_equal(x, y)
    assert f_vjp.compiled_for([z[:1], 0.3, *th], g[:1]) is None  # another shape
    assert f_vjp.compiled_for([z, numpy.float32(0.3), *th], g) is None  # another kind of t
    assert f_vjp.compiled_for([z, 0.3, *th], g.astype(numpy.float32)) is None  # g's dtype


def test_pulls_give_the_rows_of_the_jacobian_from_one_run_of_f():
    # Replay.pulls, what the implicit methods take their Jacobians from: f run once and each
    # g pulled back by the compiled programs gives, bit for bit, what a pull of tinyad.vjp
    # gives for that g (for the unit vectors: J's rows, checked against J by hand); an
    # input f ignores gets its zero; None where compiled_for declines.
    def f(y, t):
        return np.stack([-0.04 * y[0] + 1e4 * y[1] * y[2], 3e7 * y[1] ** 2 * np.sin(t), y[0] * 0.5])

    f_vjp = Replay(f)
    y, t, eye = numpy.array([0.9, 2e-5, 0.1]), numpy.float64(0.3), numpy.eye(3)
    assert f_vjp.pulls([y, t], eye) is None  # nothing compiled yet
    f_vjp(y, t)[1](eye[0])
    y2, t2 = y * 1.1, numpy.float64(0.7)
    out, rows = f_vjp.pulls([y2, t2], eye)
    want_out, want_pull = tinyad.vjp(f, y2, t2)
    numpy.testing.assert_array_equal(out, want_out)
    for g, (dy, dt) in zip(eye, rows):
        want_dy, want_dt = want_pull(g)
        numpy.testing.assert_array_equal(dy, want_dy)
        numpy.testing.assert_array_equal(dt, want_dt)
    J = numpy.array(
        [
            [-0.04, 1e4 * y2[2], 1e4 * y2[1]],
            [0.0, 6e7 * y2[1] * math.sin(t2), 0.0],
            [0.5, 0.0, 0.0],
        ]
    )
    numpy.testing.assert_allclose(numpy.stack([dy for dy, _ in rows]), J, rtol=1e-14)
    numpy.testing.assert_allclose(
        [dt for _, dt in rows], [0.0, 3e7 * y2[1] ** 2 * math.cos(t2), 0.0]
    )
    assert f_vjp.pulls([y2[:2], t2], eye[:2, :2]) is None  # another shape
    assert f_vjp.pulls([y2, t2], eye.astype(numpy.float32)) is None  # g of another dtype


def test_a_new_replay_of_the_same_program_reuses_its_compiled_backward_pass(monkeypatch):
    # The adjoint makes a new Replay of f per gradient: the second one traces f (the forward
    # program is the key) but neither traces the backward pass nor compiles it again, and
    # gives what a fresh tinyad.vjp gives, bit for bit.
    import tinyad.replay as replay

    traced = []
    trace_backward = Replay._trace_backward
    monkeypatch.setattr(
        Replay, "_trace_backward", lambda self, g: traced.append(1) or trace_backward(self, g)
    )
    rng = numpy.random.default_rng(4)
    w = rng.normal(size=(3, 4))
    g = rng.normal(size=(5, 4))
    replays = []
    for k in range(3):
        # a new function object each time, as the adjoint's lambda is
        fun = lambda z, th: np.tanh(z**3 @ th[0] + th[1]) * 2.0  # noqa: E731
        z, th = rng.normal(size=(5, 3)), [w + k, rng.normal(size=4)]
        f_vjp = Replay(fun)
        out, pull = f_vjp(z, th)
        got = pull(g)
        want_out, want_pull = tinyad.vjp(fun, z, th)
        want = want_pull(g)
        numpy.testing.assert_array_equal(out, want_out)
        for x, y in zip(tinyad.tree_flatten(got)[0], tinyad.tree_flatten(want)[0]):
            numpy.testing.assert_array_equal(x, y)
        replays.append(f_vjp)
    assert len(traced) == 1  # the first Replay only
    assert replays[1].compiled is replays[0].compiled and replays[2].pullback
    assert replays[0].key in replay._PROGRAMS


CONSTANTS = [1, 1.0, True, -0.0, 0.0, numpy.float32(1.0), (1, 2), (1.0, 2)]


def test_program_keys_tell_apart_every_literal():
    # Two traces share a key only when their constants are the same literal: 1, 1.0 and
    # True multiply to the same values but in other dtypes; -0.0 and 0.0 differ in sign.
    from tinyad.replay import _literal_key

    keys = [_literal_key(c) for c in CONSTANTS]
    assert len(set(keys)) == len(CONSTANTS)
    assert _literal_key(slice(1, None)) != _literal_key(slice(1, 2))
    assert _literal_key(numpy.dtype("float32")) != _literal_key(numpy.dtype("float64"))


GLOBAL = {"w": numpy.array([1.0, 2.0, 3.0]), "p": numpy.array([2.0, 3.0, 2.0]), "scale": 2.0}
GLOBAL["branch"] = True


def _uses_globals(x):
    y = x * GLOBAL["w"] if GLOBAL["branch"] else np.sin(x)
    # power's vjp computes p − 1 from a constant exponent p when its backward pass is traced
    return np.sum(y ** GLOBAL["scale"] + np.abs(x) ** GLOBAL["p"])


def _pull_one(f_vjp, x):
    """The Replay's out and gradient at x, with g a raw array (so the pull is compiled)."""
    out, pull = f_vjp(x)
    return out, pull(numpy.ones_like(numpy.asarray(out)))[0]


@pytest.mark.parametrize(
    "change",
    [
        "w changed in place",  # array constants: never a key, so traced afresh
        "p changed in place",
        "w rebound",
        "scale rebound",  # a literal constant: another key
        "branch flipped",  # another program
    ],
)
def test_what_f_reads_from_outside_is_never_stale_in_a_new_replay(change):
    x = numpy.array([0.5, -1.5, 2.0])
    before = {k: v.copy() if hasattr(v, "copy") else v for k, v in GLOBAL.items()}
    try:
        first = Replay(_uses_globals)
        _pull_one(first, x)
        assert first.pullback  # traced and compiled with the globals as they are
        if change == "w changed in place":
            GLOBAL["w"] *= -3.0
        elif change == "p changed in place":
            GLOBAL["p"] += 1.0
        elif change == "w rebound":
            GLOBAL["w"] = numpy.array([0.1, 0.2, 0.3])
        elif change == "scale rebound":
            GLOBAL["scale"] = 3.0
        else:
            GLOBAL["branch"] = False
        f_vjp = Replay(_uses_globals)
        for point in (x, 2 * x, x + 0.25):  # traced, then the compiled programs
            out, grad = _pull_one(f_vjp, point)
            numpy.testing.assert_array_equal(out, _uses_globals(point))
            numpy.testing.assert_array_equal(grad, tinyad.grad(_uses_globals)(point))
    finally:
        GLOBAL.update(before)


def test_a_vjp_defined_again_is_not_replayed_from_an_earlier_program():
    @tinyad.primitive
    def cube(x):
        return x**3

    tinyad.defvjp(cube, lambda g, ans, x: g * 3 * x**2)
    x = numpy.array([0.5, 2.0])
    fun = lambda x: np.sum(cube(x))  # noqa: E731
    first = Replay(fun)
    numpy.testing.assert_array_equal(_pull_one(first, x)[1], 3 * x**2)
    assert first.pullback
    tinyad.defvjp(cube, lambda g, ans, x: g * 0.0)  # a new rule, so another program
    numpy.testing.assert_array_equal(_pull_one(Replay(fun), x)[1], 0 * x)


ENTRY_BY_ENTRY = {
    # f written entry by entry, as students write ODEs (the vjp of each y[i] is an add_at)
    "HIRES-like": (lambda y: np.stack([-1.7 * y[0] + 0.4 * y[1], 280 * y[1] * y[2] - y[0]]), 3),
    "repeated and negative indices": (lambda y: y[0] * y[-1] + y[0] ** 2 - y[2] / y[-1], 4),
    "slices": (lambda y: np.sum(y[1:] * y[:-1]) + y[0] * np.sum(y[::2]), 5),
    "integer arrays with repeats": (lambda y: np.sum(y[numpy.array([0, 0, 2])] * y[1]), 3),
    "rows of a matrix": (lambda y: np.sum(y[0] * y[1]) + y[1, 0] * np.sum(y[:, 1]), (2, 3)),
    "float32": (lambda y: np.stack([y[0] * y[1], y[1] - y[0] * 2.0]), 2),
    "a sum kept as a result": (lambda y: y[0] * y[1] + y[1], 2),
}


@pytest.mark.parametrize("name", ENTRY_BY_ENTRY)
def test_sums_of_index_cotangents_accumulate_in_place_with_the_same_values(name):
    # The backward program adds each y[i]'s cotangent into one buffer (v[i] += g) instead of
    # summing add_at arrays: at new points it gives what a fresh tinyad.vjp gives.
    fun, shape = ENTRY_BY_ENTRY[name]
    dtype = numpy.float32 if name == "float32" else numpy.float64
    rng = numpy.random.default_rng(5)
    points = [rng.uniform(0.5, 2.0, size=shape).astype(dtype) for _ in range(3)]
    f_vjp = Replay(fun)
    for x in points:
        out, pull = f_vjp(x)
        g = rng.normal(size=numpy.shape(out)).astype(numpy.asarray(out).dtype)
        got = pull(g)[0]
        want_out, want_pull = tinyad.vjp(fun, x)
        want = want_pull(g)[0]
        numpy.testing.assert_array_equal(out, want_out)
        assert got.dtype == want.dtype == dtype
        numpy.testing.assert_array_equal(got, want)
    assert f_vjp.pullback  # the later points ran the compiled programs
    if name != "integer arrays with repeats":
        assert "] += v" in f_vjp.source  # and the in-place sum was taken
    else:
        assert "scatter_add(" in f_vjp.source


def test_a_buffer_read_twice_is_not_accumulated_into():
    # Two add_at buffers summed: the sum may go into the first one only if nothing else
    # reads either (a result of the program, a view of it taken by another record), and
    # only if the sum has their shape and dtype.
    from tinyad.numpy.ops import add, add_at
    from tinyad.replay import _accumulated

    g, h = numpy.float64(2.0), numpy.float64(3.0)
    a, b = numpy.zeros(2), numpy.zeros(2)
    records = [
        (add_at, a, [g], {"index": 0, "shape": (2,)}, ((0, 0),)),
        (add_at, b, [h], {"index": 1, "shape": (2,)}, ((0, 1),)),
        (add, a + b, [a, b], {}, ((0, 2), (1, 3))),
    ]
    assert _accumulated(records, 2, [4]) == {4: (2, (0, 1), 1), 3: "absorbed"}
    assert _accumulated(records, 2, [4, 2]) == {}  # the first buffer is a result too
    assert _accumulated(records, 2, [4, 3]) == {}  # the second
    view = (add_at, a.reshape(1, 2), [a], {"index": 0, "shape": (1, 2)}, ((0, 2),))
    assert _accumulated(records + [view], 2, [4, 5]) == {}  # read by another record too
    wide = (add, (a + b).astype(numpy.float32), [a, b], {}, ((0, 2), (1, 3)))
    assert _accumulated(records[:2] + [wide], 2, [4]) == {}  # another dtype than the sum's


@tinyad.primitive
def _python_sine(x):
    return math.sin(x)  # a Python float, as a user's primitive may return


tinyad.defvjp(_python_sine, lambda g, ans, x: g * np.cos(x))


def test_a_primitive_returning_a_python_float_is_still_called_through_numpy():
    # multiply(a Python float, 2.0) is numpy's multiply in the trace (a numpy float64); the
    # compiled program must not turn it into Python's float arithmetic.
    fun = lambda x: _python_sine(x) * 2.0  # noqa: E731
    f_vjp = Replay(fun)
    for x in (0.3, 0.7, 1.1):
        out, pull = f_vjp(numpy.float64(x))
        assert isinstance(out, numpy.float64)
        got = pull(numpy.float64(1.0))[0]
        assert got == pytest.approx(2 * math.cos(x))
    assert f_vjp.pullback


def test_programs_that_differ_only_in_output_or_argument_structure_are_not_shared():
    # The same records, another output record, or the same leaves in other pytrees: a new
    # Replay must not take the earlier one's compiled programs (found by review).
    x, y, g = numpy.array([1.0, 2.0]), numpy.array([3.0, 4.0]), numpy.ones(2)
    cases = [
        (lambda x, y: x, (x, y)),
        (lambda x, y: y, (x, y)),
        (lambda a, b: a * b, (x, y)),
        (lambda d: d["p"] * d["q"], ({"p": x, "q": y},)),
        (lambda t: t[0] * t[1], ((x, y),)),
    ]
    for fun, args in cases:
        f_vjp = Replay(fun)
        for _ in range(3):  # traced, then the compiled programs
            out, pull = f_vjp(*args)
            want_out, want_pull = tinyad.vjp(fun, *args)
            numpy.testing.assert_array_equal(out, want_out)
            got, want = pull(g), want_pull(g)
            assert tinyad.tree_flatten(got)[1] == tinyad.tree_flatten(want)[1]
            for a, b in zip(tinyad.tree_flatten(got)[0], tinyad.tree_flatten(want)[0]):
                numpy.testing.assert_array_equal(a, b)


def test_two_in_place_sums_added_together_stay_two_sums():
    # h[0] * h[1] carried through h = x + 1 meets x[0] * x[1]'s sum: neither is an add_at.
    def f(x):
        h = x + 1.0
        return h[0] * h[1] + x[0] * x[1]

    f_vjp = Replay(f)
    for x in (numpy.array([0.3, 0.7, 0.2]), numpy.array([1.5, -0.4, 2.0])):
        out, pull = f_vjp(x)
        numpy.testing.assert_array_equal(pull(numpy.array(1.0))[0], tinyad.grad(f)(x))


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_a_matrix_subclass_keeps_numpy_multiply():
    x = numpy.matrix([[0.5, -1.0], [2.0, 0.25]])
    f_vjp = Replay(lambda x: x * x)
    for _ in range(3):
        out, pull = f_vjp(x)
        pull(numpy.asarray(numpy.ones((2, 2))).view(numpy.matrix))
    numpy.testing.assert_array_equal(numpy.asarray(out), numpy.multiply(x, x))


@pytest.mark.parametrize(
    "f",
    [lambda y, k: np.dot(k, y), lambda y, k: np.dot(y[0], y * k), lambda y, k: np.dot(y, y) * k],
)
def test_dot_is_written_as_a_method_only_where_its_first_factor_has_one(f):
    # The compiled programs write dot as a.dot(b), but a numpy scalar (a float k, an entry
    # y[0]) has no .dot: there it stays numpy.dot, and every call equals tinyad.vjp's
    f_vjp = Replay(f)
    for k in (0.5, 1.5, -2.0):
        y = numpy.array([1.0, 2.0]) * k
        out, pull = f_vjp(y, k)
        want_out, want_pull = tinyad.vjp(f, y, k)
        g = numpy.ones_like(numpy.asarray(want_out))
        numpy.testing.assert_array_equal(out, want_out)
        for x, w in zip(pull(g), want_pull(g)):
            numpy.testing.assert_array_equal(x, w)
    assert f_vjp.pullback  # compiled, and run by the last calls
