"""Inpainting (PROTOCOL §4): ``A`` multiplies by :func:`inpainting_mask` (a centered 13×13 square
zeroed, rows and columns 9..21, all channels); no noise. The paper's Figure 5."""

from __future__ import annotations

import math

import torch

from bench import config
from bench.plugins import register
from bench.tasks.base import Task


def inpainting_mask(size: int = config.IMAGE_SIZE) -> torch.Tensor:
    """float32 (size, size): 0 on the centered square that inpainting removes, 1 elsewhere.

    Rows and columns ``floor(0.3·size)`` to ``floor(0.7·size)`` (exclusive) are zeroed: for
    32×32 images rows/cols 9..21, a 13×13 square. The one place the mask is defined."""
    lo = math.floor(config.INPAINT_LO * size)
    hi = math.floor(config.INPAINT_HI * size)
    mask = torch.ones(size, size, dtype=torch.float32)
    mask[lo:hi, lo:hi] = 0.0
    return mask


class Inpainting(Task):
    """Multiply by :func:`inpainting_mask` (all channels); noiseless. Self-adjoint."""

    name = "inpainting"
    label = "Inpainting"
    family = "inpainting"
    figure = 5
    default = True
    linear = True

    def __init__(self):
        self._masks: dict = {}

    def mask_like(self, x: torch.Tensor) -> torch.Tensor:
        """The (1, 1, H, W) mask on x's device and dtype (cached)."""
        key = (x.shape[-1], x.device, x.dtype)
        if key not in self._masks:
            self._masks[key] = inpainting_mask(x.shape[-1]).to(x)[None, None]
        return self._masks[key]

    def A(self, x):
        return x * self.mask_like(x)

    def adjoint(self, y):
        return y * self.mask_like(y)


register(Inpainting)
