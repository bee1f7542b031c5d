"""torchdiffeq's `examples/ode_demo.py` problem, shared by B3, B5 and B6.

True dynamics dy/dt = y³ A with A = [[−0.1, 2], [−2, −0.1]] from y0 = (2, 0)
over t = linspace(0, 25, 1000); a batch is 20 random windows of 10 time points;
the model is dy/dt = tanh(y³ W1 + b1) W2 + b2 (2 → 50 → 2) initialised as
ode_demo does (weights N(0, 0.1²), biases 0); the loss is mean |pred − y|.
Everything is float64 on both sides (torchdiffeq's demo uses float32, where
rtol 1e-7 sits at the rounding level). One fixed batch and one set of weights
(seeded) are used by every candidate.
"""

import numpy

TRUE_A = numpy.array([[-0.1, 2.0], [-2.0, -0.1]])
TRUE_Y0 = numpy.array([[2.0, 0.0]])
DATA_SIZE, T_MAX, BATCH_TIME, BATCH_SIZE, HIDDEN = 1000, 25.0, 10, 20, 50
RTOL, ATOL = 1e-7, 1e-9


def make_batch(seed=0):
    """(batch_y0 (20, 1, 2), batch_t (10,), batch_y (10, 20, 1, 2)) as in ode_demo's get_batch."""
    import tinyode

    t = numpy.linspace(0.0, T_MAX, DATA_SIZE)
    true_y = tinyode.odeint(
        lambda y, t: y**3 @ TRUE_A, TRUE_Y0, t, method="dopri8", rtol=1e-11, atol=1e-12
    )
    rng = numpy.random.default_rng(seed)
    s = rng.choice(numpy.arange(DATA_SIZE - BATCH_TIME), BATCH_SIZE, replace=False)
    batch_y = numpy.stack([true_y[s + i] for i in range(BATCH_TIME)])
    return true_y[s], t[:BATCH_TIME], batch_y


def init_params(seed=1, hidden=HIDDEN):
    """[(W1 (2, 50), b1), (W2 (50, 2), b2)]: ode_demo's init, N(0, 0.1²) weights, zero biases."""
    rng = numpy.random.default_rng(seed)
    return [
        (0.1 * rng.standard_normal((2, hidden)), numpy.zeros(hidden)),
        (0.1 * rng.standard_normal((hidden, 2)), numpy.zeros(2)),
    ]


def model(y, t, params):
    """The ode_demo network on y³, written with tinyad.numpy."""
    import tinyad.numpy as np

    (W1, b1), (W2, b2) = params
    return np.tanh(y**3 @ W1 + b1) @ W2 + b2


def tinyode_step(batch, **options):
    """One training iteration's (loss, grads, info) with tinyode; options go to odeint."""
    import tinyad
    import tinyad.numpy as np
    import tinyode

    batch_y0, batch_t, batch_y = batch
    info = {}

    def loss_fun(params):
        pred, info["info"] = tinyode.odeint(
            model, batch_y0, batch_t, params, rtol=RTOL, atol=ATOL, full_output=True, **options
        )
        return np.mean(np.abs(pred - batch_y))

    def step(params):
        loss, grads = tinyad.value_and_grad(loss_fun)(params)
        return float(loss), tinyad.flatten(grads)[0], info["info"]

    return step


def torch_module(torch, params):
    """ode_demo's ODEFunc with the given weights (float64), counting calls of forward."""

    class ODEFunc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(2, HIDDEN), torch.nn.Tanh(), torch.nn.Linear(HIDDEN, 2)
            )
            self.nfe = 0

        def forward(self, t, y):
            self.nfe += 1
            return self.net(y**3)

    func = ODEFunc().double()
    (W1, b1), (W2, b2) = params
    with torch.no_grad():
        func.net[0].weight.copy_(torch.tensor(W1.T))
        func.net[0].bias.copy_(torch.tensor(b1))
        func.net[2].weight.copy_(torch.tensor(W2.T))
        func.net[2].bias.copy_(torch.tensor(b2))
    return func


def torchdiffeq_step(torch, torchdiffeq, params, batch, adjoint=True, **options):
    """One torchdiffeq training iteration: () -> (loss, flat grads, nfe forward, nfe backward)."""
    func = torch_module(torch, params)
    batch_y0, batch_t, batch_y = (torch.tensor(x) for x in batch)
    solve = torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint

    def step():
        func.zero_grad(set_to_none=True)
        func.nfe = 0
        pred = solve(func, batch_y0, batch_t, rtol=RTOL, atol=ATOL, method="dopri5", **options)
        nfe_forward = func.nfe
        loss = torch.mean(torch.abs(pred - batch_y))
        loss.backward()
        return loss, nfe_forward, func.nfe - nfe_forward

    def result():
        loss, nfe_forward, nfe_backward = step()
        net = func.net
        grads = [net[0].weight.grad.T, net[0].bias.grad, net[2].weight.grad.T, net[2].bias.grad]
        flat = numpy.concatenate([g.detach().numpy().ravel() for g in grads])
        return float(loss.detach()), flat, nfe_forward, nfe_backward

    return step, result
