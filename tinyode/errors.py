"""The two things tinyode can tell you went wrong while solving."""


class SolverError(RuntimeError):
    """The solver could not continue: step size underflow, max_steps, or a non-finite derivative.

    The message says the time reached, the step count and what to try.
    """


class BacksolveWarning(RuntimeWarning):
    """The adjoint's backward solve did not retrace the forward trajectory.

    Solving z backwards is unstable on stiff-ish or chaotic problems (y' = −30y,
    Lorenz); the gradient is then wrong. Use gradient="checkpoint" there.
    """
