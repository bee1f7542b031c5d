"""B7 — forward mode: what jvp (derived from the vjps by transposition) costs.

tinyad's jvp is the gradient of u ↦ ⟨vjp_fun(u), v⟩: one forward pass, one
recorded backward pass, and the backward pass of that. Measured on an MLP
layer stack f: ℝⁿ → ℝᵐ, as ratios to one evaluation of f (on tinyad.numpy,
untraced): jvp / f, vjp / f, and autograd's make_jvp and vjp beside ours.
Then the Jacobian built column by column (n jvps) against row by row (m vjps)
as n and m vary, and hvp against the full Hessian.
"""

from common import Section, agree, compare, peer, skipped, timed


def _mlp(np, W1, W2):
    return lambda x: W2 @ np.tanh(W1 @ x)


def run(rounds=9):
    import numpy

    import tinyad
    import tinyad.numpy as tnp

    rng = numpy.random.default_rng(0)
    n, h, m = 64, 128, 64
    W1, W2 = rng.standard_normal((h, n)) / 8, rng.standard_normal((m, h)) / 8
    x, v, u = rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(m)
    f = _mlp(tnp, W1, W2)
    _, vjp_fun = tinyad.vjp(f, x)
    jv = tinyad.jvp(f, (x,), (v,))[1]
    agree("B7 jvp vs jacobian @ v", jv, tinyad.jacobian(f)(x) @ v, 1e-12)

    candidates = {
        "f (tinyad.numpy, untraced)": lambda: f(x),
        "tinyad vjp (trace + pull back)": lambda: tinyad.vjp(f, x)[1](u),
        "tinyad jvp": lambda: tinyad.jvp(f, (x,), (v,)),
    }
    autograd = peer("autograd")
    section = Section(
        f"B7 forward mode: jvp and vjp of an MLP ℝ^{n} → ℝ^{m} (hidden {h})",
        ["candidate", "time", "/ f"],
    )
    if autograd is not None:
        import autograd.numpy as anp
        from autograd import make_jvp, make_vjp

        g = _mlp(anp, W1, W2)
        agree("B7 jvp vs autograd", jv, make_jvp(g)(x)(v)[1], 1e-12)
        candidates["autograd vjp"] = lambda: make_vjp(g)(x)[0](u)
        candidates["autograd make_jvp"] = lambda: make_jvp(g)(x)(v)
    else:
        section.notes.append(skipped("autograd", "autograd"))
    times = compare(candidates, rounds=rounds)
    base = times["f (tinyad.numpy, untraced)"].median
    for name, t in times.items():
        section.rows.append([name, timed(t), f"{t.median / base:.2f}×"])
    jvp_t, vjp_t = times["tinyad jvp"].median, times["tinyad vjp (trace + pull back)"].median
    note = f"tinyad jvp / tinyad vjp = {jvp_t / vjp_t:.2f}× (one more reverse pass)"
    if "autograd make_jvp" in times:
        note += (
            f"; tinyad jvp / autograd make_jvp (a hand-written jvp per primitive) = "
            f"{jvp_t / times['autograd make_jvp'].median:.2f}×"
        )
    section.notes.append(note + ".")
    sections = [section]

    # The Jacobian column by column (n jvps) or row by row (m vjps, tinyad.jacobian).
    shape_section = Section(
        "B7 Jacobian of ℝⁿ → ℝᵐ: n jvps (columns) against m vjps (rows)",
        ["n", "m", "n jvps", "m vjps", "columns / rows"],
    )
    for n_in, m_out in [(4, 64), (16, 16), (64, 4)]:
        A1 = rng.standard_normal((h, n_in)) / 8
        A2 = rng.standard_normal((m_out, h)) / 8
        fun, x0 = _mlp(tnp, A1, A2), rng.standard_normal(n_in)
        eye = numpy.eye(n_in)

        def by_columns(fun=fun, x0=x0, eye=eye):
            return numpy.stack([tinyad.jvp(fun, (x0,), (e,))[1] for e in eye], axis=1)

        by_rows = lambda fun=fun, x0=x0: tinyad.jacobian(fun)(x0)
        agree(f"B7 columns vs rows n={n_in} m={m_out}", by_columns(), by_rows(), 1e-12)
        t = compare({"cols": by_columns, "rows": by_rows}, rounds=max(3, rounds // 3))
        shape_section.rows.append(
            [
                n_in,
                m_out,
                timed(t["cols"]),
                timed(t["rows"]),
                f"{t['cols'].median / t['rows'].median:.2f}×",
            ]
        )
    shape_section.notes.append(
        "Row by row costs m vjps, column by column n jvps; each jvp by transposition costs "
        "a few vjps, so columns win only when m is several times n."
    )
    sections.append(shape_section)

    # hvp against building the Hessian.
    loss = lambda x: tnp.sum(tnp.tanh(W1 @ x) ** 2)
    H = tinyad.hessian(loss)(x)
    agree("B7 hvp vs hessian @ v", tinyad.hvp(loss, x, v), H @ v, 1e-10)
    t = compare(
        {"hvp": lambda: tinyad.hvp(loss, x, v), "hessian": lambda: tinyad.hessian(loss)(x)},
        rounds=max(3, rounds // 3),
    )
    hvp_section = Section(f"B7 Hessian-vector product on ℝ^{n}", ["candidate", "time", "/ hvp"])
    for name in ("hvp", "hessian"):
        hvp_section.rows.append([name, timed(t[name]), f"{t[name].median / t['hvp'].median:.1f}×"])
    sections.append(hvp_section)
    return sections
