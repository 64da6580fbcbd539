"""Glow's invertible 1×1 convolution (PROTOCOL §3), in its three generation modes
(`INV_MODES`), in the contract of `bench.flows.base.FlowLayer`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.flows.base import FlowLayer, param_key

INV_MODES = ("recompute", "cached", "lu")


class InvConv1x1(FlowLayer):
    """Glow's invertible 1×1 convolution (PROTOCOL §3), in one of three generation modes:

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
        trainable = any(p.requires_grad for p in self.parameters())
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
        self.requires_grad_(trainable)  # a frozen flow stays frozen
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
        key = param_key((self.weight,))
        if self._cache is None or self._cache[0] != key:
            # normal tensors even under inference_mode (a later solve saves them for backward)
            with torch.inference_mode(False), torch.no_grad():
                self._cache = (key, torch.linalg.inv(self.weight), self._logabsdet())
        return self._cache[1], self._cache[2]

    def _apply(self, fn, *args, **kwargs):
        self._cache = None  # device/dtype moves invalidate the cached inverse
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True):
        self._cache = None  # see CouplingNet.train: fused optimisers bump no versions
        return super().train(mode)

    # -- contract ----------------------------------------------------------------------------
    def forward(self, x):
        w = self.matrix()
        z = F.conv2d(x, w.view(self.channels, self.channels, 1, 1))
        return z, (x.shape[2] * x.shape[3] * self._logabsdet()).expand(x.shape[0])

    def inverse(self, z):
        winv, logabsdet = self._inverse_matrix()
        x = F.conv2d(z, winv.view(self.channels, self.channels, 1, 1))
        return x, (-z.shape[2] * z.shape[3] * logabsdet).expand(z.shape[0])
