"""The multi-scale flow assembled from a registered architecture (:mod:`bench.flows.architectures`:
PROTOCOL §2 `coupling`, PROTOCOL §3 `glow`), and its log-likelihood in bits per dimension of the
5-bit data."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from bench import config
from bench.flows.architectures import FlowArchitecture, get_architecture
from bench.flows.base import FlowLayer, FlowSequence
from bench.flows.layers import (
    ActNorm,
    InvConv1x1,
    Squeeze,
    data_initialization,
    reference_path,
)


class MultiScaleFlow(FlowLayer):
    """Scales of squeeze → K flow steps, optionally splitting half of the channels off to
    the latent after a scale. The latent is one flat vector per image (`(B, D)`), the
    concatenation of the split-off pieces and the final map, each following N(0, I).

    `forward(x) -> (z, log|det dz/dx|)` with `z` of shape `(B, D)`;
    `inverse(z) -> (x, log|det dx/dz|)`: generation, the solvers' G(z) and its log-det.

    `arch` is a registered architecture's name (or the architecture itself), whose
    :meth:`~bench.flows.architectures.FlowArchitecture.step` makes the layers of each step."""

    def __init__(
        self,
        arch: str | FlowArchitecture,
        hidden: int,
        steps: Sequence[int],
        splits: Sequence[bool],
        in_channels: int = config.CHANNELS,
        size: int = config.IMAGE_SIZE,
        inv_mode: str = "cached",
    ):
        super().__init__()
        architecture = get_architecture(arch)
        arch = architecture.name
        if len(steps) != len(splits):
            raise ValueError("steps and splits need one entry per scale")
        self.arch_config = {
            "arch": arch,
            "hidden": hidden,
            "steps": list(steps),
            "splits": list(splits),
            "in_channels": in_channels,
            "size": size,
            "inv_mode": inv_mode,
        }
        self.arch = arch
        self.architecture = architecture
        self.input_shape = (in_channels, size, size)
        self.dim = in_channels * size * size
        c, s = in_channels, size
        index = 0  # flow steps made so far, across scales
        scales, self.latent_shapes = [], []
        for k, split in zip(steps, splits, strict=True):
            if s % 2:
                raise ValueError(f"cannot squeeze a {s}x{s} map: use fewer levels")
            c, s = 4 * c, s // 2
            layers: list[FlowLayer] = [Squeeze()]
            for _ in range(k):
                layers.extend(architecture.step(c, hidden, s, index, inv_mode))
                index += 1
            scales.append(FlowSequence(layers))
            if split:
                self.latent_shapes.append((c // 2, s, s))
                c //= 2
        self.latent_shapes.append((c, s, s))
        self.splits = list(splits)
        self.scales = nn.ModuleList(scales)
        assert sum(math.prod(sh) for sh in self.latent_shapes) == self.dim

    # -- contract ----------------------------------------------------------------------------
    def forward(self, x):
        logdet = x.new_zeros(x.shape[0])
        pieces = []
        h = x
        for scale, split in zip(self.scales, self.splits, strict=True):
            h, ld = scale(h)
            logdet = logdet + ld
            if split:
                zi, h = h.chunk(2, dim=1)
                pieces.append(zi.flatten(1))
        pieces.append(h.flatten(1))
        return torch.cat(pieces, dim=1), logdet

    def inverse(self, z):
        sizes = [math.prod(sh) for sh in self.latent_shapes]
        pieces = list(z.split(sizes, dim=1))
        b = z.shape[0]
        h = pieces.pop().view(b, *self.latent_shapes[-1])
        logdet = z.new_zeros(b)
        shapes = self.latent_shapes[:-1]
        for scale, split in zip(reversed(self.scales), reversed(self.splits), strict=True):
            if split:
                zi = pieces.pop().view(b, *shapes.pop())
                h = torch.cat([zi, h], dim=1)
            h, ld = scale.inverse(h)
            logdet = logdet + ld
        return h, logdet

    # -- helpers -----------------------------------------------------------------------------
    def set_inv_mode(self, mode: str) -> MultiScaleFlow:
        """Switch every invertible 1×1 convolution to `mode` (same matrices), and record it
        in `arch_config` so that a checkpoint of the switched flow rebuilds in that mode."""
        for m in self.modules():
            if isinstance(m, InvConv1x1):
                m.set_mode(mode)
        self.arch_config["inv_mode"] = mode
        return self

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation (PROTOCOL §2) of every ActNorm not yet initialised, the
        ones inside the coupling networks included, from one batch `x` of shape (B, C, H, W)
        in model space [-1, 1): one forward pass on the straightforward path, so that each
        ActNorm sees the activations that the layers before it (initialised first) produce."""
        with reference_path(), data_initialization():
            self.forward(x)

    def is_initialized(self) -> bool:
        """Whether every ActNorm of the flow holds data-initialised values."""
        return all(bool(m.initialized) for m in self.modules() if isinstance(m, ActNorm))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def num_steps(self) -> int:
        return sum(self.arch_config["steps"])

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) per image, for x in model space [-1, 1)^D."""
        z, logdet = self.forward(x)
        return standard_normal_logprob(z) + logdet

    def bits_per_dim(self, x: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of the dequantized 5-bit data `x5 + u` in [0, 32)^D in
        bits per dimension (a uniform model scores 5.0), per image."""
        return nll_to_bpd(-self.log_prob(x), self.dim)

    def sample(self, n: int, std: float = 1.0, generator: torch.Generator | None = None):
        """n images in model space from z ~ N(0, std² I) (std 0 gives z = 0)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.dim, generator=generator, device="cpu").to(device) * std
        return self.inverse(z)[0]


def standard_normal_logprob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed per sample."""
    return -0.5 * (z.pow(2) + math.log(2 * math.pi)).flatten(1).sum(1)


def nll_to_bpd(nll_model: torch.Tensor, dim: int) -> torch.Tensor:
    """Convert an NLL of x in [-1, 1)^D (nats) to bits/dim of v = 16(x + 1) in [0, 32)^D."""
    scale = config.N_BINS / 2  # dv/dx = 16
    return (nll_model + dim * math.log(scale)) / (dim * math.log(2))


def build_flow(
    arch: str | FlowArchitecture = "coupling",
    hidden: int = config.HIDDEN,
    steps: Sequence[int] | None = None,
    splits: Sequence[bool] | None = None,
    in_channels: int = config.CHANNELS,
    size: int = config.IMAGE_SIZE,
    inv_mode: str = "cached",
) -> MultiScaleFlow:
    """The paper's flows (PROTOCOL §2–3), or a registered architecture's with its `steps` and
    `splits`; `hidden`, `steps`, `splits`, `size` shrink them. ValueError for an unknown `arch`."""
    architecture = get_architecture(arch)
    steps = architecture.steps if steps is None else steps
    splits = architecture.splits if splits is None else splits
    return MultiScaleFlow(architecture, hidden, steps, splits, in_channels, size, inv_mode)


def flow_from_config(cfg: dict) -> MultiScaleFlow:
    """Rebuild a flow from its `arch_config` (as stored in checkpoints)."""
    return MultiScaleFlow(**cfg)
