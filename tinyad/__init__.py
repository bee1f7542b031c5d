"""tinyad: tape-based reverse-mode automatic differentiation on numpy, for learning.

import tinyad
import tinyad.numpy as np

f = lambda W, y: np.sum(np.sin(W @ y))
tinyad.grad(f)(W, y)           # (cos(W y)) ⊗ y, without building a Jacobian
"""

# The submodule tinyad.trace is imported before the function of that name is bound, so that a
# later `from .trace import ...` cannot replace tinyad.trace (the function) with the module.
from . import nn, numpy, optim, trace  # noqa: F401
from .checks import check_grads, numerical_grad
from .core import Box, defvjp, defvjp_all, defvjp_argnum, getval, isbox, primitive
from .transforms import grad, hessian, jacobian, trace, value_and_grad, vjp  # noqa: F811
from .tree import flatten, tree_flatten, tree_map, tree_unflatten

__all__ = [
    "grad",
    "value_and_grad",
    "vjp",
    "jacobian",
    "hessian",
    "numerical_grad",
    "check_grads",
    "trace",
    "flatten",
    "primitive",
    "defvjp",
    "defvjp_argnum",
    "defvjp_all",
    "getval",
    "isbox",
    "Box",
    "tree_flatten",
    "tree_unflatten",
    "tree_map",
    "numpy",
    "optim",
    "nn",
]
__version__ = "0.1.0"
