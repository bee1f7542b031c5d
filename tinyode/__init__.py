"""tinyode: ODE solvers and neural-ODE gradients by the adjoint method, on tinyad.

import tinyode
ys = tinyode.odeint(func, y0, t, *args)      # func(y, t, *args) -> dy/dt
"""

from .errors import BacksolveWarning, SolverError, StiffnessWarning
from .layer import ODELayer
from .odeint import METHODS, odeint

__all__ = ["odeint", "ODELayer", "METHODS", "SolverError", "BacksolveWarning", "StiffnessWarning"]
__version__ = "0.1.0"
