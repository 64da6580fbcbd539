"""Flow layers: squeeze, ActNorm, the paper's affine coupling and its networks, and the
invertible 1×1 convolution in its three generation modes (PROTOCOL §2–3), all importable from
here. All follow the contract of `bench.flows.base.FlowLayer`.

Squeeze is defined here; the others each have a module: `actnorm` (ActNorm and its
data-dependent initialisation), `coupling_layer` (`AffineCoupling`, `CouplingNet` and their
fast path), `invconv` (`InvConv1x1`); `switches` holds the fast-path and initialisation
switches (`reference_path`, `fast_path_enabled`, `data_initialization`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.flows.actnorm import ActNorm
from bench.flows.base import FlowLayer
from bench.flows.coupling_layer import AffineCoupling, CouplingNet
from bench.flows.invconv import INV_MODES, InvConv1x1
from bench.flows.switches import data_initialization, fast_path_enabled, reference_path


def _zeros_logdet(x: torch.Tensor) -> torch.Tensor:
    return x.new_zeros(x.shape[0])


class Squeeze(FlowLayer):
    """Space-to-depth by 2: (C, H, W) -> (4C, H/2, W/2); volume preserving."""

    def forward(self, x):
        return F.pixel_unshuffle(x, 2), _zeros_logdet(x)

    def inverse(self, z):
        return F.pixel_shuffle(z, 2), _zeros_logdet(z)


__all__ = [
    "INV_MODES",
    "ActNorm",
    "AffineCoupling",
    "CouplingNet",
    "InvConv1x1",
    "Squeeze",
    "data_initialization",
    "fast_path_enabled",
    "reference_path",
]
