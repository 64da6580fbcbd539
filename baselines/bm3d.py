"""BM3D (Dabov et al.), denoising only (PROTOCOL §5): ``bm3d.bm3d_rgb`` on 0..1 images with
``sigma_psd`` the task's own noise std as a fraction of the range (:func:`sigma_psd`):
``config.BM3D_SIGMA`` = 0.1 for the paper's ``denoising`` (the released code passed 25/255), and
0.05 and 0.2 for PROTOCOL §9's ``denoising-0.05`` and ``denoising-0.2``. No flow, no weight.
``bm3d_rgb`` rather than deepinv's BM3D, which calls ``bm3d.bm3d`` on RGB: 1.7 dB worse.

The measurement arrives in model space; it goes back to 8-bit pixels (``data.to_pixels``,
5-bit levels k·8) and is placed at the centre of its 5-bit bin, (k + ½)·8, before dividing by
255 (the lower bin edge would bias every estimate by half a bin, which the final floor to 5 bits
turns into a one-level error on about half of the pixels). The estimate p (0..255 scale) returns
to model space continuously, ``x = p / 256 · 2 − 1``, whose ``to_pixels`` is
``floor(p / 8) · 8``. Images are denoised one at a time (BM3D has no batch mode).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from bench import data
from bench.methods import Method, Restoration, register
from bench.solve import progress_hook


class BM3D(Method):
    """BM3D on the noisy image; denoising only, no flow, no weight (one cell)."""

    name = "bm3d"
    label = "BM3D"
    budget = "one pass (bm3d_rgb)"
    weight_name = None
    needs_flow = False
    default = True
    tasks = ("denoising",)
    skip_reason = "BM3D is a denoiser: it has no forward operator to invert for this task"

    def restore(self, flow, task, y, weight, iters, seeds, device, progress=None, lr=None):
        import bm3d

        y = torch.as_tensor(y).detach().cpu()
        task = self.check(task, y, seeds)
        sigma = sigma_psd(task)
        hook, close = progress_hook(progress, y.shape[0])
        start = time.perf_counter()
        try:
            pix = (data.to_pixels(y).to(torch.float64) + data.PIXEL_STEP / 2) / 255.0
            pix = pix.permute(0, 2, 3, 1).numpy()  # (B, H, W, 3)
            out = np.empty_like(pix)
            # one thread: on a 32×32 image BM3D's own threads do not pay (0.99 s with one,
            # 0.97 s with two, measured here), and a fused solve keeps the other cores
            profile = bm3d.BM3DProfile()
            profile.num_threads = 1
            for i in range(pix.shape[0]):
                out[i] = bm3d.bm3d_rgb(pix[i], sigma_psd=sigma, profile=profile)
                hook(i + 1)
        finally:
            close()
        x = torch.from_numpy(out).permute(0, 3, 1, 2) * (255.0 / 256.0) * 2 - 1
        return Restoration.of_images(x, start)


def sigma_psd(task) -> float:
    """The noise std on 0..1 images of a denoising task: its `fraction` of the range (0.1 for
    the paper's ``denoising``, config.BM3D_SIGMA), else half its model-space `noise_std`."""
    fraction = getattr(task, "fraction", None)
    return float(fraction) if fraction is not None else float(task.noise_std) / 2


register(BM3D())
