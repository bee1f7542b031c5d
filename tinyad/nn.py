"""A small multilayer perceptron: parameters as a list of (W, b), the forward pass in one loop."""

import numpy

from . import numpy as np

__all__ = ["init_mlp", "mlp"]


def init_mlp(sizes, scale=0.1, seed=0):
    """[(W, b), ...] for layer sizes [n₀, n₁, ...]: W of shape (nₖ, nₖ₊₁), b of shape (nₖ₊₁,).

    Entries are scale · N(0, 1), drawn from numpy.random.default_rng(seed).
    """
    rng = numpy.random.default_rng(seed)
    return [
        (scale * rng.standard_normal((m, n)), scale * rng.standard_normal(n))
        for m, n in zip(sizes[:-1], sizes[1:], strict=True)
    ]


def mlp(params, x, activation=np.tanh):
    """x @ W + b for each layer, `activation` between layers (none after the last).

    x has shape (..., n₀): a single input or a batch of them.
    """
    *hidden, (W, b) = params
    for W_k, b_k in hidden:
        x = activation(x @ W_k + b_k)
    return x @ W + b
