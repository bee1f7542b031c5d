"""`flatten`: a pytree of arrays as one differentiable vector, and back."""

from . import numpy as np
from .tree import tree_flatten, tree_unflatten

__all__ = ["flatten"]


def flatten(tree):
    """`(vector, unflatten)`: every leaf raveled into one 1-D array, and the inverse.

    Both directions are differentiable (built from tinyad.numpy primitives), so a
    pytree of parameters can be packed into one state vector inside a traced
    function, as the adjoint method does with θ.

    >>> v, unflatten = flatten({"W": np.ones((2, 2)), "b": np.zeros(2)})    # v.shape == (6,)
    """
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
