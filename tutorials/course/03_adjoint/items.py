"""Assignment 3, the adjoint: the graded items and their probes (see ../probing.py).

`augmented_dynamics` is evaluated on fixed states; `rk4` on ODEs of the probes' own, forwards
and backwards; `adjoint_gradients` on the notebook's model with fixed parameters (it uses the
student's parts 1 and 2). `train` is judged in the grader's own process: the loss of the
parameters it returned is computed there, from the model as the instructor's notebook
defines it, and compared with the loss the solution's training reaches from the same start.
"""

import functools
import json
import os
import sys

import numpy

import tinyad
import tinyad.numpy as tnp
import tinyode

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from probing import Item, memo, need, rng  # noqa: E402

ASSIGNMENT = "03_adjoint"
NOTEBOOK = "adjoint.ipynb"
TRAIN_ITERS, TRAIN_STEP = 40, 0.05  # a shorter run than the notebook's: the grader's time


@functools.lru_cache(maxsize=1)
def model():
    """The notebook's given model and data (the cell `model_given` of the instructor's
    notebook), run in this process: f, loss, Z0, TARGET, T1, N_STEPS, theta0, ..."""
    with open(os.path.join(HERE, NOTEBOOK), encoding="utf-8") as f:
        cells = json.load(f)["cells"]
    (cell,) = [
        c for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == "model_given"
    ]
    ns = {"onp": numpy, "np": tnp, "tinyad": tinyad, "tinyode": tinyode}
    exec("".join(cell["source"]), ns)
    return ns


def probe_augmented(ns):
    augmented_dynamics = need(ns, "augmented_dynamics")
    P = need(ns, "P")
    for k, (n, t) in enumerate([(2, 0.0), (2, 0.3), (6, 0.7), (16, -0.4)]):
        r = rng(300 + k)
        theta = 0.5 * r.standard_normal(P)
        s = r.standard_normal(2 * n + P)
        yield (
            f"augmented_dynamics(s, {t}, theta) with z of {n} entries",
            lambda s=s, t=t, theta=theta: augmented_dynamics(s, t, theta),
        )


def _decay(y, t, k):
    return -k * y


def _spin(y, t, w):
    return tnp.stack([w * y[1] + tnp.sin(t), -w * y[0] * (1 + 0.1 * y[1] ** 2)])


def _linear(y, t, M):
    return M @ y + t


def probe_rk4(ns):
    rk4 = need(ns, "rk4")
    M = rng(310).standard_normal((3, 3))
    cases = [
        ("y' = -k y", _decay, numpy.array([1.0, 2.0]), 0.0, 1.0, 20, 0.5),
        ("y' = -k y, backwards", _decay, numpy.array([1.0, 2.0]), 1.0, 0.0, 20, 0.5),
        ("y' = -k y, one step", _decay, numpy.array([1.0]), 0.0, 0.4, 1, 2.0),
        ("a nonlinear spin", _spin, numpy.array([1.0, 0.0]), 0.0, 2.0, 7, 1.5),
        ("a nonlinear spin, backwards", _spin, numpy.array([0.3, -1.0]), 1.0, -0.5, 5, 1.5),
        ("y' = M y + t", _linear, rng(311).standard_normal(3), 0.2, 0.9, 3, M),
        ("y' = M y + t, backwards", _linear, rng(312).standard_normal(3), 0.5, -0.25, 4, M),
    ]
    for text, func, y0, t0, t1, n, arg in cases:
        yield (
            f"rk4 on {text}, from t={t0} to t={t1} in {n} steps",
            lambda func=func, y0=y0, t0=t0, t1=t1, n=n, arg=arg: rk4(func, y0, t0, t1, n, arg),
        )


def probe_adjoint(ns):
    adjoint_gradients = need(ns, "adjoint_gradients")
    P, Z0, TARGET = need(ns, "P"), need(ns, "Z0"), need(ns, "TARGET")
    cases = [
        ("theta0, TARGET, t1=1.0, 10 steps", need(ns, "theta0"), TARGET, 1.0, 10),
        ("another theta and target, t1=0.5, 4 steps", None, None, 0.5, 4),
        ("another theta and target, t1=1.5, 12 steps", None, None, 1.5, 12),
    ]
    for k, (text, theta, target, t1, n) in enumerate(cases):
        if theta is None:
            theta = 0.4 * rng(320 + k).standard_normal(P)
            target = rng(330 + k).standard_normal(numpy.shape(TARGET))
        run = memo(
            lambda theta=theta, target=target, t1=t1, n=n: adjoint_gradients(
                theta, Z0, target, t1=t1, n_steps=n
            )
        )
        for j, part in enumerate(["L", "dL/dz0", "dL/dθ"]):
            yield f"adjoint_gradients with {text}: {part}", lambda run=run, j=j: run()[j]


THETA_KEY = f"the theta from train(theta0, num_iters={TRAIN_ITERS}, step_size={TRAIN_STEP})"


def probe_train(ns):
    train = need(ns, "train")
    theta0 = need(ns, "theta0")
    run = memo(lambda: train(theta0, num_iters=TRAIN_ITERS, step_size=TRAIN_STEP))
    yield THETA_KEY, lambda: run()[0]
    yield "the number of losses it returned", lambda: len(run()[1])


def trained_loss(theta):
    """The model's loss at `theta`, computed in this process by tinyode's own RK4 (inf when
    the solve overflows: a diverged training)."""
    m = model()
    step = m["T1"] / m["N_STEPS"]
    try:
        with numpy.errstate(all="ignore"):
            z1 = tinyode.odeint(
                m["f"], m["Z0"], [0.0, m["T1"]], theta, method="rk4", step_size=step
            )
            loss = float(m["loss"](z1[-1], m["TARGET"]))
    except tinyode.SolverError:  # a non-finite derivative
        return numpy.inf
    return loss if numpy.isfinite(loss) else numpy.inf


def judge_train(got, expected):
    """Full marks if the returned theta's loss is within 1.5x of the solution's (same start)."""
    failures = []
    theta, ref = got.get(THETA_KEY), expected[THETA_KEY]
    if not isinstance(theta, numpy.ndarray) or theta.shape != ref.shape:
        shape = getattr(theta, "shape", None)
        return [f"{THETA_KEY}: shape {shape}, expected {ref.shape}"]
    n = got.get("the number of losses it returned")
    if not isinstance(n, numpy.ndarray) or n.shape != () or n != TRAIN_ITERS:
        count = int(n) if isinstance(n, numpy.ndarray) and n.size == 1 else n
        failures.append(f"train returned {count} losses for num_iters={TRAIN_ITERS}")
    mine, best, start = trained_loss(theta), trained_loss(ref), trained_loss(model()["theta0"])
    if not numpy.isfinite(mine) or mine > 1.5 * best:
        failures.append(
            f"{THETA_KEY}: its loss is {mine:.4g} (computed by the grader), the solution's "
            f"training reaches {best:.4g} from the same start (loss {start:.4g})"
        )
    return failures


ITEMS = [
    Item("augmented_dynamics", 4, "the augmented dynamics", probe_augmented),
    Item("rk4", 3, "a fixed-step RK4 solver, both ways", probe_rk4),
    Item("adjoint_gradients", 4, "the gradient by the adjoint method", probe_adjoint, rtol=1e-8),
    Item("train", 3, "training the neural ODE", probe_train, judge=judge_train),
]
