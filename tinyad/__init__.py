"""tinyad: tape-based reverse-mode automatic differentiation on numpy, for learning.

import tinyad
import tinyad.numpy as np

f = lambda W, y: np.sum(np.sin(W @ y))
tinyad.grad(f)(W, y)           # (cos(W y)) ⊗ y, without building a Jacobian
"""

from . import nn, numpy, optim
from .checks import check_grads, numerical_grad
from .core import Box, Saved, defvjp, defvjp_all, defvjp_argnum, getval, isbox, primitive
from .flat import flatten
from .transforms import (
    elementwise_grad,
    grad,
    hessian,
    hvp,
    jacobian,
    jvp,
    trace,
    value_and_grad,
    vjp,
)
from .tree import tree_flatten, tree_map, tree_unflatten

__all__ = [
    "grad",
    "value_and_grad",
    "vjp",
    "jvp",
    "hvp",
    "elementwise_grad",
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
    "Saved",
    "tree_flatten",
    "tree_unflatten",
    "tree_map",
    "numpy",
    "optim",
    "nn",
]
__version__ = "0.1.0"
