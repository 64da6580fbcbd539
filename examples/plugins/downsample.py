"""Example task plugin: 2× downsampling by average pooling (a super-resolution problem).

    A x = avgpool₂(x): (B, 3, 32, 32) -> (B, 3, 16, 16),   Aᵀ y = nearest-upsample₂(y) / 4,

noiseless, applied in model space [-1, 1) to the dequantized clean image like the paper's
deblurring. Its display enlarges the 16×16 measurement back to 32×32 (nearest neighbour) for the
figures. Load it with ``--plugin examples/plugins/downsample.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import bench

FACTOR = 2


class Downsample2(bench.Task):
    name = "downsample2"
    label = "2× downsampling"
    linear = True
    display_label = "measurement, 16×16 shown enlarged"

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, FACTOR)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return F.interpolate(y, scale_factor=FACTOR, mode="nearest") / FACTOR**2

    def display(self, y: torch.Tensor) -> torch.Tensor:
        big = F.interpolate(y.detach().cpu(), scale_factor=FACTOR, mode="nearest")
        return super().display(big)


bench.register(Downsample2)
