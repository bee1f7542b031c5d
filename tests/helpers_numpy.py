"""Shared helpers of the tinyad.numpy tests: inputs on a function's domain, and the check."""

import numpy

import tinyad


def check(fun, *args, **kwargs):
    """Reverse mode against central finite differences, first and second order."""
    tinyad.check_grads(fun, *args, order=2, **kwargs)


def rand(shape, domain="real", seed=0):
    """A float64 array (a 0-d array for shape ()) drawn on `domain`, away from its edges.

    real: N(0, 1); positive: (0.5, 2); unit: (-0.8, 0.8); above1: (1.2, 3);
    nonzero: ±(0.3, 1.5), so kinks at 0 (abs, sign) are far from the finite differences.
    """
    rng = numpy.random.default_rng(seed)
    if domain == "real":
        x = rng.standard_normal(shape)
    elif domain == "positive":
        x = rng.uniform(0.5, 2.0, shape)
    elif domain == "unit":
        x = rng.uniform(-0.8, 0.8, shape)
    elif domain == "above1":
        x = rng.uniform(1.2, 3.0, shape)
    elif domain == "nonzero":
        x = rng.uniform(0.3, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    else:
        raise ValueError(domain)
    return numpy.asarray(x, dtype=numpy.float64)


def well_conditioned(shape, seed=0):
    """Random square matrices (shape (..., n, n)) safely away from singular: A + n·I."""
    n = shape[-1]
    return rand(shape, seed=seed) + n * numpy.eye(n)


def names_on_tape(fun, *args):
    """The primitive names a trace of fun(*args) records, inputs left out."""
    tape = tinyad.trace(fun, *args)
    return [record[0].name for record in tape.records if record[0] is not None]
