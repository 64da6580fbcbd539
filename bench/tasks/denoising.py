"""Denoising (PROTOCOL §4): ``y255 = clip(floor(x255 + 25.5 n), 0, 255)``, ``n ~ N(0, I)``,
then into model space; ``A`` = identity. The paper's Figure 3."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bench import data
from bench.plugins import register
from bench.tasks.base import (
    NOISE_STD_MODEL,
    NOISE_STD_PIXELS,
    NOISE_STREAM,
    Task,
    as_uint8_batch,
    image_seeds,
    stream_seed,
)


class Denoising(Task):
    """Additive Gaussian noise of std 25.5 on 0..255 (0.1 of the range), rounded down and
    clipped, then into model space; A = identity."""

    name = "denoising"
    label = "Denoising"
    figure = 3
    default = True
    linear = True
    noise_std = NOISE_STD_MODEL

    def A(self, x):
        return x

    def adjoint(self, y):
        return y

    def noisy_pixels(self, x255, names: Sequence[str], seed: int = 0) -> torch.Tensor:
        """``clip(floor(x255 + 25.5 n), 0, 255)`` as uint8; n per image, seeded with
        ``image_seed(name, seed)``."""
        x = as_uint8_batch(x255, names)
        n = torch.empty(x.shape, dtype=torch.float32)
        for i, s in enumerate(image_seeds(names, seed)):
            g = torch.Generator().manual_seed(stream_seed(s, NOISE_STREAM))
            n[i] = torch.randn(x.shape[1:], generator=g, dtype=torch.float32)
        y = torch.floor(x.to(torch.float64) + NOISE_STD_PIXELS * n.to(torch.float64))
        return y.clamp(0, 255).to(torch.uint8)

    def measure(self, x255, names, seed=0):
        y255 = self.noisy_pixels(x255, names, seed)
        return data.to_model(y255, u=self.dequant_noise(names, seed, y255.shape[-1]))


register(Denoising)
