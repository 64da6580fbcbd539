"""The four inverse problems (PROTOCOL §4): forward operators and measurement synthesis.

Every task maps a clean uint8 test image to a measurement `y` in model space ([-1, 1), PROTOCOL §1):

- ``denoising``: ``y255 = clip(floor(x255 + 25.5 n), 0, 255)``, ``n ~ N(0, I)``, then into model
  space; ``A`` = identity.
- ``deblurring``: ``A`` = 3×3 average pooling, stride 1, zero padding 1 counted in the average,
  applied in model space to the dequantized clean image; no noise.
- ``inpainting``: ``A`` multiplies by :func:`inpainting_mask` (a centered 13×13 square zeroed,
  rows and columns 9..21, all channels); no noise.
- ``colorization``: ``A`` = mean over the three channels, ``(B, 1, H, W)``; no noise.

Randomness is per image, never per batch: image ``name`` with base ``seed`` has the seed
``s = data.image_seed(name, seed)``. The measurement noise ``n`` is drawn from a
``torch.Generator`` seeded with ``s`` (stream :data:`NOISE_STREAM`), the dequantization noise
``u`` (shared by :meth:`Task.clean` and :meth:`Task.measure`) with ``s + 1``
(:data:`DEQUANT_STREAM`), and the solvers' initial latents with ``s + 2``
(:data:`LATENT_STREAM`, see ``bench.methods``). So every method sees the same ``y`` for an image
whatever batch it is in, and a rerun gives the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from bench import config, data
from bench.errors import BenchError

# ---- per-image random streams ------------------------------------------------------------------
NOISE_STREAM = 0  # measurement noise n (denoising)
DEQUANT_STREAM = 1  # dequantization u of the clean image and of y
LATENT_STREAM = 2  # the solvers' z0 (bench.methods)
_SEED_MOD = 2**63

# noise std of the denoising task on 0..255 pixels (25.5) and in model space [-1, 1) (0.2)
NOISE_STD_PIXELS = config.NOISE_STD_FRACTION * 255
NOISE_STD_MODEL = config.MAP_SIGMA


def image_seeds(names: Sequence[str], seed: int = 0) -> list[int]:
    """One base seed per image, ``data.image_seed(name, seed)``: what `Method.restore` takes."""
    return [data.image_seed(n, seed) for n in names]


def stream_seed(image_seed: int, stream: int) -> int:
    """The seed of one random stream (NOISE_STREAM, DEQUANT_STREAM, LATENT_STREAM) of an image,
    ``image_seed + stream`` (mod 2**63): distinct streams of the same image never share a seed."""
    return (int(image_seed) + int(stream)) % _SEED_MOD


def inpainting_mask(size: int = config.IMAGE_SIZE) -> torch.Tensor:
    """float32 (size, size): 0 on the centered square that inpainting removes, 1 elsewhere.

    Rows and columns ``floor(0.3·size)`` to ``floor(0.7·size)`` (exclusive) are zeroed: for
    32×32 images rows/cols 9..21, a 13×13 square. The one place the mask is defined."""
    lo = math.floor(config.INPAINT_LO * size)
    hi = math.floor(config.INPAINT_HI * size)
    mask = torch.ones(size, size, dtype=torch.float32)
    mask[lo:hi, lo:hi] = 0.0
    return mask


def _as_uint8_batch(x255, names: Sequence[str]) -> torch.Tensor:
    x = torch.as_tensor(x255).detach().cpu()
    if x.dtype != torch.uint8:
        raise TypeError(f"clean images must be uint8 0..255, got {x.dtype}")
    if x.ndim != 4 or x.shape[1] != config.CHANNELS:
        raise ValueError(f"clean images must have shape (B, 3, H, W), got {tuple(x.shape)}")
    if len(names) != x.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {len(names)} names")
    return x


class Task:
    """One inverse problem: forward operator `A`, measurement synthesis and display.

    `A(x)` works on batched model-space tensors on any device; `measure` and `clean` take the
    clean uint8 images (B, 3, H, W) with their file names and return CPU float32 tensors."""

    name: str = ""
    label: str = ""
    linear: bool = True
    noise_std: float = 0.0  # std of the measurement noise in model space (0: noiseless)

    # -- operator --------------------------------------------------------------------------------
    def A(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """A^T y (linear tasks only)."""
        raise NotImplementedError(f"{self.name} has no adjoint")

    # -- data ------------------------------------------------------------------------------------
    def dequant_noise(self, names: Sequence[str], seed: int = 0, size=None) -> torch.Tensor:
        """The per-image dequantization noise u ~ U[0, 1), (B, 3, size, size)."""
        size = config.IMAGE_SIZE if size is None else size
        seeds = [stream_seed(s, DEQUANT_STREAM) for s in image_seeds(names, seed)]
        return data.seeded_uniform(seeds, (config.CHANNELS, size, size))

    def clean(self, x255, names: Sequence[str], seed: int = 0) -> torch.Tensor:
        """The dequantized clean target in model space, with the same u as `measure` uses."""
        x = _as_uint8_batch(x255, names)
        return data.to_model(x, u=self.dequant_noise(names, seed, x.shape[-1]))

    def measure(self, x255, names: Sequence[str], seed: int = 0) -> torch.Tensor:
        """y in model space, computed from the clean uint8 images (noiseless tasks: A(clean))."""
        return self.A(self.clean(x255, names, seed))

    def display(self, y: torch.Tensor) -> torch.Tensor:
        """The measurement as uint8 (B, 3, H, W) pixels for figures."""
        y = y.detach().cpu()
        if y.shape[1] == 1:
            y = y.expand(-1, config.CHANNELS, -1, -1)
        return data.to_pixels(y)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"


class Denoising(Task):
    """Additive Gaussian noise of std 25.5 on 0..255 (0.1 of the range), rounded down and
    clipped, then into model space; A = identity."""

    name = "denoising"
    label = "Denoising"
    linear = True
    noise_std = NOISE_STD_MODEL

    def A(self, x):
        return x

    def adjoint(self, y):
        return y

    def noisy_pixels(self, x255, names: Sequence[str], seed: int = 0) -> torch.Tensor:
        """``clip(floor(x255 + 25.5 n), 0, 255)`` as uint8; n per image, seeded with
        ``image_seed(name, seed)``."""
        x = _as_uint8_batch(x255, names)
        n = torch.empty(x.shape, dtype=torch.float32)
        for i, s in enumerate(image_seeds(names, seed)):
            g = torch.Generator().manual_seed(stream_seed(s, NOISE_STREAM))
            n[i] = torch.randn(x.shape[1:], generator=g, dtype=torch.float32)
        y = torch.floor(x.to(torch.float64) + NOISE_STD_PIXELS * n.to(torch.float64))
        return y.clamp(0, 255).to(torch.uint8)

    def measure(self, x255, names, seed=0):
        y255 = self.noisy_pixels(x255, names, seed)
        return data.to_model(y255, u=self.dequant_noise(names, seed, y255.shape[-1]))


class Deblurring(Task):
    """3×3 average pooling, stride 1, zero padding counted in the average; noiseless.

    The operator is a 'same' correlation with the constant 1/9 kernel, which is symmetric, so
    it is its own adjoint."""

    name = "deblurring"
    label = "Deblurring"
    linear = True
    kernel = config.BLUR_KERNEL

    def A(self, x):
        return F.avg_pool2d(
            x, self.kernel, stride=1, padding=self.kernel // 2, count_include_pad=True
        )

    def adjoint(self, y):
        return self.A(y)


class Inpainting(Task):
    """Multiply by :func:`inpainting_mask` (all channels); noiseless. Self-adjoint."""

    name = "inpainting"
    label = "Inpainting"
    linear = True

    def __init__(self):
        self._masks: dict = {}

    def mask_like(self, x: torch.Tensor) -> torch.Tensor:
        """The (1, 1, H, W) mask on x's device and dtype (cached)."""
        key = (x.shape[-1], x.device, x.dtype)
        if key not in self._masks:
            self._masks[key] = inpainting_mask(x.shape[-1]).to(x)[None, None]
        return self._masks[key]

    def A(self, x):
        return x * self.mask_like(x)

    def adjoint(self, y):
        return y * self.mask_like(y)


class Colorization(Task):
    """Mean over the three color channels: (B, 3, H, W) -> (B, 1, H, W); noiseless.
    Displayed as a gray image (replicated to 3 channels)."""

    name = "colorization"
    label = "Colorization"
    linear = True

    def A(self, x):
        return x.mean(dim=1, keepdim=True)

    def adjoint(self, y):
        return y.expand(-1, config.CHANNELS, -1, -1) / config.CHANNELS


TASKS: dict[str, Task] = {
    t.name: t for t in (Denoising(), Deblurring(), Inpainting(), Colorization())
}


def get_task(name: str | Task) -> Task:
    """The task called `name` (a Task is returned as is); BenchError naming the choices."""
    if isinstance(name, Task):
        return name
    try:
        return TASKS[name]
    except KeyError:
        raise BenchError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}") from None
