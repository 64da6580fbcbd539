"""Example method plugin: Tikhonov-regularised least squares in pixel space.

    x̂ = argmin_x ‖A x − y‖₂² + λ‖x‖₂²,   i.e.   (AᵀA + λI) x̂ = Aᵀy,

solved for the whole batch at once by conjugate gradients with the task's forward operator and
adjoint (model space [-1, 1), so the prior pulls towards mid-gray). No flow, one weight λ with
its own grid, every linear task. Load it with ``--plugin examples/plugins/tikhonov.py``.

Written here rather than taken from deepinv because a plugin should need nothing but bench's own
contract: `Task.A` and `Task.adjoint` are all a pixel-space solver needs.
"""

from __future__ import annotations

import time

import torch

import bench

CG_MAX_ITERS = 100  # the run's `iters` caps it further (the smoke preset's 10)


class Tikhonov(bench.Method):
    name = "tikhonov"
    label = "Tikhonov (pixel-space least squares)"
    weight_name = "lambda"
    weight_symbol = "λ"
    default_grid = (0.001, 0.01, 0.1, 1.0)
    needs_flow = False
    needs_linear = True
    skip_reason = "Tikhonov needs a linear forward operator with an adjoint"

    def restore(self, flow, task, y, weight, iters, seeds, device, progress=None, lr=None):
        y = torch.as_tensor(y).detach().to(device=device, dtype=torch.float64)
        task = self.check(task, y, seeds)
        lam = self.resolve_weight(weight, task)
        start = time.perf_counter()
        x = conjugate_gradients(
            lambda v: task.adjoint(task.A(v)) + lam * v,
            task.adjoint(y),
            min(int(iters), CG_MAX_ITERS),
        )
        return bench.Restoration.of_images(x, start)


def conjugate_gradients(op, b: torch.Tensor, iters: int) -> torch.Tensor:
    """Solve op(x) = b for a symmetric positive definite `op`, each image of the batch on its
    own (per-image step sizes; a fixed number of iterations, so an image's result does not
    depend on the others in its batch), from x = 0."""

    def dot(u, v):
        return (u * v).flatten(1).sum(1).view(-1, *([1] * (u.ndim - 1)))

    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = dot(r, r)
    for _ in range(iters):
        q = op(p)
        step = rr / dot(p, q).clamp_min(1e-30)
        x = x + step * p
        r = r - step * q
        rr_new = dot(r, r)
        p = r + (rr_new / rr.clamp_min(1e-30)) * p
        rr = rr_new
    return x


bench.register(Tikhonov)
