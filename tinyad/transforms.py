"""The transformations users call: vjp, grad, value_and_grad, jacobian, hessian."""

from .backend import array_module
from .core import Tape, backward, getval, isbox
from .tree import tree_flatten, tree_unflatten

__all__ = ["vjp", "grad", "value_and_grad", "jacobian", "hessian", "trace"]

_depth = [0]  # how many tapes are recording now; a new tape gets the next level


class _recording:
    """`with _recording() as tape:` a fresh tape one level above the current ones."""

    def __enter__(self):
        _depth[0] += 1
        self.tape = Tape(_depth[0])
        return self.tape

    def __exit__(self, *exc):
        _depth[0] -= 1


def _as_float_leaf(x, what):
    """Box-able form of one input leaf; integers are refused (their gradient is meaningless)."""
    v = getval(x)
    kind = getattr(getattr(v, "dtype", None), "kind", None)
    if kind == "f" or kind == "c":  # a float array: the common case, checked first
        return x
    if isinstance(v, bool) or isinstance(v, int):
        raise TypeError(
            f"{what} got an integer input ({v!r}); gradients are defined for floats: pass "
            f"{float(v)!r} or x.astype(float)"
        )
    if isinstance(v, float):
        return array_module(v).float64(v) if not isbox(x) else x
    if kind is None:
        raise TypeError(f"{what} cannot differentiate with respect to {type(v).__name__} {v!r}")
    raise TypeError(
        f"{what} got an input of dtype {v.dtype}; gradients are defined for floats: pass "
        "x.astype(float) (or float32)"
    )


def _flatten(tree):
    """tree_flatten, with a shortcut for the common argument that is one array (a leaf)."""
    if isinstance(tree, (list, tuple, dict)):
        return tree_flatten(tree)
    return [tree], None


def vjp(fun, *args):
    """`(out, vjp_fun)`: `vjp_fun(g)` is `gᵀ ∂out/∂args`, one cotangent per positional argument.

    Each argument may be an array, a float or a pytree; each cotangent has its structure.
    """
    with _recording() as tape:
        inputs, boxed = [], []  # inputs: (treedef, the input records' Boxes) per argument
        for arg in args:
            leaves, treedef = _flatten(arg)
            boxes = [tape.input(_as_float_leaf(x, "vjp")) for x in leaves]
            inputs.append((treedef, boxes))
            boxed.append(boxes[0] if treedef is None else tree_unflatten(treedef, boxes))
        out = fun(*boxed)
    traced = isbox(out) and out.tape is tape
    ans = out.value if traced else out

    def vjp_fun(g):
        cts = backward(tape, out, g) if traced else {}
        result = []
        for treedef, boxes in inputs:
            parts = []
            for box in boxes:
                ct = cts.get(box.index)
                if ct is None:  # the output does not depend on this input
                    v = getval(box)
                    ct = array_module(v).zeros_like(v)
                parts.append(ct)
            result.append(parts[0] if treedef is None else tree_unflatten(treedef, parts))
        return tuple(result)

    return ans, vjp_fun


def _partial(fun, args, kwargs, argnums):
    """`fun` as a function of the arguments in `argnums` only, the rest held fixed."""

    def sub(*chosen):
        full = list(args)
        for n, x in zip(argnums, chosen):
            full[n] = x
        return fun(*full, **kwargs)

    return sub


def value_and_grad(fun, argnum=0):
    """Function giving `(fun(*args), d fun / d args[argnum])`; `fun` must return a scalar."""
    argnums = (argnum,) if isinstance(argnum, int) else tuple(argnum)

    def value_and_grad_fun(*args, **kwargs):
        sub = _partial(fun, args, kwargs, argnums)
        ans, vjp_fun = vjp(sub, *[args[n] for n in argnums])
        if getattr(getval(ans), "shape", ()) != ():
            raise TypeError(
                f"grad requires fun to return a scalar, but it returned shape "
                f"{getval(ans).shape}; use tinyad.vjp or tinyad.jacobian for non-scalar outputs"
            )
        v = getval(ans)
        grads = vjp_fun(array_module(v).ones_like(v))
        return ans, grads[0] if isinstance(argnum, int) else grads

    return value_and_grad_fun


def grad(fun, argnum=0):
    """Function giving d fun / d args[argnum] for a scalar-valued `fun`."""
    value_and_grad_fun = value_and_grad(fun, argnum)

    def grad_fun(*args, **kwargs):
        return value_and_grad_fun(*args, **kwargs)[1]

    return grad_fun


def jacobian(fun, argnum=0):
    """Function giving ∂fun/∂x of shape `out.shape + x.shape`, one vjp per output entry."""
    from . import numpy as np

    def jacobian_fun(*args, **kwargs):
        x = args[argnum]
        ans, vjp_fun = vjp(_partial(fun, args, kwargs, (argnum,)), x)
        v = getval(ans)
        xp = array_module(v)
        out_shape = tuple(getattr(v, "shape", ()))
        size = 1
        for n in out_shape:
            size *= n
        rows = []
        for k in range(size):
            onehot = xp.zeros(size, dtype=getattr(v, "dtype", None))
            onehot[k] = 1
            rows.append(vjp_fun(onehot.reshape(out_shape))[0])
        x_shape = tuple(np.shape(x))
        if not rows:
            return xp.zeros(out_shape + x_shape)
        return np.reshape(np.stack(rows), out_shape + x_shape)

    return jacobian_fun


def hessian(fun, argnum=0):
    """Function giving ∂²fun/∂x² of shape `x.shape + x.shape` (the jacobian of the gradient)."""
    return jacobian(grad(fun, argnum), argnum)


def trace(fun, *args):
    """The `Tape` of one forward pass of `fun(*args)`: print it, plot it, count its bytes."""
    with _recording() as tape:
        boxed = [tape.input(_as_float_leaf(a, "trace")) for a in args]
        fun(*boxed)
    return tape
