"""Plug-and-play BM3D (PROTOCOL §9): half-quadratic splitting with deepinv's fast BM3D as the
denoiser, the DPIR recipe (Zhang et al. 2021) with BM3D in place of DRUNet.

For the objective ½‖A x − y‖² + λ R(x) (model space [-1, 1), sums over pixels), from
z₀ = the measurement floor (`bench_baselines.measurement.floor_image`: y, A⁺y, or the
minimum-norm least-squares image), K iterations of

    x_k = argmin_x ½‖A x − y‖² + μ_k/2 ‖x − z_{k−1}‖²,   μ_k = λ / σ_k²
    z_k = BM3D(x_k, σ_k)

with σ_k log-spaced from σ_start down to σ_end (model-space stds; BM3D runs on (x + 1)/2 at
σ_k/2). The data step solves (AᵀA + μ_k I) x = Aᵀy + μ_k z by :data:`CG_ITERS` conjugate
gradient iterations warm-started at z (exact for denoising and masks, near exact for the rest);
the restoration is z_K. The per-family schedules (K, σ_start, σ_end) are :data:`SCHEDULES`;
K is bounded by the run's `iters`. Denoising is one step at the task's own noise std, i.e.
deepinv's BM3D on y; colorization one light step (BM3D has no colour prior to add).

Weight: none. λ = :data:`HQS_LAMBDA` and the schedules are fixed, chosen on 16 CelebA valid
images: no parameter needed tuning per task. λ only has to be small (the tasks are noiseless
but for compressed sensing's ‖η‖ ≈ 0.1). On 8 images: deblurring (8 iterations from σ 0.4)
gives 37.6, 37.4, 36.1, 33.3 dB at λ = 1e-7, 1e-6, 1e-5, 1e-4; compressed sensing 0.1 is flat
(20.7–20.8 dB) from 1e-6 to 1e-4 and collapses at λ = 0. Deblurring at 4, 8 and 16 iterations:
36.8, 37.6, 37.9 dB (8 kept: 16 costs twice as much); random inpainting from σ 1.0 at 24, 32,
40: 25.5, 25.7, 25.9 dB; compressed sensing 0.1 at 40, 60, 80: 20.7, 21.2, 21.4 dB (40 kept
for the cost).

Denoiser: ``deepinv.models.BM3D(use_legacy=False, search_radius=SEARCH_RADIUS)`` (needs
``ptwt``); a search radius of 8 instead of 19 costs 31 instead of 104 ms per 32×32 image and
0.07 dB on denoising (the whole 32×32 image is within reach of either).

Batches: every step is per image, so an image's result does not depend on its batch, except
through rounding: compressed sensing's matrix products differ in their last bits with the
batch size, and BM3D's block matching turns a one-ulp change of its input into a visible one
(after 40 iterations up to 0.01 in model space, a sixth of a 5-bit level); the other built-in
tasks give bit-identical results in any batch.

Why not deepinv's ``HQS``/``DPIR``: their data step for a generic ``LinearPhysics`` runs
conjugate gradients to a tolerance tested on the whole batch, so an image's result would
depend on the images beside it (and BM3D's block matching can amplify such differences); the
loop is seven lines here, with a fixed, per-image CG.

Cost (one CPU thread, measured on 16 images): one BM3D call per image and iteration, about
31 ms, plus the data step (about 5 ms for compressed sensing): per image 0.03 s for each
denoising level and colorization, 0.28 s deblurring, 1.1 s each inpainting, 0.26 s each
super-resolution, 1.4–1.6 s each compressed sensing; 6 s per image over the eleven tasks,
so the `cpu` general table's 48 test images per task (no grid: no weight) take about 5
minutes per test set.

Shapes: y in the task's measurement shape; x (B, 3, 32, 32) model space, clamped to [-1, 1],
float32 on the CPU. Every linear task; no flow.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from bench.methods import Method, Restoration, register
from bench.solve import progress_hook
from bench_baselines.measurement import conjugate_gradients, floor_image

SEARCH_RADIUS = 8  # BM3D block-matching search radius (deepinv's default 19)
HQS_LAMBDA = 1e-6  # λ: μ_k = λ / σ_k² (the tasks are noiseless or nearly: a near projection)
CG_ITERS = 20  # CG iterations of each data step
# (iterations K, σ_start, σ_end) per family (Task.kind), model-space stds
SCHEDULES = {
    "denoising": (1, None, None),  # one step at the task's noise std: BM3D(y, σ_n)
    "deblurring": (8, 0.2, 0.02),
    "inpainting": (32, 1.0, 0.02),
    "colorization": (1, 0.02, 0.02),  # BM3D has no colour prior: the floor, lightly denoised
    "super-resolution": (8, 1.0, 0.02),
    "compressed-sensing": (40, 1.0, 0.02),
}
DEFAULT_SCHEDULE = (16, 1.0, 0.02)  # a linear task of another family


def schedule(task) -> tuple[int, float, float]:
    """(K, σ_start, σ_end) for a task; denoising runs one step at its own noise std."""
    k, s0, s1 = SCHEDULES.get(task.kind, DEFAULT_SCHEDULE)
    if s0 is None:
        s0 = s1 = float(task.noise_std) if task.noise_std > 0 else 0.2
    return k, s0, s1


class PnPBM3D(Method):
    """HQS with deepinv's BM3D (see the module docstring); every linear task, no weight."""

    name = "pnp-bm3d"
    label = "PnP-BM3D"
    budget = (
        "HQS iterations per task family, each capped by iters: "
        + ", ".join(f"{family} {k}" for family, (k, _, _) in SCHEDULES.items())
        + f" (other families {DEFAULT_SCHEDULE[0]})"
    )
    weight_name = None
    needs_flow = False
    needs_linear = True
    default = False
    skip_reason = "PnP-BM3D needs a linear forward operator with an adjoint"

    def restore(self, flow, task, y, weight, iters, seeds, device, progress=None, lr=None):
        import deepinv

        y = torch.as_tensor(y).detach().cpu()  # BM3D runs on the CPU: the whole loop does
        task = self.check(task, y, seeds)
        k, s0, s1 = schedule(task)
        k = max(1, min(int(iters), k))
        hook, close = progress_hook(progress, k)
        start = time.perf_counter()
        denoiser = deepinv.models.BM3D(use_legacy=False, search_radius=SEARCH_RADIUS)
        try:
            with torch.no_grad():
                x = hqs(task, y, denoiser, k, s0, s1, hook)
        finally:
            close()
        return Restoration.of_images(x, start)


def sigmas(k: int, s0: float, s1: float) -> list[float]:
    """k stds log-spaced from s0 to s1 (s1 alone for k = 1)."""
    if k == 1:
        return [s1]
    return np.geomspace(s0, s1, k).tolist()


def hqs(task, y, denoiser, k, s0, s1, hook=None, lam: float = HQS_LAMBDA):
    """K HQS iterations on the CPU (BM3D runs there); returns z_K (float64, model space, not
    clamped). The data steps run in float64 (μ is tiny, so the normal equations amplify
    rounding), BM3D in float32."""
    y = y.to(torch.float64)
    aty = task.adjoint(y)
    z = floor_image(task, y).clamp(-1.0, 1.0)
    for i, sigma in enumerate(sigmas(k, s0, s1)):
        mu = lam / sigma**2
        x = conjugate_gradients(
            lambda v, mu=mu: task.adjoint(task.A(v)) + mu * v, aty + mu * z, CG_ITERS, x0=z
        )
        x01 = ((x.clamp(-1.0, 1.0) + 1) / 2).to(torch.float32)
        z = denoiser(x01, sigma / 2).to(torch.float64) * 2 - 1
        if hook is not None:
            hook(i + 1)
    return z


register(PnPBM3D())
