"""tinyode: ODE solvers and neural-ODE gradients by the adjoint method, on tinyad.

import tinyode
ys = tinyode.odeint(func, y0, t, *args)      # func(y, t, *args) -> dy/dt
"""

from . import adjoint, backprop, checkpoint  # noqa: F401  (the gradient modes register)
from .errors import BacksolveWarning, NoEventError, SolverError, StiffnessWarning
from .events import odeint_event
from .layer import ODELayer
from .odeint import METHODS, odeint

__all__ = [
    "odeint",
    "odeint_event",
    "ODELayer",
    "METHODS",
    "SolverError",
    "NoEventError",
    "BacksolveWarning",
    "StiffnessWarning",
]
__version__ = "0.1.0"
