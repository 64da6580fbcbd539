"""ActNorm (PROTOCOL §2): a per-channel affine map with data-dependent initialisation.

Its initialisation happens only inside `data_initialization()` (`bench.flows.switches`;
`MultiScaleFlow.initialize` opens it around one straightforward forward pass, so that the
ActNorms inside the coupling networks see their real hidden activations too). Outside it an
ActNorm that was never initialised is the identity map: evaluating a flow never changes its
parameters or buffers, on either path.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.flows import switches
from bench.flows.base import FlowLayer


class ActNorm(FlowLayer):
    """Per-channel affine map `y = (x + loc) * exp(logs)` with data-dependent initialisation
    (PROTOCOL §2): the first batch seen inside `data_initialization()` (or passed to
    `initialize`) gets zero mean and unit variance per channel. Before that the layer is the
    identity, and a forward pass outside `data_initialization()` never changes it."""

    def __init__(self, channels: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))
        self._ready = False  # python mirror of `initialized`: avoids a device sync per call

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        if x.numel() > x.shape[1]:
            std = x.std(dim=(0, 2, 3), keepdim=True)
        else:
            std = torch.ones_like(mean)
        self.loc.copy_(-mean)
        self.logs.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(True)
        self._ready = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._ready = bool(self.initialized)

    def _logdet(self, x: torch.Tensor) -> torch.Tensor:
        return (x.shape[2] * x.shape[3] * self.logs.sum()).expand(x.shape[0])

    def forward(self, x):
        if switches.DATA_INIT and not self._ready:
            self.initialize(x)
        return (x + self.loc) * torch.exp(self.logs), self._logdet(x)

    def inverse(self, z):
        return z * torch.exp(-self.logs) - self.loc, -self._logdet(z)
