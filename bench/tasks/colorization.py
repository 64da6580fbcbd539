"""Colorization (PROTOCOL §4): ``A`` = mean over the three color channels, ``(B, 1, H, W)``; no
noise. The paper's Figure 6."""

from __future__ import annotations

from bench import config
from bench.plugins import register
from bench.tasks.base import Task


class Colorization(Task):
    """Mean over the three color channels: (B, 3, H, W) -> (B, 1, H, W); noiseless.
    Displayed as a gray image (replicated to 3 channels)."""

    name = "colorization"
    label = "Colorization"
    figure = 6
    default = True
    linear = True

    def A(self, x):
        return x.mean(dim=1, keepdim=True)

    def adjoint(self, y):
        return y.expand(-1, config.CHANNELS, -1, -1) / config.CHANNELS


register(Colorization)
