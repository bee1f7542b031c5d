"""Profile tinyad/tinyode on the B1, B2, B3 and B6 workloads (where does the time go?).

    python tests/bench/profile_workloads.py B3                  # cProfile, top 25 by own time
    python tests/bench/profile_workloads.py B1 --sort cumulative --top 40
    python tests/bench/profile_workloads.py B3 --pyinstrument   # sampling, call tree
    python tests/bench/profile_workloads.py B2 --per-primitive  # raw cost per record
    python tests/bench/profile_workloads.py micro               # per-call costs of the pieces

cProfile adds a fixed cost per Python call, so it exaggerates code made of
many tiny calls; read its call counts, and pyinstrument's (sampling) shares.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def workload(key):
    """(callable running one iteration, iterations to profile)."""
    import numpy

    import tinyad
    import tinyad.numpy as tnp

    if key == "B1":
        from b1_tape import chain

        x = numpy.linspace(-1.0, 1.0, 10)
        grad = tinyad.grad(lambda x: chain(tnp, x))
        return lambda: grad(x), 300
    if key == "B2":
        from b2_mlp import make_data, make_loss

        x, _, onehot, params = make_data(numpy.float64)
        vg = tinyad.value_and_grad(make_loss(tnp, tnp.logsumexp, x, onehot))
        return lambda: vg(params), 100
    if key in ("B3", "B3long"):
        import spiral
        from b3_spiral import long_batch

        batch = spiral.make_batch() if key == "B3" else long_batch()
        params = spiral.init_params()
        step = spiral.tinyode_step(batch)
        return lambda: step(params), 40 if key == "B3" else 4
    raise SystemExit(f"unknown workload {key}; choose B1, B2, B3, B3long")


def traced_function(key):
    """(function, args) whose tape `--per-primitive` breaks down."""
    import numpy

    import tinyad.numpy as tnp

    if key == "B1":
        from b1_tape import chain

        return (lambda x: chain(tnp, x)), (numpy.linspace(-1.0, 1.0, 10),)
    if key == "B2":
        from b2_mlp import make_data, make_loss

        x, _, onehot, params = make_data(numpy.float64)
        return make_loss(tnp, tnp.logsumexp, x, onehot), (params,)
    if key.startswith("B3"):
        import spiral

        y0 = spiral.make_batch()[0]
        params = spiral.init_params()
        # one evaluation of the adjoint's dynamics: f on the flat state, as adjoint.py traces it
        return (lambda z, p: tnp.ravel(spiral.model(tnp.reshape(z, y0.shape), 0.0, p))), (
            y0.ravel(),
            params,
        )
    raise SystemExit(f"unknown workload {key}")


def per_primitive(key, repeat=2000):
    """Time every record of one tape: its forward on raw values, and each of its vjps.

    The rest of a gradient's time (boxing, recording, walking the tape, fitting
    cotangents, pytree handling) is the difference to the measured gradient.
    """
    import timeit

    import numpy

    import tinyad
    from tinyad.core import fit_cotangent, getval
    from tinyad.transforms import _recording

    fun, args = traced_function(key)
    out, vjp_fun = tinyad.vjp(fun, *args)
    g = numpy.ones_like(getval(out)) if numpy.ndim(getval(out)) else numpy.float64(1.0)

    def best(f):
        return min(timeit.repeat(f, number=repeat, repeat=5)) / repeat

    t_grad = best(lambda: tinyad.vjp(fun, *args)[1](g))
    t_fwd = best(lambda: tinyad.vjp(fun, *args))
    with _recording() as tape:
        boxed = []
        for arg in args:
            leaves, treedef = tinyad.tree_flatten(arg)
            boxed.append(tinyad.tree_unflatten(treedef, [tape.input(x) for x in leaves]))
        fun(*boxed)
    rows, total_f, total_b = [], 0.0, 0.0
    for prim, ans, rargs, kwargs, parents in tape.records:
        if prim is None:
            continue
        raw = [getval(a) for a in rargs]
        tf = best(lambda prim=prim, raw=raw, kwargs=kwargs: prim.fun(*raw, **kwargs))
        ct = numpy.ones_like(getval(ans))
        value, tb = getval(ans), 0.0
        for argnum, _ in parents:
            tb += best(
                lambda p=prim, a=argnum, r=raw, k=kwargs, v=value: fit_cotangent(
                    p.vjp(a, ct, v, r, k), r[a], p.name, a
                )
            )
        total_f, total_b = total_f + tf, total_b + tb
        shapes = ",".join(str(numpy.shape(a)) for a in raw)
        rows.append((tf + tb, prim.name, shapes, len(parents), tf, tb))
    rows.sort(reverse=True)
    print(f"{key}: {len(rows)} primitives on the tape")
    print(
        f"  gradient (vjp + backward) {t_grad * 1e6:9.1f} µs; forward under the tape "
        f"{t_fwd * 1e6:9.1f} µs"
    )
    print(
        f"  sum of raw forwards       {total_f * 1e6:9.1f} µs; sum of raw vjps (+ fit) "
        f"{total_b * 1e6:9.1f} µs"
    )
    print(
        f"  => bookkeeping: forward {(t_fwd - total_f) * 1e6:.1f} µs, backward "
        f"{(t_grad - t_fwd - total_b) * 1e6:.1f} µs"
    )
    print(f"  {'primitive':<14} {'input shapes':<40} {'fwd µs':>8} {'vjps µs':>8}")
    for _, name, shapes, _, tf, tb in rows[:25]:
        print(f"  {name:<14} {shapes[:40]:<40} {tf * 1e6:8.2f} {tb * 1e6:8.2f}")


def micro():
    """Per-call costs of the pieces the profiles point at (best of 7, µs)."""
    import timeit

    import numpy
    import spiral
    from b1_tape import chain
    from b6_floor import hand_mlp

    import tinyad
    import tinyad.numpy as tnp
    import tinyode
    from tinyad.transforms import _recording
    from tinyad.tree import tree_flatten, tree_unflatten

    def show(label, f, number=2000):
        best = min(timeit.repeat(f, number=number, repeat=7)) / number
        print(f"  {label:<58} {best * 1e6:9.2f} µs")
        return best

    x = numpy.linspace(-1.0, 1.0, 10)
    print("one primitive on a 10-vector")
    show("numpy.sin(x)", lambda: numpy.sin(x), 20000)
    show("tinyad.numpy.sin(x), raw array (no tape)", lambda: tnp.sin(x), 20000)
    show("x * 2.0, ndarray", lambda: x * 2.0, 20000)
    show("tinyad.numpy.multiply(x, 2.0), raw array", lambda: tnp.multiply(x, 2.0), 20000)
    with _recording() as tape:
        box = tape.input(x)
        show("tinyad.numpy.sin(box), recorded", lambda: tnp.sin(box), 20000)
        show("box * 2.0, recorded (Box.__mul__)", lambda: box * 2.0, 20000)
    tape = None

    def trace_only():
        with _recording() as tape:
            chain(tnp, tape.input(x))

    print("B1 (201 primitives)")
    show("plain numpy forward", lambda: chain(numpy, x), 200)
    fwd = show("tinyad forward under the tape", trace_only, 200)
    grad = tinyad.grad(lambda x: chain(tnp, x))
    tot = show("tinyad grad", lambda: grad(x), 200)
    print(
        f"  => per op: forward {fwd / 201 * 1e6:.2f} µs, backward {(tot - fwd) / 201 * 1e6:.2f} µs"
    )

    print("B3 pieces: one evaluation of the adjoint's augmented dynamics (n = 40, p = 252)")
    params = spiral.init_params()
    y0 = spiral.make_batch()[0]
    shape, n = y0.shape, y0.size
    leaves, treedef = tree_flatten((params,))
    z, a = y0.ravel().copy(), numpy.full(n, 0.01)

    def f(z, t, leaves):
        return tnp.ravel(spiral.model(tnp.reshape(z, shape), t, *tree_unflatten(treedef, leaves)))

    def augmented(s, t, leaves):  # as tinyode/adjoint.py writes it
        z, a = s[:n], s[n : 2 * n]
        dz, f_vjp = tinyad.vjp(f, z, t, leaves)
        da, dt, dleaves = f_vjp(-a)
        dtheta = [tnp.ravel(d) for d in dleaves]
        return tnp.concatenate([dz, da, *dtheta, tnp.reshape(dt, (1,)).astype(float)])

    s = numpy.concatenate([z, a, numpy.zeros(253)])
    (W1, b1), (W2, b2) = params
    show("MLP, plain numpy", lambda: numpy.tanh(y0**3 @ W1 + b1) @ W2 + b2)
    show("MLP, tinyad.numpy on raw arrays", lambda: spiral.model(y0, 0.0, params))
    show("f on the flat state, raw", lambda: f(z, 0.0, leaves))
    show(
        "tinyad.vjp(f, z, t, leaves): forward under the tape", lambda: tinyad.vjp(f, z, 0.0, leaves)
    )
    _, f_vjp = tinyad.vjp(f, z, 0.0, leaves)
    show("f_vjp(-a): backward pass only", lambda: f_vjp(-a))
    show("augmented(s, t, leaves), as tinyode/adjoint.py", lambda: augmented(s, 0.0, leaves))
    _, hand, _, _ = hand_mlp(params, shape)
    show("augmented by hand (B6 floor)", lambda: hand(s, 0.0))
    show("tree_flatten((params,))", lambda: tree_flatten((params,)))
    show("tree_unflatten(treedef, leaves)", lambda: tree_unflatten(treedef, leaves))

    print("solver pieces (state (20, 2), trivial func)")
    y = numpy.ones((20, 2))
    ks = [y * k for k in range(7)]
    row = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
    show(
        "y + h * sum(c_i k_i), 6 terms, one op each",
        lambda: y + 0.1 * sum(c * k for c, k in zip(row, ks)),
    )
    K = numpy.stack(ks)
    coeffs = numpy.array(row)
    show(
        "y + h * (coeffs @ K[:6]) on a (7, n) buffer",
        lambda: y + 0.1 * (coeffs @ K[:6].reshape(6, -1)).reshape(y.shape),
    )
    show(
        "tinyode.odeint(-y) one call, 2 times, dopri5",
        lambda: tinyode.odeint(lambda y, t: -y, y, numpy.array([0.0, 1e-3])),
        200,
    )


def main(argv=None):
    import argparse

    import common  # noqa: F401  (one thread, before numpy)

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--iters", type=int, default=None)
    parser.add_argument("--pyinstrument", action="store_true")
    parser.add_argument(
        "--per-primitive", action="store_true", help="raw cost of each record vs bookkeeping"
    )
    args = parser.parse_args(argv)
    if args.per_primitive:
        per_primitive(args.workload, repeat=200 if args.workload == "B2" else 2000)
        return

    if args.workload == "micro":
        micro()
        return
    fun, iters = workload(args.workload)
    iters = args.iters or iters
    fun()  # warm-up
    if args.pyinstrument:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002)
        profiler.start()
        for _ in range(iters):
            fun()
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False, show_all=False))
        return
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(iters):
        fun()
    profiler.disable()
    print(f"{args.workload}: {iters} iterations")
    pstats.Stats(profiler).strip_dirs().sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
