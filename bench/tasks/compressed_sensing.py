"""Compressed sensing (PROTOCOL §9): ``y = A·vec(x) + η`` with ``A ∈ R^{m×3072}`` of iid
``N(0, 1/m)`` entries, ``m = round(r·3072)``, one matrix per ratio drawn from a generator seeded
with ``config.CS_MATRIX_SEED`` (the same for every image, method and run), and
``η ~ N(0, (0.1/√m)² I)`` per image (‖η‖ ≈ 0.1, CSGM's and GlowIP's setting). The built-ins are
``cs-0.1`` and ``cs-0.25``; any ratio ``cs-R`` with 0 < R <= 1 is built on demand.

The measurement is a vector, so the figures show the minimum-norm least-squares image
``A⁺y = Aᵀ(AAᵀ)⁻¹y`` instead (:meth:`CompressedSensing.pseudo_inverse`). Written here rather
than with deepinv's `CompressedSensing`: PROTOCOL §9 fixes the matrix by one documented seed and
its variance 1/m, and deepinv's dtype is fixed at construction; the operator is one matrix
product."""

from __future__ import annotations

from functools import cached_property

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

SHAPE = (config.CHANNELS, config.IMAGE_SIZE, config.IMAGE_SIZE)


class CompressedSensing(Task):
    """y = A vec(x) + η: (B, 3, 32, 32) -> (B, m), A Gaussian with N(0, 1/m) entries."""

    family = "compressed-sensing"
    linear = True
    display_label = "minimum-norm least-squares image A⁺y"

    def __init__(self, ratio: float):
        self.ratio = float(ratio)
        self.m = round(self.ratio * config.DIM)
        self.name = f"cs-{self.ratio:g}"
        self.label = f"Compressed sensing {self.ratio:g}"
        self.noise_std = config.CS_NOISE_NORM / self.m**0.5
        self._cache: dict = {}

    @cached_property
    def matrix(self) -> torch.Tensor:
        """A (m, 3072) in float64 on the CPU: drawn in float64 from one seeded generator."""
        g = torch.Generator().manual_seed(config.CS_MATRIX_SEED)
        return torch.randn(self.m, config.DIM, generator=g, dtype=torch.float64) / self.m**0.5

    def _on(self, t: torch.Tensor, what: str = "A") -> torch.Tensor:
        key = (what, t.device, t.dtype)
        if key not in self._cache:
            a = self.matrix
            if what == "pinv":  # A⁺ = Aᵀ (A Aᵀ)⁻¹, (3072, m); A has full row rank m <= 3072
                a = a.T @ torch.linalg.inv(a @ a.T)
            self._cache[key] = a.to(device=t.device, dtype=t.dtype)
        return self._cache[key]

    def A(self, x):
        return x.flatten(1) @ self._on(x).T

    def adjoint(self, y):
        return (y @ self._on(y)).view(-1, *SHAPE)

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        """A⁺y, the minimum-norm least-squares image (B, 3, 32, 32) in model space."""
        return (y @ self._on(y, "pinv").T).view(-1, *SHAPE)

    def measure(self, x255, names, seed=0):
        x = as_uint8_batch(x255, names)
        clean = self.clean(x, names, seed)
        eta = data.seeded_normal(stream_seeds(image_seeds(names, seed), NOISE_STREAM), self.m)
        return (self.A(clean.double()) + self.noise_std * eta.double()).float()

    def display(self, y):
        return data.to_pixels(self.pseudo_inverse(y.detach().cpu().double()).float())


def compressed_sensing(text: str) -> CompressedSensing:
    """``cs-R``: the ratio m/3072, 0 < R <= 1 (BenchError)."""
    try:
        r = float(text)
    except ValueError:
        r = float("nan")
    if not 0 < r <= 1 or round(r * config.DIM) < 1:
        raise BenchError(
            f"compressed-sensing ratio {text!r} is not allowed: give the measurements per pixel "
            f"value m/{config.DIM} in (0, 1], e.g. cs-0.1"
        )
    return CompressedSensing(r)


for _r in config.CS_RATIOS:
    register(CompressedSensing(_r))
TASKS.add_family("cs-", compressed_sensing)
