"""Gradient-descent optimizers with autograd's semantics, on pytrees of parameters.

`grad_fun(params, i)` returns the gradient at iteration i with the structure of
`params`; `callback(params, i, g)` is called before each step. `step_size` is a
number or a schedule, a function of the iteration i (as in JAX's optimizers).
The pytree is flattened to one vector (tinyad.flatten), so each update is a few
vector ops.
"""

from . import numpy as np
from .flat import flatten

__all__ = ["sgd", "adam"]


def _on_vectors(grad_fun, params, callback):
    """(x0, grad on vectors, callback on vectors, unflatten) for an optimizer on a pytree."""
    x0, unflatten = flatten(params)

    def vector_grad(x, i):
        return flatten(grad_fun(unflatten(x), i))[0]

    def vector_callback(x, i, g):
        if callback is not None:
            callback(unflatten(x), i, unflatten(g))

    return x0, vector_grad, vector_callback, unflatten


def _schedule(step_size):
    """step_size as a function of the iteration."""
    return step_size if callable(step_size) else (lambda i: step_size)


def sgd(grad_fun, params, step_size=0.1, num_iters=200, callback=None, mass=0.9):
    """Stochastic gradient descent with momentum (autograd's form).

    `grad_fun(params, i)` returns the gradient at iteration i (params' structure);
    `callback(params, i, g)` is called before each step; `step_size` is a number or a
    function of i. Returns the final params.

    v ← mass·v − (1 − mass)·g
    x ← x + step_size·v

    >>> sgd(lambda p, i: 2 * p, np.ones(3), step_size=0.1, num_iters=100)   # → 0
    """
    x, grad, cb, unflatten = _on_vectors(grad_fun, params, callback)
    step = _schedule(step_size)
    velocity = np.zeros_like(x)
    for i in range(num_iters):
        g = grad(x, i)
        cb(x, i, g)
        velocity = mass * velocity - (1.0 - mass) * g
        x = x + step(i) * velocity
    return unflatten(x)


def adam(
    grad_fun, params, callback=None, num_iters=100, step_size=0.001, b1=0.9, b2=0.999, eps=1e-8
):
    """Adam (Kingma & Ba, 2015): steps scaled by running moment estimates.

    `grad_fun(params, i)` returns the gradient at iteration i (params' structure);
    `callback(params, i, g)` is called before each step; `step_size` is a number or a
    function of i. Returns the final params.

    m ← b1·m + (1 − b1)·g          v ← b2·v + (1 − b2)·g²
    m̂ = m / (1 − b1^(i+1))        v̂ = v / (1 − b2^(i+1))
    x ← x − step_size·m̂ / (√v̂ + eps)

    >>> adam(lambda p, i: 2 * p, np.ones(3), num_iters=500, step_size=lambda i: 0.1 / (1 + i))
    """
    x, grad, cb, unflatten = _on_vectors(grad_fun, params, callback)
    step = _schedule(step_size)
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    for i in range(num_iters):
        g = grad(x, i)
        cb(x, i, g)
        m = (1 - b1) * g + b1 * m
        v = (1 - b2) * g**2 + b2 * v
        mhat = m / (1 - b1 ** (i + 1))
        vhat = v / (1 - b2 ** (i + 1))
        x = x - step(i) * mhat / (np.sqrt(vhat) + eps)
    return unflatten(x)
