"""What tinyode can tell you went wrong (or is going badly) while solving."""


class SolverError(RuntimeError):
    """The solver could not continue: step size underflow, max_steps, or a non-finite derivative.

    The message says the time reached, the step count and what to try.
    """


class BacksolveWarning(RuntimeWarning):
    """The adjoint's backward solve did not retrace the forward trajectory.

    Solving z backwards is unstable on stiff-ish or chaotic problems (y' = −30y,
    Lorenz); the gradient is then wrong. Use gradient="checkpoint" there.
    """


class NoEventError(SolverError):
    """odeint_event found no sign change of event_fn before t_max (or within max_steps).

    The message names t_max, the time reached and the last value of event_fn.
    """


class StiffnessWarning(RuntimeWarning):
    """dopri5 or tsit5 found the problem stiff (Hairer's test in DOPRI5), once per solve.

    The steps are then bounded by the explicit method's stability, not by accuracy, and
    the solve crawls. The message names the time; use method="rodas4" or "kvaerno5".
    """
