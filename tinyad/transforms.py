"""The transformations users call: vjp, grad, value_and_grad, jacobian, hessian, trace.

Every one is built on `vjp`: trace `fun` once with its inputs boxed on a fresh
tape, then pull cotangents back through that tape with `core.backward`.
Inputs and outputs may be pytrees (nested tuples, lists and dicts of arrays).
"""

from . import core, fastpath  # noqa: F401  (fastpath installs the flat hot loops)
from .backend import array_module
from .core import Tape, isbox, unbox
from .tree import tree_flatten, tree_unflatten

__all__ = [
    "vjp",
    "grad",
    "value_and_grad",
    "jacobian",
    "hessian",
    "trace",
    "jvp",
    "hvp",
    "elementwise_grad",
]

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
    """Box-able form of one input leaf: a float array or number; others are refused."""
    v = unbox(x)
    kind = getattr(getattr(v, "dtype", None), "kind", None)
    if kind == "f":  # a float array: the common case, checked first
        return x
    if kind == "c" or isinstance(v, complex):
        raise TypeError(
            f"{what} got a complex input ({v!r}): complex differentiation is not supported. "
            "Differentiate with respect to the real and imaginary parts as two real arrays."
        )
    if isinstance(v, (bool, int)) or kind in ("b", "i", "u"):
        raise TypeError(
            f"{what} got an integer or boolean input ({v!r}); gradients are defined for "
            "floats: pass a float (2.0, not 2) or x.astype(float)"
        )
    if isinstance(v, float):
        return array_module(v).float64(v) if not isbox(x) else x
    if kind is None:
        raise TypeError(
            f"{what} cannot differentiate with respect to {type(v).__name__} {v!r}; "
            "pass a float, a float array, or a pytree (tuple, list, dict) of them"
        )
    raise TypeError(f"{what} got an input of dtype {v.dtype}; pass x.astype(float)")


def _flatten(tree):
    """tree_flatten, with a shortcut for the common argument that is one array (a leaf)."""
    if isinstance(tree, (list, tuple, dict)):
        return tree_flatten(tree)
    return [tree], None


def _unflatten(treedef, leaves):
    return leaves[0] if treedef is None else tree_unflatten(treedef, leaves)


def _structure(treedef):
    """A treedef with list and tuple written alike, for comparing a cotangent's structure."""
    if treedef is None:
        return None
    kind, keys, children = treedef
    kind = "sequence" if kind in (list, tuple) else kind
    return (kind, keys, [_structure(c) for c in children])


def vjp(fun, *args):
    """`(out, vjp_fun)`: `vjp_fun(g)` is `gᵀ ∂out/∂args`, one cotangent per positional argument.

    Each argument may be an array, a float or a pytree; each cotangent has its
    structure. `out` may be a pytree too; `g` must then have exactly its
    structure and shapes.

    >>> out, vjp_fun = vjp(lambda x: (np.sin(x), 2 * x), 0.0)
    >>> vjp_fun((1.0, 1.0))             # cos(0) + 2
    (3.0,)
    """
    with _recording() as tape:
        inputs, boxed = [], []  # inputs: (treedef, the input records' Boxes) per argument
        for arg in args:
            leaves, treedef = _flatten(arg)
            boxes = [tape.input(_as_float_leaf(x, "vjp")) for x in leaves]
            inputs.append((treedef, boxes))
            boxed.append(_unflatten(treedef, boxes))
        out = _traced_call(fun, boxed)
    out_leaves, out_def = _flatten(out)
    # An output leaf is on this tape, or a constant (or a value of an outer tape): it does
    # not depend on the inputs then, and its cotangent goes nowhere.
    on_tape = [isbox(y) and y.tape is tape for y in out_leaves]
    ans_leaves = [y.value if t else y for y, t in zip(out_leaves, on_tape)]

    def vjp_fun(g):
        seeds = {}
        for y, t, ct in zip(out_leaves, on_tape, _cotangent_leaves(g, out_def, ans_leaves)):
            if t:
                seeds[y.index] = ct if y.index not in seeds else seeds[y.index] + ct
        cts = core.backward(tape, seeds) if seeds else {}
        result = []
        for treedef, boxes in inputs:
            parts = []
            for box in boxes:
                ct = cts.get(box.index)
                if ct is None:  # the output does not depend on this input
                    v = unbox(box)
                    ct = array_module(v).zeros_like(v)
                parts.append(ct)
            result.append(_unflatten(treedef, parts))
        return tuple(result)

    return _unflatten(out_def, ans_leaves), vjp_fun


def _traced_call(fun, boxed):
    """fun(*boxed), with numpy's puzzling message for a traced value in a numpy buffer explained."""
    try:
        return fun(*boxed)
    except ValueError as e:
        if "setting an array element with a sequence" not in str(e):
            raise
        raise ValueError(
            f"{e} This usually means a traced value was written into a plain numpy array "
            "(buf[i] = x): numpy cannot hold it, and the gradient would be lost. Build the "
            "array from the traced values instead: np.stack([...]), np.array([x0, x1]) or "
            "np.concatenate with tinyad.numpy as np."
        ) from e


def _cotangent_leaves(g, out_def, ans_leaves):
    """The leaves of cotangent `g`, checked to have exactly the output's structure and shapes.

    A cotangent that merely broadcasts is refused: it would silently pull back
    the sum of several cotangents.
    """
    if out_def is None:
        g_leaves = [g]
    else:
        g_leaves, g_def = tree_flatten(g)
        if _structure(g_def) != _structure(out_def):
            raise ValueError(
                f"vjp_fun: the cotangent has the structure {_describe(g)}, but fun returned "
                f"{_describe(tree_unflatten(out_def, ans_leaves))}; pass a cotangent with "
                "exactly the output's structure"
            )
    checked = []
    for k, (ct, y) in enumerate(zip(g_leaves, ans_leaves)):
        yv, where = unbox(y), "" if out_def is None else f" (leaf {k})"
        xp = array_module(yv)
        if not hasattr(unbox(ct), "shape"):  # a number or a list: as an array
            ct = xp.asarray(ct)
        gshape, yshape = tuple(unbox(ct).shape), tuple(getattr(yv, "shape", ()))
        if gshape != yshape:
            raise ValueError(
                f"vjp_fun: the cotangent{where} has shape {gshape}, but the output{where} has "
                f"shape {yshape}; the cotangent must have exactly the output's shape"
            )
        ydt = getattr(yv, "dtype", None) or xp.asarray(yv).dtype
        gdt = unbox(ct).dtype
        if gdt.kind == "c" and ydt.kind != "c":
            raise ValueError(
                f"vjp_fun: the cotangent{where} is complex ({gdt}), but the output{where} is "
                f"real ({ydt})"
            )
        if gdt != ydt and ydt.kind == "f":
            ct = ct.astype(ydt)  # float32 outputs get float32 cotangents, as numpy would
        checked.append(ct)
    return checked


def _describe(tree):
    """A pytree's structure with each leaf written as its shape: `(shape (3,), shape ())`."""
    leaves, treedef = tree_flatten(tree)
    shapes = [_Shape(getattr(unbox(x), "shape", ())) for x in leaves]
    return repr(tree_unflatten(treedef, shapes)) if treedef is not None else repr(shapes[0])


class _Shape(tuple):
    def __repr__(self):
        return f"shape {tuple(self)}"


def _argnums(argnum, who):
    """`argnum` as a tuple of ints (and whether it was a tuple); a repeat is refused."""
    many = not isinstance(argnum, int)
    nums = tuple(argnum) if many else (argnum,)
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in nums):
        raise TypeError(f"{who}: argnum must be an int or a tuple of ints, got {argnum!r}")
    if len(set(nums)) != len(nums):
        raise ValueError(
            f"{who}: argnum={argnum!r} names an argument twice; list each argument once"
        )
    return nums, many


def _chosen(argnums, args, who):
    """The positions `argnums` refer to among `args` (negative ones count from the end)."""
    n = len(args)
    for a in argnums:
        if not -n <= a < n:
            raise IndexError(
                f"{who}: argnum={a} asks for positional argument {a}, but the function was "
                f"called with {n} positional argument(s)"
            )
    nums = tuple(a % n for a in argnums)
    if len(set(nums)) != len(nums):
        raise ValueError(f"{who}: argnum={argnums!r} names an argument twice")
    return nums


def _partial(fun, args, kwargs, argnums):
    """`fun` as a function of the arguments in `argnums` only, the rest held fixed."""

    def sub(*chosen):
        full = list(args)
        for n, x in zip(argnums, chosen):
            full[n] = x
        return fun(*full, **kwargs)

    return sub


def value_and_grad(fun, argnum=0, has_aux=False):
    """Function giving `(fun(*args), d fun / d args[argnum])`; `fun` must return a scalar.

    With `has_aux=True`, `fun` returns `(value, aux)` and the result is
    `((value, aux), gradient)`, as in JAX.

    >>> value_and_grad(lambda x: x**2)(3.0)
    (9.0, 6.0)
    """
    argnums, many = _argnums(argnum, "grad")

    def value_and_grad_fun(*args, **kwargs):
        nums = _chosen(argnums, args, "grad")
        aux = []

        def scalar(*chosen):
            out = _partial(fun, args, kwargs, nums)(*chosen)
            if has_aux:
                if not (isinstance(out, (tuple, list)) and len(out) == 2):
                    raise TypeError(
                        "grad(..., has_aux=True) needs fun to return a pair (value, aux), got "
                        f"{type(out).__name__}"
                    )
                out, extra = out
                aux.append(extra)
            return out

        ans, vjp_fun = vjp(scalar, *[args[n] for n in nums])
        v = unbox(ans)
        if isinstance(ans, (tuple, list, dict)) or getattr(v, "shape", ()) != ():
            got = f"shape {v.shape}" if hasattr(v, "shape") else type(ans).__name__
            raise TypeError(
                f"grad requires fun to return a scalar, but it returned {got}; use tinyad.vjp "
                "or tinyad.jacobian for non-scalar outputs"
                + ("" if has_aux else ", or has_aux=True if fun returns (value, aux)")
            )
        grads = vjp_fun(array_module(v).ones_like(v))
        grads = grads if many else grads[0]
        return ((ans, _plain(aux[0])) if has_aux else ans), grads

    return value_and_grad_fun


def _plain(tree):
    """An auxiliary output with the values of finished tapes unboxed (outer ones stay)."""
    leaves, treedef = _flatten(tree)
    leaves = [x.value if isbox(x) and x.tape.level > _depth[0] else x for x in leaves]
    return _unflatten(treedef, leaves)


def grad(fun, argnum=0, has_aux=False):
    """Function giving d fun / d args[argnum] for a scalar-valued `fun`.

    `argnum` may be a tuple (then a tuple of gradients). With `has_aux=True`,
    `fun` returns `(value, aux)` and the result is `(gradient, aux)`.

    >>> grad(lambda x, y: x * y, argnum=1)(3.0, 4.0)
    3.0
    """
    value_and_grad_fun = value_and_grad(fun, argnum, has_aux)

    def grad_fun(*args, **kwargs):
        value, g = value_and_grad_fun(*args, **kwargs)
        return (g, value[1]) if has_aux else g

    return grad_fun


def jacobian(fun, argnum=0):
    """Function giving ∂fun/∂x of shape `out.shape + x.shape`, built row by row from vjps.

    As JAX's `jacrev`: for a pytree output, that pytree of Jacobians; for a pytree
    argument, one Jacobian per leaf in its structure; for a tuple `argnum`, a tuple.

    >>> jacobian(lambda x: A @ x)(x)     # == A
    """
    argnums, many = _argnums(argnum, "jacobian")

    def jacobian_fun(*args, **kwargs):
        nums = _chosen(argnums, args, "jacobian")
        ans, vjp_fun = vjp(_partial(fun, args, kwargs, nums), *[args[n] for n in nums])
        out_leaves, out_def = _flatten(ans)
        zeros = [_zeros_like(y) for y in out_leaves]
        per_output = []
        for j, y in enumerate(out_leaves):
            rows = []  # rows[k]: the cotangents (one pytree per argument) of entry k of y
            for k in range(int(getattr(unbox(y), "size", 1))):
                g = list(zeros)
                g[j] = _onehot(y, k)
                rows.append(vjp_fun(_unflatten(out_def, g)))
            per_output.append(tuple(_stack_rows(rows, i, y, args[n]) for i, n in enumerate(nums)))
        parts = [p if many else p[0] for p in per_output]
        return _unflatten(out_def, parts)

    return jacobian_fun


def _zeros_like(y):
    v = unbox(y)
    return array_module(v).zeros(getattr(v, "shape", ()), getattr(v, "dtype", float))


def _onehot(y, k):
    """An array shaped like y, 1 at flat index k and 0 elsewhere."""
    v = unbox(y)
    e = array_module(v).zeros(int(getattr(v, "size", 1)), getattr(v, "dtype", float))
    e[k] = 1
    return e.reshape(getattr(v, "shape", ()))


def _stack_rows(rows, i, y, x):
    """The Jacobian of output y with respect to argument i: its rows stacked, per leaf of x."""
    from . import numpy as np

    out_shape = tuple(getattr(unbox(y), "shape", ()))
    x_leaves, x_def = _flatten(x)
    row_leaves = [_flatten(row[i])[0] for row in rows]
    jac = []
    for m, leaf in enumerate(x_leaves):
        shape = out_shape + tuple(np.shape(leaf))
        if not rows:  # an empty output
            jac.append(array_module(unbox(leaf)).zeros(shape))
        else:
            jac.append(np.reshape(np.stack([r[m] for r in row_leaves]), shape))
    return _unflatten(x_def, jac)


def hessian(fun, argnum=0):
    """Function giving ∂²fun/∂x² of shape `x.shape + x.shape` (the jacobian of the gradient).

    >>> hessian(lambda x: np.sum(x**3))(np.array([1.0, 2.0]))   # diag(6, 12)
    """
    return jacobian(grad(fun, argnum), argnum)


def trace(fun, *args):
    """The `Tape` of one forward pass of `fun(*args)`: print it, plot it, count its bytes.

    >>> print(trace(lambda x: np.sum(np.sin(x)), np.ones(3)))
    """
    with _recording() as tape:
        boxed = []
        for arg in args:
            leaves, treedef = _flatten(arg)
            boxed.append(
                _unflatten(treedef, [tape.input(_as_float_leaf(x, "trace")) for x in leaves])
            )
        fun(*boxed)
    return tape


# ---- forward mode, from the vjps by transposition ------------------------------------------


def jvp(fun, primals, tangents):
    """`(out, tangent_out)`: fun's output at `primals` and its Jacobian-vector product J·v.

    `primals` and `tangents` are tuples of fun's positional arguments (pytrees
    allowed), as in JAX. Forward mode is derived here from reverse mode, not
    written as a second rule per primitive: u ↦ vjp_fun(u) = uᵀJ is linear in
    u, so the gradient of u ↦ ⟨uᵀJ, v⟩ = uᵀ(Jv) is Jv. One table of vjps thus
    serves both modes and every order; the price is a second reverse pass
    (about 3× the cost of fun, against about 2× for a hand-written jvp).

    >>> jvp(np.sin, (0.5,), (2.0,))          # (sin 0.5, 2 cos 0.5)
    """
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(
            f"jvp: {len(primals)} primals but {len(tangents)} tangents; pass one tangent per "
            "positional argument, as tuples: jvp(f, (x, y), (dx, dy))"
        )
    tangents = tuple(_tangent_like(t, x, n) for n, (x, t) in enumerate(zip(primals, tangents)))
    out, vjp_fun = vjp(fun, *primals)
    out_leaves, out_def = _flatten(out)

    def projected(*u_leaves):
        """⟨vjp_fun(u), v⟩ = uᵀ J v, a scalar function of the output cotangent u."""
        from . import numpy as np

        cts = vjp_fun(_unflatten(out_def, list(u_leaves)))
        pairs = zip(tree_flatten(cts)[0], tree_flatten(tangents)[0])
        return sum((np.sum(c * t) for c, t in pairs), 0.0)

    zeros = [_zeros_like(y) for y in out_leaves]  # any u would do: the map is linear in u
    tangent_leaves = grad(projected, argnum=tuple(range(len(zeros))))(*zeros)
    return out, _unflatten(out_def, list(tangent_leaves))


def _tangent_like(t, x, n):
    """Tangent `t` checked against primal `x`: the same structure and shapes, x's float dtype."""
    t_leaves, t_def = _flatten(t)
    x_leaves, x_def = _flatten(x)
    if _structure(t_def) != _structure(x_def):
        raise ValueError(
            f"jvp: tangent {n} has the structure {_describe(t)}, but primal {n} has "
            f"{_describe(x)}; pass tangents shaped like the primals"
        )
    fitted = []
    for tl, xl in zip(t_leaves, x_leaves):
        xv = unbox(_as_float_leaf(xl, "jvp"))
        xp = array_module(xv)
        tl = tl if hasattr(unbox(tl), "shape") else xp.asarray(tl, dtype=xv.dtype)
        if tuple(unbox(tl).shape) != tuple(xv.shape):
            raise ValueError(
                f"jvp: tangent {n} has shape {tuple(unbox(tl).shape)}, but primal {n} has "
                f"shape {tuple(xv.shape)}"
            )
        fitted.append(tl if unbox(tl).dtype == xv.dtype else tl.astype(xv.dtype))
    return _unflatten(t_def, fitted)


def hvp(fun, x, v):
    """The Hessian-vector product ∇²fun(x)·v, forward over reverse: the jvp of the gradient.

    `x` and `v` are arrays or pytrees of the same structure; `fun` returns a scalar.
    The Hessian itself is never built.

    >>> hvp(lambda x: np.sum(x**3), np.array([1.0, 2.0]), np.array([1.0, 0.0]))   # [6, 0]
    """
    return jvp(grad(fun), (x,), (v,))[1]


def elementwise_grad(fun, argnum=0):
    """autograd's `elementwise_grad`: the vjp of fun with a cotangent of ones.

    For a function that acts entry by entry, that is its derivative at every entry.

    >>> elementwise_grad(np.sin)(np.array([0.0, 1.0]))       # cos([0, 1])
    """

    def elementwise_grad_fun(*args, **kwargs):
        (n,) = _chosen((argnum,), args, "elementwise_grad")
        out, vjp_fun = vjp(_partial(fun, args, kwargs, (n,)), args[n])
        leaves, treedef = _flatten(out)
        ones = [array_module(unbox(y)).ones_like(unbox(y)) for y in leaves]
        return vjp_fun(_unflatten(treedef, ones))[0]

    return elementwise_grad_fun
