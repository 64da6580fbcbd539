"""The paper's affine coupling and its networks (PROTOCOL §2), in the contract of
`bench.flows.base.FlowLayer`.

Speed (the coupling networks hold nearly all the work): by default the couplings run a fast
path that computes the same function as the straightforward definitions (`CouplingNet.forward`,
kept as written) up to float rounding:

- ActNorm of the hidden layer is folded into the first convolution's weight and bias, and the
  output scale `exp(3·log_scale)` into the last one's, whose output channels are reordered so
  that `s` and `t` (the even and odd channels of the net) come out as two contiguous halves;
- 3×3 convolutions with padding run on channels-last tensors (oneDNN's fast layout on CPUs);
  the convolutions of the 4×4, 2×2 and 1×1 maps, whose outputs have at most 2×2 positions, run
  as one matrix product (unfold + addmm): a single GEMM instead of a convolution that re-lays
  out its large weight at every call;
- while the parameters need no gradient (solving, generation, evaluation) the folded weights
  are computed once and cached until a parameter changes (version counters are watched, as
  for the cached 1×1-convolution inverse: in-place updates, optimiser steps and
  `load_state_dict` are seen, writes through `.data` are not; `.to()` clears the cache);
  while training they are recomputed at every call, folding only where the weights are small.

`reference_path()` (`bench.flows.switches`) switches the straightforward code back on (for
tests and `bench perf --reference`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench import config
from bench.flows import switches
from bench.flows.actnorm import ActNorm
from bench.flows.base import FlowLayer, param_key


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
    """conv → ActNorm → ReLU → conv (zero initialised) × exp(3·log_scale), PROTOCOL §2.

    `forward` is the definition (output channels interleaved s, t, s, t, …); `scale_shift`
    returns (s, t) by the fast path of the module docstring (or by `forward` inside
    `reference_path()`)."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, size: int):
        super().__init__()
        k, pad, mult = _kernel_for(size)
        self.mult = mult
        self.size, self.kernel, self.padding = size, k, pad
        self.conv1 = nn.Conv2d(in_channels, hidden * mult, k, padding=pad)
        self.norm = ActNorm(hidden)
        self.conv2 = nn.Conv2d(hidden, out_channels * mult, k, padding=pad)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.log_scale = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
        self._cache: tuple | None = None

    def _up(self, h: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(h, 2) if self.mult == 4 else h

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self._up(self.conv1(h))
        h = F.relu(self.norm(h)[0])
        h = self._up(self.conv2(h))
        return h * torch.exp(config.LOG_SCALE_FACTOR * self.log_scale)

    # -- fast path ---------------------------------------------------------------------------
    def _params(self) -> tuple:
        return (
            self.conv1.weight,
            self.conv1.bias,
            self.norm.loc,
            self.norm.logs,
            self.conv2.weight,
            self.conv2.bias,
            self.log_scale,
        )

    def _apply(self, fn, *args, **kwargs):
        self._cache = None  # device/dtype moves invalidate the cached weights
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True):
        # fused optimisers update parameters without bumping their version counters, so every
        # switch between training and evaluation drops the cache as well
        self._cache = None
        return super().train(mode)

    def _as_matrix(self) -> bool:
        """Unpadded convolutions (4×4, 2×2, 1×1 maps) run as matrix products."""
        return self.padding == 0

    def _layout(self, w: torch.Tensor) -> torch.Tensor:
        if self._as_matrix():
            return w.reshape(w.shape[0], -1)  # (out, in·k·k): the unfold order
        return w.contiguous(memory_format=torch.channels_last)

    def _folded(self) -> tuple[torch.Tensor, ...]:
        """(w1, b1, w2, b2): ActNorm folded into conv1; the output scale folded into conv2,
        whose output channels are reordered so that s and t are its two halves; weights in the
        layout `_conv` uses. Differentiable (training) or cached (frozen)."""
        m = self.mult
        e = torch.exp(self.norm.logs).flatten()
        loc = self.norm.loc.flatten()
        if m > 1:  # conv1 channel j becomes hidden channel j // 4 after depth-to-space
            e, loc = e.repeat_interleave(m), loc.repeat_interleave(m)
        w1 = self.conv1.weight * e.view(-1, 1, 1, 1)
        b1 = (self.conv1.bias + loc) * e
        out = self.log_scale.numel()
        dev = self.log_scale.device
        order = torch.cat(
            [torch.arange(0, out, 2, device=dev), torch.arange(1, out, 2, device=dev)]
        )
        g = torch.exp(config.LOG_SCALE_FACTOR * self.log_scale).flatten()[order]
        if m > 1:  # output channel c is conv2 channels 4c .. 4c+3 before depth-to-space
            order = (order.view(-1, 1) * m + torch.arange(m, device=dev)).flatten()
            g = g.repeat_interleave(m)
        w2 = self.conv2.weight[order] * g.view(-1, 1, 1, 1)
        b2 = self.conv2.bias[order] * g
        return self._layout(w1), b1, self._layout(w2), b2

    def _cached(self) -> tuple[torch.Tensor, ...]:
        key = param_key(self._params())
        if self._cache is None or self._cache[0] != key:
            # normal tensors even when first used under inference_mode: a later solve saves
            # them for its backward pass
            with torch.inference_mode(False), torch.no_grad():
                self._cache = (key, self._folded())
        return self._cache[1]

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """A convolution of the net with a `_layout` weight, then depth-to-space if the net
        has one: (B, C, H, W) -> (B, C', H', W')."""
        if not self._as_matrix():
            return F.conv2d(
                x.contiguous(memory_format=torch.channels_last), w, b, padding=self.padding
            )
        n, k = x.shape[0], self.kernel
        if k == x.shape[-1]:  # the kernel covers the map: one output position
            y = torch.addmm(b, x.reshape(n, -1), w.t())
            if self.mult == 4:  # depth-to-space of a 1×1 map is a reshape
                return y.view(n, -1, 2, 2)
            return y.view(n, -1, 1, 1)
        # im2col by slicing (as F.unfold, whose backward is slower at these sizes): rows are
        # (image, i, j) output positions, columns (channel, kh, kw) as in the weight
        side = x.shape[-1] - k + 1
        win = [x[:, :, i : i + k, j : j + k] for i in range(side) for j in range(side)]
        cols = torch.stack(win, 1).reshape(n * side * side, -1)
        y = torch.addmm(b, cols, w.t())
        if self.mult == 4:  # (B, i, j, c, a, b) -> (B, c, 2i + a, 2j + b)
            c = y.shape[1] // 4
            y = y.view(n, side, side, c, 2, 2).permute(0, 3, 1, 4, 2, 5)
            return y.reshape(n, c, 2 * side, 2 * side)
        return y.view(n, side, side, -1).permute(0, 3, 1, 2)

    def scale_shift(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(s, t) of the coupling: the even and odd output channels of `forward(h)`."""
        if not switches.FAST_PATH:
            st = self(h)
            return st[:, 0::2], st[:, 1::2]
        training = torch.is_grad_enabled() and any(p.requires_grad for p in self._params())
        if not training:
            fold = True
            w1, b1, w2, b2 = self._cached()
        else:  # fold where the weights are smaller than the hidden activations
            fold = not self._as_matrix()
            if fold:
                w1, b1, w2, b2 = self._folded()
            else:
                w1, b1 = self._layout(self.conv1.weight), self.conv1.bias
                w2, b2 = self._layout(self.conv2.weight), self.conv2.bias
        a = self._conv(h, w1, b1)
        a = torch.relu_(a) if fold else F.relu(self.norm(a)[0])
        st = self._conv(a, w2, b2)
        if fold:
            return st.contiguous().chunk(2, dim=1)
        st = st * torch.exp(config.LOG_SCALE_FACTOR * self.log_scale)
        return st[:, 0::2], st[:, 1::2]


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
        s, t = self.net.scale_shift(cond)
        return s + config.SIGMOID_SHIFT, t

    def forward(self, x):
        cond, b = self._split(x)
        s, t = self._scale_shift(cond)
        b = b * torch.sigmoid(s) + t
        return self._join(cond, b), F.logsigmoid(s).flatten(1).sum(1)

    def inverse(self, z):
        cond, b = self._split(z)
        s, t = self._scale_shift(cond)
        if not switches.FAST_PATH:
            b = (b - t) * torch.exp(-F.logsigmoid(s))
            return self._join(cond, b), -F.logsigmoid(s).flatten(1).sum(1)
        log_scale = F.logsigmoid(s)  # once, for the image and the log-det
        b = (b - t) * torch.exp(-log_scale)
        return self._join(cond, b), -log_scale.flatten(1).sum(1)
