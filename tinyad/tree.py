"""Pytrees: nested dicts, lists and tuples of arrays (`tinyad.flatten` is in flat.py)."""

__all__ = ["tree_flatten", "tree_unflatten", "tree_map", "tree_leaves"]


# The recursive helpers are module-level functions, not closures: a closure that calls
# itself is a reference cycle, which would keep the leaves (Boxes, and with them a whole
# tape) alive until the garbage collector happens to run.


def tree_flatten(tree):
    """`(leaves, treedef)`: the leaves in a fixed order (dict keys sorted).

    >>> tree_flatten({"b": 2.0, "a": [1.0]})      # ([1.0, 2.0], treedef)
    """
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


def tree_leaves(tree):
    """The leaves of `tree` in tree_flatten's order, without building its treedef.

    >>> tree_leaves({"b": 2.0, "a": [1.0]})      # [1.0, 2.0]
    """
    leaves = []
    _collect(tree, leaves)
    return leaves


def _collect(node, leaves):
    if isinstance(node, dict):
        for k in sorted(node):
            _collect(node[k], leaves)
    elif isinstance(node, (list, tuple)):
        for child in node:
            _collect(child, leaves)
    else:
        leaves.append(node)


def tree_unflatten(treedef, leaves):
    """Inverse of `tree_flatten`.

    >>> tree_unflatten(treedef, [3.0, 4.0])       # {'a': [3.0], 'b': 4.0}
    """
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
    """Apply `fun` leaf by leaf to trees of the same structure.

    >>> tree_map(lambda x: 2 * x, {"a": 1.0})      # {"a": 2.0}
    """
    leaves, treedef = tree_flatten(tree)
    others = [tree_flatten(r)[0] for r in rest]
    return tree_unflatten(treedef, [fun(*xs) for xs in zip(leaves, *others)])
