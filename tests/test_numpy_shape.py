"""Shape functions, joining, and indexing: gradients move entries back to where they came from."""

import numpy
import pytest
from helpers_numpy import check, names_on_tape, rand

import tinyad
import tinyad.numpy as np

X = rand((2, 3), seed=1)
X3 = rand((2, 3, 4), seed=2)

# (name, function, input): the value is compared with numpy's own function of the same name
SHAPE_CASES = [
    ("reshape", lambda x: np.reshape(x, (3, 2)), X),
    ("reshape-minus-one", lambda x: np.reshape(x, (-1,)), X),
    ("reshape-F", lambda x: np.reshape(x, (3, 2), order="F"), X),
    ("ravel", np.ravel, X),
    ("squeeze", np.squeeze, rand((1, 3, 1))),
    ("squeeze-axis", lambda x: np.squeeze(x, axis=0), rand((1, 3, 1))),
    ("expand_dims", lambda x: np.expand_dims(x, 1), X),
    ("transpose", np.transpose, X3),
    ("transpose-axes", lambda x: np.transpose(x, (1, 2, 0)), X3),
    ("transpose-negative", lambda x: np.transpose(x, (-1, 0, 1)), X3),
    ("swapaxes", lambda x: np.swapaxes(x, 0, 2), X3),
    ("moveaxis", lambda x: np.moveaxis(x, 0, -1), X3),
    ("moveaxis-many", lambda x: np.moveaxis(x, [0, 1], [2, 0]), X3),
    ("broadcast_to", lambda x: np.broadcast_to(x, (4, 2, 3)), X),
    ("broadcast_to-size-1", lambda x: np.broadcast_to(x, (2, 3)), rand((2, 1))),
    ("flip", np.flip, X),
    ("flip-axis", lambda x: np.flip(x, 1), X),
    ("flip-axes", lambda x: np.flip(x, (0, 2)), X3),
    ("roll", lambda x: np.roll(x, 2), X),
    ("roll-axis", lambda x: np.roll(x, -1, axis=1), X),
    ("roll-axes", lambda x: np.roll(x, (1, 2), axis=(0, 1)), X),
    ("tile-int", lambda x: np.tile(x, 2), X),
    ("tile-longer", lambda x: np.tile(x, (2, 1, 3)), X),
    ("tile-shorter", lambda x: np.tile(x, (2,)), X3),
    ("repeat-flat", lambda x: np.repeat(x, 2), X),
    ("repeat-axis", lambda x: np.repeat(x, 3, axis=1), X),
    ("repeat-counts", lambda x: np.repeat(x, [2, 0, 1], axis=-1), X),
    ("triu", np.triu, rand((3, 3))),
    ("tril", lambda x: np.tril(x, -1), rand((3, 3))),
    ("diagonal", np.diagonal, rand((3, 3))),
    ("diagonal-offset", lambda x: np.diagonal(x, 1), X),
    ("diagonal-negative-offset", lambda x: np.diagonal(x, -1), rand((3, 2))),
    ("diagonal-axes", lambda x: np.diagonal(x, 0, 1, 2), X3),
    ("trace", np.trace, rand((3, 3))),
    ("diff", np.diff, X),
    ("diff-n2-axis0", lambda x: np.diff(x, 2, axis=0), rand((4, 3))),
]


def _numpy_twin(name):
    """numpy's function of the same name (the case name up to its first '-')."""
    return getattr(numpy, name.split("-")[0])


@pytest.mark.parametrize("name, fun, x", SHAPE_CASES, ids=[c[0] for c in SHAPE_CASES])
def test_shape_functions(name, fun, x):
    check(fun, x)
    if fun in (np.ravel, np.squeeze, np.transpose, np.flip, np.triu, np.diagonal, np.trace):
        assert numpy.array_equal(fun(x), _numpy_twin(name)(x))


def test_values_of_the_numpy_twins():
    assert numpy.array_equal(np.tile(X, (2, 1, 3)), numpy.tile(X, (2, 1, 3)))
    assert numpy.array_equal(np.repeat(X, [2, 0, 1], axis=-1), numpy.repeat(X, [2, 0, 1], -1))
    assert numpy.array_equal(np.diagonal(X3, 0, 1, 2), numpy.diagonal(X3, 0, 1, 2))
    assert numpy.array_equal(np.diagonal(X, 1), numpy.diagonal(X, 1))
    assert numpy.array_equal(np.diagonal(X.T, -1), numpy.diagonal(X.T, -1))
    assert numpy.array_equal(np.diff(X, 2, axis=1), numpy.diff(X, 2, axis=1))
    assert numpy.array_equal(np.roll(X, (1, 2), axis=(0, 1)), numpy.roll(X, (1, 2), (0, 1)))


def test_repeat_and_tile_gradients_count_the_copies():
    x = numpy.array([1.0, 2.0, 3.0])
    g = tinyad.grad(lambda x: np.sum(np.repeat(x, [2, 0, 3])))(x)
    assert numpy.array_equal(g, [2.0, 0.0, 3.0])
    g = tinyad.grad(lambda x: np.sum(np.tile(x, (2, 2))))(x)
    assert numpy.array_equal(g, [4.0, 4.0, 4.0])


# ---- joining
A, B, C = rand((2, 3), seed=3), rand((1, 3), seed=4), rand((2, 3), seed=5)
V, W = rand((3,), seed=6), rand((2,), seed=7)

JOIN_CASES = [
    ("concatenate", lambda a, b: np.concatenate([a, b]), (A, B)),
    ("concatenate-axis1", lambda a, c: np.concatenate((a, c), axis=1), (A, C)),
    ("concatenate-axis-1", lambda a, c: np.concatenate([a, c, a], axis=-1), (A, C)),
    ("concatenate-none", lambda a, v: np.concatenate([a, v], axis=None), (A, V)),
    ("stack", lambda a, c: np.stack([a, c]), (A, C)),
    ("stack-axis1", lambda a, c: np.stack([a, c], axis=1), (A, C)),
    ("stack-axis-1", lambda a, c: np.stack([a, c, a], axis=-1), (A, C)),
    ("hstack-1d", lambda v, w: np.hstack([v, w]), (V, W)),
    ("hstack-2d", lambda a, c: np.hstack([a, c]), (A, C)),
    ("vstack-1d", lambda v: np.vstack([v, v * 2]), (V,)),
    ("vstack-2d", lambda a, b, v: np.vstack([a, b, v]), (A, B, V)),
]


@pytest.mark.parametrize("name, fun, args", JOIN_CASES, ids=[c[0] for c in JOIN_CASES])
def test_joining(name, fun, args):
    check(fun, *args)
    # hstack and vstack are written with concatenate (as numpy writes them): the tape shows it
    kind = name.split("-")[0]
    assert names_on_tape(fun, *args)[-1] == (
        "concatenate" if kind in ("hstack", "vstack") else kind
    )


def test_joining_traced_and_constant_arrays():
    const = numpy.ones((1, 3))
    check(lambda a: np.concatenate([const, a, const]), A)
    check(lambda v: np.stack([v, numpy.zeros(3)], axis=1), V)
    assert numpy.array_equal(np.vstack([A, B, V]), numpy.vstack([A, B, V]))
    assert numpy.array_equal(np.hstack([V, W]), numpy.hstack([V, W]))


def test_array_of_a_list_of_traced_values_stays_traced():
    def f(x):
        return np.sum(np.array([[x[0] ** 2, x[1]], [1.0, x[0] * x[1]]]) ** 2)

    check(f, numpy.array([0.7, -1.3]))
    seen = []
    tinyad.grad(lambda x: seen.append(np.asarray(x) is x and np.array(x) is x) or np.sum(x))(V)
    assert seen == [True]  # asarray / array of a traced value is the traced value itself


# ---- indexing
INDEXES = [
    ("int", 1),
    ("negative-int", -1),
    ("slice", slice(1, None)),
    ("step", (slice(None), slice(None, None, -2))),
    ("int-and-slice", (1, slice(0, 2))),
    ("none", (None, slice(None), 1)),
    ("ellipsis", (Ellipsis, 2)),
    ("int-array", numpy.array([1, 0])),
    ("int-array-repeated", (slice(None), numpy.array([2, 0, 2, 2]))),
    ("list", [1, 0, 1]),
    ("two-int-arrays", (numpy.array([0, 1, 1]), numpy.array([2, 0, 2]))),
    ("bool-mask", X3 > 0),
    ("bool-rows", numpy.array([True, False])),
]


@pytest.mark.parametrize("name, index", INDEXES, ids=[c[0] for c in INDEXES])
def test_indexing(name, index):
    check(lambda x: x[index], X3)
    assert numpy.array_equal(tinyad.vjp(lambda x: x[index], X3)[0], X3[index])


def test_repeated_integer_indices_add_up():
    x = numpy.array([1.0, 2.0, 3.0])
    g = tinyad.grad(lambda x: np.sum(x[numpy.array([0, 0, 2, 0])]))(x)
    assert numpy.array_equal(g, [3.0, 0.0, 1.0])


def test_indexing_is_named_and_iteration_gives_rows():
    assert names_on_tape(lambda x: x[0], X) == ["getitem"]
    check(lambda x: np.stack([row * k for k, row in enumerate(x)]), X)
    check(lambda x: sum(x) * 1.0, X)  # Python's sum iterates over rows


def test_astype_casts_and_only_float_casts_carry_gradient():
    x = numpy.array([1.5, 2.5])
    value, g = tinyad.value_and_grad(lambda x: np.sum(x.astype(numpy.float32) ** 2))(x)
    assert g.dtype == numpy.float64 and numpy.allclose(g, 2 * x)
    g = tinyad.grad(lambda x: np.sum(x.astype(int) * x))(x)
    assert numpy.array_equal(g, [1.0, 2.0])  # d/dx [int(x)·x] = int(x): no gradient through int


SCALARS = [numpy.float64(1.5), numpy.float32(-2.25), numpy.float16(0.5), numpy.int64(3)]


@pytest.mark.parametrize(
    "picks",
    [(0, 0, 0), (1, 1), (2, 1), (0, 1), (3, 1), (3, 2), (3, 0), (2,)],
    ids=lambda p: "-".join(type(SCALARS[i]).__name__ for i in p),
)
@pytest.mark.parametrize("axis", [0, -1])
def test_stack_of_numpy_scalars_is_numpys_stack(picks, axis):
    # Stacking numpy scalars (f = stack([y[1], -y[0]]) on a raw y) takes a faster path than
    # numpy.stack: the same values and the same promoted dtype, every mix of dtypes.
    xs = [SCALARS[i] for i in picks]
    got, want = np.stack(xs, axis=axis), numpy.stack(xs, axis=axis)
    assert got.dtype == want.dtype and got.shape == want.shape
    numpy.testing.assert_array_equal(got, want)
    mixed = np.stack([xs[0], numpy.array(2.0)])  # a 0-d array among them: numpy.stack's path
    assert mixed.dtype == numpy.stack([xs[0], numpy.array(2.0)]).dtype


def test_stack_takes_any_iterable_and_refuses_an_empty_one():
    # A generator is read once: the numpy-scalar check must not use it up.
    numpy.testing.assert_array_equal(np.stack(numpy.float64(i) for i in range(3)), [0, 1, 2])
    x = tinyad.numpy.array([1.0, 2.0])
    g = tinyad.grad(lambda x: np.sum(np.stack(x[i] * (i + 1) for i in range(2))))(x)
    numpy.testing.assert_array_equal(g, [1.0, 2.0])
    with pytest.raises(ValueError, match="at least one array"):
        np.stack([])


def test_stack_of_other_numpy_scalars_is_left_to_numpy():
    # Strings and dates promote differently in numpy.array: they keep numpy.stack's results
    # (no truncated string, the same refusal to mix a date with a number).
    xs = [numpy.bool_(True), numpy.uint8(200), numpy.str_("ab")]
    numpy.testing.assert_array_equal(np.stack(xs), numpy.stack(xs))
    assert np.stack(xs).dtype == numpy.stack(xs).dtype
    dated = [numpy.datetime64("2020-01-01"), numpy.int64(3)]
    with pytest.raises(TypeError) as want:
        numpy.stack(dated)
    with pytest.raises(type(want.value)):
        np.stack(dated)


def test_a_state_read_entry_by_entry_has_the_gradient_of_numpy_scalars_stacked():
    # The common way students write f: y[0], y[1], ... stacked back. Gradient against
    # central differences, at first and second order (the backward pass stacks too).
    f = lambda y: np.sum(np.stack([y[1] * y[2], -(y[0] ** 2), np.sin(y[2])]) ** 2)  # noqa: E731
    check(f, rand((3,), seed=4))
    check(tinyad.grad(f), rand((3,), seed=5))
