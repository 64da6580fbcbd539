"""The measurement floor of the general table (PROTOCOL §9): the measurement itself or its simplest
inverse, with no prior and no weight.

- denoising and deblurring (the task's family is ``denoising`` or ``deblurring``): y itself;
- a task with a ``pseudo_inverse(y)`` (compressed sensing): that, the minimum-norm
  least-squares image A⁺y;
- any other linear task: conjugate gradients on the normal equations AᵀA x = Aᵀy from x = 0,
  :data:`CG_ITERS` iterations per image (batched, per-image step sizes, so an image's result
  does not depend on its batch). From x = 0 every iterate stays in the range of Aᵀ, so CG
  converges to the minimum-norm least-squares image: the masked image for inpainting (the
  missing pixels 0, i.e. mid-grey), the grey image replicated for colorization,
  nearest-neighbour upsampling for super-resolution. For those three AᵀA acts on Aᵀy as a
  multiple of the identity, so the first iteration is already exact.

Shapes and units: y in the task's measurement shape (model space); the restoration x is
(B, 3, 32, 32) in model space, clamped to [-1, 1], float32 on the CPU. Nonlinear tasks are
skipped (there is no adjoint). No flow, no weight, not among Table 1's default methods.
Cost, measured on 16 CelebA valid images: under 10 ms per image on every built-in task (the
first call for compressed sensing also inverts A Aᵀ once).
"""

from __future__ import annotations

import time

import torch

from bench.methods import Method, Restoration, register
from bench.solve import progress_hook

CG_ITERS = 50  # normal-equation CG iterations for a linear task without a pseudo-inverse
IDENTITY_FAMILIES = ("denoising", "deblurring")  # the floor is y itself


class Measurement(Method):
    """y, A⁺y, or CG on AᵀA x = Aᵀy from 0 (see the module docstring); no flow, no weight."""

    name = "measurement"
    label = "Measurement (floor)"
    budget = f"closed form (A⁺y), or {CG_ITERS} conjugate-gradient iterations"
    weight_name = None
    needs_flow = False
    needs_linear = True
    default = False
    skip_reason = "the measurement floor needs a linear forward operator with an adjoint"

    def restore(self, flow, task, y, weight, iters, seeds, device, progress=None, lr=None):
        y = torch.as_tensor(y).detach()
        task = self.check(task, y, seeds)
        hook, close = progress_hook(progress, 1)
        start = time.perf_counter()
        try:
            x = floor_image(task, y.to(device=device, dtype=torch.float64))
            hook(1)
        finally:
            close()
        return Restoration.of_images(x, start)


def floor_image(task, y: torch.Tensor, iters: int = CG_ITERS) -> torch.Tensor:
    """The floor's image (B, 3, H, W) for a task bound to the batch (`Task.for_images`), in y's
    dtype and device, not clamped."""
    if task.kind in IDENTITY_FAMILIES:
        return y.clone()
    pinv = getattr(task, "pseudo_inverse", None)
    if callable(pinv):
        return pinv(y)
    return conjugate_gradients(lambda v: task.adjoint(task.A(v)), task.adjoint(y), iters)


def conjugate_gradients(op, b: torch.Tensor, iters: int, x0: torch.Tensor | None = None):
    """Solve op(x) = b for a symmetric positive semi-definite `op`, each image of the batch on
    its own (per-image step sizes and a fixed number of iterations: an image's result does not
    depend on the others in its batch), from x0 (default 0). A direction whose curvature
    vanishes (the residual already 0) takes no step."""

    def dot(u, v):
        return (u * v).flatten(1).sum(1).view(-1, *([1] * (u.ndim - 1)))

    tiny = torch.finfo(b.dtype).tiny
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - op(x) if x0 is not None else b.clone()
    p = r.clone()
    rr = dot(r, r)
    for _ in range(int(iters)):
        q = op(p)
        pq = dot(p, q)
        step = torch.where(pq > 0, rr / pq.clamp_min(tiny), torch.zeros_like(pq))
        x = x + step * p
        r = r - step * q
        rr_new = dot(r, r)
        p = r + torch.where(rr > 0, rr_new / rr.clamp_min(tiny), torch.zeros_like(rr)) * p
        rr = rr_new
    return x


register(Measurement())
