"""Shared helpers of the tinyad.numpy tests: inputs on a function's domain, and the check."""

import numpy
import pytest

import tinyad


def check(fun, *args, **kwargs):
    """Reverse mode against central finite differences, first and second order, and forward
    mode (jvp) against finite differences and against reverse mode (⟨u, Jv⟩ = ⟨uᵀJ, v⟩)."""
    tinyad.check_grads(fun, *args, order=2, **kwargs)
    check_jvp(fun, *args, argnum=kwargs.get("argnum"))


def _is_float_tree(x):
    leaves = tinyad.tree_flatten(x)[0]
    return bool(leaves) and all(numpy.asarray(v).dtype.kind == "f" for v in leaves)


def _tree_map(fun, *trees):
    return tinyad.tree_map(fun, *trees)


def check_jvp(fun, *args, argnum=None, eps=1e-6, rtol=1e-5, atol=1e-7):
    """jvp along a random tangent of every float argument (or those in argnum)."""
    rng = numpy.random.default_rng(1)
    if argnum is None:
        nums = [n for n, a in enumerate(args) if _is_float_tree(a)]
    else:
        nums = [argnum] if isinstance(argnum, int) else list(argnum)
    as64 = lambda a: _tree_map(lambda v: numpy.asarray(v, numpy.float64), a)
    args = [as64(a) if n in nums else a for n, a in enumerate(args)]

    def sub(*chosen):
        full = list(args)
        for n, x in zip(nums, chosen):
            full[n] = x
        return fun(*full)

    primals = tuple(args[n] for n in nums)
    tangents = tuple(_tree_map(lambda v: rng.standard_normal(numpy.shape(v)), x) for x in primals)
    out, t_out = tinyad.jvp(sub, primals, tangents)
    shifted = lambda s: tuple(
        _tree_map(lambda v, t: v + s * t, x, d) for x, d in zip(primals, tangents)
    )
    numeric = (numpy.asarray(sub(*shifted(eps))) - numpy.asarray(sub(*shifted(-eps)))) / (2 * eps)
    assert numpy.shape(t_out) == numpy.shape(out)
    numpy.testing.assert_allclose(
        t_out, numeric, rtol=rtol, atol=atol, err_msg="jvp vs finite differences"
    )
    u = rng.standard_normal(numpy.shape(out))
    cts = tinyad.vjp(sub, *primals)[1](u)
    pairs = zip(tinyad.tree_flatten(cts)[0], tinyad.tree_flatten(tangents)[0])
    reverse = sum(numpy.sum(c * v) for c, v in pairs)
    assert numpy.sum(u * t_out) == pytest.approx(reverse, rel=1e-9, abs=1e-12)


def rand(shape, domain="real", seed=0):
    """A float64 array (a 0-d array for shape ()) drawn on `domain`, away from its edges.

    real: N(0, 1); positive: (0.5, 2); unit: (-0.8, 0.8); above1: (1.2, 3);
    nonzero: ±(0.3, 1.5), so kinks at 0 (abs, sign) are far from the finite differences.
    """
    rng = numpy.random.default_rng(seed)
    if domain == "real":
        x = rng.standard_normal(shape)
    elif domain == "positive":
        x = rng.uniform(0.5, 2.0, shape)
    elif domain == "unit":
        x = rng.uniform(-0.8, 0.8, shape)
    elif domain == "above1":
        x = rng.uniform(1.2, 3.0, shape)
    elif domain == "nonzero":
        x = rng.uniform(0.3, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    else:
        raise ValueError(domain)
    return numpy.asarray(x, dtype=numpy.float64)


def well_conditioned(shape, seed=0):
    """Random square matrices (shape (..., n, n)) safely away from singular: A + n·I."""
    n = shape[-1]
    return rand(shape, seed=seed) + n * numpy.eye(n)


def names_on_tape(fun, *args):
    """The primitive names a trace of fun(*args) records, inputs left out."""
    tape = tinyad.trace(fun, *args)
    return [record[0].name for record in tape.records if record[0] is not None]
