"""Seeded bugs in the solution of assignment 3, each of which its own item must catch, and
rewrites that are still right, which must keep every point (`grader.py 03_adjoint --mutants`)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from probing import Mutant  # noqa: E402

OUT = "return np.concatenate([dz, -a_dfdz, -a_dfdtheta])"
SPLIT = "n = (np.size(s) - np.size(theta)) // 2"
VJP = "dz, f_vjp = tinyad.vjp(lambda z, theta: f(z, t, theta), z, theta)"
PULL = "a_dfdz, a_dfdtheta = f_vjp(a)"
STEP = "y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)"
K2 = "k2 = func(y + h / 2 * k1, t + h / 2, *args)"
K4 = "k4 = func(y + h * k3, t + h, *args)"
H = "h = (t1 - t0) / n_steps"
LOOP = "for _ in range(n_steps):"
TICK = "t = t + h"
A1 = "a1 = tinyad.grad(loss)(z1, target)"
S1 = "s1 = np.concatenate([z1, a1, np.zeros(np.size(theta))])"
BACK = "s0 = rk4(augmented_dynamics, s1, t1, 0.0, n_steps, theta)"
RESULT = "return loss(z1, target), s0[n : 2 * n], s0[2 * n :]"
GRAD = "return dtheta"
ADAM = "theta = tinyad.optim.adam(grad_fun, theta, num_iters=num_iters, step_size=step_size)"

MUTANTS = [
    Mutant(
        "augmented_dynamics",
        "augmented_answer",
        OUT,
        "return np.concatenate([dz, a_dfdz, -a_dfdtheta])",
        "sign of the adjoint's derivative",
    ),
    Mutant(
        "augmented_dynamics",
        "augmented_answer",
        OUT,
        "return np.concatenate([dz, -a_dfdz, a_dfdtheta])",
        "sign of the θ part",
    ),
    Mutant(
        "augmented_dynamics",
        "augmented_answer",
        OUT,
        "return np.concatenate([-dz, -a_dfdz, -a_dfdtheta])",
        "z's derivative negated (as if time ran backwards)",
    ),
    Mutant(
        "augmented_dynamics",
        "augmented_answer",
        OUT,
        "return np.concatenate([dz, -a_dfdz, -1.01 * a_dfdtheta])",
        "factor 1.01 on the θ part",
    ),
    Mutant(
        "augmented_dynamics",
        "augmented_answer",
        SPLIT,
        "n = np.size(s) // 3",
        "the state split in three equal parts",
    ),
    Mutant(
        "augmented_dynamics",
        "augmented_answer",
        VJP,
        "dz, f_vjp = tinyad.vjp(lambda z, theta: f(z, 0.0, theta), z, theta)",
        "t ignored (f at t = 0)",
    ),
    Mutant(
        "augmented_dynamics",
        "augmented_answer",
        PULL,
        "a_dfdz, a_dfdtheta = f_vjp(z)",
        "the vjp applied to z, not a",
    ),
    Mutant(
        "augmented_dynamics",
        "augmented_answer",
        PULL,
        "a_dfdz = a @ tinyad.jacobian(lambda z: f(z, t, theta))(z)\n"
        "    a_dfdtheta = a @ tinyad.jacobian(lambda theta: f(z, t, theta))(theta)",
        "full Jacobians, not one vjp (right numbers, against the rules)",
    ),
    Mutant("rk4", "rk4_answer", STEP, "y = y + h * k1", "Euler, not RK4"),
    Mutant(
        "rk4",
        "rk4_answer",
        STEP,
        "y = y + h / 4 * (k1 + k2 + k3 + k4)",
        "equal weights",
    ),
    Mutant(
        "rk4",
        "rk4_answer",
        K2,
        "k2 = func(y + h / 2 * k1, t + h, *args)",
        "the second stage at t + h",
    ),
    Mutant("rk4", "rk4_answer", K4, "k4 = func(y + h * k2, t + h, *args)", "k4 from k2"),
    Mutant("rk4", "rk4_answer", H, "h = abs(t1 - t0) / n_steps", "always forwards"),
    Mutant("rk4", "rk4_answer", LOOP, "for _ in range(n_steps - 1):", "off by one: a step short"),
    Mutant("rk4", "rk4_answer", TICK, "t = t + h / 2", "time advanced by half a step"),
    Mutant("adjoint_gradients", "adjoint_answer", A1, "a1 = -" + A1[5:], "a(t1) negated"),
    Mutant(
        "adjoint_gradients",
        "adjoint_answer",
        BACK,
        "s0 = rk4(augmented_dynamics, s1, 0.0, t1, n_steps, theta)",
        "the adjoint solved forwards",
    ),
    Mutant(
        "adjoint_gradients",
        "adjoint_answer",
        S1,
        "s1 = np.concatenate([z0, a1, np.zeros(np.size(theta))])",
        "starts from z(t0), not z(t1)",
    ),
    Mutant(
        "adjoint_gradients",
        "adjoint_answer",
        RESULT,
        "return loss(z1, target), s0[:n], s0[2 * n :]",
        "returns z(t0) as dL/dz0",
    ),
    Mutant(
        "adjoint_gradients",
        "adjoint_answer",
        BACK,
        "s0 = rk4(augmented_dynamics, s1, t1, 0.0, max(1, n_steps // 2), theta)",
        "half the steps backwards (gradients off by the truncation error)",
    ),
    Mutant(
        "adjoint_gradients",
        "adjoint_answer",
        S1,
        "s1 = np.concatenate([z1, a1, theta])",
        "the θ part starts at θ, not 0",
    ),
    Mutant("train", "train_answer", GRAD, "return -dtheta", "gradient ascent"),
    Mutant(
        "train",
        "train_answer",
        ADAM,
        ADAM.replace("step_size=step_size", "step_size=0.001"),
        "step_size ignored",
    ),
    Mutant("train", "train_answer", ADAM, "_" + ADAM[5:], "returns the untrained theta"),
    Mutant(
        "train",
        "train_answer",
        ADAM,
        ADAM.replace("num_iters=num_iters", "num_iters=num_iters // 4"),
        "a quarter of the iterations",
    ),
]

EQUIVALENT = [
    Mutant(
        "augmented_dynamics",
        "augmented_answer",
        PULL + "\n    " + OUT,
        "da, dtheta = f_vjp(-a)\n    return np.concatenate([dz, da, dtheta])",
        "f_vjp(-a): the minus sign inside (the vjp is linear)",
    ),
    Mutant(
        "adjoint_gradients",
        "adjoint_answer",
        A1,
        "a1 = (z1 - target) / np.size(z1)",
        "a(t1) by hand",
    ),
]
