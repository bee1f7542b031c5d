"""`make demo`: learn the spiral of torchdiffeq's ode_demo with a neural ODE.

The data are one trajectory of dy/dt = y³ A (A = [[−0.1, 2], [−2, −0.1]]) from
y0 = (2, 0) over t ∈ [0, 25]. The model is dy/dt = tanh(y³ W1 + b1) W2 + b2,
trained on random windows of 10 time points (batch 20) with Adam, gradients by
the adjoint method. Progress is reported, as in ode_demo, by the loss on the whole
trajectory: the model solved from y0 over all of [0, 25]. Writes <out>/spiral.png:
true and learned trajectories, the phase portrait, the learned vector field against
the true one, and the loss and NFE during training.

    python -m tinyode.demo --iters 500 --out demo
"""

import argparse
import os
import time
import warnings

import numpy as onp  # plain numpy; np is tinyad's differentiable numpy

import tinyad
import tinyad.numpy as np
import tinyode

TRUE_A = onp.array([[-0.1, 2.0], [-2.0, -0.1]])
TRUE_Y0 = onp.array([[2.0, 0.0]])


def true_dynamics(y, t):
    return y**3 @ TRUE_A


def model(y, t, params):
    """The ode_demo network: 2 → 50 → 2 with tanh, applied to y³."""
    (W1, b1), (W2, b2) = params
    return np.tanh(y**3 @ W1 + b1) @ W2 + b2


def make_data(data_size=1000, t_max=25.0):
    t = onp.linspace(0.0, t_max, data_size)
    true_y = tinyode.odeint(true_dynamics, TRUE_Y0, t, method="dopri5")
    return t, true_y


def get_batch(rng, t, true_y, batch_time=10, batch_size=20):
    s = rng.choice(onp.arange(len(t) - batch_time), batch_size, replace=False)
    batch_y0 = true_y[s]  # (batch, 1, 2)
    batch_t = t[:batch_time]
    batch_y = onp.stack([true_y[s + i] for i in range(batch_time)])  # (time, batch, 1, 2)
    return batch_y0, batch_t, batch_y


def init_params(seed=0, hidden=50):
    rng = onp.random.default_rng(seed)
    return [
        (0.1 * rng.standard_normal((2, hidden)), onp.zeros(hidden)),
        (0.1 * rng.standard_normal((hidden, 2)), onp.zeros(2)),
    ]


def trajectory_loss(params, t, true_y):
    """Mean |error| of the model solved from y0 over the whole trajectory (ode_demo's test loss)."""
    pred = tinyode.odeint(model, TRUE_Y0, t, params)
    return float(onp.mean(onp.abs(pred - true_y)))


def train(iters=500, lr=0.01, seed=0, rtol=1e-7, atol=1e-9, log_every=20, log=print):
    """Adam on random windows; returns (params, history).

    history has per iteration the batch loss, the forward and backward NFE, the time and
    the number of BacksolveWarnings; and, every `log_every` iterations (and before the
    first), the loss on the whole trajectory in "trajectory_loss" at "trajectory_iter".
    """
    rng = onp.random.default_rng(seed)
    t, true_y = make_data()
    params = init_params(seed)
    history = {"loss": [], "nfe_forward": [], "nfe_backward": [], "time": [], "drift": []}
    history["trajectory_iter"] = [0]
    history["trajectory_loss"] = [trajectory_loss(params, t, true_y)]
    info = {}

    def loss_fun(params, batch):
        batch_y0, batch_t, batch_y = batch
        pred, info["last"] = tinyode.odeint(
            model, batch_y0, batch_t, params, rtol=rtol, atol=atol, full_output=True
        )
        return np.mean(np.abs(pred - batch_y))

    start = time.perf_counter()

    def grad_fun(params, k):
        """The gradient on a random batch of windows at iteration i = k + 1; logs as it goes."""
        i = k + 1
        if k and k % log_every == 0:  # params after k updates: the last logged iteration's
            history["trajectory_iter"].append(k)
            history["trajectory_loss"].append(trajectory_loss(params, t, true_y))
        batch = get_batch(rng, t, true_y)
        # Early in training the learned flow can contract strongly, and the adjoint's
        # backward solve then drifts a little from the forward trajectory: count the
        # warnings and report them in the log rather than print each one.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", tinyode.BacksolveWarning)
            loss, g = tinyad.value_and_grad(loss_fun)(params, batch)
        history["drift"].append(len(caught))
        history["loss"].append(float(loss))
        history["nfe_forward"].append(info["last"]["nfe"])
        history["nfe_backward"].append(info["last"]["backward"]["nfe"])
        history["time"].append(time.perf_counter() - start)
        if log and (i % log_every == 0 or i == 1):
            log(
                f"iter {i:4d}  batch loss {float(loss):.4f}  trajectory loss "
                f"{history['trajectory_loss'][-1]:.4f} (at iter {history['trajectory_iter'][-1]})"
                f"  NFE forward {info['last']['nfe']:4d}  backward "
                f"{info['last']['backward']['nfe']:4d}  time {history['time'][-1]:6.1f} s  "
                f"backsolve warnings so far {sum(history['drift'])}"
            )
        return g

    # The step decays from lr to lr/10: noisy windows early, a steadier end.
    params = tinyad.optim.adam(
        grad_fun, params, num_iters=iters, step_size=lambda k: lr * (1 - 0.9 * (k + 1) / iters)
    )
    history["trajectory_iter"].append(iters)
    history["trajectory_loss"].append(trajectory_loss(params, t, true_y))
    return params, history


def plot(params, history, path):
    """Five panels: trajectories over time, the phase portrait, the learned vector field,
    the loss and the NFE during training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, true_y = make_data()
    pred = tinyode.odeint(model, TRUE_Y0, t, params)
    fig = plt.figure(figsize=(15, 8))
    grid_spec = fig.add_gridspec(2, 3)
    ax = fig.add_subplot(grid_spec[0, :2])
    # Colour says which coordinate, line style true (solid) or learned (dashed).
    ax.plot(t, true_y[:, 0, 0], "C0-", label="true x")
    ax.plot(t, true_y[:, 0, 1], "C1-", label="true y")
    ax.plot(t, pred[:, 0, 0], "C0--", label="learned x")
    ax.plot(t, pred[:, 0, 1], "C1--", label="learned y")
    ax.set(title="Trajectories from y0", xlabel="t", ylabel="x, y", ylim=(-2, 2.6))
    ax.legend(fontsize=8, loc="upper right", ncol=4)
    ax = fig.add_subplot(grid_spec[0, 2])
    ax.plot(true_y[:, 0, 0], true_y[:, 0, 1], "k-", lw=1, label="true")
    ax.plot(pred[:, 0, 0], pred[:, 0, 1], "C3--", lw=1, label="learned")
    ax.set(title="Phase portrait", xlabel="x", ylabel="y", xlim=(-2, 2.1), ylim=(-2, 2.1))
    ax.set_aspect("equal")
    ax.legend(fontsize=8, loc="lower right")
    ax = fig.add_subplot(grid_spec[1, 0])
    y, x = onp.mgrid[-2:2:21j, -2:2:21j]
    grid = onp.stack([x, y], -1).reshape(-1, 2)
    learned = model(grid, 0.0, params).reshape(21, 21, 2)
    true = true_dynamics(grid, 0.0).reshape(21, 21, 2)
    ax.streamplot(x, y, true[..., 0], true[..., 1], color="0.75", density=1.0)
    speed = onp.linalg.norm(learned, axis=-1)
    ax.streamplot(x, y, learned[..., 0], learned[..., 1], color=speed, cmap="viridis", density=1.0)
    ax.set(title="Learned vector field (grey: true)", xlabel="x", ylabel="y")
    ax.set(xlim=(-2, 2), ylim=(-2, 2), aspect="equal")
    ax = fig.add_subplot(grid_spec[1, 1])
    iters = onp.arange(1, len(history["loss"]) + 1)
    ax.semilogy(iters, history["loss"], "-", color="0.6", lw=0.8, label="batch of windows")
    ax.semilogy(
        history["trajectory_iter"], history["trajectory_loss"], "k.-", label="whole trajectory"
    )
    ax.set(title="Loss", xlabel="iteration", ylabel="mean |error|")
    ax.legend(fontsize=8, loc="lower left")
    ax = fig.add_subplot(grid_spec[1, 2])
    ax.plot(iters, history["nfe_forward"], "C0-", lw=0.8, label="forward")
    ax.plot(iters, history["nfe_backward"], "C1-", lw=0.8, label="backward (adjoint)")
    ax.set(title="Function evaluations", xlabel="iteration", ylabel="NFE per iteration")
    ax.set_ylim(0, 1.3 * max(history["nfe_backward"]))
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=500)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="demo")
    args = parser.parse_args(argv)
    print(f"Training the spiral neural ODE for {args.iters} iterations (adjoint gradients)")
    params, history = train(args.iters, args.lr, args.seed)
    path = plot(params, history, os.path.join(args.out, "spiral.png"))
    first, final = history["trajectory_loss"][0], history["trajectory_loss"][-1]
    print(
        f"loss on the whole trajectory: {final:.4f} after training ({first:.4f} before); "
        f"training took {history['time'][-1]:.1f} s; figure written to {path}"
    )


if __name__ == "__main__":
    main()
