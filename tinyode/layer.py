"""The continuous-depth layer of the paper: h(t1) = h(t0) + ∫ f(h, t, θ) dt."""

from .odeint import odeint


class ODELayer:
    """`layer(h0, params) -> h(t1)`: an ODE solve as a differentiable layer.

    `func(h, t, params)` gives dh/dt; `odeint_options` (method, rtol, gradient, ...)
    are passed to `odeint`. After a call, `layer.info` holds the solve's statistics.

    >>> layer = ODELayer(lambda h, t, W: np.tanh(W @ h))
    >>> h1 = layer(h0, W)
    """

    def __init__(self, func, t0=0.0, t1=1.0, **odeint_options):
        self.func, self.t0, self.t1 = func, float(t0), float(t1)
        self.options = odeint_options
        self.info = None

    def __call__(self, h0, params):
        import tinyad.numpy as np

        t = np.array([self.t0, self.t1])
        ys, self.info = odeint(self.func, h0, t, params, full_output=True, **self.options)
        return ys[-1]

    def __repr__(self):
        return f"ODELayer({getattr(self.func, '__name__', 'func')}, t0={self.t0}, t1={self.t1})"
