"""B1 — tape overhead: the gradient of a 200-op elementwise chain on a 10-vector.

Every op is one primitive on a tiny array, so the time is almost all per-op
bookkeeping (boxing, recording, the backward walk), not arithmetic. The same
Python function runs on tinyad.numpy, autograd.numpy, torch and (forward only,
no gradient) plain numpy. Goal: tinyad ≤ 0.5× autograd.
"""

from common import Section, agree, compare, goal, peer, skipped, timed, us

N_GROUPS = 40  # 5 ops per group
N_OPS = 5 * N_GROUPS + 1  # + the final sum


def chain(np, x):
    """200 elementwise ops (sin, cos, ×2, tanh, exp) and a sum: values stay in (1/e, e)."""
    for _ in range(N_GROUPS):
        x = np.sin(x)
        x = np.cos(x)
        x = x * 2.0
        x = np.tanh(x)
        x = np.exp(x)
    return np.sum(x)


def run(rounds=9):
    import numpy

    import tinyad
    import tinyad.numpy as tnp

    x = numpy.linspace(-1.0, 1.0, 10)
    records = len(tinyad.trace(lambda x: chain(tnp, x), x).records) - 1
    assert records == N_OPS, f"the chain records {records} primitives, expected {N_OPS}"

    ours = tinyad.grad(lambda x: chain(tnp, x))
    reference = ours(x)
    candidates = {"tinyad": lambda: ours(x), "numpy (forward only)": lambda: chain(numpy, x)}
    section = Section(
        "B1 tape overhead: grad of a 200-op elementwise chain on a 10-vector",
        ["candidate", "time per gradient", "µs per op", "tinyad / this", "gradient rel. error"],
    )
    errors = {"tinyad": 0.0, "numpy (forward only)": None}

    autograd = peer("autograd")
    if autograd is not None:
        import autograd.numpy as anp

        theirs = autograd.grad(lambda x: chain(anp, x))
        errors["autograd"] = agree("B1 tinyad vs autograd", reference, theirs(x), 1e-10)
        candidates["autograd"] = lambda: theirs(x)
    else:
        section.notes.append(skipped("autograd", "autograd"))

    torch = peer("torch")
    if torch is not None:
        tx = torch.tensor(x)

        def torch_grad():
            xx = tx.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(chain(torch, xx), xx)
            return g

        errors["torch"] = agree("B1 tinyad vs torch", reference, torch_grad().numpy(), 1e-10)
        candidates["torch"] = torch_grad
    else:
        section.notes.append(skipped("torch", "torch"))

    times = compare(candidates, rounds=max(rounds, 15))  # cheap: more rounds
    base = times["tinyad"].median
    for name, t in times.items():
        err = errors.get(name)
        section.rows.append(
            [
                name,
                timed(t),
                f"{t.median / N_OPS * 1e6:.2f}",
                "—" if name == "tinyad" else f"{base / t.median:.2f}×",
                "—" if err is None or name == "tinyad" else f"{err:.1e}",
            ]
        )
    ratio = base / times["autograd"].median if "autograd" in times else None
    section.goals.append(
        goal("B1", "tape overhead, tinyad / autograd", ratio, "≤ 0.5×", ratio and ratio <= 0.5)
    )
    section.notes.append(
        f"{N_OPS} primitives per gradient (forward + backward); µs per op = time / {N_OPS}. "
        f"Plain numpy's forward pass alone costs {us(times['numpy (forward only)'].median)}."
    )
    return [section]
