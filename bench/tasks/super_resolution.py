"""Super-resolution (PROTOCOL §9): ``A`` = k×k average pooling with stride k, (B, 3, 32, 32) ->
(B, 3, 32/k, 32/k); no noise. The built-ins are ``sr-2`` (16×16 measurements) and ``sr-4``
(8×8); any factor ``sr-K`` that divides the 32-pixel side, 2 <= K <= 16, is built on demand.
The figures show the measurement enlarged by nearest-neighbour upsampling. Written here rather
than with deepinv's `Downsampling`: `avg_pool2d` is the same operator (deepinv 0.5's box filter
with padding='valid' equals it; its default circular padding shifts ×4 by a pixel) in two
lines, on any device and dtype, without importing deepinv in every process that measures."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench import config, data
from bench.errors import BenchError
from bench.plugins import register
from bench.tasks.base import TASKS, Task


class SuperResolution(Task):
    """k×k average pooling, stride k. The adjoint spreads each value over its k×k block,
    divided by k² (nearest-neighbour upsampling / k²)."""

    family = "super-resolution"
    linear = True
    display_label = "measurement, nearest-neighbour upsampled"

    def __init__(self, factor: int):
        self.factor = int(factor)
        self.name = f"sr-{self.factor}"
        self.label = f"Super-resolution ×{self.factor}"

    def A(self, x):
        return F.avg_pool2d(x, self.factor, stride=self.factor)

    def upsample(self, y: torch.Tensor) -> torch.Tensor:
        """Nearest-neighbour upsampling by the factor, (B, C, h, w) -> (B, C, h·k, w·k)."""
        k = self.factor
        return y.repeat_interleave(k, dim=-2).repeat_interleave(k, dim=-1)

    def adjoint(self, y):
        return self.upsample(y) / self.factor**2

    def display(self, y):
        return data.to_pixels(self.upsample(y.detach().cpu()))


def super_resolution(text: str) -> SuperResolution:
    """``sr-K``: an integer factor K >= 2 dividing the image side (BenchError)."""
    side = config.IMAGE_SIZE
    allowed = [k for k in range(2, side) if side % k == 0]
    if not (text.isascii() and text.isdigit() and int(text) in allowed):
        raise BenchError(
            f"super-resolution factor {text!r} is not allowed: the factor must divide the "
            f"{side}-pixel side; use one of {', '.join(map(str, allowed))} (e.g. sr-2)"
        )
    return SuperResolution(int(text))


for _k in config.SR_FACTORS:
    register(SuperResolution(_k))
TASKS.add_family("sr-", super_resolution)
