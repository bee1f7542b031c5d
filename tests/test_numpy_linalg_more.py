"""cholesky, eigh, svd and pinv: values as numpy's, gradients to second order, autograd's.

eigh and svd are checked through functions that do not depend on the sign of each
eigenvector or singular pair (their docstrings' convention); cholesky and eigh read one
triangle of their argument, as numpy does, so finite differences see that triangle only.
"""

import autograd
import autograd.numpy as anp
import numpy
import pytest
from helpers_numpy import check, names_on_tape, rand
from test_backend import same_as_numpy

import tinyad
import tinyad.numpy as np


def spd(shape, seed=0):
    """Random symmetric positive definite matrices (…, n, n): B Bᵀ + n·I."""
    b = rand(shape, seed=seed)
    return b @ numpy.swapaxes(b, -1, -2) + shape[-1] * numpy.eye(shape[-1])


def t(x):
    return x.swapaxes(-1, -2)


SQUARE_SHAPES = [(3, 3), (2, 4, 4)]
SVD_SHAPES = [(3, 3), (4, 2), (2, 4), (2, 3, 2), (2, 2, 3)]


# ---- cholesky


@pytest.mark.parametrize("shape", SQUARE_SHAPES, ids=str)
@pytest.mark.parametrize("upper", [False, True])
def test_cholesky(shape, upper):
    a = spd(shape, seed=1)
    numpy.testing.assert_allclose(
        np.linalg.cholesky(a, upper=upper), numpy.linalg.cholesky(a, upper=upper), rtol=1e-14
    )
    check(lambda a: np.linalg.cholesky(a, upper=upper), a)


def test_cholesky_reads_the_lower_triangle_and_its_gradient_stays_there():
    a = spd((3, 3), seed=2)
    g = tinyad.grad(lambda a: np.sum(np.linalg.cholesky(a) ** 3))(a)
    assert numpy.array_equal(numpy.triu(g, 1), numpy.zeros((3, 3)))
    assert numpy.all(g[numpy.tril_indices(3)] != 0)
    # a symmetric parametrisation a = b + bᵀ: the chain rule gives the symmetric gradient
    b = numpy.tril(a) - numpy.diag(numpy.diag(a)) / 2

    def via_b(m, b):
        return m.sum(m.linalg.cholesky(b + b.T) ** 3)

    numpy.testing.assert_allclose(
        tinyad.grad(lambda b: via_b(np, b))(b),
        autograd.grad(lambda b: via_b(anp, b))(b),
        rtol=1e-10,
    )


# ---- eigh


def sin_of(m, a, uplo="L"):
    """V diag(sin w) Vᵀ: the matrix function sin(a), independent of the eigenvectors' signs."""
    w, v = m.linalg.eigh(a, UPLO=uplo)
    return (v * m.sin(w)[..., None, :]) @ m.swapaxes(v, -1, -2)


EIGH_FUNCTIONS = [
    ("eigenvalues", lambda m, a: m.linalg.eigh(a)[0]),
    ("eigenvalues-squared-sum", lambda m, a: m.sum(m.linalg.eigh(a)[0] ** 2)),
    ("upper", lambda m, a: m.linalg.eigh(a, UPLO="U")[0]),
    ("matrix-function", sin_of),
    ("matrix-function-upper", lambda m, a: sin_of(m, a, "U")),
    ("abs-eigenvectors", lambda m, a: m.abs(m.linalg.eigh(a)[1])),
    (
        "projector",
        lambda m, a: m.linalg.eigh(a)[1][..., :, :1] * m.linalg.eigh(a)[1][..., None, :, 0],
    ),
]


@pytest.mark.parametrize("shape", SQUARE_SHAPES, ids=str)
@pytest.mark.parametrize("name, f", EIGH_FUNCTIONS, ids=[c[0] for c in EIGH_FUNCTIONS])
def test_eigh_gauge_invariant_functions(name, f, shape):
    a = rand(shape, seed=3)  # not symmetric: numpy reads one triangle, and so do we
    numpy.testing.assert_allclose(f(np, a), f(numpy, a), rtol=1e-12, atol=1e-14)
    check(lambda a: f(np, a), a)


@pytest.mark.parametrize("name, f", EIGH_FUNCTIONS, ids=[c[0] for c in EIGH_FUNCTIONS])
def test_eigh_gradients_are_autograds_for_symmetric_parametrisations(name, f):
    b = rand((4, 4), seed=4)  # a = (b + bᵀ)/2: both conventions agree on the gradient in b
    w = rand(numpy.shape(f(numpy, b)), seed=5)

    def loss(m, b):
        return m.sum(f(m, (b + m.swapaxes(b, -1, -2)) / 2) * w)

    numpy.testing.assert_allclose(
        tinyad.grad(lambda b: loss(np, b))(b),
        autograd.grad(lambda b: loss(anp, b))(b),
        rtol=1e-9,
        atol=1e-12,
    )


def test_eigh_values_vectors_and_gradient_convention():
    a = rand((4, 4), seed=6)
    w, v = np.linalg.eigh(a)
    nw, nv = numpy.linalg.eigh(a)
    numpy.testing.assert_array_equal(w, nw)
    numpy.testing.assert_array_equal(v, nv)
    traced = []
    tinyad.grad(lambda a: traced.append(np.linalg.eigh(a)) or np.sum(a))(a)
    assert traced[0]._fields == ("eigenvalues", "eigenvectors") == numpy.linalg.eigh(a)._fields
    assert names_on_tape(lambda a: np.linalg.eigh(a)[0], a)[0] == "eigh"
    g = tinyad.grad(lambda a: np.sum(sin_of(np, a) * rand((4, 4), seed=1)))(a)
    assert numpy.array_equal(numpy.triu(g, 1), numpy.zeros((4, 4)))  # the triangle read
    g = tinyad.grad(lambda a: np.sum(np.linalg.eigh(a, "U")[0] ** 3))(a)
    assert numpy.array_equal(numpy.tril(g, -1), numpy.zeros((4, 4)))


def test_eigh_with_exactly_repeated_eigenvalues():
    a = numpy.diag([1.0, 1.0, 3.0])  # eigh gives exactly (1, 1, 3): the tied terms are dropped
    assert numpy.array_equal(numpy.linalg.eigh(a)[0], [1.0, 1.0, 3.0])
    # Σ w² = ‖a‖²_F for a symmetric a: the gradient of the lower triangle read is exact
    g = tinyad.grad(lambda a: np.sum(np.linalg.eigh(a)[0] ** 2))(a)
    numpy.testing.assert_array_equal(g, 4 * numpy.tril(a) - 2 * numpy.diag(numpy.diag(a)))
    numpy.testing.assert_array_equal(
        tinyad.grad(lambda a: np.sum(np.linalg.eigh(a)[0]))(numpy.eye(3)), numpy.eye(3)
    )

    # the projectors onto whole eigenspaces are smooth in a: finite differences agree
    def projector(a, columns):
        v = np.linalg.eigh(a)[1][:, columns]
        return v @ v.T

    tinyad.check_grads(lambda a: projector(a, slice(0, 2)), a)  # of the repeated eigenvalue
    tinyad.check_grads(lambda a: projector(a, slice(2, 3)), a)


# ---- svd


def reconstruction(m, a):
    """U diag(exp s) Vh: independent of the signs of the singular pairs."""
    u, s, vh = m.linalg.svd(a, full_matrices=False)
    return (u * m.exp(s)[..., None, :]) @ vh


SVD_FUNCTIONS = [
    ("singular-values", lambda m, a: m.linalg.svd(a, compute_uv=False)),
    ("singular-values-of-the-pairs", lambda m, a: m.linalg.svd(a, full_matrices=False)[1]),
    ("reconstruction", reconstruction),
    ("abs-U", lambda m, a: m.abs(m.linalg.svd(a, full_matrices=False)[0])),
    ("abs-Vh", lambda m, a: m.abs(m.linalg.svd(a, full_matrices=False)[2])),
    (
        "first-pair",
        lambda m, a: (
            m.linalg.svd(a, full_matrices=False)[0][..., :, :1]
            * m.linalg.svd(a, full_matrices=False)[2][..., :1, :]
        ),
    ),
]


@pytest.mark.parametrize("shape", SVD_SHAPES, ids=str)
@pytest.mark.parametrize("name, f", SVD_FUNCTIONS, ids=[c[0] for c in SVD_FUNCTIONS])
def test_svd_gauge_invariant_functions(name, f, shape):
    a = rand(shape, seed=8)
    numpy.testing.assert_allclose(f(np, a), f(numpy, a), rtol=1e-12, atol=1e-14)
    check(lambda a: f(np, a), a)
    w = rand(numpy.shape(f(numpy, a)), seed=9)
    numpy.testing.assert_allclose(
        tinyad.grad(lambda a: np.sum(f(np, a) * w))(a),
        autograd.grad(lambda a: anp.sum(f(anp, a) * w))(a),
        rtol=1e-9,
        atol=1e-12,
    )


def test_svd_values_and_conventions():
    a = rand((4, 3), seed=10)
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    nu, ns, nvh = numpy.linalg.svd(a, full_matrices=False)
    for ours, theirs in [(u, nu), (s, ns), (vh, nvh)]:
        numpy.testing.assert_array_equal(ours, theirs)
    traced = []
    tinyad.grad(lambda a: traced.append(np.linalg.svd(a, full_matrices=False)) or np.sum(a))(a)
    assert traced[0]._fields == ("U", "S", "Vh") == numpy.linalg.svd(a)._fields
    assert names_on_tape(lambda a: np.linalg.svd(a, compute_uv=False), a)[0] == "svd"
    with pytest.raises(NotImplementedError, match="full_matrices=False"):
        tinyad.grad(lambda a: np.sum(np.linalg.svd(a)[0]))(a)  # numpy's default, non-square
    check(lambda a: reconstruction(np, a) + np.linalg.svd(a)[1], rand((3, 3), seed=11))  # square
    with pytest.raises(NotImplementedError, match="hermitian"):
        tinyad.grad(lambda a: np.sum(np.linalg.svd(a, hermitian=True)[1]))(spd((3, 3)))
    assert numpy.array_equal(np.linalg.svd(a)[0], numpy.linalg.svd(a)[0])  # raw: numpy's own


def test_singular_value_gradients_stay_finite_at_repeated_and_zero_singular_values():
    a = numpy.zeros((4, 3))
    a[0, 0] = a[1, 1] = 2.0  # s = (2, 2, 0)
    g = tinyad.grad(lambda a: np.sum(np.linalg.svd(a, full_matrices=False)[1] ** 2))(a)
    numpy.testing.assert_allclose(g, 2 * a, atol=1e-14)  # Σ s² = ‖a‖²_F


# ---- pinv


@pytest.mark.parametrize("shape", SVD_SHAPES, ids=str)
def test_pinv(shape):
    a = rand(shape, seed=12)
    numpy.testing.assert_allclose(np.linalg.pinv(a), numpy.linalg.pinv(a), rtol=1e-12)
    check(np.linalg.pinv, a)
    w = rand(numpy.shape(numpy.linalg.pinv(a)), seed=13)
    numpy.testing.assert_allclose(
        tinyad.grad(lambda a: np.sum(np.linalg.pinv(a) * w))(a),
        autograd.grad(lambda a: anp.sum(anp.linalg.pinv(a) * w))(a),
        rtol=1e-10,
    )


def test_pinv_of_an_invertible_matrix_is_its_inverse_and_options_pass_through():
    a = spd((3, 3), seed=14) + rand((3, 3), seed=15)
    numpy.testing.assert_allclose(
        tinyad.grad(lambda a: np.sum(np.linalg.pinv(a) ** 2))(a),
        tinyad.grad(lambda a: np.sum(np.linalg.inv(a) ** 2))(a),
        rtol=1e-9,
    )
    for kw in [{"rcond": 1e-10}, {"rtol": None}, {"rtol": 1e-8}, {"hermitian": True}]:
        numpy.testing.assert_allclose(
            np.linalg.pinv(a, **kw), numpy.linalg.pinv(a, **kw), rtol=1e-12, err_msg=str(kw)
        )
    check(lambda a: np.linalg.pinv(a, hermitian=True), a)  # reads the lower triangle, as numpy


# ---- all four


CASES = [
    ("cholesky", np.linalg.cholesky, spd((2, 3, 3), seed=16)),
    ("cholesky-upper", lambda a: np.linalg.cholesky(a, upper=True), spd((3, 3), seed=16)),
    (
        "eigh",
        lambda a: sin_of(np, a) + np.linalg.eigh(a)[0][..., None, :],
        rand((2, 3, 3), seed=17),
    ),
    ("svd", lambda a: reconstruction(np, a), rand((2, 4, 3), seed=18)),
    ("svd-values", lambda a: np.linalg.svd(a, compute_uv=False), rand((3, 4), seed=19)),
    ("pinv", np.linalg.pinv, rand((2, 3, 4), seed=20)),
]


@pytest.mark.parametrize("name, f, a", CASES, ids=[c[0] for c in CASES])
def test_on_the_strict_device_stand_in(name, f, a):
    same_as_numpy(f, a)


@pytest.mark.parametrize("name, f, a", CASES, ids=[c[0] for c in CASES])
def test_float32_stays_float32(name, f, a):
    value, g = tinyad.value_and_grad(lambda a: np.sum(f(a)))(a.astype(numpy.float32))
    assert value.dtype == numpy.float32 and g.dtype == numpy.float32


def test_complex_matrices_are_refused_by_name():
    a = spd((2, 2))
    for name in ["cholesky", "eigh", "svd"]:
        fun = getattr(np.linalg, name)
        with pytest.raises(TypeError, match=f"{name}: complex"):
            tinyad.grad(lambda a, fun=fun: np.sum(np.abs(fun(a * (1 + 1j))[0])))(a)
