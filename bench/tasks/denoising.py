"""Denoising (PROTOCOL §4): ``y255 = clip(floor(x255 + f·255 n), 0, 255)``, ``n ~ N(0, I)``,
then into model space; ``A`` = identity. The paper's level f = 0.1 of the range is
``denoising`` (Figure 3); PROTOCOL §9 adds ``denoising-0.05`` and ``denoising-0.2``, and any level
``denoising-F`` with 0 < F <= 1 is built on demand (``--tasks denoising-0.3``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bench import config, data
from bench.errors import BenchError
from bench.plugins import register
from bench.tasks.base import (
    NOISE_STREAM,
    TASKS,
    Task,
    as_uint8_batch,
    image_seeds,
    stream_seeds,
)


class Denoising(Task):
    """Additive Gaussian noise of std `fraction` of the range (25.5 on 0..255 for the paper's
    0.1), rounded down and clipped, then into model space; A = identity. `noise_std` is the
    std in model space, 2·fraction."""

    name = "denoising"
    label = "Denoising"
    family = "denoising"
    figure = 3
    default = True
    linear = True

    def __init__(self, fraction: float = config.NOISE_STD_FRACTION):
        self.fraction = float(fraction)
        self.noise_std = 2.0 * self.fraction
        if self.fraction != config.NOISE_STD_FRACTION:
            self.name = f"denoising-{self.fraction:g}"
            self.label = f"Denoising σ={self.fraction:g}"
            self.figure, self.default = None, False

    def A(self, x):
        return x

    def adjoint(self, y):
        return y

    def noisy_pixels(self, x255, names: Sequence[str], seed: int = 0) -> torch.Tensor:
        """``clip(floor(x255 + fraction·255 n), 0, 255)`` as uint8; n per image, seeded with
        ``image_seed(name, seed)``."""
        x = as_uint8_batch(x255, names)
        n = data.seeded_normal(stream_seeds(image_seeds(names, seed), NOISE_STREAM), x.shape[1:])
        std = self.fraction * 255
        y = torch.floor(x.to(torch.float64) + std * n.to(torch.float64))
        return y.clamp(0, 255).to(torch.uint8)

    def measure(self, x255, names, seed=0):
        y255 = self.noisy_pixels(x255, names, seed)
        return data.to_model(y255, u=self.dequant_noise(names, seed, y255.shape[-1]))


def denoising_level(text: str) -> Denoising:
    """``denoising-F``: the noise std F as a fraction of the range, 0 < F <= 1 (BenchError)."""
    try:
        f = float(text)
    except ValueError:
        f = float("nan")
    if not 0 < f <= 1:
        raise BenchError(
            f"denoising noise level {text!r} is not allowed: give the noise std as a fraction "
            "of the range in (0, 1], e.g. denoising-0.05"
        )
    return Denoising(f)


register(Denoising)
for _f in config.DENOISING_LEVELS:
    register(Denoising(_f))
TASKS.add_family("denoising-", denoising_level)
