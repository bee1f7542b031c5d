"""gradient="backprop": the solver loop runs on traced values, every step on the tape.

The exact gradient of the discrete solve, by reverse mode through every stage of
every step (rejected trials leave nothing on the tape: only their raw error ratio
was read). Memory grows with the number of steps.
"""

import tinyad.numpy as np

from .odeint import STRATEGIES
from .solver import Stats, integrate


def solve_backprop(func, z0, t, args, opts):
    """(ys, info): the solve recorded step by step on whatever tape its inputs are on."""
    stats = Stats()
    ys = np.stack(integrate(func, z0, t, args, stats=stats, **opts.solve_kwargs()))
    return ys, stats.as_dict()


STRATEGIES["backprop"] = solve_backprop
