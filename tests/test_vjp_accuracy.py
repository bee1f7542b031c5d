"""Every vjp is accurate to a few ulps wherever its derivative is representable (SPEC, Accuracy).

Each derivative is compared with a reference worked out in 60-digit decimal arithmetic
(Python's decimal module: +, −, ×, /, sqrt, exp and ln are correctly rounded) from the exact
value of the float input, at the points where naive formulas lose their digits: large |x|
(1 − tanh²x is 0 once tanh x rounds to 1), near the edges of a domain (1 − x² near |x| = 1),
and where x² would overflow although the derivative does not. The error is counted in units
in the last place of the reference, in the dtype of the input (float32 or float64): a few ulps
is what a chain of correctly rounded operations gives.
"""

from decimal import Decimal, localcontext
from fractions import Fraction

import numpy
import pytest

import tinyad
import tinyad.numpy as np

ULPS = 4  # "a few ulps"
F32, F64 = numpy.float32, numpy.float64


def ulps(got, ref, dtype):
    """|got − ref| in units of the spacing of dtype at ref (the subnormal spacing below)."""
    spacing = numpy.spacing(numpy.abs(dtype(float(ref))))
    return float(abs(Decimal(float(got)) - ref) / Decimal(float(spacing)))


# ---------------------------------------------------------------- references (60 digits)


def _exp(x):
    return x.exp()


def _sqrt(x):
    return x.sqrt()


def _sin_cos(x):
    """(sin x, cos x) by their Taylor series: for |x| ≤ 10 the terms fall below 1e-70."""
    sin, cos, term, n = Decimal(0), Decimal(0), Decimal(1), 0
    while n < 30 or abs(term) > Decimal("1e-70"):
        if n % 2:
            sin += term if n % 4 == 1 else -term
        else:
            cos += term if n % 4 == 0 else -term
        n += 1
        term = term * x / n
    return sin, cos


def _cosh(x):
    return (x.exp() + (-x).exp()) / 2


def _sinh(x):
    return (x.exp() - (-x).exp()) / 2


LN2, LN10 = Decimal(2).ln(), Decimal(10).ln()

# name: (tinyad function, its derivative in decimals, points for float32, points for float64)
UNARY = {
    "tanh": (
        np.tanh,
        lambda x: 1 / _cosh(x) ** 2,
        [0.5, 3.0, -8.0, 8.0, 12.0, 30.0, 44.0, 100.0],
        [0.5, 3.0, 8.0, -20.0, 20.0, 40.0, 300.0, 360.0, 800.0],
    ),
    "sinh": (np.sinh, _cosh, [-3.0, 20.0, 80.0], [-3.0, 20.0, 700.0]),
    "cosh": (np.cosh, _sinh, [1e-5, -3.0, 20.0, 80.0], [1e-10, -3.0, 20.0, 700.0]),
    "exp": (np.exp, _exp, [-100.0, 0.5, 80.0], [-700.0, 0.5, 700.0]),
    "exp2": (np.exp2, lambda x: (x * LN2).exp() * LN2, [-120.0, 0.5, 120.0], [-1000.0, 1000.0]),
    "expm1": (
        np.expm1,
        _exp,
        [-20.0, -40.0, -100.0, 1e-7, 10.0, 80.0],
        [-40.0, -100.0, -700.0, 1e-10, 5.0, 700.0],
    ),
    "log": (np.log, lambda x: 1 / x, [1e-30, 3.0, 1e30], [1e-300, 3.0, 1e300]),
    "log2": (np.log2, lambda x: 1 / (x * LN2), [1e-30, 3.0, 1e30], [1e-300, 3.0, 1e300]),
    "log10": (np.log10, lambda x: 1 / (x * LN10), [1e-30, 3.0, 1e30], [1e-300, 3.0, 1e300]),
    "log1p": (
        np.log1p,
        lambda x: 1 / (1 + x),
        [-1 + 2**-10, -1 + 2**-20, 1e-7, 1e10],
        [-1 + 2**-20, -1 + 2**-40, 1e-10, 1e10],
    ),
    "sqrt": (np.sqrt, lambda x: 1 / (2 * x.sqrt()), [1e-30, 3.0, 1e30], [1e-300, 3.0, 1e300]),
    "cbrt": (
        np.cbrt,
        lambda x: 1 / (3 * abs(x) ** (Decimal(2) / 3)),
        [-1e-30, 3.0, 1e30],
        [-1e-300, 3.0, 1e300],
    ),
    "square": (np.square, lambda x: 2 * x, [-3.0, 1e18], [-3.0, 1e150]),
    "reciprocal": (np.reciprocal, lambda x: -1 / x**2, [-3.0, 1e-15, 1e15], [-3.0, 1e-150, 1e160]),
    "sin": (np.sin, lambda x: _sin_cos(x)[1], [0.5, 1.5707964, 10.0], [0.5, 1.5707963267948966]),
    "cos": (np.cos, lambda x: -_sin_cos(x)[0], [0.5, 3.1415927, 10.0], [0.5, 3.141592653589793]),
    "tan": (
        np.tan,
        lambda x: 1 / _sin_cos(x)[1] ** 2,
        [0.5, -1.5707, 1.5707963],
        [0.5, -1.5707963, 1.5707963267948966],
    ),
    "arcsin": (
        np.arcsin,
        lambda x: 1 / _sqrt(1 - x**2),
        [0.5, -(1 - 2**-10), 1 - 2**-20, 1 - 2**-24],
        [0.5, -(1 - 2**-10), 1 - 2**-30, 1 - 2**-53],
    ),
    "arccos": (
        np.arccos,
        lambda x: -1 / _sqrt(1 - x**2),
        [0.5, -(1 - 2**-10), 1 - 2**-20, 1 - 2**-24],
        [0.5, -(1 - 2**-10), 1 - 2**-30, 1 - 2**-53],
    ),
    "arctanh": (
        np.arctanh,
        lambda x: 1 / (1 - x**2),
        [0.5, -(1 - 2**-10), 1 - 2**-20, 1 - 2**-24],
        [0.5, -(1 - 2**-10), 1 - 2**-30, 1 - 2**-53],
    ),
    "arccosh": (
        np.arccosh,
        lambda x: 1 / _sqrt(x**2 - 1),
        [1 + 2**-10, 1 + 2**-20, 1 + 2**-23, 1e10, 1e30],
        [1 + 2**-10, 1 + 2**-30, 1 + 2**-52, 1e10, 1e200],
    ),
    "arcsinh": (
        np.arcsinh,
        lambda x: 1 / _sqrt(x**2 + 1),
        [1e-5, -3.0, 1e10, -1e30],
        [1e-10, -3.0, 1e10, -1e200],
    ),
    "arctan": (
        np.arctan,
        lambda x: 1 / (1 + x**2),
        [3.0, 1e10, -1e19, 1e21],
        [3.0, 1e10, -1e155, 1e160, 1e200],
    ),
}


def _cases(table):
    for name, (fun, ref, points32, points64) in table.items():
        for dtype, points in ((F32, points32), (F64, points64)):
            yield pytest.param(fun, ref, dtype, points, id=f"{name}-{dtype.__name__}")


@pytest.mark.parametrize("fun, ref, dtype, points", list(_cases(UNARY)))
def test_elementwise_vjps_are_accurate_to_a_few_ulps(fun, ref, dtype, points):
    x = numpy.array(points, dtype=dtype)
    _, vjp = tinyad.vjp(fun, x)
    (got,) = vjp(numpy.ones_like(fun(x)))
    assert got.dtype == dtype
    with localcontext(prec=60):
        for xi, gi in zip(x, got, strict=True):
            r = ref(Decimal(float(xi)))
            err = ulps(gi, r, dtype)
            assert err <= ULPS, (
                f"{fun.__name__}'({xi!r}) = {gi!r}, exact {float(r)!r}: {err:.3g} ulp"
            )


def _logaddexp_partials(x, y):
    """(∂/∂x, ∂/∂y) of log(eˣ + eʸ): the weights 1/(1 + e^(y−x)) and 1/(1 + e^(x−y))."""
    return 1 / (1 + (y - x).exp()), 1 / (1 + (x - y).exp())


def _arctan2_partials(y, x):
    """(∂/∂y, ∂/∂x) of arctan2(y, x) = (x, −y) / (x² + y²)."""
    return x / (x**2 + y**2), -y / (x**2 + y**2)


def _power_partials(x, y):
    """(∂/∂x, ∂/∂y) of xʸ = (y·xʸ⁻¹, xʸ·ln x), for x > 0."""
    return y * x ** (y - 1), x**y * x.ln()


# name: (tinyad function, both partial derivatives in decimals, pairs for float32, float64)
BINARY = {
    "logaddexp": (
        np.logaddexp,
        _logaddexp_partials,
        [(30.0, 0.0), (100.0, 90.0), (0.0, -20.0), (5.0, 5.0), (-3.0, 2.0)],
        [(30.0, 0.0), (1000.0, 990.0), (-1000.0, -1010.0), (0.0, -50.0), (5.0, 5.0)],
    ),
    "arctan2": (
        np.arctan2,
        _arctan2_partials,
        [(1.0, 2.0), (-3.0, 0.5), (1e-30, 1e-30), (1e20, 3e20)],
        [(1.0, 2.0), (-3.0, 0.5), (1e-200, 1e-200), (1e200, 3e200)],
    ),
    "power": (
        np.power,
        _power_partials,
        [(2.0, 30.0), (1e-3, 2.5), (10.0, -5.0), (0.5, 100.0)],
        [(2.0, 300.0), (1e-3, 2.5), (10.0, -50.0), (0.5, 1000.0)],
    ),
}


@pytest.mark.parametrize("fun, ref, dtype, points", list(_cases(BINARY)))
def test_vjps_of_two_arguments_are_accurate_to_a_few_ulps(fun, ref, dtype, points):
    x, y = (numpy.array(p, dtype=dtype) for p in zip(*points, strict=True))
    _, vjp = tinyad.vjp(fun, x, y)
    got = vjp(numpy.ones_like(fun(x, y)))
    with localcontext(prec=60):
        for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
            refs = ref(Decimal(float(xi)), Decimal(float(yi)))
            for k, (g, r) in enumerate(zip(got, refs, strict=True)):
                assert g.dtype == dtype
                err = ulps(g[i], r, dtype)
                assert err <= ULPS, (
                    f"∂{fun.__name__}({xi!r}, {yi!r}) by argument {k} = {g[i]!r}, exact "
                    f"{float(r)!r}: {err:.3g} ulps"
                )


def _softmax(a, b):
    """exp(a_i − logsumexp(a, b)) for every i, the partials of logsumexp by b (times b: by a)."""
    e = [x.exp() for x in a]
    total = sum(w * v for w, v in zip(b, e, strict=True))
    return [v / total for v in e]


@pytest.mark.parametrize(
    "dtype, a, b",
    [
        (F64, [1000.0, 990.0, 980.0], None),
        (F64, [0.0, -30.0, -60.0], None),
        (F64, [-1000.0, -1000.0, -1001.0], [1.0, 2.0, 0.5]),
        (F32, [100.0, 90.0, 80.0], None),
        (F32, [5.0, 5.0, -20.0], [0.5, 1.0, 3.0]),
    ],
)
def test_logsumexp_vjps_are_accurate_to_a_few_ulps(dtype, a, b):
    a = numpy.array(a, dtype=dtype)
    weights = numpy.ones_like(a) if b is None else numpy.array(b, dtype=dtype)
    if b is None:
        got = [tinyad.grad(np.logsumexp)(a)]
    else:
        got = tinyad.grad(lambda a, b: np.logsumexp(a, b=b), argnum=(0, 1))(a, weights)
    with localcontext(prec=60):
        soft = _softmax([Decimal(float(v)) for v in a], [Decimal(float(w)) for w in weights])
        refs = [[w * s for w, s in zip(map(Decimal, map(float, weights)), soft, strict=True)]]
        refs += [soft]
        for k, (g, ref) in enumerate(zip(got, refs)):
            assert g.dtype == dtype
            for gi, r in zip(g, ref, strict=True):
                err = ulps(gi, r, dtype)
                assert err <= ULPS, f"argument {k}: {gi!r}, exact {float(r)!r}: {err:.3g} ulps"


@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize(
    "dtype, x",
    [
        (F64, [1e8 + 1, 1e8 + 2, 1e8 + 4]),  # spread of units on a mean of 1e8
        (F64, [1.0, 2.0, 4.0, -3.0]),
        (F32, [1000.25, 1000.5, 1001.0, 1000.0]),
    ],
)
def test_var_and_std_vjps_are_accurate_when_the_spread_is_small(dtype, x, ddof):
    """(x − mean x) loses every digit of the spread that the rounded mean does not hold."""
    x = numpy.array(x, dtype=dtype)
    exact = [Fraction(float(v)) for v in x]
    mean = sum(exact) / len(exact)
    centered = [v - mean for v in exact]
    var = sum(c * c for c in centered) / (len(exact) - ddof)
    with localcontext(prec=60):
        std = (Decimal(var.numerator) / Decimal(var.denominator)).sqrt()
        for name, fun, ref in [
            (
                "var",
                np.var,
                [Decimal(2 * c.numerator) / (c.denominator * (len(x) - ddof)) for c in centered],
            ),
            (
                "std",
                np.std,
                [Decimal(c.numerator) / c.denominator / ((len(x) - ddof) * std) for c in centered],
            ),
        ]:
            got = tinyad.grad(lambda x, fun=fun: fun(x, ddof=ddof))(x)
            assert got.dtype == dtype
            for gi, r in zip(got, ref, strict=True):
                err = ulps(gi, r, dtype)
                assert err <= ULPS, f"{name}: {gi!r}, exact {float(r)!r}: {err:.3g} ulps"
