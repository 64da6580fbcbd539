"""The paper's coupling flow (PROTOCOL §2): ActNorm then an affine coupling per step, the
transformed half alternating from one step to the next (across scales too)."""

from __future__ import annotations

from bench import config
from bench.flows.architectures import FLOWS, FlowArchitecture
from bench.flows.base import FlowLayer
from bench.flows.layers import ActNorm, AffineCoupling


class Coupling(FlowArchitecture):
    """PROTOCOL §2: 5 scales, 14 steps, half the channels split off after the 4×4 and 2×2
    scales. Without 1×1 convolutions, so `inv_mode` has no effect."""

    name = "coupling"
    label = "coupling flow (PROTOCOL §2): ActNorm + affine coupling, alternating halves"
    levels = config.COUPLING_LEVELS
    steps = config.COUPLING_STEPS
    splits = config.COUPLING_SPLITS

    def step(
        self, channels: int, hidden: int, size: int, index: int, inv_mode: str = "cached"
    ) -> list[FlowLayer]:
        """ActNorm, then a coupling transforming the first half on odd steps, else the second."""
        return [
            ActNorm(channels),
            AffineCoupling(channels, hidden, size, transform_first=index % 2 == 1),
        ]


FLOWS.add(Coupling)
