"""tinyad at the edges users reach first: input forms, pytree outputs, the checker.

Each test here holds one item of the outside review (a wrong number without an
error, a check that passed without checking, or a misleading message), tested the
way users call: a table of input forms, with closed forms or finite differences
as the reference.
"""

import math

import numpy
import pytest

import tinyad
import tinyad.numpy as np

# ---- one table of input forms for every public entry point ---------------------------------


def _f(x):
    """Σ 2 sin(leaf) over the leaves of x: its gradient is 2 cos(leaf), leaf by leaf."""
    return sum(np.sum(2.0 * np.sin(leaf)) for leaf in tinyad.tree_flatten(x)[0])


def _df(x):
    leaves, treedef = tinyad.tree_flatten(x)
    return tinyad.tree_unflatten(treedef, [2 * numpy.cos(numpy.asarray(v)) for v in leaves])


FLOAT_FORMS = {
    "python float": 0.3,
    "numpy float64 scalar": numpy.float64(0.3),
    "0-d array": numpy.array(0.3),
    "1-d array": numpy.array([0.1, 0.2, 0.3]),
    "float32 array": numpy.array([0.1, 0.2], dtype=numpy.float32),
    "float32 scalar": numpy.float32(0.3),
    "list of floats": [0.1, 0.2],
    "tuple of arrays": (numpy.ones(2), 0.5),
    "dict": {"w": numpy.ones((2, 2)), "b": [0.1, numpy.zeros(3)]},
}
NOT_DIFFERENTIABLE = {
    "int": 2,
    "int array": numpy.array([1, 2]),
    "bool": True,
    "complex": 1.0 + 2.0j,
    "complex array": numpy.array([1.0 + 1j]),
    "string": "x",
}


def _assert_tree_close(got, want, rtol=1e-6):
    g_leaves, g_def = tinyad.tree_flatten(got)
    w_leaves, w_def = tinyad.tree_flatten(want)
    assert g_def == w_def, f"structure {g_def} != {w_def}"
    for g, w in zip(g_leaves, w_leaves):
        assert numpy.shape(g) == numpy.shape(w)
        numpy.testing.assert_allclose(g, w, rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("form", FLOAT_FORMS)
def test_grad_value_and_grad_and_vjp_take_every_float_form(form):
    x = FLOAT_FORMS[form]
    _assert_tree_close(tinyad.grad(_f)(x), _df(x))
    value, g = tinyad.value_and_grad(_f)(x)
    assert float(value) == pytest.approx(float(_f(x)))
    _assert_tree_close(g, _df(x))
    out, vjp_fun = tinyad.vjp(_f, x)
    assert not tinyad.isbox(out)
    _assert_tree_close(vjp_fun(1.0)[0], _df(x))


@pytest.mark.parametrize("form", ["float32 array", "float32 scalar"])
def test_float32_inputs_give_float32_gradients(form):
    g = tinyad.grad(_f)(FLOAT_FORMS[form])
    assert numpy.asarray(g).dtype == numpy.float32


@pytest.mark.parametrize("form", FLOAT_FORMS)
def test_numerical_grad_and_check_grads_take_every_float_form(form):
    x = FLOAT_FORMS[form]
    _assert_tree_close(tinyad.numerical_grad(_f, x), _df(x), rtol=1e-5)
    assert tinyad.check_grads(_f, x, order=2) is None


@pytest.mark.parametrize("form", ["1-d array", "dict", "tuple of arrays"])
def test_jacobian_hessian_and_trace_take_pytrees(form):
    x = FLOAT_FORMS[form]
    J = tinyad.jacobian(_f)(x)  # a scalar output: the Jacobian is the gradient
    _assert_tree_close(J, _df(x))
    H = tinyad.hessian(_f)(x)  # block diagonal: -2 sin on each leaf's own diagonal
    leaves = tinyad.tree_flatten(x)[0]
    H_leaves = tinyad.tree_flatten(H)[0]
    assert len(H_leaves) == len(leaves) ** 2
    tape = tinyad.trace(_f, x)
    assert sum(r[0] is None for r in tape.records) == len(leaves)


@pytest.mark.parametrize("form", NOT_DIFFERENTIABLE)
def test_grad_of_a_non_float_input_is_a_type_error_naming_it(form):
    x = NOT_DIFFERENTIABLE[form]
    with pytest.raises(TypeError, match="float|complex"):
        tinyad.grad(lambda x: np.sum(x * 1.0).real if form.startswith("c") else np.sum(x))(x)


def test_complex_input_says_complex_differentiation_is_not_supported():
    with pytest.raises(TypeError, match="complex differentiation is not supported"):
        tinyad.grad(lambda z: np.sum(z))(1.0 + 2.0j)


# ---- item 1: pytree outputs ------------------------------------------------------------------


X = numpy.array([0.3, -1.2, 2.0])


def test_vjp_of_a_tuple_output_pulls_back_each_part():
    out, vjp_fun = tinyad.vjp(lambda x: (np.sin(x), 2 * x), X)
    assert isinstance(out, tuple) and not any(tinyad.isbox(o) for o in out)
    numpy.testing.assert_allclose(out[0], numpy.sin(X))
    (g,) = vjp_fun((numpy.ones(3), numpy.ones(3)))
    numpy.testing.assert_allclose(g, numpy.cos(X) + 2)
    # the issue's own example, with a float input and Python-float cotangents
    (g,) = tinyad.vjp(lambda x: (np.sin(x), 2 * x), 1.0)[1]((1.0, 1.0))
    assert g == pytest.approx(math.cos(1.0) + 2)


def test_vjp_of_nested_list_and_dict_outputs():
    fun = lambda x: {"s": np.sum(x**2), "parts": [x[0] * x[1], np.exp(x)]}
    out, vjp_fun = tinyad.vjp(fun, X)
    assert set(out) == {"s", "parts"} and isinstance(out["parts"], list)
    (g,) = vjp_fun({"s": 1.0, "parts": [2.0, numpy.array([1.0, 0.0, -1.0])]})
    want = 2 * X + 2.0 * numpy.array([X[1], X[0], 0.0]) + numpy.exp(X) * [1, 0, -1]
    numpy.testing.assert_allclose(g, want)


def test_vjp_output_that_ignores_the_input_or_repeats_it():
    out, vjp_fun = tinyad.vjp(lambda x: (x, x, numpy.ones(2)), X)
    (g,) = vjp_fun((numpy.ones(3), 2 * numpy.ones(3), numpy.ones(2)))
    numpy.testing.assert_allclose(g, 3 * numpy.ones(3))


def test_jacobian_of_a_pytree_output_follows_jacrev():
    J = tinyad.jacobian(lambda x: {"a": np.sin(x), "b": (np.sum(x), x[:2] * 3)})(X)
    numpy.testing.assert_allclose(J["a"], numpy.diag(numpy.cos(X)))
    numpy.testing.assert_allclose(J["b"][0], numpy.ones(3))
    numpy.testing.assert_allclose(J["b"][1], 3 * numpy.eye(3)[:2])
    assert isinstance(J["b"], tuple)


# ---- item 2: argnum --------------------------------------------------------------------------


def test_repeated_argnum_is_refused():
    f = lambda x, y: x * y**2
    with pytest.raises(ValueError, match="twice"):
        tinyad.grad(f, argnum=(1, 1))
    with pytest.raises(ValueError, match="twice"):
        tinyad.jacobian(f, argnum=(0, 0))


def test_jacobian_with_a_tuple_argnum_gives_a_tuple():
    A = numpy.arange(6.0).reshape(2, 3)
    Jx, Jy = tinyad.jacobian(lambda x, y: A @ x * y, argnum=(0, 1))(X, 2.0)
    numpy.testing.assert_allclose(Jx, 2 * A)
    numpy.testing.assert_allclose(Jy, A @ X)
    gx, gy = tinyad.grad(lambda x, y: x * y**2, argnum=(0, 1))(3.0, 2.0)
    assert (gx, gy) == (pytest.approx(4.0), pytest.approx(12.0))


def test_jacobian_with_respect_to_a_dict_is_a_dict_of_jacobians():
    p = {"w": numpy.ones((2, 3)), "b": numpy.array([0.5, -0.5])}
    J = tinyad.jacobian(lambda p: p["w"] @ X + p["b"])(p)
    assert isinstance(J, dict) and set(J) == {"w", "b"}
    assert J["w"].shape == (2, 2, 3) and J["b"].shape == (2, 2)
    numpy.testing.assert_allclose(J["b"], numpy.eye(2))
    numpy.testing.assert_allclose(J["w"][1, 1], X)
    numpy.testing.assert_allclose(J["w"][1, 0], 0.0)


def test_argnum_out_of_range_says_how_many_arguments_there_are():
    with pytest.raises(IndexError, match=r"argnum=2.*1 positional argument"):
        tinyad.grad(lambda x: x, argnum=2)(1.0)


# ---- item 3: a cotangent must have exactly the output's shape -------------------------------


def test_a_cotangent_that_merely_broadcasts_is_refused():
    _, vjp_fun = tinyad.vjp(np.sin, X)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3,\)") as e:
        vjp_fun(numpy.ones((2, 3)))
    assert "multiply" not in str(e.value)  # the user's cotangent is named, not a primitive
    with pytest.raises(ValueError, match=r"\(\).*\(3,\)"):
        vjp_fun(1.0)


def test_a_cotangent_of_the_wrong_structure_is_refused():
    _, vjp_fun = tinyad.vjp(lambda x: (x, 2 * x), X)
    with pytest.raises(ValueError, match="structure"):
        vjp_fun(numpy.ones(3))
    with pytest.raises(ValueError, match="structure"):
        vjp_fun((numpy.ones(3),))


# ---- items 4 and 5: the checker never passes without checking --------------------------------


def _square_with_a_wrong_vjp():
    @tinyad.primitive
    def square(x):
        return x * x

    tinyad.defvjp(square, lambda g, ans, x: g * 2.2 * x)  # should be 2x
    return square


@pytest.mark.parametrize("x", [2, numpy.array([1, 2]), numpy.array([1.0, 2.0], numpy.float32)])
def test_check_grads_catches_a_wrong_vjp_on_integer_and_float32_inputs(x):
    with pytest.raises(AssertionError, match="relative error"):
        tinyad.check_grads(_square_with_a_wrong_vjp(), x)


@pytest.mark.parametrize("args", [(True,), ("abc",), (None,), ()])
def test_check_grads_with_nothing_to_check_is_a_type_error(args):
    with pytest.raises(TypeError, match="nothing to check"):
        tinyad.check_grads(lambda *a: 1.0, *args)


def test_check_grads_refuses_an_argnum_that_is_not_differentiable():
    with pytest.raises(TypeError, match="argument 1"):
        tinyad.check_grads(lambda x, s: x * 2.0, 1.0, "s", argnum=1)


def test_numerical_grad_of_integer_and_float32_inputs_is_right():
    f = lambda x: np.sum(x * x)
    assert tinyad.numerical_grad(lambda x: x**2, 3) == pytest.approx(6.0, rel=1e-8)
    g = tinyad.numerical_grad(f, numpy.array([1.0, 2.0, 3.0], numpy.float32))
    assert g.dtype == numpy.float32
    numpy.testing.assert_allclose(g, [2, 4, 6], rtol=1e-6)
    numpy.testing.assert_allclose(tinyad.numerical_grad(f, numpy.array([1, 2, 3])), [2, 4, 6])


# ---- item 7: array-likes holding traced values -------------------------------------------


ARRAY_LIKES = {
    "mean": (lambda x: np.mean([x, x + 2.0]), lambda x: 1.0),
    "sum": (lambda x: np.sum([x, 3.0 * x, 1.0]), lambda x: 4.0),
    "exp": (lambda x: np.sum(np.exp([x, 2 * x])), lambda x: math.exp(x) + 2 * math.exp(2 * x)),
    "dot": (lambda x: np.dot([x, x * x], [1.0, 2.0]), lambda x: 1 + 4 * x),
    "norm": (lambda x: np.linalg.norm([x, 2 * x]), lambda x: math.sqrt(5) * math.copysign(1, x)),
    "det": (lambda x: np.linalg.det([[x, 1.0], [2.0, x]]), lambda x: 2 * x),
    "nested tuple": (lambda x: np.sum(np.asarray(((x, 1.0), (x, x))) ** 2), lambda x: 6 * x),
    "add with a list": (lambda x: np.sum(np.add(x, [x, 1.0])), lambda x: 3.0),
    "max of a tuple": (lambda x: np.max((x, 2 * x)), lambda x: 2.0),
    "matmul": (lambda x: np.sum(np.matmul([[x, 0.0], [1.0, x]], [1.0, 1.0])), lambda x: 2.0),
}


@pytest.mark.parametrize("name", ARRAY_LIKES)
def test_array_likes_of_traced_values_are_differentiable(name):
    fun, derivative = ARRAY_LIKES[name]
    assert tinyad.grad(fun)(1.5) == pytest.approx(derivative(1.5), rel=1e-12)
    tinyad.check_grads(fun, 1.5, order=2)


# ---- item 16: messages that say what is wrong ------------------------------------------------


def test_a_vjp_with_the_wrong_signature_is_refused_naming_the_primitive():
    @tinyad.primitive
    def softplus(x):
        return numpy.log1p(numpy.exp(x))

    with pytest.raises(TypeError, match=r"'softplus'.*vjp\(g, ans, x\)"):
        tinyad.defvjp(softplus, lambda g, x: g)  # forgot ans


def test_a_variadic_primitive_takes_any_vjp_signature():
    def fun(*a, **k):
        return numpy.tanh(*a)

    prim = tinyad.primitive(fun)
    tinyad.defvjp(prim, lambda g, ans, x: g * (1 - ans**2))
    assert tinyad.grad(prim)(0.5) == pytest.approx(1 - math.tanh(0.5) ** 2)


def test_the_cotangent_shape_message_does_not_contradict_itself():
    @tinyad.primitive
    def double(x):
        return 2 * x

    tinyad.defvjp(double, lambda g, ans, x: np.sum(g))  # returns shape () for x of shape (5,)
    with pytest.raises(ValueError) as e:
        tinyad.grad(lambda x: np.sum(double(x)))(numpy.ones(5))
    msg = str(e.value)
    assert "'double'" in msg and "()" in msg and "(5,)" in msg
    assert "broadcasts to it" not in msg


def test_writing_a_traced_value_into_a_numpy_buffer_says_what_to_do():
    def f(x):
        buf = numpy.zeros(3)
        buf[0] = x[0]
        return np.sum(buf)

    with pytest.raises(ValueError, match=r"np\.stack"):
        tinyad.grad(f)(numpy.ones(3))


def test_sum_over_axis_0_of_a_0d_value_differentiates_as_numpy_computes_it():
    assert numpy.sum(numpy.float64(2.0), axis=0) == 2.0  # numpy allows it
    assert tinyad.grad(lambda x: np.sum(x**2, axis=0))(2.0) == pytest.approx(4.0)
    assert tinyad.hessian(lambda x: np.sum(x**3, axis=0))(2.0) == pytest.approx(12.0)


def test_has_aux_returns_the_auxiliary_output_unboxed():
    g, aux = tinyad.grad(lambda x: (x**2, {"x": x, "c": 1}), has_aux=True)(3.0)
    assert g == pytest.approx(6.0) and aux["c"] == 1
    assert not tinyad.isbox(aux["x"]) and aux["x"] == 3.0
    (v, aux), g = tinyad.value_and_grad(lambda x: (x**2, x * 2), has_aux=True)(3.0)
    assert (v, aux, g) == (9.0, 6.0, 6.0)
    with pytest.raises(TypeError, match="has_aux"):
        tinyad.grad(lambda x: x**2, has_aux=True)(3.0)
    with pytest.raises(TypeError, match="scalar"):
        tinyad.grad(lambda x: (x, x))(3.0)
