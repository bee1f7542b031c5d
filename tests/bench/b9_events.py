"""B9 — events: function evaluations to locate an event, against scipy's solve_ivp(events=…).

Problems, each with its exact event time:
- the bouncing ball h' = v, v' = −9.81 from (10, 2), falling through h = 0 at
  t* = (v0 + √(v0² + 2 g h0)) / g;
- the nonlinear pendulum θ'' = −sin θ from (θ0, 0) = (2, 0), swinging down through
  θ = 0 at a quarter period, t* = K(sin²(θ0/2)) (the complete elliptic integral).

tinyode's `odeint_event` (dopri5, dopri8) against scipy's `solve_ivp` (RK45, DOP853)
with a terminal event in the same direction. Both count every call of the right-hand
side (scipy's `nfev`, tinyode's `info["nfe"]`); neither evaluates the right-hand side
to locate the root on its dense output (DOP853 and dopri8 evaluate three extra stages
per step for it). "At equal accuracy": over a sweep of rtol = 10^(−k/4) (atol =
rtol / 100), the fewest evaluations with which each locates t* to a target error.
Goal: tinyode needs at most 1.1× scipy's evaluations at every target.
"""

import math

from common import Section, goal, peer, skipped

RTOLS = [10 ** (-k / 16) for k in range(48, 193)]  # 1e-3 … 1e-12
TARGETS = (1e-6, 1e-9)
PAIRS = (("dopri5", "RK45"), ("dopri8", "DOP853"))


def problems():
    """{name: (f(y, t) for tinyode, f(t, y) for scipy, y0, event(y), direction, exact t*)}."""
    import numpy
    import scipy.special

    import tinyad.numpy as np

    h0, v0, g = 10.0, 2.0, 9.81
    theta0 = 2.0
    return {
        "bouncing ball": (
            lambda y, t: np.stack([y[1], -g * np.ones_like(y[1])]),
            lambda t, y: numpy.array([y[1], -g]),
            numpy.array([h0, v0]),
            lambda y: y[0],
            -1,
            (v0 + math.sqrt(v0**2 + 2 * g * h0)) / g,
        ),
        "pendulum θ0 = 2": (
            lambda y, t: np.stack([y[1], -np.sin(y[0])]),
            lambda t, y: numpy.array([y[1], -math.sin(y[0])]),
            numpy.array([theta0, 0.0]),
            lambda y: y[0],
            -1,
            float(scipy.special.ellipk(math.sin(theta0 / 2) ** 2)),
        ),
    }


def ours(prob, method, rtol):
    """(nfe, error of t*) of tinyode.odeint_event."""
    import tinyode

    f, _, y0, event, direction, exact = prob
    t_event, _, info = tinyode.odeint_event(
        f,
        y0,
        0.0,
        lambda y, t: event(y),
        direction=direction,
        method=method,
        rtol=rtol,
        atol=rtol / 100,
        full_output=True,
    )
    return info["nfe"], abs(float(t_event) - exact)


def scipys(prob, method, rtol):
    """(nfev, error of t*) of scipy.integrate.solve_ivp with a terminal event."""
    from scipy.integrate import solve_ivp

    _, f, y0, event, direction, exact = prob

    def hit(t, y):
        return event(y)

    hit.terminal, hit.direction = True, direction
    sol = solve_ivp(f, (0.0, 100.0), y0, method=method, rtol=rtol, atol=rtol / 100, events=hit)
    (t_event,) = sol.t_events[0]
    return sol.nfev, abs(t_event - exact)


def cheapest(runs, target):
    """The fewest evaluations at equal accuracy: among runs [(nfe, error)] in order of
    tightening rtol, those from which on every tighter run meets `target` (None if none)."""
    reliable, worst = [], 0.0
    for nfe, err in reversed(runs):
        worst = max(worst, err)
        if worst > target:
            break
        reliable.append(nfe)
    return min(reliable) if reliable else None


def plain_nfe(prob, method, rtol, t_event):
    """Evaluations of a plain tinyode.odeint to the event time: the solve's own cost."""
    import numpy

    import tinyode

    f, _, y0, _, _, _ = prob
    t = numpy.array([0.0, float(t_event)])
    _, info = tinyode.odeint(f, y0, t, method=method, rtol=rtol, atol=rtol / 100, full_output=True)
    return info["nfe"]


def bug_cases():
    """The peers' bug cases: y' = 1 from y(0) = 0, where the solver's steps grow 10× each."""
    import numpy

    return {
        "dip inside one step: (2.5 − y)(5 − y) (diffrax #507)": (
            lambda y: (2.5 - y[0]) * (5.0 - y[0]),
            2.5,
        ),
        "a zero at t0: (2.5 − y)(5 − y)(0 − y) (torchdiffeq #285)": (
            lambda y: (2.5 - y[0]) * (5.0 - y[0]) * (0.0 - y[0]),
            2.5,
        ),
    }, numpy.zeros(1)


def run(rounds=9):
    del rounds  # evaluations are counted, not timed
    same = Section(
        "B9 events at the same rtol (atol = rtol/100): evaluations and error of the event time",
        [
            "problem",
            "rtol",
            "tinyode",
            "NFE",
            "odeint to t*",
            "error",
            "scipy",
            "NFE",
            "error",
            "NFE ratio",
        ],  # fmt: skip
    )
    matched = Section(
        "B9 events at equal accuracy: fewest evaluations to locate t* within the target, "
        f"over {len(RTOLS)} tolerances 1e-3 … 1e-12",
        ["problem", "target", "tinyode", "NFE", "scipy", "NFE", "ratio"],
    )
    if peer("scipy.integrate") is None:
        matched.notes.append(skipped("scipy comparison", "scipy.integrate"))
        return [matched]
    for name, prob in problems().items():
        for method, peer_method in PAIRS:
            a = [ours(prob, method, r) for r in RTOLS]
            b = [scipys(prob, peer_method, r) for r in RTOLS]
            for r in (1e-6, 1e-9):
                i = min(range(len(RTOLS)), key=lambda k: abs(math.log(RTOLS[k] / r)))
                plain = plain_nfe(prob, method, RTOLS[i], prob[5])
                same.rows.append(
                    [name, f"{RTOLS[i]:g}", method, a[i][0], plain, f"{a[i][1]:.1e}",
                     peer_method, b[i][0], f"{b[i][1]:.1e}", f"{a[i][0] / b[i][0]:.2f}"]
                )  # fmt: skip
            for target in TARGETS:
                na, nb = cheapest(a, target), cheapest(b, target)
                ratio = na / nb if na and nb else None
                matched.rows.append(
                    [name, f"{target:g}", method, na or "—", peer_method, nb or "—",
                     f"{ratio:.2f}" if ratio else "—"]
                )  # fmt: skip
                matched.goals.append(
                    goal(
                        "B9",
                        f"{method} NFE / {peer_method} to locate t* within {target:g}, {name}",
                        ratio,
                        "≤ 1.1×",
                        ratio is not None and ratio <= 1.1,
                    )
                )
    same.notes.append(
        "'odeint to t*': a plain tinyode.odeint from 0 to the exact event time, at the same "
        "tolerance: what the solve itself costs, without looking for the event."
    )
    matched.notes.append(
        "The ball's solution is a quadratic, which every pair integrates exactly: its error "
        "is the root finder's (tinyode's Illinois to 1e-12·max(1, |t|), scipy's brentq to 4 "
        "eps), and its evaluations only the steps to reach the impact."
    )
    matched.notes.append(
        "Neither side evaluates the right-hand side to locate the root. dopri8's dense output "
        "takes 3 more evaluations a step, on every step (tinyode checks inside each one); "
        "DOP853's is built only on the step whose ends differ in sign. dopri5 and RK45 are "
        "the same pair: the difference is the step controller (tinyode's PI, scipy's I), "
        "a step or two on these short solves."
    )
    return [same, matched, bugs()]


def bugs():
    """The peers' bug cases, solved by both with the default tolerances."""
    import numpy
    from scipy.integrate import solve_ivp

    import tinyode

    section = Section(
        "B9 the peers' bug cases on y' = 1, y(0) = 0 (steps grow 10× each): the event found",
        ["event function", "exact t*", "tinyode dopri5", "scipy RK45"],
    )
    cases, y0 = bug_cases()
    for name, (g, exact) in cases.items():
        ours_t, _ = tinyode.odeint_event(
            lambda y, t: numpy.ones_like(y), y0, 0.0, lambda y, t: g(y)
        )

        def hit(t, y, g=g):
            return g(y)

        hit.terminal = True
        sol = solve_ivp(lambda t, y: numpy.ones_like(y), (0.0, 100.0), y0, events=hit)
        theirs = sol.t_events[0]
        section.rows.append(
            [name, f"{exact:g}", f"{float(ours_t):.15g}",
             f"{theirs[0]:.15g}" if theirs.size else "none (solved to t = 100)"]
        )  # fmt: skip
    return section


if __name__ == "__main__":
    import run_all

    run_all.main(["--only", "B9"])
