"""B3 — one training iteration of torchdiffeq's ode_demo with the adjoint method.

The problem, weights and batch are in spiral.py (float64, dopri5, rtol 1e-7,
atol 1e-9, the same on both sides). Timed: loss and gradient of one batch,
tinyode's `value_and_grad` of `odeint(..., gradient="adjoint")` against
torchdiffeq's `odeint_adjoint` + `loss.backward()`. NFE: tinyode's
`info["nfe"]` and `info["backward"]["nfe"]`; torchdiffeq's by counting calls of
the module's forward during the forward and the backward pass.

Alongside, for reference: tinyode's "backprop" and "checkpoint" modes,
torchdiffeq's plain `odeint` (backprop through the solver), and both libraries'
seminorm (tinyode `adjoint_norm="seminorm"`, torchdiffeq
`adjoint_options=dict(norm="seminorm")`). A second configuration ("long") trains
on one whole trajectory, y0 = (2, 0) over t ∈ [0, 25] at 26 output times, where
each backward interval needs several steps and the norms matter more.

Goals: tinyode adjoint ≤ 0.5× torchdiffeq's time; forward and backward NFE
within 10% of torchdiffeq's; seminorm ≥ 30% fewer backward evaluations.
"""

from common import Section, agree, compare, goal, peer, skipped, timed

GRAD_RTOL = 1e-5  # adjoint gradients of two solvers agree to about the solver tolerance


def long_batch():
    import numpy
    from spiral import TRUE_A, TRUE_Y0

    import tinyode

    t = numpy.linspace(0.0, 25.0, 26)
    true_y = tinyode.odeint(
        lambda y, t: y**3 @ TRUE_A, TRUE_Y0, t, method="dopri8", rtol=1e-11, atol=1e-12
    )
    return TRUE_Y0, t, true_y


def run(rounds=9):
    import spiral

    torch, torchdiffeq = peer("torch"), peer("torchdiffeq")
    have_peer = torch is not None and torchdiffeq is not None
    params = spiral.init_params()
    sections = []
    for label, batch, config_rounds in (
        ("demo batch (20 windows × 10 times)", spiral.make_batch(), rounds),
        ("long (1 trajectory, t ∈ [0, 25], 26 times)", long_batch(), max(3, rounds // 3)),
    ):
        sections.append(run_config(label, batch, params, torch, torchdiffeq, config_rounds))
        if not have_peer:
            sections[-1].notes.append(skipped("torchdiffeq comparison", "torchdiffeq"))
    return sections


def run_config(label, batch, params, torch, torchdiffeq, rounds):
    import spiral

    ours = {
        "tinyode adjoint": dict(gradient="adjoint"),
        "tinyode adjoint seminorm": dict(gradient="adjoint", adjoint_norm="seminorm"),
        "tinyode backprop": dict(gradient="backprop"),
        "tinyode checkpoint": dict(gradient="checkpoint"),
    }
    candidates, results, backward_steps = {}, {}, {}
    for name, options in ours.items():
        step = spiral.tinyode_step(batch, **options)
        loss, grads, info = step(params)
        backward = info.get("backward", {})
        results[name] = (loss, grads, info["nfe"], backward.get("nfe"))
        if "n_steps" in backward:
            backward_steps[name] = (backward["n_steps"], backward["n_rejected"])
        candidates[name] = lambda step=step: step(params)

    theirs = {
        "torchdiffeq odeint_adjoint": dict(adjoint=True),
        "torchdiffeq odeint_adjoint seminorm": dict(
            adjoint=True, adjoint_options=dict(norm="seminorm")
        ),
        "torchdiffeq odeint (backprop)": dict(adjoint=False),
    }
    if torch is not None and torchdiffeq is not None:
        for name, options in theirs.items():
            step, result = spiral.torchdiffeq_step(torch, torchdiffeq, params, batch, **options)
            loss, grads, nfe_forward, nfe_backward = result()
            results[name] = (loss, grads, nfe_forward, nfe_backward)
            candidates[name] = step

    reference = "torchdiffeq odeint_adjoint" if reference_ok(results) else "tinyode adjoint"
    errors = {
        name: agree(f"B3 {label}: {name} vs {reference}", r[1], results[reference][1], GRAD_RTOL)
        for name, r in results.items()
        if name != reference
    }
    times = compare(candidates, rounds=rounds, warmup=0, min_sample=0.02)  # warmed above

    section = Section(
        f"B3 ode_demo training iteration — {label}",
        [
            "candidate",
            "time",
            "vs torchdiffeq adjoint",
            "NFE forward",
            "NFE backward",
            "loss",
            f"grad rel. error vs {reference}",
        ],
    )
    peer_time = times.get("torchdiffeq odeint_adjoint")
    for name, t in times.items():
        loss, _, nfe_f, nfe_b = results[name]
        section.rows.append(
            [
                name,
                timed(t),
                f"{t.median / peer_time.median:.2f}×" if peer_time else "—",
                nfe_f,
                "—" if nfe_b is None else nfe_b,
                f"{loss:.8f}",
                "—" if name == reference else f"{errors[name]:.1e}",
            ]
        )

    tag = "B3" if label.startswith("demo") else "B3 long"
    ratio = times["tinyode adjoint"].median / peer_time.median if peer_time else None
    section.goals.append(
        goal(
            tag,
            "adjoint iteration time, tinyode / torchdiffeq",
            ratio,
            "≤ 0.5×",
            ratio and ratio <= 0.5,
        )
    )
    for part, index in (("forward", 2), ("backward", 3)):
        r = (
            results["tinyode adjoint"][index] / results["torchdiffeq odeint_adjoint"][index]
            if peer_time
            else None
        )
        section.goals.append(
            goal(
                tag, f"NFE {part}, tinyode / torchdiffeq", r, "within 10%", r and abs(r - 1) <= 0.1
            )
        )
    full, semi = results["tinyode adjoint"][3], results["tinyode adjoint seminorm"][3]
    saving = 1 - semi / full
    section.goals.append(
        goal(
            tag,
            "seminorm saving in backward NFE, tinyode",
            100 * saving,
            "≥ 30%",
            saving >= 0.3,
            "{:.0f}%",
        )
    )
    if peer_time:
        full, semi = (
            results[k][3]
            for k in ("torchdiffeq odeint_adjoint", "torchdiffeq odeint_adjoint seminorm")
        )
        section.notes.append(
            f"torchdiffeq's own seminorm saving here: {100 * (1 - semi / full):.0f}% "
            f"({full} → {semi} backward NFE)."
        )
    section.notes.extend(backward_notes(results, backward_steps, len(batch[1]) - 1, peer_time))
    return section


def backward_notes(results, backward_steps, intervals, have_peer):
    """What the backward NFE are made of, from the measured counts."""
    full, semi = results["tinyode adjoint"][3], results["tinyode adjoint seminorm"][3]
    (steps, rejected), (semi_steps, semi_rejected) = (
        backward_steps[k] for k in ("tinyode adjoint", "tinyode adjoint seminorm")
    )
    notes = [
        "tinyode's backward error norm is torchdiffeq's: the largest of the RMS norms of the "
        "parts [z, a, dL/dθ, dL/dt] of the augmented state (each on its own scale); the "
        "seminorm keeps only z and a. t is not differentiated here, so neither library "
        "evaluates dL/dt_i at the output times.",
        f"tinyode's backward, {intervals} intervals: {full} NFE = {steps} accepted + "
        f"{rejected} rejected steps × 6 + {intervals} (each interval's first stage) + 1 "
        "(the initial-step probe, first interval only). Each later interval starts with the "
        "last accepted step size of the one before (no initial-step heuristic), about "
        f"{(steps + rejected) / intervals:.1f} steps per interval.",
    ]
    if have_peer:
        peer_full, peer_semi = (
            results[k][3]
            for k in ("torchdiffeq odeint_adjoint", "torchdiffeq odeint_adjoint seminorm")
        )
        peer_steps, peer_semi_steps = ((n - 2 * intervals) / 6 for n in (peer_full, peer_semi))
        notes.append(
            "torchdiffeq restarts its step selection on every interval (2 evaluations: f at "
            f"the start and the initial-step probe, then 6 a step): {peer_full} = "
            f"{intervals} × 2 + 6 × {peer_steps:.0f} steps (accepted or rejected), "
            f"{peer_steps / intervals:.1f} per interval; with its seminorm {peer_semi} = "
            f"{intervals} × 2 + 6 × {peer_semi_steps:.0f}. Against tinyode's {full}: "
            f"{2 * intervals} − {intervals + 1} = {intervals - 1} more evaluations for the "
            f"restarts, and 6 × ({peer_steps:.0f} − {steps + rejected}) = "
            f"{6 * (peer_steps - steps - rejected):.0f} for its extra steps: it starts every "
            "interval from a fresh initial-step guess, tinyode from the step size it carries."
        )
    if (steps, rejected) == (semi_steps, semi_rejected):
        why = (
            f"each of the {intervals} short intervals is crossed in a single step under either norm"
            if (steps, rejected) == (intervals, 0)
            else "the z and a parts decide every step"
        )
        notes.append(
            f"tinyode's seminorm takes the same {steps} accepted and {rejected} rejected "
            f"backward steps as its full norm: {why}, so the seminorm has nothing to save."
        )
    else:
        notes.append(
            f"tinyode's seminorm: {semi_steps} accepted + {semi_rejected} rejected backward "
            f"steps against {steps} + {rejected} under the full norm ({full} → {semi} NFE)."
        )
    return notes


def reference_ok(results):
    return "torchdiffeq odeint_adjoint" in results
