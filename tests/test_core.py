"""The core alone: the tape, the transformations and the checker, on a few scalar primitives.

These primitives are defined here with `math`, so the tests exercise only
tinyad.core / transforms / checks, not tinyad.numpy's library.
"""

import math

import numpy
import pytest

import tinyad
from tinyad import defvjp, primitive


@primitive
def mul(x, y):
    return x * y


@primitive
def add(x, y):
    return x + y


@primitive
def sin(x):
    return math.sin(x) if isinstance(x, float) else numpy.sin(x)


@primitive
def cos(x):
    return math.cos(x) if isinstance(x, float) else numpy.cos(x)


@primitive
def neg(x):
    return -x


defvjp(mul, lambda g, ans, x, y: mul(g, y), lambda g, ans, x, y: mul(g, x))
defvjp(add, lambda g, ans, x, y: g, lambda g, ans, x, y: g)
defvjp(sin, lambda g, ans, x: mul(g, cos(x)))
defvjp(cos, lambda g, ans, x: mul(g, neg(sin(x))))
defvjp(neg, lambda g, ans, x: neg(g))


def test_grad_of_a_composition_matches_calculus():
    f = lambda x: mul(sin(x), x)  # x sin x
    x = 0.7
    assert tinyad.grad(f)(x) == pytest.approx(math.sin(x) + x * math.cos(x), rel=1e-14)


def test_grad_of_grad_to_third_order():
    d = tinyad.grad
    x = 0.3
    assert d(sin)(x) == pytest.approx(math.cos(x))
    assert d(d(sin))(x) == pytest.approx(-math.sin(x))
    assert d(d(d(sin)))(x) == pytest.approx(-math.cos(x))
    assert d(d(d(d(sin))))(x) == pytest.approx(math.sin(x))


def test_nested_tapes_do_not_confuse_each_other():
    # d/dx [x * d/dy (x y)] = d/dx [x * x] = 2x  (perturbation confusion would give x)
    f = lambda x: mul(x, tinyad.grad(lambda y: mul(x, y))(1.0))
    assert tinyad.grad(f)(3.0) == pytest.approx(6.0)


def test_value_and_grad_and_argnum_tuple():
    f = lambda x, y: mul(x, sin(y))
    v, g = tinyad.value_and_grad(f)(2.0, 0.5)
    assert v == pytest.approx(2 * math.sin(0.5))
    assert g == pytest.approx(math.sin(0.5))
    gx, gy = tinyad.grad(f, argnum=(0, 1))(2.0, 0.5)
    assert (gx, gy) == (pytest.approx(math.sin(0.5)), pytest.approx(2 * math.cos(0.5)))


def test_vjp_returns_one_cotangent_per_positional_argument():
    out, vjp_fun = tinyad.vjp(lambda x, y: mul(x, y), 3.0, 4.0)
    assert out == 12.0
    assert vjp_fun(2.0) == (pytest.approx(8.0), pytest.approx(6.0))
    # the same tape can be pulled back twice (jacobian does this row by row)
    assert vjp_fun(1.0) == (pytest.approx(4.0), pytest.approx(3.0))


def test_deep_graph_of_100k_ops_has_no_recursion_limit():
    def f(x):
        for _ in range(100_000):
            x = add(x, 1e-6)
        return x

    assert tinyad.grad(f)(0.0) == pytest.approx(1.0)


def test_gradient_of_a_constant_function_is_zero():
    assert tinyad.grad(lambda x: 5.0)(2.0) == 0.0
    g = tinyad.grad(lambda x: numpy.float64(1.0))(numpy.ones(3))
    assert numpy.array_equal(g, numpy.zeros(3))


def test_non_scalar_output_to_grad_says_use_vjp_or_jacobian():
    with pytest.raises(TypeError, match=r"scalar.*vjp.*jacobian"):
        tinyad.grad(lambda x: mul(x, 2.0))(numpy.ones(3))


def test_integer_input_to_grad_says_pass_floats():
    with pytest.raises(TypeError, match="float"):
        tinyad.grad(sin)(1)
    with pytest.raises(TypeError, match="float"):
        tinyad.grad(lambda x: x)(numpy.arange(3))


def test_missing_vjp_names_primitive_and_argument():
    @primitive
    def twice(x, y):
        return 2 * x + y

    defvjp(twice, lambda g, ans, x, y: mul(g, 2.0))
    assert tinyad.grad(twice)(1.0, 1.0) == 2.0
    with pytest.raises(NotImplementedError, match=r"'twice'.*argument 1"):
        tinyad.grad(twice, argnum=1)(1.0, 1.0)


def test_vjp_of_wrong_shape_names_primitive_argument_and_shapes():
    @primitive
    def double(x):
        return 2 * x

    defvjp(double, lambda g, ans, x: numpy.ones(5))
    with pytest.raises(ValueError, match=r"'double'.*argument 0.*\(5,\).*\(3,\)"):
        tinyad.vjp(double, numpy.ones(3))[1](numpy.ones(3))


def test_vjp_of_wrong_dtype_kind_is_refused():
    @primitive
    def ident(x):
        return x

    defvjp(ident, lambda g, ans, x: numpy.ones(3, dtype=int))
    with pytest.raises(ValueError, match=r"'ident'.*dtype"):
        tinyad.vjp(ident, numpy.ones(3))[1](numpy.ones(3))


def test_broadcasting_is_undone_by_the_core():
    # mul's vjp returns g * y at the broadcast shape (2, 3); x has shape (3,) and (2, 1)
    x, y = numpy.ones(3), numpy.arange(6.0).reshape(2, 3)
    _, vjp_fun = tinyad.vjp(mul, x, y)
    gx, gy = vjp_fun(numpy.ones((2, 3)))
    assert gx.shape == (3,) and numpy.allclose(gx, y.sum(0))
    _, vjp_fun = tinyad.vjp(mul, numpy.ones((2, 1)), y)
    assert numpy.allclose(vjp_fun(numpy.ones((2, 3)))[0], y.sum(1, keepdims=True))
    _, vjp_fun = tinyad.vjp(mul, 2.0, y)  # a scalar argument gets a scalar cotangent
    assert numpy.shape(vjp_fun(numpy.ones((2, 3)))[0]) == ()


def test_float32_gradients_stay_float32():
    x = numpy.linspace(0, 1, 4, dtype=numpy.float32)
    _, vjp_fun = tinyad.vjp(lambda x: mul(x, numpy.float64(3.0)), x)
    (g,) = vjp_fun(numpy.ones(4, numpy.float32))
    assert g.dtype == numpy.float32


def test_assignment_into_a_traced_array_explains_why():
    def f(x):
        x[0] = 1.0
        return x

    with pytest.raises(TypeError, match="in-place assignment"):
        tinyad.grad(f)(numpy.ones(3))


def test_math_function_on_a_traced_value_points_to_tinyad_numpy():
    with pytest.raises(TypeError, match="tinyad.numpy"):
        tinyad.grad(lambda x: math.sin(x))(1.0)


def test_pytree_arguments_get_pytree_gradients():
    def f(p):
        return add(mul(p["a"], p["b"][0]), sin(p["b"][1]))

    g = tinyad.grad(f)({"a": 2.0, "b": (3.0, 0.5)})
    assert g["a"] == pytest.approx(3.0) and g["b"][0] == pytest.approx(2.0)
    assert g["b"][1] == pytest.approx(math.cos(0.5))
    assert isinstance(g["b"], tuple)


def test_flatten_round_trips_and_is_differentiable():
    tree = {"w": numpy.ones((2, 3)), "b": [numpy.zeros(2), 4.0]}
    v, unflatten = tinyad.flatten(tree)
    assert v.shape == (9,)
    back = unflatten(v)
    assert back["w"].shape == (2, 3) and back["b"][1] == 4.0
    import tinyad.numpy as np

    g = tinyad.grad(lambda v: np.sum(unflatten(v)["w"] ** 2))(v)
    assert numpy.allclose(g, numpy.r_[numpy.zeros(3), 2 * numpy.ones(6)])  # keys sorted: b, w


def test_jacobian_and_hessian_of_known_functions():
    import tinyad.numpy as np

    A = numpy.arange(6.0).reshape(2, 3)
    assert numpy.allclose(tinyad.jacobian(lambda x: A @ x)(numpy.ones(3)), A)
    H = tinyad.hessian(lambda x: np.sum(x**3))(numpy.array([1.0, 2.0]))
    assert numpy.allclose(H, numpy.diag([6.0, 12.0]))
    assert tinyad.jacobian(lambda x: np.sin(x))(numpy.zeros((2, 2))).shape == (2, 2, 2, 2)


def test_numerical_grad_matches_calculus():
    g = tinyad.numerical_grad(lambda x: mul(x, mul(x, x)), 2.0)
    assert g == pytest.approx(12.0, rel=1e-8)


# --- the checker, tested with deliberately wrong vjps ---------------------------------------


def _sin_with(vjp):
    @primitive
    def sin_student(x):
        return numpy.sin(x)

    defvjp(sin_student, vjp)
    return sin_student


def test_check_grads_passes_a_right_vjp():
    assert tinyad.check_grads(sin, 0.4, order=2) is None


def test_check_grads_catches_a_vjp_wrong_by_one_percent():
    wrong = _sin_with(lambda g, ans, x: mul(g, mul(1.01, cos(x))))
    with pytest.raises(AssertionError) as e:
        tinyad.check_grads(wrong, numpy.array([0.1, 0.2, 0.3]))
    msg = str(e.value)
    assert "argument 0" in msg and "worst entry" in msg and "relative error" in msg
    assert "reverse" in msg and "numerical" in msg


def test_check_grads_order_2_catches_a_vjp_whose_derivative_is_wrong():
    @primitive
    def cos_bad(x):  # right value, wrong derivative (+sin instead of −sin)
        return numpy.cos(x)

    defvjp(cos_bad, lambda g, ans, x: mul(g, sin(x)))
    student = _sin_with(lambda g, ans, x: mul(g, cos_bad(x)))
    tinyad.check_grads(student, 0.4, order=1)  # first order is right
    with pytest.raises(AssertionError, match="second derivative"):
        tinyad.check_grads(student, 0.4, order=2)


def test_check_grads_names_the_argument_that_is_wrong():
    @primitive
    def prod2(x, y):
        return x * y

    defvjp(prod2, lambda g, ans, x, y: mul(g, y), lambda g, ans, x, y: mul(g, mul(x, 1.5)))
    tinyad.check_grads(prod2, 2.0, 3.0, argnum=0)
    with pytest.raises(AssertionError, match="argument 1"):
        tinyad.check_grads(prod2, 2.0, 3.0)


# --- trace ----------------------------------------------------------------------------------


def test_trace_prints_one_line_per_primitive_with_shapes_and_bytes():
    import tinyad.numpy as np

    W, y = numpy.ones((2, 3)), numpy.ones(3)
    tape = tinyad.trace(lambda W, y: np.sum(np.sin(W @ y)), W, y)
    text = str(tape)
    lines = text.splitlines()
    names = [line.split()[1] for line in lines[1:-1]]
    assert names == ["input", "input", "matmul", "sin", "sum"]
    assert "(2,)" in lines[3] and "float64" in lines[3]
    # each array is counted where it is first kept: W (48 B), y (24 B), then each output
    assert [line.split()[-2] for line in lines[1:-1]] == ["48", "24", "16", "16", "8"]
    assert lines[3].split()[-2:] == ["16", "B"]  # matmul's output
    assert tape.nbytes() == 48 + 24 + 16 + 16 + 8
    assert lines[-1].startswith("5 records, 112 B")  # the column's sum
    ax = tape.plot()
    labels = [t.get_text() for t in ax.texts if t.get_text()]  # arrows are empty annotations
    assert len(labels) == 5 and labels[2].startswith("2: matmul")
    assert len(ax.texts) - len(labels) == 4  # W→matmul, y→matmul, matmul→sin, sin→sum


def test_check_grads_holds_an_integer_argument_fixed_when_argnum_leaves_it_out():
    import tinyad.numpy as np

    x = numpy.arange(6.0).reshape(2, 3) / 7
    f = lambda x, axis: np.sum(np.sin(x), axis=axis)
    tinyad.check_grads(f, x, 1, argnum=0, order=2)
    # Without argnum the integer is checked too (promoted to float64): the message says how
    # to hold it fixed instead.
    with pytest.raises(TypeError, match="argnum="):
        tinyad.check_grads(f, x, 1)
