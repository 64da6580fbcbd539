"""The ablation's Glow-style flow (PROTOCOL §3): ActNorm, an invertible 1×1 convolution and an
affine coupling per step."""

from __future__ import annotations

from bench import config
from bench.flows.architectures import FLOWS, FlowArchitecture
from bench.flows.base import FlowLayer
from bench.flows.layers import ActNorm, AffineCoupling, InvConv1x1


class Glow(FlowArchitecture):
    """PROTOCOL §3: 3 scales, 14 steps, no split. The 1×1 convolution mixes the channels, so
    the coupling always transforms the same half."""

    name = "glow"
    label = "Glow flow (PROTOCOL §3): ActNorm + invertible 1×1 convolution + affine coupling"
    levels = config.GLOW_LEVELS
    steps = config.GLOW_STEPS
    splits = config.GLOW_SPLITS

    def step(
        self, channels: int, hidden: int, size: int, index: int, inv_mode: str = "cached"
    ) -> list[FlowLayer]:
        """ActNorm, a 1×1 convolution inverted per `inv_mode`, then a coupling."""
        return [
            ActNorm(channels),
            InvConv1x1(channels, inv_mode),
            AffineCoupling(channels, hidden, size, transform_first=False),
        ]


FLOWS.add(Glow)
