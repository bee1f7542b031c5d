"""Pytrees: nested dicts, lists and tuples of arrays, and `flatten` to one vector."""

__all__ = ["tree_flatten", "tree_unflatten", "tree_map", "flatten"]


# The recursive helpers are module-level functions, not closures: a closure that calls
# itself is a reference cycle, which would keep the leaves (Boxes, and with them a whole
# tape) alive until the garbage collector happens to run.


def tree_flatten(tree):
    """`(leaves, treedef)`: the leaves in a fixed order (dict keys sorted)."""
    leaves = []
    return leaves, _walk(tree, leaves)


def _walk(node, leaves):
    if isinstance(node, dict):
        keys = sorted(node)
        return (dict, keys, [_walk(node[k], leaves) for k in keys])
    if isinstance(node, (list, tuple)):
        return (type(node), None, [_walk(child, leaves) for child in node])
    leaves.append(node)
    return None


def tree_unflatten(treedef, leaves):
    """Inverse of `tree_flatten`."""
    return _build(treedef, iter(leaves))


def _build(node, it):
    if node is None:
        return next(it)
    kind, keys, children = node
    built = [_build(child, it) for child in children]
    if kind is dict:
        return dict(zip(keys, built))
    if kind is list or kind is tuple:
        return kind(built)
    return kind(*built)  # namedtuple


def tree_map(fun, tree, *rest):
    """Apply `fun` leaf by leaf to trees of the same structure."""
    leaves, treedef = tree_flatten(tree)
    others = [tree_flatten(r)[0] for r in rest]
    return tree_unflatten(treedef, [fun(*xs) for xs in zip(leaves, *others)])


def flatten(tree):
    """`(vector, unflatten)`: every leaf raveled into one 1-D array, and the inverse.

    Both directions are differentiable (built from tinyad.numpy primitives), so a
    pytree of parameters can be packed into one state vector inside a traced
    function, as the adjoint method does with θ.
    """
    from . import numpy as np

    leaves, treedef = tree_flatten(tree)
    shapes = [np.shape(leaf) for leaf in leaves]
    sizes = [int(np.size(leaf)) for leaf in leaves]
    if leaves:
        vector = np.concatenate([np.ravel(leaf) for leaf in leaves])
    else:
        vector = np.zeros(0)

    def unflatten(vector):
        parts, start = [], 0
        for shape, size in zip(shapes, sizes):
            parts.append(np.reshape(vector[start : start + size], shape))
            start += size
        return tree_unflatten(treedef, parts)

    return vector, unflatten
