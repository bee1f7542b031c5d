"""numpy vs CuPy: where does the GPU start to pay? (Not part of run_all.py: needs a GPU.)

Two workloads, each at growing batch sizes, in float64 and float32:

- MLP: value_and_grad of a 784-256-10 tanh MLP with softmax cross-entropy (as B2);
- spiral: one training iteration of the neural ODE of `tinyode.demo` (the ode_demo
  model, 10 time points, adjoint gradients, an Adam step), at init.

The same code runs on both: only the arrays differ (numpy, or cupy.asarray of them).
numpy uses its default BLAS threads. Each time is the median of several calls after
warm-up (CuPy compiles its kernels on first use); every call ends with a host value
(float(loss)), so the GPU's queued work is included.

    python tests/bench/gpu_timings.py [--quick] [--json out.json]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

import tinyad  # noqa: E402
import tinyad.numpy as np  # noqa: E402
import tinyode  # noqa: E402
from tinyad.tree import tree_map  # noqa: E402
from tinyode.demo import init_params, make_data, model  # noqa: E402

try:
    import cupy

    cupy.cuda.runtime.getDeviceCount()
except Exception:  # no CuPy, or no device: numpy only
    cupy = None


def timed(fun, min_time=0.3, min_reps=3, max_reps=50):
    """Median seconds per call of fun() after two warm-up calls."""
    fun()
    fun()
    times = []
    while len(times) < min_reps or (sum(times) < min_time and len(times) < max_reps):
        start = time.perf_counter()
        fun()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mlp_iteration(batch, dtype, xp):
    """value_and_grad of the MLP's loss, as a zero-argument function."""
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((batch, 784)).astype(dtype)
    onehot = numpy.eye(10, dtype=dtype)[rng.integers(0, 10, batch)]
    params = [
        (rng.standard_normal((784, 256)) / 28).astype(dtype),
        numpy.zeros(256, dtype),
        (rng.standard_normal((256, 10)) / 16).astype(dtype),
        numpy.zeros(10, dtype),
    ]
    x, onehot, params = xp.asarray(x), xp.asarray(onehot), [xp.asarray(p) for p in params]

    def loss(params):
        W1, b1, W2, b2 = params
        logits = np.tanh(x @ W1 + b1) @ W2 + b2
        logp = logits - np.logsumexp(logits, axis=1, keepdims=True)
        return -np.mean(np.sum(onehot * logp, axis=1))

    value_and_grad = tinyad.value_and_grad(loss)
    return lambda: float(value_and_grad(params)[0]), None


def spiral_iteration(batch, dtype, xp):
    """One training iteration of the demo's neural ODE, as a zero-argument function."""
    rng = numpy.random.default_rng(0)
    t, true_y = make_data()
    s = rng.integers(0, len(t) - 10, batch)  # with replacement: 990 windows in the data
    batch_y0 = true_y[s].astype(dtype)
    batch_y = numpy.stack([true_y[s + i] for i in range(10)]).astype(dtype)
    batch_t = t[:10].astype(dtype)
    params = tree_map(lambda p: xp.asarray(p.astype(dtype)), init_params(0))
    batch_y0, batch_y = xp.asarray(batch_y0), xp.asarray(batch_y)
    tol = {"rtol": 1e-7, "atol": 1e-9} if dtype == numpy.float64 else {"rtol": 1e-5, "atol": 1e-6}
    info = {}

    def loss(params):
        pred, info["solve"] = tinyode.odeint(
            model, batch_y0, batch_t, params, full_output=True, **tol
        )
        return np.mean(np.abs(pred - batch_y))

    flat, unflatten = tinyad.flatten(params)
    m, v = xp.zeros_like(flat), xp.zeros_like(flat)

    def iteration():
        value, g = tinyad.value_and_grad(loss)(unflatten(flat))
        g = tinyad.flatten(g)[0]
        m2, v2 = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g**2
        step = 0.01 * (m2 / 0.1) / (xp.sqrt(v2 / 0.001) + 1e-8)  # Adam's first step
        return float(value) + 0.0 * float(step[0])

    def nfe():
        solve = info["solve"]
        return f"{solve['nfe']}+{solve['backward']['nfe']}"

    return iteration, nfe


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 20 and 20 000 only")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    batches = [20, 20_000] if args.quick else [20, 200, 2_000, 20_000]
    backends = {"numpy": numpy} | ({"cupy": cupy} if cupy is not None else {})
    print(f"numpy {numpy.__version__}, {os.cpu_count()} CPU cores, {platform.processor()}")
    if cupy is not None:
        props = cupy.cuda.runtime.getDeviceProperties(0)
        print(f"cupy {cupy.__version__}, {props['name'].decode()}")
    else:
        print("cupy: not available (numpy only)")
    rows = []
    header = f"{'workload':8} {'dtype':8} {'batch':>7} " + " ".join(
        f"{name + ' ms':>10}" for name in backends
    )
    print(header + ("   numpy/cupy   NFE fwd+bwd" if cupy is not None else "   NFE fwd+bwd"))
    for workload, make in (("mlp", mlp_iteration), ("spiral", spiral_iteration)):
        for dtype in (numpy.float64, numpy.float32):
            for batch in batches:
                row = {"workload": workload, "dtype": numpy.dtype(dtype).name, "batch": batch}
                nfe = ""
                for name, xp in backends.items():
                    fun, nfe_fun = make(batch, dtype, xp)
                    row[name + "_ms"] = 1e3 * timed(fun)
                    nfe = nfe_fun() if nfe_fun else ""
                rows.append(row)
                times = " ".join(f"{row[name + '_ms']:10.2f}" for name in backends)
                ratio = f"   {row['numpy_ms'] / row['cupy_ms']:9.2f}x" if cupy is not None else ""
                print(f"{workload:8} {row['dtype']:8} {batch:7d} {times}{ratio}   {nfe}")
                sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
