"""Finite differences, and `check_grads`: what an autograder calls.

The checker must never pass without checking: integer inputs are promoted to
float64 and float32 inputs are differenced in float64 (with eps = 1e-6 a float32
difference keeps about one digit), and asking it to check nothing is an error.
"""

import numpy

from .core import getval
from .transforms import grad
from .tree import tree_flatten, tree_unflatten

__all__ = ["numerical_grad", "check_grads"]


def _checkable(x):
    """Whether a leaf is a number whose gradient can be checked (floats and ints, not bools)."""
    v = getval(x)
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    return getattr(getattr(v, "dtype", None), "kind", None) in ("f", "i", "u")


def _promoted(x):
    """A checkable leaf in float64, as finite differences need it; other leaves as they are."""
    return numpy.asarray(getval(x), dtype=numpy.float64) if _checkable(x) else x


def _promote_tree(tree):
    leaves, treedef = tree_flatten(tree)
    return tree_unflatten(treedef, [_promoted(x) for x in leaves])


def _all_checkable(tree):
    leaves = tree_flatten(tree)[0]
    return bool(leaves) and all(map(_checkable, leaves))


def numerical_grad(fun, *args, argnum=0, eps=1e-6):
    """Central differences (f(x + eps·e_i) − f(x − eps·e_i)) / 2eps for each entry of args[argnum].

    `fun` must return a scalar; the result has the structure of args[argnum].
    Integer and float32 inputs are differenced in float64; a float32 input gets
    a float32 gradient, an integer one a float64 gradient.

    >>> numerical_grad(lambda x: x**3, 2)     # ≈ 12.0
    """
    leaves, treedef = tree_flatten(args[argnum])
    for x in leaves:
        if not _checkable(x):
            raise TypeError(
                f"numerical_grad: argument {argnum} holds {type(getval(x)).__name__} "
                f"{getval(x)!r}, which cannot be differenced; pass floats or float arrays"
            )
    wide = [_promoted(x) for x in leaves]

    def f_at(k, x):
        trial = list(wide)
        trial[k] = x
        full = list(args)
        full[argnum] = tree_unflatten(treedef, trial)
        out = numpy.asarray(getval(fun(*full)))
        if out.size != 1:
            raise TypeError(
                f"numerical_grad needs fun to return a scalar, but it returned shape {out.shape}"
            )
        return float(out.reshape(()))

    grads = []
    for k, (leaf, x) in enumerate(zip(leaves, wide)):
        g = numpy.zeros(x.shape)
        flat = g.reshape(-1)
        for i in range(x.size):
            step = numpy.zeros(x.size)
            step[i] = eps
            step = step.reshape(x.shape)
            flat[i] = (f_at(k, x + step) - f_at(k, x - step)) / (2 * eps)
        dtype = getattr(getval(leaf), "dtype", None)
        if dtype is not None and dtype.kind == "f":
            g = g.astype(dtype)  # float32 in, float32 out (computed in float64)
        grads.append(g)
    return tree_unflatten(treedef, grads)


def _scalarize(fun, out_example, rng):
    """A scalar L = Σ v ⊙ fun(...) with fixed random v per output leaf, so any output is checked."""
    leaves, treedef = tree_flatten(out_example)
    if treedef is None and numpy.shape(leaves[0]) == ():
        return fun
    vs = [rng.standard_normal(numpy.shape(y)) for y in leaves]

    def scalar_fun(*args):
        from . import numpy as np

        outs = tree_flatten(fun(*args))[0]
        return sum(np.sum(y * v) for y, v in zip(outs, vs))

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


def _argnums_to_check(args, argnum):
    """Which arguments to check: every numeric one, or those in `argnum` (each must be one)."""
    if argnum is None:
        argnums = tuple(n for n, a in enumerate(args) if _all_checkable(a))
        if not argnums:
            kinds = ", ".join(type(a).__name__ for a in args) or "no argument"
            raise TypeError(
                f"check_grads found nothing to check (the arguments are: {kinds}); pass floats "
                "or float arrays (or pytrees of them)"
            )
        return argnums
    argnums = (argnum,) if isinstance(argnum, int) else tuple(argnum)
    for n in argnums:
        if not _all_checkable(args[n]):
            raise TypeError(
                f"check_grads: argument {n} ({type(args[n]).__name__} {args[n]!r}) is not "
                "differentiable; pass a float or a float array"
            )
    return argnums


def check_grads(fun, *args, argnum=None, order=1, eps=1e-6, rtol=1e-5, atol=1e-8):
    """Assert that reverse mode matches central finite differences; returns None.

    Checks every numeric positional argument (or those in `argnum`); None, strings
    and bools are held fixed, and so is an integer argument left out of `argnum`
    (hold an axis fixed that way). Checked arguments are promoted to float64, so
    the finite differences are accurate. A non-scalar `fun` is checked through
    L = Σ v ⊙ fun with a fixed random v. With order=2, also checks the gradient of
    the directional derivative uᵀ∇L (the vjp of each vjp). Raises AssertionError
    naming the argument, the worst entry, both values and the relative error, and
    TypeError when nothing it was asked to check is differentiable.

    >>> check_grads(np.sin, np.array([0.1, 0.2]), order=2)
    """
    rng = numpy.random.default_rng(0)
    argnums = _argnums_to_check(args, argnum)
    args = tuple(_promote_tree(a) if n in argnums else a for n, a in enumerate(args))
    name = getattr(fun, "__name__", "fun")
    try:
        out = getval(fun(*args))
    except TypeError as e:
        raise TypeError(
            f"{e} (check_grads called {name} with arguments {list(argnums)} as float64; to hold "
            "an integer argument such as an axis fixed, pass argnum= with the others)"
        ) from e
    scalar = _scalarize(fun, out, rng)
    for n in argnums:
        what = f"argument {n} of {name}"
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
