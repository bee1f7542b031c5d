"""Butcher tableaus of tinyode's explicit Runge-Kutta methods, as plain data.

A method with ``s`` stages advances ``y' = f(t, y)`` by one step ``h`` as::

    k_i     = f(t_n + c[i] h,  y_n + h * sum_{j < i} a[i][j] k_j)     i = 0 .. s-1
    y_{n+1} = y_n + h * sum_i b[i] k_i
    err     = h * sum_i b_err[i] k_i         (= y_{n+1} - yhat_{n+1})

``yhat`` is the embedded solution with weights ``b - b_err`` and order ``error_order``;
an error controller uses the exponent ``1 / (error_order + 1)``.

``fsal`` ("first same as last"): the last stage has ``c = 1`` and its row of ``a`` equals
``b``, so it is ``f(t_{n+1}, y_{n+1})`` and is reused as ``k_0`` of the next step.

Dense output may need extra stages, evaluated after an accepted step::

    k_{s+j} = f(t_n + dense_c[j] h,  y_n + h * sum_{i < s+j} dense_a[j][i] k_i)

and then, for 0 <= theta <= 1::

    y(t_n + theta h) = y_n + h * sum_i B_i(theta) k_i,
    B_i(theta)       = sum_j dense_p[i][j] * theta**(j + 1)

``dense_p`` has one row per stage (main stages first, then extra ones) and
``B_i(1) = b[i]``, so the interpolant ends at ``y_{n+1}``.

Every number is a Python float. Fractions printed in the papers are written as
``Fraction`` and rounded once; decimals carry 17 to 30 significant digits, enough to
round to the nearest float.
"""

from fractions import Fraction as F
from typing import NamedTuple


class Tableau(NamedTuple):
    """Coefficients of one explicit Runge-Kutta method (see the module docstring)."""

    name: str
    order: int  # order of the propagated solution (b)
    c: tuple  # (s,) nodes
    a: tuple  # s rows, row i has i entries; row 0 is ()
    b: tuple  # (s,) weights of the propagated solution
    b_err: tuple | None  # (s,) err = h * sum b_err[i] k_i = y - yhat; None if fixed-step
    error_order: int | None  # order of yhat = b - b_err; None if fixed-step
    fsal: bool  # last stage is f(t_{n+1}, y_{n+1})
    dense_c: tuple  # nodes of the extra dense-output stages
    dense_a: tuple  # their rows; row j has s + j entries
    dense_p: tuple | None  # (s + len(dense_c), degree) interpolant coefficients
    dense_order: int | None  # order of the interpolant
    # dopri8 only: Hairer's second, 3rd-order estimate err3 = h * sum b_err3[i] k_i; the
    # solver combines it with err (= err5) as err5² / sqrt(err5² + 0.01 err3²) ~ h^8.
    b_err3: tuple | None = None


def dense_weights(tableau, theta):
    """The interpolation weights ``(B_0(theta), ..., B_{n-1}(theta))``."""
    return tuple(sum(p * theta ** (j + 1) for j, p in enumerate(row)) for row in tableau.dense_p)


def _floats(values):
    return tuple(float(v) for v in values)


def _make(
    name,
    order,
    c,
    a,
    b,
    b_err=None,
    error_order=None,
    fsal=False,
    dense_c=(),
    dense_a=(),
    dense_p=None,
    dense_order=None,
):
    """Build a Tableau, rounding every coefficient to float."""
    return Tableau(
        name=name,
        order=order,
        c=_floats(c),
        a=tuple(_floats(row) for row in a),
        b=_floats(b),
        b_err=None if b_err is None else _floats(b_err),
        error_order=error_order,
        fsal=fsal,
        dense_c=_floats(dense_c),
        dense_a=tuple(_floats(row) for row in dense_a),
        dense_p=dense_p,
        dense_order=dense_order,
    )


def _row(length, entries):
    """A row of ``length`` coefficients from its nonzero ``{index: value}`` entries."""
    return tuple(entries.get(j, 0.0) for j in range(length))


def _hairer_dense(b, d_rows=(), n_stages=None):
    """Expand Hairer's nested dense output into the power form ``dense_p``.

    Hairer's codes (``contd5`` in dopri5.f, ``contd8`` in dop853.f) evaluate::

        y(t_n + theta h) = y_n + theta(r_0 + (1-theta)(r_1 + theta(r_2
                               + (1-theta)(r_3 + theta(r_4 + ...)))))

    with ``r_0 = y_{n+1} - y_n``, ``r_1 = h f_n - r_0``, ``r_2 = r_0 - h f_{n+1} - r_1``
    and ``r_{3+m} = h * sum_i d_rows[m][i] k_i``. Here ``f_n = k_0`` and ``f_{n+1}`` is the
    FSAL stage ``k_{s-1}``. With no ``d_rows`` this is the cubic Hermite interpolant.

    Each ``r_m = h * sum_i R[m][i] k_i`` and the product of ``theta`` and ``(1 - theta)``
    factors in front of it is an integer polynomial ``w_m``, so
    ``B_i(theta) = sum_m R[m][i] w_m(theta)``. The sum is done in exact fractions of the
    given coefficients and rounded once.
    """
    s = len(b)
    n = n_stages or s
    zero, one = F(0), F(1)

    def unit(i):
        return [one if j == i else zero for j in range(n)]

    r0 = [F(x) for x in b] + [zero] * (n - s)
    r1 = [e - x for e, x in zip(unit(0), r0, strict=True)]
    r2 = [x - e - y for x, e, y in zip(r0, unit(s - 1), r1, strict=True)]
    rows = [r0, r1, r2] + [[F(x) for x in d] + [zero] * (n - len(d)) for d in d_rows]

    w = [zero, one]  # w_0(theta) = theta, coefficients by increasing power
    p = [[zero] * (len(rows) + 1) for _ in range(n)]
    for m, r in enumerate(rows):
        if m % 2:  # w_m = (1 - theta) w_{m-1}
            w = [x - y for x, y in zip([*w, zero], [zero, *w], strict=True)]
        elif m:  # w_m = theta w_{m-1}
            w = [zero, *w]
        for i in range(n):
            for j, wj in enumerate(w):
                p[i][j] += r[i] * wj
    return tuple(_floats(row[1:]) for row in p)  # the theta**0 column is zero


# --------------------------------------------------------------------------------------
# Fixed-step methods
# --------------------------------------------------------------------------------------

# Forward Euler (1768).
EULER = _make("euler", order=1, c=(0,), a=((),), b=(1,))

# Explicit midpoint rule (Runge 1895).
MIDPOINT = _make("midpoint", order=2, c=(0, F(1, 2)), a=((), (F(1, 2),)), b=(0, 1))

# Heun's method, the explicit trapezoidal rule (Heun 1900).
HEUN = _make("heun", order=2, c=(0, 1), a=((), (1,)), b=(F(1, 2), F(1, 2)))

# The classic fourth-order Runge-Kutta method (Kutta 1901).
RK4 = _make(
    "rk4",
    order=4,
    c=(0, F(1, 2), F(1, 2), 1),
    a=((), (F(1, 2),), (0, F(1, 2)), (0, 0, 1)),
    b=(F(1, 6), F(1, 3), F(1, 3), F(1, 6)),
)

# --------------------------------------------------------------------------------------
# Bogacki-Shampine 3(2), FSAL.
# P. Bogacki, L. F. Shampine, "A 3(2) pair of Runge-Kutta formulas",
# Appl. Math. Lett. 2(4), 321-325, 1989. Dense output: cubic Hermite interpolation
# through (y_n, f_n) and (y_{n+1}, f_{n+1}).
# --------------------------------------------------------------------------------------

_BS3_B = (F(2, 9), F(1, 3), F(4, 9), 0)
_BS3_BHAT = (F(7, 24), F(1, 4), F(1, 3), F(1, 8))

BOSH3 = _make(
    "bosh3",
    order=3,
    c=(0, F(1, 2), F(3, 4), 1),
    a=((), (F(1, 2),), (0, F(3, 4)), _BS3_B[:3]),
    b=_BS3_B,
    b_err=[x - y for x, y in zip(_BS3_B, _BS3_BHAT, strict=True)],
    error_order=2,
    fsal=True,
    dense_p=_hairer_dense(_BS3_B),
    dense_order=3,
)

# --------------------------------------------------------------------------------------
# Dormand-Prince 5(4), FSAL.
# J. R. Dormand, P. J. Prince, "A family of embedded Runge-Kutta formulae",
# J. Comput. Appl. Math. 6(1), 19-26, 1980.
# Dense output: the 4th-order continuous extension of L. F. Shampine, "Some practical
# Runge-Kutta formulas", Math. Comp. 46(173), 135-150, 1986, as coded in Hairer's
# dopri5.f (coefficients d1..d7 there).
# --------------------------------------------------------------------------------------

_DP5_B = (F(35, 384), 0, F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84), 0)
_DP5_BHAT = (
    F(5179, 57600),
    0,
    F(7571, 16695),
    F(393, 640),
    F(-92097, 339200),
    F(187, 2100),
    F(1, 40),
)
_DP5_D = (
    F(-12715105075, 11282082432),
    0,
    F(87487479700, 32700410799),
    F(-10690763975, 1880347072),
    F(701980252875, 199316789632),
    F(-1453857185, 822651844),
    F(69997945, 29380423),
)

DOPRI5 = _make(
    "dopri5",
    order=5,
    c=(0, F(1, 5), F(3, 10), F(4, 5), F(8, 9), 1, 1),
    a=(
        (),
        (F(1, 5),),
        (F(3, 40), F(9, 40)),
        (F(44, 45), F(-56, 15), F(32, 9)),
        (F(19372, 6561), F(-25360, 2187), F(64448, 6561), F(-212, 729)),
        (F(9017, 3168), F(-355, 33), F(46732, 5247), F(49, 176), F(-5103, 18656)),
        _DP5_B[:6],
    ),
    b=_DP5_B,
    b_err=[x - y for x, y in zip(_DP5_B, _DP5_BHAT, strict=True)],
    error_order=4,
    fsal=True,
    dense_p=_hairer_dense(_DP5_B, [_DP5_D]),
    dense_order=4,
)

# --------------------------------------------------------------------------------------
# Tsitouras 5(4), FSAL.
# Ch. Tsitouras, "Runge-Kutta pairs of order 5(4) satisfying only the first column
# simplifying assumption", Comput. Math. Appl. 62(2), 770-775, 2011.
# The coefficients are decimals; they are given here to 20 significant digits (from the
# high-precision values also used by OrdinaryDiffEq.jl). The interpolant is the paper's
# b_i(theta), expanded in powers of theta.
# --------------------------------------------------------------------------------------

_TSIT5_B = (
    0.096460766818065229518,
    0.01,
    0.47988965041449957478,
    1.3790085741037418932,
    -3.2900695154360806799,
    2.3247105240997739824,
    0,
)

TSIT5 = _make(
    "tsit5",
    order=5,
    c=(0, 0.161, 0.327, 0.9, 0.98002554090450968573, 1, 1),
    a=(
        (),
        (0.161,),
        (-0.0084806554923569885444, 0.33548065549235698854),
        (2.8971530571054934321, -6.3594484899750748431, 4.3622954328695814110),
        (
            5.3258648284392566044,
            -11.748883564062827878,
            7.4955393428898362083,
            -0.092495066361755249257,
        ),
        (
            5.8614554429464200287,
            -12.920969317847109292,
            8.1593678985761586432,
            -0.071584973281400997225,
            -0.028269050394068382909,
        ),
        _TSIT5_B[:6],
    ),
    b=_TSIT5_B,
    b_err=(  # b - bhat; OrdinaryDiffEq.jl's btilde is bhat - b
        0.0017800110522257714434,
        0.00081643445965674690322,
        -0.0078808780102619960103,
        0.14471100717326290754,
        -0.58235716545255522502,
        0.45808210592918694666,
        F(-1, 66),
    ),
    error_order=4,
    fsal=True,
    dense_p=(
        (
            0.99999999999999997428,
            -2.7637061972748259113,
            2.9132554618219127438,
            -1.0530884977290216,
        ),
        (0.0, 0.13169999999999999727, -0.22339999999999999818, 0.1017),
        (0.0, 3.9302962368947515285, -5.9410338721315047347, 2.490627285651252793),
        (0.0, -12.411077166933676984, 30.338188630282321598, -16.54810288924490272),
        (0.0, 37.509313416511039195, -88.178904894766401101, 47.37952196281928122),
        (0.0, -27.896526289197287806, 65.091894674793671526, -34.87065786149660974),
        (0.0, 1.5, -4.0, 2.5),
    ),
    dense_order=4,
)

# --------------------------------------------------------------------------------------
# DOP853: Dormand-Prince 8(5,3), FSAL, with 7th-order dense output.
# E. Hairer, S. P. Norsett, G. Wanner, "Solving Ordinary Differential Equations I",
# 2nd ed., Springer 1993, Sec. II.10, and Hairer's code dop853.f (same decimals).
#
# 12 stages make the step; stage 13 is f(t_{n+1}, y_{n+1}) (FSAL), used by the dense
# output and as k_0 of the next step. Stages 14-16 are extra dense-output stages.
#
# Error estimate: dop853.f combines two estimates, err5 = h * sum E5_i k_i (an embedded
# 5th-order solution) and err3 = h * sum E3_i k_i (a 3rd-order one), into
# err5**2 / sqrt(err5**2 + 0.01 * err3**2) ~ h**8, with controller exponent 1/8.
# tinyode's single linear estimate is b_err = E5: yhat = b - E5 is of order 5, so
# error_order = 5. The solver uses Hairer's combined norm through b_err3 = DOP853_E3
# (controller exponent 1/8), as dop853.f and scipy's DOP853 do.
# --------------------------------------------------------------------------------------

_DOP853_C = (
    0.0,
    0.526001519587677318785587544488e-01,
    0.789002279381515978178381316732e-01,
    0.118350341907227396726757197510,
    0.281649658092772603273242802490,
    0.333333333333333333333333333333,
    0.25,
    0.307692307692307692307692307692,
    0.651282051282051282051282051282,
    0.6,
    0.857142857142857142857142857142,
    1.0,
    1.0,  # stage 13, the FSAL stage
)

_DOP853_B = _row(
    13,
    {
        0: 5.42937341165687622380535766363e-2,
        5: 4.45031289275240888144113950566,
        6: 1.89151789931450038304281599044,
        7: -5.8012039600105847814672114227,
        8: 3.1116436695781989440891606237e-1,
        9: -1.52160949662516078556178806805e-1,
        10: 2.01365400804030348374776537501e-1,
        11: 4.47106157277725905176885569043e-2,
    },
)

_DOP853_A = (
    {},
    {0: 5.26001519587677318785587544488e-2},
    {0: 1.97250569845378994544595329183e-2, 1: 5.91751709536136983633785987549e-2},
    {0: 2.95875854768068491816892993775e-2, 2: 8.87627564304205475450678981324e-2},
    {
        0: 2.41365134159266685502369798665e-1,
        2: -8.84549479328286085344864962717e-1,
        3: 9.24834003261792003115737966543e-1,
    },
    {
        0: 3.7037037037037037037037037037e-2,
        3: 1.70828608729473871279604482173e-1,
        4: 1.25467687566822425016691814123e-1,
    },
    {
        0: 3.7109375e-2,
        3: 1.70252211019544039314978060272e-1,
        4: 6.02165389804559606850219397283e-2,
        5: -1.7578125e-2,
    },
    {
        0: 3.70920001185047927108779319836e-2,
        3: 1.70383925712239993810214054705e-1,
        4: 1.07262030446373284651809199168e-1,
        5: -1.53194377486244017527936158236e-2,
        6: 8.27378916381402288758473766002e-3,
    },
    {
        0: 6.24110958716075717114429577812e-1,
        3: -3.36089262944694129406857109825,
        4: -8.68219346841726006818189891453e-1,
        5: 2.75920996994467083049415600797e1,
        6: 2.01540675504778934086186788979e1,
        7: -4.34898841810699588477366255144e1,
    },
    {
        0: 4.77662536438264365890433908527e-1,
        3: -2.48811461997166764192642586468,
        4: -5.90290826836842996371446475743e-1,
        5: 2.12300514481811942347288949897e1,
        6: 1.52792336328824235832596922938e1,
        7: -3.32882109689848629194453265587e1,
        8: -2.03312017085086261358222928593e-2,
    },
    {
        0: -9.3714243008598732571704021658e-1,
        3: 5.18637242884406370830023853209,
        4: 1.09143734899672957818500254654,
        5: -8.14978701074692612513997267357,
        6: -1.85200656599969598641566180701e1,
        7: 2.27394870993505042818970056734e1,
        8: 2.49360555267965238987089396762,
        9: -3.0467644718982195003823669022,
    },
    {
        0: 2.27331014751653820792359768449,
        3: -1.05344954667372501984066689879e1,
        4: -2.00087205822486249909675718444,
        5: -1.79589318631187989172765950534e1,
        6: 2.79488845294199600508499808837e1,
        7: -2.85899827713502369474065508674,
        8: -8.87285693353062954433549289258,
        9: 1.23605671757943030647266201528e1,
        10: 6.43392746015763530355970484046e-1,
    },
)

# Extra stages 14, 15, 16 for the dense output.
_DOP853_DENSE_C = (0.1, 0.2, 0.777777777777777777777777777778)
_DOP853_DENSE_A = (
    {
        0: 5.61675022830479523392909219681e-2,
        6: 2.53500210216624811088794765333e-1,
        7: -2.46239037470802489917441475441e-1,
        8: -1.24191423263816360469010140626e-1,
        9: 1.5329179827876569731206322685e-1,
        10: 8.20105229563468988491666602057e-3,
        11: 7.56789766054569976138603589584e-3,
        12: -8.298e-3,
    },
    {
        0: 3.18346481635021405060768473261e-2,
        5: 2.83009096723667755288322961402e-2,
        6: 5.35419883074385676223797384372e-2,
        7: -5.49237485713909884646569340306e-2,
        10: -1.08347328697249322858509316994e-4,
        11: 3.82571090835658412954920192323e-4,
        12: -3.40465008687404560802977114492e-4,
        13: 1.41312443674632500278074618366e-1,
    },
    {
        0: -4.28896301583791923408573538692e-1,
        5: -4.69762141536116384314449447206,
        6: 7.68342119606259904184240953878,
        7: 4.06898981839711007970213554331,
        8: 3.56727187455281109270669543021e-1,
        12: -1.39902416515901462129418009734e-3,
        13: 2.9475147891527723389556272149,
        14: -9.15095847217987001081870187138,
    },
)

# err5 weights (er1..er12 in dop853.f).
_DOP853_E5 = _row(
    13,
    {
        0: 0.1312004499419488073250102996e-1,
        5: -0.1225156446376204440720569753e1,
        6: -0.4957589496572501915214079952,
        7: 0.1664377182454986536961530415e1,
        8: -0.3503288487499736816886487290,
        9: 0.3341791187130174790297318841,
        10: 0.8192320648511571246570742613e-1,
        11: -0.2235530786388629525884427845e-1,
    },
)

# 3rd-order embedded weights (bhh1..bhh3 in dop853.f), on stages 1, 9 and 12.
_DOP853_BHH = _row(
    13,
    {
        0: 0.244094488188976377952755905512,
        8: 0.733846688281611857341361741547,
        11: 0.220588235294117647058823529412e-1,
    },
)

#: Weights of DOP853's 3rd-order error estimate err3 = h * sum E3_i k_i (= b - bhh).
DOP853_E3 = _floats(F(x) - F(y) for x, y in zip(_DOP853_B, _DOP853_BHH, strict=True))

# Dense output coefficients d4..d7 (d41..d716 in dop853.f), one row per stage 1..16.
_DOP853_D = tuple(
    _row(16, d)
    for d in (
        {
            0: -0.84289382761090128651353491142e1,
            5: 0.56671495351937776962531783590,
            6: -0.30689499459498916912797304727e1,
            7: 0.23846676565120698287728149680e1,
            8: 0.21170345824450282767155149946e1,
            9: -0.87139158377797299206789907490,
            10: 0.22404374302607882758541771650e1,
            11: 0.63157877876946881815570249290,
            12: -0.88990336451333310820698117400e-1,
            13: 0.18148505520854727256656404962e2,
            14: -0.91946323924783554000451984436e1,
            15: -0.44360363875948939664310572000e1,
        },
        {
            0: 0.10427508642579134603413151009e2,
            5: 0.24228349177525818288430175319e3,
            6: 0.16520045171727028198505394887e3,
            7: -0.37454675472269020279518312152e3,
            8: -0.22113666853125306036270938578e2,
            9: 0.77334326684722638389603898808e1,
            10: -0.30674084731089398182061213626e2,
            11: -0.93321305264302278729567221706e1,
            12: 0.15697238121770843886131091075e2,
            13: -0.31139403219565177677282850411e2,
            14: -0.93529243588444783865713862664e1,
            15: 0.35816841486394083752465898540e2,
        },
        {
            0: 0.19985053242002433820987653617e2,
            5: -0.38703730874935176555105901742e3,
            6: -0.18917813819516756882830838328e3,
            7: 0.52780815920542364900561016686e3,
            8: -0.11573902539959630126141871134e2,
            9: 0.68812326946963000169666922661e1,
            10: -0.10006050966910838403183860980e1,
            11: 0.77771377980534432092869265740,
            12: -0.27782057523535084065932004339e1,
            13: -0.60196695231264120758267380846e2,
            14: 0.84320405506677161018159903784e2,
            15: 0.11992291136182789328035130030e2,
        },
        {
            0: -0.25693933462703749003312586129e2,
            5: -0.15418974869023643374053993627e3,
            6: -0.23152937917604549567536039109e3,
            7: 0.35763911791061412378285349910e3,
            8: 0.93405324183624310003907691704e2,
            9: -0.37458323136451633156875139351e2,
            10: 0.10409964950896230045147246184e3,
            11: 0.29840293426660503123344363579e2,
            12: -0.43533456590011143754432175058e2,
            13: 0.96324553959188282948394950600e2,
            14: -0.39177261675615439165231486172e2,
            15: -0.14972683625798562581422125276e3,
        },
    )
)

DOPRI8 = _make(
    "dopri8",
    order=8,
    c=_DOP853_C,
    a=tuple(_row(i, row) for i, row in enumerate(_DOP853_A)) + (_DOP853_B[:12],),
    b=_DOP853_B,
    b_err=_DOP853_E5,
    error_order=5,
    fsal=True,
    dense_c=_DOP853_DENSE_C,
    dense_a=tuple(_row(13 + j, row) for j, row in enumerate(_DOP853_DENSE_A)),
    dense_p=_hairer_dense(_DOP853_B, _DOP853_D, n_stages=16),
    dense_order=7,
)


DOPRI8 = DOPRI8._replace(b_err3=DOP853_E3)

TABLEAUS = {t.name: t for t in (EULER, MIDPOINT, HEUN, RK4, BOSH3, DOPRI5, TSIT5, DOPRI8)}
