"""numpy.random, passed through: random numbers are constants to tinyad.

`tinyad.numpy.random.randn(3)` is `numpy.random.randn(3)`, with numpy's global
state; `default_rng` is the recommended way to get reproducible draws.
"""

import numpy.random as _random


def __getattr__(name):
    return getattr(_random, name)


def __dir__():
    return dir(_random)
