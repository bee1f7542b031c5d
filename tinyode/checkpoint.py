"""Checkpointing: the exact gradient of the discrete solve, with memory in checkpoints.

The forward pass runs on raw values and keeps, for every accepted step, its
starting state and its plan (start time, size, outputs). The backward pass
walks the steps last to first, replays each one under a fresh tape from its
checkpoint, and pulls the cotangent through it with `tinyad.vjp`. Only one
step is ever on a tape, and the replay repeats the forward step exactly, so
the result equals "backprop" (to rounding), without backsolve's instability.
"""

import tinyad
import tinyad.numpy as np

from .odeint import STRATEGIES, forward, solve_as_primitive
from .solver import Stats, replay_step


@tinyad.primitive
def odeint_checkpoint(y0, t, *leaves, func, argdef, opts, info):
    steps = []  # the checkpoints: saved for the vjp (tape.nbytes() counts their states)
    ys = forward(y0, t, leaves, func, argdef, opts, info, record=steps)
    return tinyad.Saved(ys, steps)


def checkpoint_vjp(argnums, g, ys, y0, t, *leaves, func, argdef, opts, info, saved):
    """(dL/dy0, dL/dt, *dL/dθ): each step replayed under the tape, last to first."""
    steps = saved
    shape = np.shape(y0)
    nfe = [0]

    def replay(y, t, *leaves, step):
        """One recorded step: returns [y_{n+1}, outputs inside the step] as one flat vector."""
        stats = Stats()
        args = argdef.rebuild(leaves)
        y1, outs = replay_step(
            func, t, args, opts.method, step, y, stats, opts.block, (opts.rtol, opts.atol)
        )
        nfe[0] += stats.nfe
        return np.concatenate([np.ravel(v) for v in [y1, *outs]])

    states = [step.y for step in steps]
    if any(tinyad.isbox(x) for x in (y0, t, *leaves)):
        # Differentiating the gradient: the raw checkpoints do not know how they depend
        # on y0, t and θ, so rebuild them by replaying the steps under the outer tape.
        y = y0
        for n, step in enumerate(steps):
            states[n] = y
            y = replay(y, t, *leaves, step=step)[: int(np.size(y0))].reshape(shape)

    ct_y = np.zeros_like(y0)
    ct_t = np.zeros_like(t)
    ct_leaves = [np.zeros_like(x) for x in leaves]
    for step, y in zip(reversed(steps), reversed(states)):
        ct_end = ct_y + g[step.land] if step.land is not None else ct_y
        ct_out = np.concatenate([np.ravel(ct_end)] + [np.ravel(g[i]) for i in step.outs])
        _, step_vjp = tinyad.vjp(lambda y, t, *lv, s=step: replay(y, t, *lv, step=s), y, t, *leaves)
        ct_y, dt, *dleaves = step_vjp(ct_out)
        ct_y = np.reshape(ct_y, shape)
        ct_t = ct_t + dt
        ct_leaves = [c + d for c, d in zip(ct_leaves, dleaves)]
    info["backward"] = {"nfe": nfe[0], "n_steps": len(steps), "n_rejected": 0}
    return (ct_y + g[0], ct_t, *ct_leaves)


tinyad.defvjp_all(odeint_checkpoint, checkpoint_vjp)


STRATEGIES["checkpoint"] = solve_as_primitive(odeint_checkpoint, "checkpoint")
