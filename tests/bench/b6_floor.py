"""B6 — a floor: the B3 spiral iteration by hand in plain numpy, no tape, no tinyode.

What the floor is, exactly: the *same algorithm* as tinyode's adjoint, so that
the ratio measures only what tinyode's machinery costs, not a different
numerical choice:

- a hand-written dopri5 on flat float64 vectors (the coefficients are read from
  tinyode.tableaus as data; the stages live in one preallocated (7, n) array and
  are combined with `A[i, :i] @ K[:i]`), with tinyode's rules: Hairer's initial
  step, the forward solve's RMS norm of err / (atol + rtol·max(|y0|, |y1|)),
  the PI controller (β = 0.2/5, α = 1/5 − 0.75β, safety 0.9, growth in
  [0.2, 10], none after a rejection), FSAL, the last step landing on t_end,
  Shampine's dense output;
- the adjoint backward pass as in tinyode/adjoint.py: per output interval one
  backward dopri5 solve of the flat augmented state [z, a, dL/dθ, dL/dt] with
  tinyode's mixed error norm (the largest of the RMS norms of the parts z, a,
  dL/dθ and dL/dt), no dL/dt_i evaluation (t is not differentiated), Hairer's
  initial step on the first interval only and afterwards `first_step` = the
  last accepted step size of the previous interval before its clipped final
  step (its only step if it took one: tinyode's `step_sizes[-2:][0]`), the
  cotangent of ys[i] added to a at t_i, a drift check (stricter than
  tinyode's: not divided by the step count);
- the vector–Jacobian products of the MLP derived by hand
  (u = y³, h = tanh(u W1 + b1): dW2 = hᵀc, db2 = Σc, dh = c W2ᵀ, dp = dh ⊙ (1 − h²),
  dW1 = uᵀdp, db1 = Σdp, dy = (dp W1ᵀ) ⊙ 3y²), one forward and one backward
  pass per evaluation, nothing recorded.

It takes the same steps as tinyode, hence the same number of function
evaluations (checked below), and gives the same gradient to rounding (1e-10
relative). Also timed: tinyode's solver loop (`tinyode.solver.integrate` on raw
arrays, with the same mixed norm and step carry) driven by the same hand-written
adjoint dynamics — tinyode without the tape — which splits tinyode's cost into
solver machinery and tape.
Goal: tinyode ≤ 1.5× the floor.
"""

import math

from common import Section, agree, compare, goal, paired_ratio, timed, us

GRAD_RTOL = 1e-10  # the same steps in the same order: only rounding may differ


class Dopri5:
    """tinyode's dopri5 rules on flat numpy vectors; counts evaluations in `nfe`."""

    def __init__(self):
        import numpy

        from tinyode.tableaus import TABLEAUS

        tab = TABLEAUS["dopri5"]
        s = len(tab.c)
        self.c = numpy.array(tab.c)
        self.a = numpy.zeros((s, s))
        for i, row in enumerate(tab.a):
            self.a[i, : len(row)] = row
        self.b_err = numpy.array(tab.b_err)
        self.p = numpy.array(tab.dense_p)  # (s, degree)
        self.degree = self.p.shape[1]
        self.beta = 0.2 / (tab.error_order + 1)
        self.alpha = 1.0 / (tab.error_order + 1) - 0.75 * self.beta
        self.order = tab.order
        self.nfe = 0
        self.step_sizes = []  # |h| of each accepted step, as tinyode's info["step_sizes"]

    def solve(self, f, y0, ts, rtol, atol, parts=None, first_step=None):
        """y at each ts[i] (a list of flat arrays), solving y' = f(y, t) from ts[0].

        `parts`: (start, stop) slices of y; the error norm is then the largest RMS norm
        of a part (tinyode's mixed norm), else one RMS norm. `first_step`: the first
        step size, skipping the initial-step heuristic.
        """
        import numpy

        if parts is None:

            def norm(x):
                return math.sqrt(float(numpy.dot(x, x)) / x.size)

        else:

            def norm(x):
                return math.sqrt(max(float(x[i:j] @ x[i:j]) / (j - i) for i, j in parts if j > i))

        a, c, b_err, p = self.a, self.c, self.b_err, self.p
        t0, t_end = ts[0], ts[-1]
        direction = 1.0 if t_end >= t0 else -1.0
        k = numpy.empty((7, y0.size))
        k[0] = f(y0, t0)
        self.nfe += 1
        if first_step is not None:
            h = abs(first_step)
        else:  # Hairer, Nørsett & Wanner II.4
            scale = atol + numpy.abs(y0) * rtol
            d0, d1 = norm(y0 / scale), norm(k[0] / scale)
            h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
            f1 = f(y0 + direction * h0 * k[0], t0 + direction * h0)
            self.nfe += 1
            d2 = norm((f1 - k[0]) / scale) / h0
            d = max(d1, d2)
            h1 = max(1e-6, h0 * 1e-3) if d <= 1e-15 else (0.01 / d) ** (1 / (self.order + 1))
            h = min(100 * h0, h1)

        ys, y, tn, i_out = [y0], y0, t0, 1
        prev_ratio, rejected_last = 1e-4, False
        powers = numpy.arange(1, self.degree + 1)
        while i_out < len(ts):
            hs = direction * h
            last = (tn + hs - t_end) * direction >= -1e-12 * max(abs(t_end), 1.0)
            if last:
                hs = t_end - tn
            for i in range(1, 7):
                k[i] = f(y + hs * (a[i, :i] @ k[:i]), tn + c[i] * hs)
            self.nfe += 6
            y1 = y + hs * (a[6, :6] @ k[:6])
            err = hs * (b_err @ k)
            ratio = norm(err / (atol + rtol * numpy.maximum(numpy.abs(y), numpy.abs(y1))))
            if not ratio <= 1.0:
                h = abs(hs) * min(1.0, max(0.2, 0.9 * ratio**-self.alpha))
                rejected_last = True
                continue
            while i_out < len(ts) - last and (ts[i_out] - (tn + hs)) * direction <= 0:
                theta = (ts[i_out] - tn) / hs
                ys.append(y + hs * ((p @ theta**powers) @ k))
                i_out += 1
            if last:
                ys.append(y1)
                i_out = len(ts)
            self.step_sizes.append(abs(hs))
            tn = t_end if last else tn + hs
            y = y1
            k[0] = k[6]
            factor = 0.9 * max(ratio, 1e-10) ** -self.alpha * prev_ratio**self.beta
            h = abs(hs) * min(1.0 if rejected_last else 10.0, max(0.2, factor))
            prev_ratio, rejected_last = max(ratio, 1e-4), False
        return ys


def hand_mlp(params, batch_shape):
    """(f(z, t), augmented(s, t), sizes) on flat vectors, derivatives written by hand."""
    import numpy

    (W1, b1), (W2, b2) = params
    rows = int(numpy.prod(batch_shape[:-1]))
    n = rows * 2
    p = W1.size + b1.size + W2.size + b2.size
    zero = numpy.zeros(1)

    def f(z, t):
        y = z.reshape(rows, 2)
        return (numpy.tanh(y**3 @ W1 + b1) @ W2 + b2).ravel()

    def augmented(s, t):
        y = s[:n].reshape(rows, 2)
        c = -s[n : 2 * n].reshape(rows, 2)
        y2 = y * y
        u = y2 * y
        h = numpy.tanh(u @ W1 + b1)
        dp = (c @ W2.T) * (1.0 - h * h)
        return numpy.concatenate(
            [
                (h @ W2 + b2).ravel(),
                ((dp @ W1.T) * (3.0 * y2)).ravel(),
                (u.T @ dp).ravel(),
                dp.sum(0),
                (h.T @ c).ravel(),
                c.sum(0),
                zero,  # dL/dt: the dynamics do not depend on t
            ]
        )

    return f, augmented, n, p


def floor_step(batch, params, solve_with):
    """One training iteration (loss, flat gradient, nfe) by the hand-written adjoint.

    `solve_with(f, y0, ts, parts=None, first_step=None) -> (list of y, nfe, carry)` is
    the ODE solver to use; `carry` is the step size the next backward interval starts
    with (the last accepted step before the one clipped onto ts[-1], as tinyode's
    `step_sizes[-2:][0]`).
    """
    import numpy
    from spiral import ATOL, RTOL

    batch_y0, batch_t, batch_y = batch
    f, augmented, n, p = hand_mlp(params, batch_y0.shape)
    ts = [float(v) for v in batch_t]
    # tinyode's mixed norm: the largest RMS norm of the parts [z, a, dL/dθ, dL/dt]
    parts = ((0, n), (n, 2 * n), (2 * n, 2 * n + p), (2 * n + p, 2 * n + p + 1))

    def step():
        ys, nfe_f, _ = solve_with(f, batch_y0.ravel(), ts)
        pred = numpy.stack(ys)
        diff = pred - batch_y.reshape(pred.shape)
        loss = float(numpy.mean(numpy.abs(diff)))
        g = numpy.sign(diff) / diff.size
        a = g[-1].copy()
        dtheta, dt0 = numpy.zeros(p), numpy.zeros(1)  # t is not differentiated: no dL/dt_i
        nfe_b, first_step = 0, None
        for i in range(len(ts) - 1, 0, -1):
            state = numpy.concatenate([ys[i], a, dtheta, dt0])
            path, nfe, first_step = solve_with(
                augmented, state, [ts[i], ts[i - 1]], parts, first_step
            )
            nfe_b += nfe
            s = path[1]
            z, z_stored = s[:n], ys[i - 1]
            scale = ATOL + RTOL * numpy.maximum(numpy.abs(z), numpy.abs(z_stored))
            drift = math.sqrt(float(numpy.mean(((z - z_stored) / scale) ** 2)))
            assert drift <= 10.0, f"the floor's backsolve drifted ({drift:.3g})"
            a = s[n : 2 * n] + g[i - 1]
            dtheta, dt0 = s[2 * n : 2 * n + p], s[2 * n + p :]
        return loss, dtheta, nfe_f, nfe_b

    return step


def evaluations(batch, params):
    """(ours, hand, agree): one evaluation of the augmented dynamics as the backward solves
    call it, by tinyode's adjoint (Augmented on the flat state of a PytreeState, f's vjp
    compiled after the first call) and by the hand-written one, at the same z, a and t."""
    import numpy
    import spiral

    from tinyode.adjoint import Augmented
    from tinyode.inputs import PytreeState, split_args

    batch_y0 = batch[0]
    z = batch_y0 * 0.9
    a = numpy.linspace(-1.0, 1.0, z.size).reshape(z.shape)
    theta, argdef = split_args((params,))
    state = {
        "z": z,
        "a": a,
        "L_theta": [numpy.zeros_like(x) for x in theta],
        "L_t": numpy.zeros(()),
    }
    layout = PytreeState(state)
    ours_flat = layout.wrap(Augmented(spiral.model, argdef, z.dtype))
    v, args, t = layout.z0, (list(theta),), 0.3
    ours_flat(v, t, *args)  # the first call traces f and its vjp, later ones run the programs
    _, augmented, n, p = hand_mlp(params, batch_y0.shape)
    s = numpy.concatenate([z.ravel(), a.ravel(), numpy.zeros(p + 1)])
    got = layout.unpack(ours_flat(v, t, *args)[None])
    want = augmented(s, t)
    same = numpy.allclose(got["z"].ravel(), want[:n], rtol=1e-12, atol=0) and numpy.allclose(
        got["a"].ravel(), want[n : 2 * n], rtol=1e-12, atol=0
    )
    dtheta = numpy.concatenate([x.ravel() for x in got["L_theta"]])
    same = same and numpy.allclose(dtheta, want[2 * n : 2 * n + p], rtol=1e-12, atol=1e-15)
    return (lambda: ours_flat(v, t, *args)), (lambda: augmented(s, t)), same


def run(rounds=9):
    import numpy
    import spiral
    from b3_spiral import long_batch

    from tinyode.solver import Stats, integrate, mixed_norm, rms_norm

    def hand_solver(f, y0, ts, parts=None, first_step=None):
        solver = Dopri5()
        ys = solver.solve(f, y0, ts, spiral.RTOL, spiral.ATOL, parts, first_step)
        return ys, solver.nfe, solver.step_sizes[-2:][0]

    def tinyode_solver(f, y0, ts, parts=None, first_step=None):
        stats = Stats()
        norm = rms_norm if parts is None else (lambda x: mixed_norm(x, parts))
        ys = integrate(
            f,
            y0,
            numpy.array(ts),
            (),
            method="dopri5",
            rtol=spiral.RTOL,
            atol=spiral.ATOL,
            first_step=first_step,
            norm=norm,
            stats=stats,
        )
        return ys, stats.nfe, float(stats.as_dict()["step_sizes"][-2:][0])

    params = spiral.init_params()
    section = Section(
        "B6 floor: the B3 iteration by hand in plain numpy (same algorithm, no tape)",
        [
            "configuration",
            "candidate",
            "time",
            "/ floor",
            "NFE forward",
            "NFE backward",
            "grad rel. error vs tinyode",
        ],
    )
    for label, batch, config_rounds in (
        ("demo batch", spiral.make_batch(), max(rounds, 15)),
        ("long", long_batch(), max(rounds, 9)),
    ):
        ours = spiral.tinyode_step(batch)
        loss, grads, info = ours(params)
        candidates = {
            "floor: hand dopri5 + hand vjp": floor_step(batch, params, hand_solver),
            "tinyode solver + hand vjp (no tape)": floor_step(batch, params, tinyode_solver),
            "tinyode adjoint": lambda ours=ours: ours(params),
        }
        results = {"tinyode adjoint": (loss, grads, info["nfe"], info["backward"]["nfe"])}
        errors = {}
        for name in list(candidates)[:2]:
            results[name] = candidates[name]()
            errors[name] = agree(
                f"B6 {label}: {name} vs tinyode", results[name][1], grads, GRAD_RTOL
            )
        times = compare(candidates, rounds=config_rounds, warmup=1, min_sample=0.02)
        floor = times["floor: hand dopri5 + hand vjp"]
        for name, t in times.items():
            _, _, nfe_f, nfe_b = results[name]
            section.rows.append(
                [
                    label,
                    name,
                    timed(t),
                    f"{paired_ratio(t, floor):.2f}×",
                    nfe_f,
                    nfe_b,
                    f"{errors[name]:.1e}" if name in errors else "—",
                ]
            )
        nfe = {name: results[name][2:] for name in results}
        if len(set(nfe.values())) > 1:
            section.notes.append(
                f"{label}: the NFE differ ({', '.join(f'{k}: {v}' for k, v in nfe.items())}) — "
                "the step sequences are not identical, so part of the ratio is algorithmic."
            )
        else:
            section.notes.append(
                f"{label}: all three take the same steps ({nfe['tinyode adjoint'][0]} forward, "
                f"{nfe['tinyode adjoint'][1]} backward evaluations): the ratios are overhead only."
            )
        ratio = paired_ratio(times["tinyode adjoint"], floor)
        tag = "B6" if label == "demo batch" else "B6 long"
        section.goals.append(
            goal(
                tag,
                "tinyode adjoint iteration / hand-written numpy floor",
                ratio,
                "≤ 1.5×",
                ratio <= 1.5,
            )
        )
    ours_eval, hand_eval, same = evaluations(spiral.make_batch(), params)
    assert same, "B6: tinyode's augmented dynamics and the hand-written ones disagree"
    times = compare({"ours": ours_eval, "hand": hand_eval}, rounds=rounds, warmup=2)
    per_eval = paired_ratio(times["ours"], times["hand"])
    section.notes.append(
        f"One evaluation of the augmented dynamics (demo batch, as the backward solves call "
        f"it, f's vjp compiled): tinyode {us(times['ours'].median)}, hand-written "
        f"{us(times['hand'].median)}: {per_eval:.2f}× per evaluation (the same numbers to "
        "1e-12). Per iteration the rest is the solver loop, the per-interval solves and one "
        "trace of f per gradient."
    )
    section.goals.append(
        goal(
            "B6 eval",
            "one augmented evaluation, tinyode / hand-written numpy",
            per_eval,
            "≤ 2.0× (issue 11)",
            per_eval <= 2.0,
        )
    )
    section.notes.append(
        "/ floor: the median over rounds of each round's ratio to the floor's sample beside "
        "it (on a busy machine a slow spell shifts one median, and cancels in the ratio)."
    )
    section.notes.append(
        "'tinyode solver + hand vjp' runs tinyode's solver loop (tinyode.solver.integrate, "
        "with the adjoint's mixed norm and step carry) on raw arrays with the floor's "
        "hand-written augmented dynamics (the tape never runs): its excess over the floor is "
        "the solver machinery, tinyode adjoint's excess over it is the tape."
    )
    return [section]
