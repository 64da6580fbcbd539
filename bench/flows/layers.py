"""Flow layers: squeeze, ActNorm, the paper's affine coupling and its networks, and the
invertible 1×1 convolution in its three generation modes (SPEC §2–3).

All follow the contract of `bench.flows.base.FlowLayer`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench import config
from bench.flows.base import FlowLayer

INV_MODES = ("recompute", "cached", "lu")


def _zeros_logdet(x: torch.Tensor) -> torch.Tensor:
    return x.new_zeros(x.shape[0])


class Squeeze(FlowLayer):
    """Space-to-depth by 2: (C, H, W) -> (4C, H/2, W/2); volume preserving."""

    def forward(self, x):
        return F.pixel_unshuffle(x, 2), _zeros_logdet(x)

    def inverse(self, z):
        return F.pixel_shuffle(z, 2), _zeros_logdet(z)


class ActNorm(FlowLayer):
    """Per-channel affine map `y = (x + loc) * exp(logs)` with data-dependent initialisation:
    the first forward batch gets zero mean and unit variance per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))
        self._ready = False  # python mirror of `initialized`: avoids a device sync per call

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True) if x.numel() > x.shape[1] else torch.ones_like(mean)
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
        if not self._ready:
            self.initialize(x)
        return (x + self.loc) * torch.exp(self.logs), self._logdet(x)

    def inverse(self, z):
        return z * torch.exp(-self.logs) - self.loc, -self._logdet(z)


def _kernel_for(size: int) -> tuple[int, int, int]:
    """(kernel, padding, channel multiplier) of a coupling-network conv at a map size.

    16×16 and 8×8 (and larger): 3×3, padding 1. 4×4: 3×3 without padding to 2×2 with 4× the
    channels, then depth-to-space. 2×2: 2×2 to 1×1 with 4× the channels, then depth-to-space.
    1×1: a 1×1 conv (the paper's "1×1 coupling function")."""
    if size >= 8:
        return 3, 1, 1
    if size == 4:
        return 3, 0, 4
    if size == 2:
        return 2, 0, 4
    if size == 1:
        return 1, 0, 1
    raise ValueError(f"no coupling network defined for {size}x{size} maps")


class CouplingNet(nn.Module):
    """conv → ActNorm → ReLU → conv (zero initialised) × exp(3·log_scale), SPEC §2."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, size: int):
        super().__init__()
        k, pad, mult = _kernel_for(size)
        self.mult = mult
        self.conv1 = nn.Conv2d(in_channels, hidden * mult, k, padding=pad)
        self.norm = ActNorm(hidden)
        self.conv2 = nn.Conv2d(hidden, out_channels * mult, k, padding=pad)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.log_scale = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def _up(self, h: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(h, 2) if self.mult == 4 else h

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self._up(self.conv1(h))
        h = F.relu(self.norm(h)[0])
        h = self._up(self.conv2(h))
        return h * torch.exp(config.LOG_SCALE_FACTOR * self.log_scale)


class AffineCoupling(FlowLayer):
    """The paper's coupling (Eq. 9–11): one half conditions, the other is scaled by
    `sigmoid(s + 2)` and shifted by `t`; `s`, `t` are the even and odd channels of the net.

    `transform_first` chooses which half is transformed: alternating it from step to step is
    the paper's "swap", the only permutation of the coupling architecture."""

    def __init__(self, channels: int, hidden: int, size: int, transform_first: bool = False):
        super().__init__()
        if channels % 2:
            raise ValueError(f"coupling needs an even number of channels, got {channels}")
        self.transform_first = transform_first
        half = channels // 2
        self.net = CouplingNet(half, 2 * half, hidden, size)

    def _split(self, x):
        a, b = x.chunk(2, dim=1)
        return (b, a) if self.transform_first else (a, b)  # (conditioner, transformed)

    def _join(self, cond, out):
        return torch.cat([out, cond] if self.transform_first else [cond, out], dim=1)

    def _scale_shift(self, cond):
        st = self.net(cond)
        s, t = st[:, 0::2], st[:, 1::2]
        return s + config.SIGMOID_SHIFT, t

    def forward(self, x):
        cond, b = self._split(x)
        s, t = self._scale_shift(cond)
        b = b * torch.sigmoid(s) + t
        return self._join(cond, b), F.logsigmoid(s).flatten(1).sum(1)

    def inverse(self, z):
        cond, b = self._split(z)
        s, t = self._scale_shift(cond)
        b = (b - t) * torch.exp(-F.logsigmoid(s))
        return self._join(cond, b), -F.logsigmoid(s).flatten(1).sum(1)


class InvConv1x1(FlowLayer):
    """Glow's invertible 1×1 convolution (SPEC §3), in one of three generation modes:

    - `recompute`: the weight's inverse and log-determinant are recomputed at every
      generative call (the paper's setting);
    - `cached`: they are computed once and reused while the weight is unchanged (the weight's
      version counter is watched; while the weight is being trained they are recomputed);
    - `lu`: Glow's LU parameterisation `W = P L (U + diag(sign·exp(log_s)))`: log-determinant
      `sum(log_s)`, inverse by two triangular solves. Same number of parameters (C²).
    """

    def __init__(self, channels: int, mode: str = "cached"):
        super().__init__()
        if mode not in INV_MODES:
            raise ValueError(f"unknown 1x1 convolution mode {mode!r}: choose {INV_MODES}")
        self.channels = channels
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        self.mode = "cached"
        self.weight = nn.Parameter(w)
        self._cache: tuple | None = None
        self.set_mode(mode)

    # -- parameterisation --------------------------------------------------------------------
    def set_mode(self, mode: str) -> InvConv1x1:
        """Switch generation mode, keeping the same matrix W."""
        if mode not in INV_MODES:
            raise ValueError(f"unknown 1x1 convolution mode {mode!r}: choose {INV_MODES}")
        w = self.matrix().detach()
        if mode == "lu" and self.mode != "lu":
            del self.weight
            p, l, u = torch.linalg.lu(w)
            c = self.channels
            il, iu = torch.tril_indices(c, c, -1), torch.triu_indices(c, c, 1)
            s = torch.diagonal(u)
            self.register_buffer("perm", p)
            self.register_buffer("sign_s", torch.sign(s))
            self.register_buffer("il", il, persistent=False)
            self.register_buffer("iu", iu, persistent=False)
            self.lower = nn.Parameter(l[il[0], il[1]].clone())
            self.upper = nn.Parameter(u[iu[0], iu[1]].clone())
            self.log_s = nn.Parameter(torch.log(torch.abs(s)))
        elif mode != "lu" and self.mode == "lu":
            for name in ("lower", "upper", "log_s"):
                delattr(self, name)
            for name in ("perm", "sign_s", "il", "iu"):
                delattr(self, name)
            self.weight = nn.Parameter(w)
        self.mode = mode
        self._cache = None
        return self

    def _lu_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.channels
        eye = torch.eye(c, device=self.log_s.device, dtype=self.log_s.dtype)
        l = eye.index_put((self.il[0], self.il[1]), self.lower)
        u = torch.diag(self.sign_s * torch.exp(self.log_s)).index_put(
            (self.iu[0], self.iu[1]), self.upper
        )
        return l, u

    def matrix(self) -> torch.Tensor:
        """The C×C matrix W of the forward map `z = W x` (per pixel)."""
        if self.mode != "lu":
            return self.weight
        l, u = self._lu_factors()
        return self.perm @ l @ u

    def _logabsdet(self) -> torch.Tensor:
        if self.mode == "lu":
            return self.log_s.sum()
        return torch.linalg.slogdet(self.weight)[1]

    def _inverse_matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mode == "lu":
            l, u = self._lu_factors()
            eye = torch.eye(self.channels, device=l.device, dtype=l.dtype)
            linv = torch.linalg.solve_triangular(l, eye, upper=False, unitriangular=True)
            uinv = torch.linalg.solve_triangular(u, eye, upper=True)
            return uinv @ linv @ self.perm.T, self.log_s.sum()
        if self.mode == "recompute" or (self.weight.requires_grad and torch.is_grad_enabled()):
            return torch.linalg.inv(self.weight), self._logabsdet()
        key = (self.weight._version, self.weight.data_ptr(), self.weight.dtype)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, torch.linalg.inv(self.weight), self._logabsdet())
        return self._cache[1], self._cache[2]

    def _apply(self, fn, *args, **kwargs):
        self._cache = None  # device/dtype moves invalidate the cached inverse
        return super()._apply(fn, *args, **kwargs)

    # -- contract ----------------------------------------------------------------------------
    def forward(self, x):
        w = self.matrix()
        z = F.conv2d(x, w.view(self.channels, self.channels, 1, 1))
        return z, (x.shape[2] * x.shape[3] * self._logabsdet()).expand(x.shape[0])

    def inverse(self, z):
        winv, logabsdet = self._inverse_matrix()
        x = F.conv2d(z, winv.view(self.channels, self.channels, 1, 1))
        return x, (-z.shape[2] * z.shape[3] * logabsdet).expand(z.shape[0])
