"""Random inpainting (PROTOCOL §9): each pixel (all three channels) is observed with probability
0.3 (70% missing), the mask drawn per image from the image's own stream; ``A`` multiplies by
the image's mask; no noise. Because A differs per image, the task is bound to a batch's image
seeds before use (:meth:`RandomInpainting.for_images`; `Method.check` does it). Not deepinv's
`Inpainting`: it shares one mask across a batch, and PROTOCOL §9 draws one per image."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bench import config, data
from bench.errors import BenchError
from bench.plugins import register
from bench.tasks.base import MASK_STREAM, Task, stream_seeds


def random_masks(seeds: Sequence[int], keep: float, size: int = config.IMAGE_SIZE):
    """float32 (B, 1, size, size): 1 where a pixel is observed, each with probability `keep`,
    drawn per image from a generator seeded with its seed's mask stream."""
    draws = data.seeded_uniform(stream_seeds(list(seeds), MASK_STREAM), (size, size))
    return (draws < keep).float()[:, None]


class RandomInpainting(Task):
    """Multiply by a per-image random mask keeping 30% of the pixels; noiseless, self-adjoint."""

    name = "inpainting-random"
    label = "Random inpainting (70% missing)"
    family = "inpainting"
    linear = True
    keep = config.RANDOM_INPAINT_KEEP

    def __init__(self, masks: torch.Tensor | None = None):
        self.masks = masks

    def for_images(self, seeds):
        bound = RandomInpainting(random_masks(list(seeds), self.keep))
        return bound

    def _mask(self, x: torch.Tensor) -> torch.Tensor:
        if self.masks is None:
            raise BenchError(
                f"{self.name} draws a mask per image: bind it to the images first, "
                "task.for_images(seeds)"
            )
        if self.masks.shape[0] != x.shape[0]:
            raise ValueError(f"{self.masks.shape[0]} masks for a batch of {x.shape[0]}")
        return self.masks.to(device=x.device, dtype=x.dtype)

    def A(self, x):
        return x * self._mask(x)

    def adjoint(self, y):
        return y * self._mask(y)


register(RandomInpainting)
