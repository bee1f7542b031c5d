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
    candidates, results = {}, {}
    for name, options in ours.items():
        step = spiral.tinyode_step(batch, **options)
        loss, grads, info = step(params)
        backward = info.get("backward", {}).get("nfe")
        results[name] = (loss, grads, info["nfe"], backward)
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
    section.notes.append(
        "tinyode's backward NFE includes one evaluation per output interval for dL/dt_i "
        "(computed whether or not t is differentiated); torchdiffeq skips it when t does "
        "not require grad. Both restart the step-size selection (2 evaluations) on every "
        "interval. tinyode's full norm is one RMS over the whole augmented state "
        "[z, a, dL/dθ, dL/dt], where dL/dθ (252 of 333 entries here) dilutes the error of "
        "z and a: looser than its own seminorm, hence no seminorm saving; torchdiffeq's "
        "default adjoint norm is the max of separate RMS norms of z, a and dL/dθ (stricter)."
    )
    return section


def reference_ok(results):
    return "torchdiffeq odeint_adjoint" in results
