"""Total-variation regularised least squares (PROTOCOL §9), with deepinv:

    x̂ = argmin_x ½‖A x − y‖₂² + λ·TV(x),   TV(x) = Σ_c Σ_p ‖(∇x_c)_p‖₂

(isotropic TV of each colour channel, sums over the pixels of each image, model space
[-1, 1)). Our task is wrapped as ``deepinv.physics.LinearPhysics(A=task.A,
A_adjoint=task.adjoint)``, so the operator is exactly the task's (plugin tasks included); the
problem is solved by deepinv's ``FISTA`` with the ``L2`` data fidelity (σ = 1: ½‖Ax − y‖²)
and a fresh ``TVPrior`` per restoration (its TV prox keeps warm-start state between calls).

- Step size: 1/(1.01·max(‖A‖², 1)) per image, ‖A‖² = ‖AᵀA‖ by :data:`POWER_ITERS` power
  iterations on each image's own operator; FISTA from x0 = Aᵀy. The cap at 1 matters for the
  operators of small norm (colorization 1/3, super-resolution 1/k²): a step of 1/‖A‖² makes the
  prox threshold λ/‖A‖² so large that the inner solver, at a fixed iteration count, no longer
  solves it (×4 super-resolution at λ = 0.06 fell to 10 dB against 18.7 dB converged).
- Iterations: ``min(iters, TV_ITERS)`` FISTA iterations (:data:`TV_ITERS` = 300), each with
  :data:`PROX_ITERS` = 10 warm-started Chambolle–Pock iterations of deepinv's TV prox at
  primal step :data:`PROX_TAU` (its early stop, a test on the whole batch, is disabled: a
  fixed count, so an image's result does not depend on its batch). Against 1500–2000
  iterations with 20–100 inner ones, the PSNR near each task's best λ is within 0.05 dB (far
  above it, where the prox threshold is large, 10 inner iterations no longer solve it: ×4
  super-resolution at λ = 0.2 gives 13.5 dB, an unconverged value, but never the best one).
- Weight λ: :data:`TV_GRID` = (1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.02, 0.06, 0.25), chosen on 16
  CelebA valid images. The best λ per task spans more than four decades: about 1e-5 for the
  noiseless deblurring (nearly invertible: the prior mostly costs), 3e-4 for both inpaintings,
  1e-3 for super-resolution, 2e-3 to 3e-2 for compressed sensing, and 0.06, 0.12, 0.25 for
  denoising at 0.05, 0.1, 0.2, whose PSNR peaks sharply in λ (about 1.5 dB per factor of 2).
  Eight values put each task's best within the grid, each within about 0.3 dB of its best
  (five values ×10 apart lost up to 1.3 dB on denoising); TV is cheap, so the grid is too.
- Batches: per image (per-image step, fixed counts); on compressed sensing the matrix
  products differ in their last bits with the batch size, and 300 iterations of FISTA with an
  inexact prox amplify that to a few 1e-3 in model space (even in float64); the other built-in
  tasks give bit-identical results in any batch.
- Loss: the objective ½‖Ax̂ − y‖² + λ·TV(x̂) per image at the returned (clamped) image.
- Cost, measured on this machine (one CPU thread, batches of 16): 0.27–0.31 s per image
  (1 ms per FISTA iteration), compressed sensing 0.33 s (0.1) and 0.38 s (0.25); the general
  table's 8 selection images × 8 λ and 48 test images on eleven tasks take about 6 minutes
  per test set on the `cpu` preset.

Shapes: y in the task's measurement shape; x (B, 3, 32, 32) model space, clamped to [-1, 1],
float32 on the CPU. Every linear task; no flow.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from bench.methods import Method, Restoration, register
from bench.solve import progress_hook

TV_ITERS = 300  # FISTA iterations (bounded by the run's `iters`)
PROX_ITERS = 10  # warm-started inner iterations of the TV prox per FISTA iteration
PROX_TAU = 0.2  # primal step of the prox's Chambolle–Pock (deepinv's 0.01 is far slower)
POWER_ITERS = 30  # power iterations for ‖A‖² per image
STEP_SAFETY = 1.01  # the step is 1 / (1.01 max(‖A‖², MIN_SQNORM))
MIN_SQNORM = 1.0  # caps the step at ~1 (see the module docstring)
TV_GRID = (1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.02, 0.06, 0.25)  # λ, each task's best inside


class TV(Method):
    """½‖Ax − y‖² + λ TV(x) by FISTA with deepinv; every linear task, no flow, weight λ."""

    name = "tv"
    label = "TV"
    budget = f"min(iters, {TV_ITERS}) FISTA iterations, {PROX_ITERS} inner TV-prox iterations each"
    weight_name = "lambda"
    weight_symbol = "λ"
    default_grid = TV_GRID
    needs_flow = False
    needs_linear = True
    default = False
    skip_reason = "TV needs a linear forward operator with an adjoint"

    def restore(self, flow, task, y, weight, iters, seeds, device, progress=None, lr=None):
        y = torch.as_tensor(y).detach()
        task = self.check(task, y, seeds)
        lam = self.resolve_weight(weight, task)
        n_iter = max(1, min(int(iters), TV_ITERS))
        hook, close = progress_hook(progress, n_iter)
        start = time.perf_counter()
        try:
            y = y.to(device=device, dtype=torch.float32)
            x, loss = solve_tv(task, y, lam, n_iter, hook)
        finally:
            close()
        x = x.clamp(-1.0, 1.0).to(device="cpu", dtype=torch.float32).contiguous()
        return Restoration(
            x=x,
            loss=loss,
            diverged=~np.isfinite(loss),
            seconds=time.perf_counter() - start,
        )


def operator_sqnorm(task, like: torch.Tensor, iters: int = POWER_ITERS) -> torch.Tensor:
    """‖A‖² = ‖AᵀA‖ per image, (B, 1, 1, 1), by power iteration on each image's operator from
    the same fixed start (a seeded Gaussian image), so it does not depend on the batch."""
    g = torch.Generator().manual_seed(0)
    v0 = torch.randn(like.shape[1:], generator=g, dtype=torch.float64)
    v = v0.to(device=like.device, dtype=like.dtype).expand_as(like).clone()
    norm = torch.ones(like.shape[0], 1, 1, 1, device=like.device, dtype=like.dtype)
    for _ in range(iters):
        v = v / v.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, 1, 1, 1)
        w = task.adjoint(task.A(v))
        norm = w.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        v = w
    return norm


def deepinv_physics(task):
    """The task (bound to its batch) as a deepinv LinearPhysics with the task's own A and Aᵀ."""
    import deepinv

    return deepinv.physics.LinearPhysics(A=task.A, A_adjoint=task.adjoint)


def solve_tv(task, y: torch.Tensor, lam: float, n_iter: int, hook=None):
    """FISTA on ½‖Ax − y‖² + λ TV(x) for a bound task; returns (x not clamped, objective per
    image at the clamped x as float64 numpy). `hook(t)` is called after each iteration."""
    import deepinv

    physics = deepinv_physics(task)
    x0 = task.adjoint(y)
    step = 1.0 / (STEP_SAFETY * operator_sqnorm(task, x0).clamp_min(MIN_SQNORM))
    ticks = [0]

    class TickingTV(deepinv.optim.TVPrior):
        # the prox runs once per FISTA iteration: the place to tick progress
        def prox(self, x, *args, **kwargs):
            out = super().prox(x, *args, **kwargs)
            ticks[0] += 1
            if hook is not None:
                hook(ticks[0])
            return out

    # crit 0: deepinv's TV prox never stops early on its batch-wide test, so each image gets
    # exactly PROX_ITERS inner iterations whatever batch it is in
    prior = TickingTV(def_crit=0.0, n_it_max=PROX_ITERS)
    prior.TVModel.tau = PROX_TAU
    solver = deepinv.optim.FISTA(
        data_fidelity=deepinv.optim.L2(),
        prior=prior,
        lambda_reg=lam,
        stepsize=[step],  # one value for every iteration: a (B, 1, 1, 1) tensor, per image
        max_iter=n_iter,
        early_stop=False,
    )
    with torch.no_grad():
        x = solver(y, physics, init=(x0, x0.clone()))  # FISTA: (x_0, z_0)
        xc = x.clamp(-1.0, 1.0)
        fit = 0.5 * (task.A(xc) - y).pow(2).flatten(1).sum(1)
        loss = fit + lam * deepinv.optim.TVPrior().fn(xc)
    return x, loss.double().cpu().numpy()


register(TV())
