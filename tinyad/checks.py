"""Finite differences, and `check_grads`: what an autograder calls."""

import numpy

from .core import getval
from .transforms import grad
from .tree import tree_flatten, tree_unflatten

__all__ = ["numerical_grad", "check_grads"]


def numerical_grad(fun, *args, argnum=0, eps=1e-6):
    """Central differences (f(x + eps·e_i) − f(x − eps·e_i)) / 2eps for each entry of args[argnum].

    `fun` must return a scalar; the result has the structure of args[argnum].
    """
    leaves, treedef = tree_flatten(args[argnum])
    leaves = [numpy.asarray(getval(x)) for x in leaves]

    def f_at(k, x):
        trial = list(leaves)
        trial[k] = x
        full = list(args)
        full[argnum] = tree_unflatten(treedef, trial)
        return float(numpy.asarray(getval(fun(*full))))

    grads = []
    for k, leaf in enumerate(leaves):
        g = numpy.zeros(leaf.shape, dtype=numpy.result_type(leaf.dtype, numpy.float32))
        flat = g.reshape(-1)
        for i in range(leaf.size):
            step = numpy.zeros(leaf.size, leaf.dtype)
            step[i] = eps
            step = step.reshape(leaf.shape)
            flat[i] = (f_at(k, leaf + step) - f_at(k, leaf - step)) / (2 * eps)
        grads.append(g)
    return tree_unflatten(treedef, grads)


def _is_float(x):
    return isinstance(x, float) or getattr(getattr(x, "dtype", None), "kind", None) == "f"


def _as_float64(tree):
    """Float leaves promoted to float64 (finite differences need the digits); others as is."""
    leaves, treedef = tree_flatten(tree)
    return tree_unflatten(
        treedef, [numpy.asarray(x, dtype=numpy.float64) if _is_float(x) else x for x in leaves]
    )


def _scalarize(fun, out_example, rng):
    """A scalar function L = Σ v ⊙ fun(...) with a fixed random v, so any output can be checked."""
    shape = numpy.shape(out_example)
    if shape == ():
        return fun
    v = rng.standard_normal(shape)

    def scalar_fun(*args):
        from . import numpy as np

        return np.sum(fun(*args) * v)

    return scalar_fun


def _compare(rev, num, what, rtol, atol):
    rev_leaves, _ = tree_flatten(rev)
    num_leaves, _ = tree_flatten(num)
    for k, (r, n) in enumerate(zip(rev_leaves, num_leaves)):
        r = numpy.asarray(getval(r), dtype=numpy.float64)
        n = numpy.asarray(n, dtype=numpy.float64)
        if r.shape != n.shape:
            raise AssertionError(
                f"{what}: gradient has shape {r.shape}, but the argument has shape {n.shape}"
            )
        bad = numpy.abs(r - n) - (atol + rtol * numpy.abs(n))
        if bad.size and (not numpy.all(numpy.isfinite(r)) or bad.max() > 0):
            i = numpy.unravel_index(
                numpy.nanargmax(numpy.where(numpy.isfinite(r), bad, numpy.inf)), r.shape
            )
            rel = abs(r[i] - n[i]) / max(abs(n[i]), 1e-300)
            leaf = f", leaf {k}" if len(rev_leaves) > 1 else ""
            raise AssertionError(
                f"{what}{leaf}: reverse mode and finite differences disagree; worst entry "
                f"{tuple(int(j) for j in i)}: reverse {float(r[i]):.8g}, numerical "
                f"{float(n[i]):.8g}, relative error {rel:.3g} (rtol={rtol}, atol={atol})"
            )


def check_grads(fun, *args, argnum=None, order=1, eps=1e-6, rtol=1e-5, atol=1e-8):
    """Assert that reverse mode matches central finite differences; returns None.

    Checks every positional float argument (or those in `argnum`). A non-scalar `fun` is
    checked through L = Σ v ⊙ fun with a fixed random v. With order=2, also checks
    the gradient of the directional derivative uᵀ∇L (the vjp of each vjp).
    Inputs are promoted to float64 so that the finite differences are accurate.
    Raises AssertionError naming the argument, the worst entry, both values and
    the relative error.
    """
    rng = numpy.random.default_rng(0)
    args = tuple(_as_float64(a) for a in args)
    if argnum is None:  # every float argument; ints, strings, None... are held fixed
        argnums = [n for n, a in enumerate(args) if all(map(_is_float, tree_flatten(a)[0]))]
    else:
        argnums = (argnum,) if isinstance(argnum, int) else argnum
    scalar = _scalarize(fun, getval(fun(*args)), rng)
    for n in argnums:
        what = f"argument {n} of {getattr(fun, '__name__', 'fun')}"
        _compare(
            grad(scalar, n)(*args),
            numerical_grad(scalar, *args, argnum=n, eps=eps),
            what,
            rtol,
            atol,
        )
        if order >= 2:
            leaves, treedef = tree_flatten(args[n])
            u = tree_unflatten(treedef, [rng.standard_normal(numpy.shape(x)) for x in leaves])

            def directional(*a, n=n, u=u):
                from . import numpy as np

                g_leaves = tree_flatten(grad(scalar, n)(*a))[0]
                return sum(np.sum(g * w) for g, w in zip(g_leaves, tree_flatten(u)[0]))

            _compare(
                grad(directional, n)(*args),
                numerical_grad(directional, *args, argnum=n, eps=eps),
                f"second derivative (order=2) of {what}",
                rtol,
                atol,
            )
    return None
