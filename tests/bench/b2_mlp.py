"""B2 — an MLP 784-256-10 (tanh), batch 128, softmax cross-entropy, value_and_grad.

Here the arithmetic (two matmuls each way) is a large share of the time, so
the ratio shows whether the tape adds avoidable copies or conversions around
BLAS. tinyad and autograd run the same function (log-softmax written with
logsumexp); torch uses its fused `cross_entropy` on raw tensors (its fastest
ordinary path). Same data and weights on every side, in float64 (numpy's
default) and float32. A floor: the same forward and backward pass written by hand
in plain numpy (its gap to tinyad is the tape; its gap to torch is numpy's BLAS
and elementwise kernels against torch's). Goals: tinyad ≤ 1.0× autograd and
≤ 1.2× torch.
"""

from common import Section, agree, compare, goal, peer, skipped, timed

BATCH, SIZES = 128, (784, 256, 10)


def make_data(dtype, seed=0):
    import numpy

    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal((BATCH, SIZES[0])).astype(dtype)
    labels = rng.integers(0, SIZES[-1], BATCH)
    onehot = numpy.eye(SIZES[-1], dtype=dtype)[labels]
    params = [
        (rng.standard_normal((SIZES[0], SIZES[1])) / SIZES[0] ** 0.5).astype(dtype),
        numpy.zeros(SIZES[1], dtype),
        (rng.standard_normal((SIZES[1], SIZES[2])) / SIZES[1] ** 0.5).astype(dtype),
        numpy.zeros(SIZES[2], dtype),
    ]
    return x, labels, onehot, params


def make_loss(np, logsumexp, x, onehot):
    def loss(params):
        W1, b1, W2, b2 = params
        logits = np.tanh(x @ W1 + b1) @ W2 + b2
        logp = logits - logsumexp(logits, axis=1, keepdims=True)
        return -np.mean(np.sum(onehot * logp, axis=1))

    return loss


def hand_value_and_grad(x, onehot):
    """The floor: the same loss and its gradient by hand in plain numpy (no tape)."""
    import numpy

    def value_and_grad(params):
        W1, b1, W2, b2 = params
        h = numpy.tanh(x @ W1 + b1)
        logits = h @ W2 + b2
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = numpy.exp(shifted)
        total = e.sum(axis=1, keepdims=True)
        loss = -numpy.mean(numpy.sum(onehot * (shifted - numpy.log(total)), axis=1))
        dlogits = (e / total - onehot) / x.shape[0]
        dh = (dlogits @ W2.T) * (1 - h * h)
        return loss, [x.T @ dh, dh.sum(0), h.T @ dlogits, dlogits.sum(0)]

    return value_and_grad


def run(rounds=9):
    import numpy

    import tinyad
    import tinyad.numpy as tnp

    section = Section(
        "B2 MLP 784-256-10, batch 128, softmax cross-entropy, value_and_grad",
        ["dtype", "candidate", "time", "tinyad / this", "loss", "gradient rel. error"],
    )
    autograd, torch = peer("autograd"), peer("torch")
    for name in ("autograd", "torch"):
        if {"autograd": autograd, "torch": torch}[name] is None:
            section.notes.append(skipped(name, name))

    for dtype in (numpy.float64, numpy.float32):
        dt = numpy.dtype(dtype).name
        x, labels, onehot, params = make_data(dtype)
        ours = tinyad.value_and_grad(make_loss(tnp, tnp.logsumexp, x, onehot))
        value, grads = ours(params)
        assert grads[0].dtype == dtype, f"tinyad returned {grads[0].dtype} gradients for {dt}"
        rtol = 1e-10 if dtype == numpy.float64 else 2e-4
        hand = hand_value_and_grad(x, onehot)
        v, g = hand(params)
        candidates = {
            "tinyad": lambda ours=ours, p=params: ours(p),
            "numpy by hand (floor)": lambda hand=hand, p=params: hand(p),
        }
        results = {
            "tinyad": (float(value), None),
            "numpy by hand (floor)": (float(v), agree(f"B2 {dt} vs by hand", grads, g, rtol)),
        }
        if autograd is not None:
            import autograd.numpy as anp
            from autograd.scipy.special import logsumexp as alse

            theirs = autograd.value_and_grad(make_loss(anp, alse, x, onehot))
            v, g = theirs(params)
            results["autograd"] = (float(v), agree(f"B2 {dt} vs autograd", grads, g, rtol))
            candidates["autograd"] = lambda theirs=theirs, p=params: theirs(p)
        if torch is not None:
            tparams = [torch.tensor(p, requires_grad=True) for p in params]
            tx, tlabels = torch.tensor(x), torch.tensor(labels)

            def torch_step(tparams=tparams, tx=tx, tlabels=tlabels):
                for p in tparams:
                    p.grad = None
                W1, b1, W2, b2 = tparams
                loss = torch.nn.functional.cross_entropy(
                    torch.tanh(tx @ W1 + b1) @ W2 + b2, tlabels
                )
                loss.backward()
                return loss, [p.grad for p in tparams]

            v, g = torch_step()
            g = [t.numpy() for t in g]
            results["torch"] = (float(v.detach()), agree(f"B2 {dt} vs torch", grads, g, rtol))
            candidates["torch"] = torch_step

        times = compare(candidates, rounds=rounds)
        base = times["tinyad"].median
        for name, t in times.items():
            v, err = results[name]
            section.rows.append(
                [
                    dt,
                    name,
                    timed(t),
                    "—" if name == "tinyad" else f"{base / t.median:.2f}×",
                    f"{v:.6f}",
                    "—" if err is None else f"{err:.1e}",
                ]
            )
        for name, target in (("autograd", 1.0), ("torch", 1.2)):
            ratio = base / times[name].median if name in times else None
            section.goals.append(
                goal(
                    "B2",
                    f"MLP value_and_grad {dt}, tinyad / {name}",
                    ratio,
                    f"≤ {target}×",
                    ratio is not None and ratio <= target,
                )
            )
    return [section]
