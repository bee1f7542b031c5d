"""Autograder for the assignment: pytest tests of the functions a notebook defines.

    ASSIGNMENT_NOTEBOOK=path/to/submission.ipynb python -m pytest tutorials/assignment/autograder.py

Without ASSIGNMENT_NOTEBOOK it grades the solution (`assignment.ipynb` next to this file),
which must pass. Each test is one graded item; an unfinished item fails with the
NotImplementedError of its stub.

How the notebook is read: its code cells run in order in one fresh module, in this process
(IPython `%magic` and `!shell` lines are skipped). A cell that raises, such as a self-check
cell of an unfinished notebook, is noted and skipped, so every function the notebook defines
is still graded on its own. Each primitive is checked against numpy on values and with
`tinyad.check_grads(..., order=2)` (first and second derivatives against finite differences)
on more cases than the notebook shows; the augmented dynamics are checked pointwise against
Jacobians, then by solving them backwards and comparing with backprop through the solver.
"""

import linecache
import os
import types

import nbformat
import numpy as onp
import pytest

import tinyad
import tinyad.numpy as np
import tinyode

HERE = os.path.dirname(os.path.abspath(__file__))
NOTEBOOK = os.environ.get("ASSIGNMENT_NOTEBOOK", os.path.join(HERE, "assignment.ipynb"))


def load_notebook(path):
    """Run the code cells of the notebook at `path` in a fresh module.

    Returns `(module, errors)`: the module holds everything the cells defined; `errors`
    lists `(cell number, exception)` for each cell that raised.
    """
    nb = nbformat.read(path, as_version=4)
    module = types.ModuleType("submission")
    module.__file__ = os.path.abspath(path)
    errors = []
    for number, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        source = "".join(
            line
            for line in cell.source.splitlines(keepends=True)
            if not line.lstrip().startswith(("%", "!"))
        )
        filename = f"<{os.path.basename(path)} cell {number}>"
        # Let tracebacks show the notebook's lines.
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
        try:
            exec(compile(source, filename, "exec"), module.__dict__)
        except Exception as e:  # a failing cell must not stop the grading of the others
            errors.append((number, e))
    return module, errors


@pytest.fixture(scope="module")
def nb():
    module, errors = load_notebook(NOTEBOOK)
    module.cell_errors = errors
    return module


def get(nb, name):
    """The notebook's `name`, or a failure that says it is missing (and which cells failed)."""
    if not hasattr(nb, name):
        failed = "; ".join(f"cell {n}: {type(e).__name__}: {e}" for n, e in nb.cell_errors)
        pytest.fail(
            f"the notebook does not define {name!r}"
            + (f" (cells that raised: {failed})" if failed else "")
        )
    return getattr(nb, name)


def shapes_id(value):
    """Readable test ids: (3, 4) -> 3x4, () -> scalar."""
    if isinstance(value, tuple):
        return "x".join(map(str, value)) or "scalar"
    return None


def rand(*shape, seed=0):
    return onp.random.default_rng(seed).standard_normal(shape)


# ---------------------------------------------------------------- part 1: primitives


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 2)], ids=shapes_id)
def test_tanh(nb, shape):
    my_tanh = get(nb, "my_tanh")
    x = rand(*shape)
    onp.testing.assert_allclose(my_tanh(x), onp.tanh(x), rtol=1e-12)
    tinyad.check_grads(my_tanh, x, order=2)


@pytest.mark.parametrize(
    "a_shape, b_shape", [((3, 4), (4, 2)), ((1, 5), (5, 1)), ((4, 4), (4, 3))], ids=shapes_id
)
def test_matmul(nb, a_shape, b_shape):
    my_matmul = get(nb, "my_matmul")
    A, B = rand(*a_shape, seed=1), rand(*b_shape, seed=2)
    onp.testing.assert_allclose(my_matmul(A, B), A @ B, rtol=1e-12)
    tinyad.check_grads(my_matmul, A, B, order=2)


@pytest.mark.parametrize(
    "shape, axis, keepdims",
    [
        ((3, 4), None, False),
        ((3, 4), 0, False),
        ((3, 4), 1, False),
        ((3, 4), -1, True),
        ((3, 4), None, True),
        ((2, 3, 4), 1, False),
        ((2, 3, 4), 2, True),
        ((5,), 0, False),
    ],
    ids=shapes_id,
)
def test_sum(nb, shape, axis, keepdims):
    my_sum = get(nb, "my_sum")
    x = rand(*shape, seed=3)
    expected = onp.sum(x, axis=axis, keepdims=keepdims)
    got = my_sum(x, axis=axis, keepdims=keepdims)
    assert onp.shape(got) == expected.shape
    onp.testing.assert_allclose(got, expected, rtol=1e-12)
    tinyad.check_grads(lambda x: my_sum(x, axis=axis, keepdims=keepdims), x, order=2)


def _logsumexp(x, axis=None, keepdims=False):
    m = onp.max(x, axis=axis, keepdims=True)
    out = m + onp.log(onp.sum(onp.exp(x - m), axis=axis, keepdims=True))
    return out if keepdims else onp.squeeze(out, axis=axis)


def test_logsumexp_is_stable(nb):
    my_logsumexp = get(nb, "my_logsumexp")
    x = onp.array([[1000.0, 1000.0, 999.0], [-1000.0, -1001.0, -1000.0]])
    with onp.errstate(over="raise", under="ignore"):
        got = my_logsumexp(x, axis=1)
    onp.testing.assert_allclose(got, _logsumexp(x, axis=1), rtol=1e-12)
    tinyad.check_grads(lambda x: my_logsumexp(x, axis=1), x, order=2)


@pytest.mark.parametrize(
    "shape, axis, keepdims",
    [
        ((5,), None, False),
        ((3, 4), None, False),
        ((3, 4), 0, False),
        ((3, 4), 1, True),
        ((2, 3, 4), -1, False),
        ((2, 3, 4), 1, True),
    ],
    ids=shapes_id,
)
def test_logsumexp(nb, shape, axis, keepdims):
    my_logsumexp = get(nb, "my_logsumexp")
    x = rand(*shape, seed=4)
    expected = _logsumexp(x, axis=axis, keepdims=keepdims)
    got = my_logsumexp(x, axis=axis, keepdims=keepdims)
    assert onp.shape(got) == expected.shape
    onp.testing.assert_allclose(got, expected, rtol=1e-12)
    tinyad.check_grads(lambda x: my_logsumexp(x, axis=axis, keepdims=keepdims), x, order=2)


@pytest.mark.parametrize(
    "g_shape, shape",
    [
        ((2, 3, 4), (3, 4)),
        ((2, 3, 4), (3, 1)),
        ((3, 4), (1, 4)),
        ((3, 4), ()),
        ((3, 4), (3, 4)),
        ((2, 3, 4), (2, 1, 4)),
    ],
    ids=shapes_id,
)
def test_unbroadcast(nb, g_shape, shape):
    unbroadcast = get(nb, "unbroadcast")
    g = rand(*g_shape, seed=5)
    lead = len(g_shape) - len(shape)
    axes = tuple(range(lead)) + tuple(lead + k for k, n in enumerate(shape) if n == 1)
    expected = g.sum(axis=axes, keepdims=True).reshape(shape)
    got = unbroadcast(g, shape)
    assert onp.shape(got) == shape
    onp.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize(
    "x_shape, y_shape",
    [
        ((3, 4), (4,)),
        ((3, 1), (1, 4)),
        ((2, 3, 4), (3, 1)),
        ((4,), (3, 4)),
        ((3, 4), ()),
        ((2, 3), (2, 3)),
    ],
    ids=shapes_id,
)
def test_add(nb, x_shape, y_shape):
    my_add = get(nb, "my_add")
    vjp_x, vjp_y = get(nb, "my_add_vjp_x"), get(nb, "my_add_vjp_y")
    x, y = rand(*x_shape, seed=6), rand(*y_shape, seed=7)
    ans = my_add(x, y)
    onp.testing.assert_allclose(ans, x + y, rtol=1e-12)
    g = rand(*ans.shape, seed=8)
    # The vjps themselves must undo the broadcasting (the core would otherwise hide it).
    for name, vjp, shape in (("my_add_vjp_x", vjp_x, x_shape), ("my_add_vjp_y", vjp_y, y_shape)):
        got = onp.shape(vjp(g, ans, x, y))
        assert got == shape, f"{name} returned shape {got}; the argument has shape {shape}"
    tinyad.check_grads(my_add, x, y, order=2)


# ---------------------------------------------------------------- part 2: the adjoint


def _reference_augmented(f, s, t, theta):
    """[f, -aᵀ ∂f/∂z, -aᵀ ∂f/∂θ] from full Jacobians: a different route to the same vector."""
    n = (s.size - theta.size) // 2
    z, a = s[:n], s[n : 2 * n]
    J_z = tinyad.jacobian(lambda z: f(z, t, theta))(z)
    J_theta = tinyad.jacobian(lambda theta: f(z, t, theta))(theta)
    return onp.concatenate([f(z, t, theta), -a @ J_z, -a @ J_theta])


@pytest.mark.parametrize("seed", [0, 1])
def test_augmented_dynamics_pointwise(nb, seed):
    augmented_dynamics, f = get(nb, "augmented_dynamics"), get(nb, "f")
    n, p = get(nb, "D"), get(nb, "P")
    rng = onp.random.default_rng(seed)
    theta = 0.5 * rng.standard_normal(p)
    s = rng.standard_normal(2 * n + p)
    t = float(rng.uniform(0, 1))
    got = onp.asarray(augmented_dynamics(s, t, theta))
    assert got.shape == s.shape, f"augmented_dynamics returned shape {got.shape}, not {s.shape}"
    onp.testing.assert_allclose(got, _reference_augmented(f, s, t, theta), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 3])
def test_augmented_dynamics_gives_the_gradient(nb, seed):
    augmented_dynamics, f = get(nb, "augmented_dynamics"), get(nb, "f")
    n, p = get(nb, "D"), get(nb, "P")
    rng = onp.random.default_rng(seed)
    theta = 0.5 * rng.standard_normal(p)
    z0 = rng.standard_normal(n)
    w = rng.standard_normal(n)  # L = w . z(t1) + ½|z(t1)|²
    t = onp.array([0.0, 0.8])
    tol = dict(rtol=1e-10, atol=1e-10)

    def loss(z0, theta):
        z1 = tinyode.odeint(f, z0, t, theta, gradient="backprop", **tol)[-1]
        return np.sum(w * z1) + 0.5 * np.sum(z1**2)

    dL_dz0, dL_dtheta = tinyad.grad(loss, argnum=(0, 1))(z0, theta)
    z1 = tinyode.odeint(f, z0, t, theta, **tol)[-1]
    s1 = onp.concatenate([z1, w + z1, onp.zeros(p)])
    s0 = onp.asarray(tinyode.odeint(augmented_dynamics, s1, t[::-1], theta, **tol)[-1])
    onp.testing.assert_allclose(s0[:n], z0, rtol=0, atol=1e-7, err_msg="z(t0) not recovered")
    onp.testing.assert_allclose(
        s0[n : 2 * n], dL_dz0, rtol=1e-6, atol=1e-8, err_msg="a(t0) is not dL/dz0"
    )
    onp.testing.assert_allclose(
        s0[2 * n :], dL_dtheta, rtol=1e-6, atol=1e-8, err_msg="the last part is not dL/dθ"
    )
