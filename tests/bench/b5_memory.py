"""B5 — peak memory of one gradient vs the number of solver steps, per gradient mode.

The ode_demo MLP (spiral.py weights) on the demo batch of 20 initial states,
rk4 over t ∈ [0, 1] with 20, 100 and 400 fixed steps, L = mean(y(1)²); peak
memory measured with tracemalloc (numpy reports its buffers to it) during
`value_and_grad`, above what was allocated before. "adjoint" should stay flat,
"backprop" grows with the steps (every stage on the tape), "checkpoint" grows
by one stored state per step.
"""

from common import Section, goal

STEPS = (20, 100, 400)
MODES = ("adjoint", "backprop", "checkpoint")


def peak_bytes(fun):
    """Peak bytes allocated while fun() runs, above what was allocated before.

    fun runs once first, and only the young generations are collected after it: a full
    collection empties CPython's free lists (of tuples, floats, ...), which then refill
    during the measured call, and tracemalloc counts their blocks as allocated. A short
    solve refills them less than a long one, which looked like 100 KiB of growth with the
    steps (1.6× from 20 to 400) that no solver state explains.
    """
    import gc
    import tracemalloc

    fun()
    gc.collect(1)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fun()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def run(rounds=9):
    import numpy
    from spiral import init_params, make_batch, model

    import tinyad
    import tinyad.numpy as np
    import tinyode

    params = init_params()
    y0 = make_batch()[0]
    t = numpy.array([0.0, 1.0])

    def gradient(mode, steps):
        def loss(params):
            ys = tinyode.odeint(
                model, y0, t, params, method="rk4", step_size=1.0 / steps, gradient=mode
            )
            return np.mean(ys[-1] ** 2)

        return lambda: tinyad.value_and_grad(loss)(params)

    section = Section(
        "B5 peak memory (tracemalloc) of one gradient vs rk4 steps (MLP ODE, batch 20)",
        ["mode"] + [f"{n} steps" for n in STEPS] + [f"{STEPS[-1]} / {STEPS[0]} steps"],
    )
    peaks = {}
    for mode in MODES:
        peaks[mode] = [peak_bytes(gradient(mode, n)) for n in STEPS]
        growth = peaks[mode][-1] / peaks[mode][0]
        section.rows.append(
            [mode] + [f"{p / 1024:.0f} KiB" for p in peaks[mode]] + [f"{growth:.1f}×"]
        )
    growth = peaks["adjoint"][-1] / peaks["adjoint"][0]
    section.goals.append(
        goal(
            "B5",
            f"adjoint peak memory, {STEPS[-1]} / {STEPS[0]} steps",
            growth,
            "flat (≤ 1.2×)",
            growth <= 1.2,
        )
    )
    per_step = (peaks["backprop"][-1] - peaks["backprop"][0]) / (STEPS[-1] - STEPS[0])
    section.notes.append(
        f"backprop keeps about {per_step / 1024:.1f} KiB per rk4 step on the tape (4 MLP "
        "evaluations on a (20, 1, 2) state and their hidden (20, 1, 50) activations); "
        "checkpoint keeps one (20, 1, 2) state per step plus one step's tape."
    )
    return [section]
