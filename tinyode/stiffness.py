"""Stiffness detection for dopri5 and tsit5: the test of Hairer's DOPRI5.

The last two stages of both methods are evaluated at t + h: the 6th at
y_6 = y + h Σ a_6j k_j, the 7th (FSAL) at y_{n+1}. So

    hλ ≈ h ‖k_7 − k_6‖ / ‖y_{n+1} − y_6‖

estimates h times the dominant eigenvalue of ∂f/∂y along the difference, at no cost in
evaluations of f (Hairer & Wanner, Solving ODEs II, IV.2; dopri5.f, "STIFFNESS
DETECTION"). When the step size is limited by stability rather than accuracy, hλ sits
near the boundary of the stability region on the negative real axis (3.31 for dopri5).
DOPRI5 tests every NSTIFF = 1000 accepted steps, and at every step once a test was
positive; 15 positive tests in a row declare stiffness, 6 negative ones in a row reset
the count. dopri5's threshold is Hairer's 3.25; tsit5's, the same fraction of its own
real stability boundary (3.51).
"""

import math
import os
import sys
import warnings

import tinyad
import tinyad.numpy as np
from tinyad import getval

from .errors import StiffnessWarning

# The real stability boundaries (|R(x)| ≤ 1 on [−x, 0]), checked in tests/test_implicit.py.
STABILITY_BOUNDARY = {"dopri5": 3.3066, "tsit5": 3.5069}
# Hairer's 3.25 for dopri5; for tsit5 the same fraction of its boundary.
THRESHOLD = {
    "dopri5": 3.25,
    "tsit5": 3.25 * STABILITY_BOUNDARY["tsit5"] / STABILITY_BOUNDARY["dopri5"],
}

EVERY = 1000  # NSTIFF
POSITIVE = 15  # positive tests in a row that declare stiffness
NEGATIVE = 6  # negative tests in a row that reset the count


def h_lambda(tableau, y, h, ks, y1):
    """h ‖k_s − k_{s−1}‖ / ‖y1 − y_{s−1}‖ from one step's stages; 0.0 when y1 = y_{s−1}.

    `ks` are the step's stages (a list or the rows of a buffer), `y1` its result, which
    is where the FSAL stage k_s was evaluated. One host value.
    """
    s = len(tableau.c)
    ks = [getval(ks[i]) for i in range(s)]
    y_prev = getval(y)
    for a, k in zip(tableau.a[s - 2], ks):  # the argument of stage s − 1
        if a != 0.0:
            y_prev = y_prev + (h * a) * k
    num = np.sum((ks[s - 1] - ks[s - 2]) ** 2)
    den = np.sum((getval(y1) - y_prev) ** 2)
    # One host value: the quotient is made 0 where den = 0 (without dividing by zero).
    quotient = float(num / (den + (den == 0)) * (den > 0))
    return abs(h) * math.sqrt(quotient)


class StiffnessDetector:
    """Counts DOPRI5's tests over one solve; warns once when stiffness is declared."""

    def __init__(self, tableau):
        self.tableau = tableau
        self.threshold = THRESHOLD[tableau.name]
        self.n_accepted = 0
        self.positive = 0
        self.negative = 0
        self.stiff_at = None  # the time stiffness was declared, once it was

    def accepted(self, t_end, y, h, ks, y1):
        """Call after each accepted step from y of size h, ending at the time t_end (the
        user's t, read on the host only when stiffness is declared); True when it is."""
        self.n_accepted += 1
        if self.stiff_at is not None:
            return False
        if self.n_accepted % EVERY != 0 and self.positive == 0:
            return False
        if h_lambda(self.tableau, y, h, ks, y1) > self.threshold:
            self.negative = 0
            self.positive += 1
            if self.positive == POSITIVE:
                self.stiff_at = float(t_end)
                warnings.warn(self.message(), StiffnessWarning, stacklevel=_user_stacklevel())
                return True
        else:
            self.negative += 1
            if self.negative == NEGATIVE:
                self.positive = 0
        return False

    def message(self):
        return (
            f"the problem seems to have become stiff at t={self.stiff_at:.6g}: "
            f"{self.tableau.name}'s steps are limited by its stability, not by accuracy. "
            'Use an implicit method: method="rodas4" or method="kvaerno5"'
        )

    def note(self):
        """What a SolverError adds once stiffness was detected ('' before)."""
        if self.stiff_at is None:
            return ""
        return (
            f' (stiffness was detected at t={self.stiff_at:.6g}: use method="rodas4" or '
            'method="kvaerno5")'
        )


# Where tinyad's and tinyode's own frames live: the warning names the user's line instead.
_LIBRARY = (os.path.dirname(tinyad.__file__) + os.sep, os.path.dirname(__file__) + os.sep)


def _user_stacklevel():
    """warnings.warn's stacklevel, from the caller of this function, that names the first
    frame outside tinyad and tinyode (as tinyode/adjoint.py's BacksolveWarning does)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY):
        frame, level = frame.f_back, level + 1
    return level
