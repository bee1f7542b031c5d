"""Products (dot, matmul, tensordot, einsum, outer, inner) and tinyad.numpy.linalg."""

import numpy
import pytest
from helpers_numpy import check, names_on_tape, rand, well_conditioned
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyad
import tinyad.numpy as np

DOT_SHAPES = [
    ((3,), (3,)),
    ((2, 3), (3,)),
    ((3,), (3, 2)),
    ((2, 3), (3, 4)),
    ((2, 2, 3), (3, 4)),
    ((2, 1, 2, 3), (3, 4)),  # a batch through a weight matrix: one GEMM in each vjp  # N-D · 2-D
    ((2, 3), (4, 3, 2)),  # 2-D · N-D: the second-to-last axis of b
    ((), (2, 3)),
    ((2, 3), ()),
]
MATMUL_SHAPES = [
    ((3,), (3,)),
    ((2, 3), (3,)),
    ((3,), (3, 2)),
    ((2, 3), (3, 4)),
    ((2, 2, 3), (3, 4)),
    ((2, 1, 2, 3), (3, 4)),  # a batch through a weight matrix: one GEMM in each vjp
    ((2, 3), (5, 3, 2)),
    ((5, 1, 2, 3), (4, 3, 2)),  # batch axes broadcast against each other
    ((3,), (2, 3, 4)),
    ((2, 4, 3), (3,)),
]


@pytest.mark.parametrize("sa, sb", DOT_SHAPES, ids=str)
def test_dot_follows_numpy_for_every_rank(sa, sb):
    a, b = rand(sa, seed=1), rand(sb, seed=2)
    assert numpy.allclose(np.dot(a, b), numpy.dot(a, b))
    check(np.dot, a, b)


@pytest.mark.parametrize("sa, sb", MATMUL_SHAPES, ids=str)
def test_matmul_with_vectors_and_batch_broadcasting(sa, sb):
    a, b = rand(sa, seed=1), rand(sb, seed=2)
    assert numpy.allclose(np.matmul(a, b), a @ b)
    check(np.matmul, a, b)
    check(lambda a, b: a @ b, a, b)


@pytest.mark.parametrize(
    "sa, sb, axes",
    [
        ((2, 3), (3, 4), 1),
        ((2, 3, 4), (3, 4, 2), 2),
        ((2, 3), (4,), 0),
        ((3, 2), (3, 4), ([0], [0])),
        ((2, 3, 4), (4, 5, 2), ([0, 2], [2, 0])),  # summed axes in a different order in b
        ((3, 4, 2), (2, 4, 3), ((0, 1), (2, 1))),
        ((2, 3), (2, 3), 2),
    ],
    ids=str,
)
def test_tensordot_with_int_and_pair_axes(sa, sb, axes):
    a, b = rand(sa, seed=1), rand(sb, seed=2)
    assert numpy.allclose(np.tensordot(a, b, axes), numpy.tensordot(a, b, axes))
    check(lambda a, b: np.tensordot(a, b, axes), a, b)
    check(lambda a, b: np.tensordot(a, b, axes=axes), a, b)


EINSUM = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("ij,jk", [(2, 3), (3, 4)]),  # implicit output
    ("ba", [(2, 3)]),  # implicit: a transpose
    ("ij->", [(2, 3)]),
    ("ij->j", [(2, 3)]),  # i only in the operand: broadcast back with ones
    ("ii->i", [(3, 3)]),  # a diagonal
    ("ii", [(3, 3)]),  # the trace
    ("iij->j", [(2, 2, 3)]),
    ("i,i->", [(3,), (3,)]),
    ("i,j->ij", [(3,), (2,)]),
    ("ij,ij->ij", [(2, 3), (2, 3)]),
    ("bij,bjk->bik", [(2, 2, 3), (2, 3, 2)]),
    ("...ij,...jk->...ik", [(2, 2, 3), (2, 3, 4)]),
    ("...ij,jk", [(5, 2, 3), (3, 4)]),  # '...' only in one operand, implicit output
    ("...i,...i->...", [(2, 1, 3), (4, 3)]),  # '...' broadcast with a size-1 axis
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("i,ij,j", [(2,), (2, 3), (3,)]),
]


@pytest.mark.parametrize("subscripts, shapes", EINSUM, ids=[c[0] for c in EINSUM])
def test_einsum_general_subscripts(subscripts, shapes):
    ops = [rand(s, seed=k) for k, s in enumerate(shapes)]
    assert numpy.allclose(np.einsum(subscripts, *ops), numpy.einsum(subscripts, *ops))
    check(lambda *ops: np.einsum(subscripts, *ops), *ops)


# numpy's sublist form: each operand followed by its axes as integers (Ellipsis for '...')
EINSUM_SUBLISTS = [
    ("matmul", [(2, 3), [0, 1], (3, 4), [1, 2], [0, 2]]),
    ("transpose", [(2, 3), [0, 1], [1, 0]]),
    ("ellipsis", [(2, 2, 3), [Ellipsis, 0], (3,), [0], [Ellipsis]]),
    ("three operands", [(2, 3), [0, 1], (3, 4), [1, 2], (4, 2), [2, 3], [0, 3]]),
]
# ... and some that autograd 1.9 cannot differentiate (it needs an output sublist, and a
# letter repeated or summed in the operand differentiated is mistranslated)
EINSUM_SUBLISTS_BEYOND_AUTOGRAD = [
    ("implicit output", [(2, 3), [0, 1], (3, 4), [1, 2]]),
    ("trace", [(3, 3), [0, 0]]),
    ("diagonal", [(3, 3), [1, 1], [1]]),
    ("sum over an axis", [(2, 3), [0, 1], [1]]),
]
_ALL_SUBLISTS = EINSUM_SUBLISTS + EINSUM_SUBLISTS_BEYOND_AUTOGRAD


def _sublist_args(spec):
    """The einsum arguments with each shape replaced by an array (seeded by its position)."""
    return [rand(a, seed=k) if isinstance(a, tuple) else a for k, a in enumerate(spec)]


@pytest.mark.parametrize("spec", [s for _, s in _ALL_SUBLISTS], ids=[n for n, _ in _ALL_SUBLISTS])
def test_einsum_sublist_form_forward_backward_and_second_order(spec):
    args = _sublist_args(spec)
    at = [k for k, a in enumerate(args) if isinstance(a, numpy.ndarray)]

    def f(*ops):
        full = list(args)
        for k, x in zip(at, ops, strict=True):
            full[k] = x
        return np.einsum(*full)

    ops = [args[k] for k in at]
    assert numpy.allclose(f(*ops), numpy.einsum(*args))
    check(f, *ops)


@pytest.mark.parametrize(
    "spec", [s for _, s in EINSUM_SUBLISTS], ids=[n for n, _ in EINSUM_SUBLISTS]
)
def test_einsum_sublist_gradient_matches_autograd(spec):
    autograd = pytest.importorskip("autograd")
    anp = pytest.importorskip("autograd.numpy")
    args = _sublist_args(spec)
    w = rand(numpy.einsum(*args).shape, seed=9)

    def loss(np_, x):
        return np_.sum(np_.einsum(x, *args[1:]) * w)

    ours = tinyad.grad(lambda x: loss(np, x))(args[0])
    theirs = autograd.grad(lambda x: loss(anp, x))(args[0])
    assert numpy.allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_outer_and_inner():
    check(np.outer, rand((3,), seed=1), rand((2,), seed=2))
    check(np.outer, rand((2, 2), seed=1), rand((3,), seed=2))
    check(np.inner, rand((3,), seed=1), rand((3,), seed=2))
    check(np.inner, rand((2, 3), seed=1), rand((4, 3), seed=2))
    a, b = rand((2, 3), seed=1), rand((4, 3), seed=2)
    assert numpy.allclose(np.inner(a, b), numpy.inner(a, b))


def test_products_are_named_as_in_numpy_on_the_tape():
    a, b = rand((2, 3)), rand((3,))
    assert names_on_tape(lambda a, b: a @ b, a, b) == ["matmul"]
    assert names_on_tape(np.dot, a, b) == ["dot"]
    assert names_on_tape(lambda a, b: np.einsum("ij,j", a, b), a, b) == ["einsum"]


# ---- linalg


@pytest.mark.parametrize("shape", [(3, 3), (2, 3, 3)], ids=str)
def test_inv_det_slogdet(shape):
    a = well_conditioned(shape, seed=1)
    assert numpy.allclose(np.linalg.inv(a), numpy.linalg.inv(a))
    check(np.linalg.inv, a)
    check(np.linalg.det, a)
    check(lambda a: np.linalg.slogdet(a)[1], a)
    check(lambda a: np.linalg.slogdet(a).logabsdet, a)


def test_slogdet_of_a_negative_determinant_and_its_sign():
    a = numpy.array([[0.0, 2.0], [1.5, 0.3]])  # det = -3
    sign, logabsdet = np.linalg.slogdet(a)
    assert sign == -1 and numpy.isclose(logabsdet, numpy.log(3.0))
    g = tinyad.grad(lambda a: np.linalg.slogdet(a)[1])(a)
    assert numpy.allclose(g, numpy.linalg.inv(a).T)
    check(lambda a: np.linalg.slogdet(a)[1], a)


@pytest.mark.parametrize(
    "sa, sb",
    [((3, 3), (3,)), ((3, 3), (3, 2)), ((2, 3, 3), (3,)), ((2, 3, 3), (2, 3, 2))],
    ids=str,
)
def test_solve(sa, sb):
    a, b = well_conditioned(sa, seed=1), rand(sb, seed=2)
    assert numpy.allclose(np.linalg.solve(a, b), numpy.linalg.solve(a, b))
    check(np.linalg.solve, a, b)


NORMS = [
    ((4,), {}),
    ((4,), {"ord": 1}),
    ((4,), {"ord": numpy.inf}),
    ((4,), {"ord": -numpy.inf}),
    ((4,), {"ord": 3}),
    ((4,), {"ord": 0.5}),
    ((2, 3, 2), {}),  # ord=None, axis=None: the 2-norm of every entry
    ((2, 3), {"ord": "fro"}),
    ((2, 3), {"ord": 1}),
    ((2, 3), {"ord": -1}),
    ((2, 3), {"ord": numpy.inf}),
    ((2, 3), {"ord": -numpy.inf}),
    ((2, 3), {"ord": 2}),
    ((3, 2), {"ord": -2}),
    ((2, 3), {"ord": "nuc"}),
    ((2, 3, 4), {"ord": 2, "axis": (2, 0)}),
    ((2, 3, 4), {"ord": "nuc", "axis": (1, 2), "keepdims": True}),
    ((2, 3), {"axis": 0}),
    ((2, 3), {"axis": 1, "keepdims": True}),
    ((2, 3), {"axis": -1, "ord": 1}),
    ((2, 3), {"axis": 1, "ord": numpy.inf}),
    ((2, 3, 2), {"axis": (0, 2)}),
    ((2, 3, 2), {"axis": (2, 0), "ord": 1, "keepdims": True}),
]


@pytest.mark.parametrize("shape, kw", NORMS, ids=[f"{s}-{kw}" for s, kw in NORMS])
def test_norm_for_common_ords_and_axes(shape, kw):
    x = rand(shape, "nonzero", seed=3)
    assert numpy.allclose(np.linalg.norm(x, **kw), numpy.linalg.norm(x, **kw))
    check(lambda x: np.linalg.norm(x, **kw), x)


def test_norm_gradient_at_zero_is_zero_not_nan():
    cases = [
        ((2, 3), {}),
        ((2, 3), {"axis": 1}),
        ((2, 3), {"ord": "fro"}),
        ((2, 3), {"ord": 1}),
        ((3,), {"ord": 1}),
        ((3,), {"ord": numpy.inf}),
        ((3,), {"ord": 3}),
    ]
    for shape, kw in cases:
        g = tinyad.grad(lambda x: np.sum(np.linalg.norm(x, **kw)))(numpy.zeros(shape))
        assert numpy.array_equal(g, numpy.zeros(shape)), kw
    h = tinyad.hessian(np.linalg.norm)(numpy.zeros(3))
    assert numpy.all(numpy.isfinite(h))


def test_norm_inf_splits_ties_and_spectral_norm_is_u1_v1():
    g = tinyad.grad(lambda x: np.linalg.norm(x, numpy.inf))(numpy.array([1.0, -3.0, 3.0]))
    assert numpy.array_equal(g, [0.0, -0.5, 0.5])
    X = numpy.array([[3.0, 1.0], [0.0, 2.0]])
    u, s, vh = numpy.linalg.svd(X)
    g = tinyad.grad(lambda x: np.linalg.norm(x, 2))(X)
    numpy.testing.assert_allclose(g, numpy.outer(u[:, 0], vh[0]), rtol=1e-12)
    numpy.testing.assert_allclose(tinyad.grad(lambda x: np.linalg.norm(x, "nuc"))(X), u @ vh)


def test_linalg_refuses_what_it_does_not_provide():
    with pytest.raises(AttributeError, match="qr"):
        np.linalg.qr  # noqa: B018


def test_float32_linalg_stays_float32():
    a = well_conditioned((3, 3)).astype(numpy.float32)
    for fun in [np.linalg.det, np.linalg.norm, lambda a: np.sum(np.linalg.inv(a) @ a.T)]:
        value, g = tinyad.value_and_grad(fun)(a)
        assert value.dtype == numpy.float32 and g.dtype == numpy.float32


@settings(max_examples=15, deadline=None)
@given(m=st.integers(1, 4), n=st.integers(1, 4), k=st.integers(1, 4), seed=st.integers(0, 99))
def test_hypothesis_matmul_gradients_are_the_textbook_ones(m, n, k, seed):
    """d/dA Σ (A B)∘G = G Bᵀ and d/dB = Aᵀ G for any sizes."""
    a, b, g = rand((m, n), seed=seed), rand((n, k), seed=seed + 1), rand((m, k), seed=seed + 2)
    ga, gb = tinyad.grad(lambda a, b: np.sum((a @ b) * g), argnum=(0, 1))(a, b)
    assert numpy.allclose(ga, g @ b.T) and numpy.allclose(gb, a.T @ g)


@pytest.mark.parametrize("sa, sb", [((2, 3, 4), (4, 0)), ((2, 3, 0), (0, 5)), ((0, 3, 4), (4, 2))])
def test_matmul_vjps_of_a_batch_through_a_weight_with_a_zero_size(sa, sb):
    # The one-GEMM vjps reshape the batch to rows: with no entries the row count is 0, not -1
    a, b = numpy.ones(sa), numpy.ones(sb)
    ga, gb = tinyad.grad(lambda a, b: np.sum(np.matmul(a, b)), argnum=(0, 1))(a, b)
    numpy.testing.assert_array_equal(ga, numpy.ones(sb).sum(1) * numpy.ones(sa))
    rows = numpy.ones(sa).sum(axis=tuple(range(len(sa) - 1)))  # Σ over the batch and rows of a
    numpy.testing.assert_array_equal(gb, rows[:, None] * numpy.ones(sb))


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize(
    "sa, sb", [((20, 2), (2, 50)), ((20, 50), (50, 2)), ((1, 7), (7, 1)), ((20, 1, 2), (2, 50))]
)
def test_matmul_vjps_of_matrices_are_numpys_products_bit_for_bit(sa, sb, dtype):
    # Where both factors are matrices the vjps use numpy.dot (cheaper than @ on small ones):
    # the numbers must be matmul's own, G Bᵀ and Aᵀ G, to the last bit, in each layout
    rng = numpy.random.default_rng(len(sa) + sb[1])
    a, b = rng.normal(size=sa).astype(dtype), rng.normal(size=sb).astype(dtype)
    g = rng.normal(size=sa[:-1] + sb[-1:]).astype(dtype)
    for b_in in (b, numpy.asfortranarray(b)):
        _, pull = tinyad.vjp(np.matmul, a, b_in)
        ga, gb = pull(g)
        rows = g.reshape(-1, sb[-1])
        numpy.testing.assert_array_equal(ga, numpy.matmul(rows, b_in.T).reshape(sa))
        numpy.testing.assert_array_equal(gb, numpy.matmul(a.reshape(-1, sa[-1]).T, rows))
