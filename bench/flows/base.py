"""The one contract every flow layer follows.

`forward(x) -> (z, logdet)` maps data towards the latent; `inverse(z) -> (x, logdet)` is the
generative direction. `logdet` has shape `(B,)` and is log|det J| of the map that was applied:
for `forward` log|det dz/dx|, for `inverse` log|det dx/dz| (so the two are negatives of each
other at corresponding points). Layers never see tasks or solvers.

Layers that cache a function of their parameters (the folded coupling weights, the 1×1
convolution's inverse) key the cache with `param_key`.
"""

from __future__ import annotations

import torch
from torch import nn


def param_key(params) -> tuple:
    """Identifies the current values of some parameters: a cached function of them stays
    valid while the key is unchanged (in-place updates bump `_version`, moves `data_ptr`)."""
    return tuple((p._version, p.data_ptr(), p.dtype, p.device) for p in params)


class FlowLayer(nn.Module):
    """An invertible map with a tractable log-determinant (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        raise NotImplementedError

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        raise NotImplementedError


class FlowSequence(FlowLayer):
    """Layers applied in order; the inverse runs them backwards."""

    def __init__(self, layers: list[FlowLayer]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z):
        logdet = z.new_zeros(z.shape[0])
        for layer in reversed(self.layers):
            z, ld = layer.inverse(z)
            logdet = logdet + ld
        return z, logdet
