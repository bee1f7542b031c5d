"""Dense output in float32 is as accurate as float32 allows.

The interpolant y(t_n + θh) = y_n + h Σ B_i(θ) k_i has weights B_i(θ) = Σ_j P_ij θ^(j+1)
whose power-form coefficients P_ij are large and cancel (dopri8's reach 545, tsit5's 88),
so the weights are built in float64 and only their products with the k_i are float32.
"""

import numpy
import pytest

import tinyode
from tinyode.tableaus import TABLEAUS, dense_weights

ADAPTIVE = ["bosh3", "dopri5", "tsit5", "dopri8"]
EPS32 = float(numpy.finfo(numpy.float32).eps)


def linear_problem(seed):
    """torchdiffeq's tests/problems.py LinearODE: y' = A y, A = U − Uᵀ with U = 0.1·randn,
    here 0.3·randn so that one step of h = 1 moves y by a lot (‖hA‖_∞ ≈ 4)."""
    U = 0.3 * numpy.random.default_rng(seed).standard_normal((10, 10))
    return U - U.T


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("method", ADAPTIVE)
def test_float32_interpolant_adds_only_its_own_rounding(method, seed):
    """One step of h = 1, interpolated at θ = 0, 0.05, ..., 1, in float32 and in float64.

    Both take the same single step, so their difference at θ is rounding only: the
    step's own float32 rounding (the difference at the end, θ = 1, which the interpolant
    shares through the stages k_i) plus the rounding of the interpolant's sum
    h Σ B_i(θ) k_i, a couple of ulps of Σ_i |B_i(θ)| · ‖hA‖_∞ · max|y|. Weights summed in
    float32 gave dopri8 up to 3× this bound (334 ulps where it allows 116).
    """
    A = linear_problem(seed)
    h = 1.0
    theta = numpy.linspace(0.0, 1.0, 21)
    ys = {}
    for dtype in (numpy.float32, numpy.float64):
        Ad = A.astype(dtype)
        ys[dtype], info = tinyode.odeint(
            lambda y, t: Ad @ y,
            numpy.ones(10, dtype),
            theta * h,
            method=method,
            rtol=1e-1,
            atol=1e-1,
            first_step=h,
            full_output=True,
        )
        assert info["n_steps"] == 1  # the same single step in both precisions
    y32, y64 = ys[numpy.float32], ys[numpy.float64]
    assert y32.dtype == numpy.float32
    ulps = numpy.max(numpy.abs(y32 - y64), axis=1) / numpy.max(numpy.abs(y64), axis=1) / EPS32
    hA = h * numpy.max(numpy.sum(numpy.abs(A), axis=1))
    sum_B = numpy.array([numpy.sum(numpy.abs(dense_weights(TABLEAUS[method], x))) for x in theta])
    allowed = ulps[-1] + 2 * sum_B * hA
    worst = int(numpy.argmax(ulps / allowed))
    assert ulps[worst] <= allowed[worst], (
        f"{method}: float32 dense output at θ={theta[worst]:.2f} is {ulps[worst]:.1f} ulps "
        f"from float64, more than the {allowed[worst]:.1f} its rounding explains"
    )
