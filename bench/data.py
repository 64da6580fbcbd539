"""Image data (PROTOCOL §1): the image set every dataset returns, model space, and loading.

Every dataset (:mod:`bench.datasets`: ``celeba`` from a folder, ``builtin`` the offline
fallback, or one a user registers) returns an :class:`ImageSet`: uint8 RGB images of shape
(N, 3, 32, 32) and the names of the files they came from, in a deterministic order.
:func:`load_images` checks the request and asks the registered dataset for it.

Model space (PROTOCOL §1): ``x5 = floor(x255 / 8)``; the flow sees ``(x5 + u) / 32 * 2 - 1`` with
``u ~ U[0, 1)``; images return to pixels by ``clip(floor((x + 1) / 2 * 32), 0, 31) * 8``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from bench.config import DATASETS as DATASETS  # the built-in names (bench.datasets: registry)
from bench.config import N_BINS
from bench.errors import BenchWarning, DataError
from bench.lazy import lazy_names

# ---- constants of this module ------------------------------------------------------------------
PARTITIONS = ("train", "valid", "test")
CACHE_ENV = "BENCH_CACHE"  # environment variable naming the cache folder
# bump when the decoded pixels for the same source files would change
PREPROCESS_VERSION = 1
MAX_NAMES_IN_MESSAGE = 5

PIXEL_STEP = 256 // N_BINS  # 8: one 5-bit level in 8-bit pixels
# u is clamped to [0, U_MAX] so that float32 rounding of (x5 + u) can never reach x5 + 1:
# to_pixels(dequantize(x5, u)) == x5 * 8 for every u in [0, 1). The mass moved is 2**-16.
U_MAX = 1.0 - 2.0**-16

# names that moved to the dataset modules, still importable from here (PEP 562, on first use:
# bench.datasets imports this module)
_MOVED = {
    "bench.datasets.celeba_files": (
        "CELEBA_ENV",
        "CELEBA_IMAGE_DIR",
        "CELEBA_PARTITION_FILE",
        "DEFAULT_CELEBA_ROOT",
        "resolve_celeba_root",
    ),
    "bench.datasets.celeba": ("CACHE_FORMAT",),
    "bench.datasets.builtin": ("BUILTIN_COUNTS", "BUILTIN_LABEL", "BUILTIN_PHOTOS", "BUILTIN_SEED"),
}


__getattr__ = lazy_names(__name__, {n: module for module, names in _MOVED.items() for n in names})


class DataWarning(BenchWarning):
    """Something about the data the user should know but that does not stop the run."""


@dataclass
class ImageSet:
    """uint8 images (N, 3, 32, 32) with the names of their source files."""

    images: torch.Tensor
    names: list[str]
    dataset: str
    partition: str
    label: str
    root: str | None
    skipped: list[str]
    fingerprint: str
    offset: int = 0  # images of the partition skipped before these (`load_images`' offset)

    def __len__(self) -> int:
        return len(self.names)


# ---- model space (PROTOCOL §1) -------------------------------------------------------------------
def to_5bit(x255: torch.Tensor) -> torch.Tensor:
    """floor(x / 8) as uint8 in 0..31; accepts uint8, integer or float pixels in 0..255."""
    if x255.dtype == torch.uint8:
        return x255 // PIXEL_STEP
    if x255.is_floating_point():
        x5 = torch.floor(x255 / PIXEL_STEP)
    else:
        x5 = torch.div(x255, PIXEL_STEP, rounding_mode="floor")
    return x5.clamp(0, N_BINS - 1).to(torch.uint8)


def dequantize(
    x5: torch.Tensor, u: torch.Tensor | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(x5 + u) / 32 * 2 - 1 as float32 in [-1, 1); u ~ U[0, 1) drawn from `generator` if None.

    u is clamped to [0, U_MAX] (U_MAX = 1 - 2**-16) so that the round trip through
    :func:`to_pixels` is exact despite float32 rounding.
    """
    xf = x5.to(torch.float32)
    if u is None:
        device = generator.device if generator is not None else xf.device
        u = torch.rand(xf.shape, generator=generator, device=device, dtype=torch.float32)
    u = u.to(device=xf.device, dtype=torch.float32).clamp(0.0, U_MAX)
    return (xf + u) / N_BINS * 2 - 1


def to_model(
    x255: torch.Tensor, u: torch.Tensor | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """8-bit pixels to the flow's input space: dequantize(to_5bit(x255))."""
    return dequantize(to_5bit(x255), u=u, generator=generator)


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """Model space back to 8-bit pixels: clip(floor((x + 1) / 2 * 32), 0, 31) * 8 as uint8."""
    xf = x if x.is_floating_point() else x.to(torch.float32)
    k = torch.floor((xf + 1) / 2 * N_BINS).clamp(0, N_BINS - 1)
    return (k * PIXEL_STEP).to(torch.uint8)


def seeded_uniform(seeds: Sequence[int], shape) -> torch.Tensor:
    """U[0, 1) float32 noise of shape (len(seeds), *shape), image i drawn from its own
    torch.Generator seeded with seeds[i]: an image's noise does not depend on its batch."""
    return _seeded(torch.rand, seeds, shape)


def seeded_normal(seeds: Sequence[int], shape) -> torch.Tensor:
    """N(0, 1) float32 noise of shape (len(seeds), *shape), image i drawn from its own
    torch.Generator seeded with seeds[i] (as `seeded_uniform`)."""
    return _seeded(torch.randn, seeds, shape)


def _seeded(draw, seeds: Sequence[int], shape) -> torch.Tensor:
    shape = (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)
    out = torch.empty((len(seeds), *shape), dtype=torch.float32)
    for i, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(int(seed))
        out[i] = draw(shape, generator=g, dtype=torch.float32)
    return out


def image_seed(name: str, base: int = 0) -> int:
    """A deterministic 63-bit seed from an image's file name (and a base seed): every method and
    every run sees the same noise for the same image."""
    digest = hashlib.blake2b(f"{int(base)}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


# ---- common to every dataset ------------------------------------------------------------------
def cache_dir() -> Path:
    """$BENCH_CACHE, else ~/.cache/bench."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bench"


def short_list(names: Sequence[str]) -> str:
    """The first few `names` for a one-line message, and how many more there are."""
    shown = ", ".join(names[:MAX_NAMES_IN_MESSAGE])
    more = len(names) - MAX_NAMES_IN_MESSAGE
    return shown + (f" and {more} more" if more > 0 else "")


def content_fingerprint(
    dataset: str, partition: str, names: Sequence[str], skipped: Sequence[str], images: np.ndarray
) -> str:
    """Identity of an image set: a short hash of its names and preprocessed pixels. It does not
    depend on where or when the files were copied, so a checkpoint or a run is recognised on
    another machine holding the same images."""
    h = hashlib.sha256(f"{dataset}\0v{PREPROCESS_VERSION}\0{partition}\n".encode())
    h.update("\n".join(names).encode())
    if skipped:
        h.update(("\0skipped\n" + "\n".join(skipped)).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    return h.hexdigest()[:16]


def _check_choice(kind: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise DataError(f"unknown {kind} {value!r}: choose one of {', '.join(choices)}")


def load_images(
    dataset: str,
    partition: str,
    root: str | Path | None = None,
    limit: int | None = None,
    progress: bool = True,
    offset: int = 0,
) -> ImageSet:
    """The images of one partition ('train', 'valid', 'test') of a registered dataset
    ('celeba', 'builtin', or one added to :data:`bench.datasets.DATASETS`).

    Returns an :class:`ImageSet` of uint8 images, shape (N, 3, 32, 32), pixel values 0..255.
    `limit` keeps the first `limit` files present in the partition (filename order for
    CelebA), e.g. the evaluation set is ``load_images('celeba', 'test', limit=192)``; the label
    still counts every file of the partition present. `offset` skips the first `offset` images
    first: ``offset=192, limit=192`` is the next 192 (the replication set, `bench run
    --test-offset 192`); the label then says which of the present files were used. `root` is
    the CelebA folder (see :func:`bench.datasets.celeba_files.resolve_celeba_root`); the
    builtin set ignores it.

    Raises DataError (one line: the problem and the fix) for an unknown dataset or partition, a
    bad `limit`, a missing or wrongly laid out folder, a malformed list_eval_partition.txt (see
    :mod:`bench.datasets.celeba_files`), or a partition with no readable file. Warns
    (:class:`DataWarning`, with counts) about image files that were skipped as unreadable, that
    belong to no partition, or a cache that could not be written. A corrupt, truncated or
    foreign cache file is rebuilt, never executed (no pickles).
    """
    from bench.datasets import DATASETS as registered  # bench.datasets imports this module

    _check_choice("dataset", dataset, registered.names())
    _check_choice("partition", partition, PARTITIONS)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"image limit must be a positive integer or None, not {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise DataError(f"image offset must be a non-negative integer, not {offset!r}")
    images = registered[dataset].load(
        partition, root, None if limit is None else offset + limit, progress
    )
    return images if offset == 0 else skip_images(images, offset)


def skip_images(images: ImageSet, offset: int) -> ImageSet:
    """`images` without its first `offset` images: its own fingerprint, and a label saying
    which of the files present were used. DataError when nothing is left."""
    n = len(images)
    if offset >= n:
        raise DataError(
            f"offset {offset} skips all {n} {images.dataset} {images.partition} images loaded: "
            f"use a smaller --test-offset (at most {n - 1} here)"
        )
    names = list(images.names[offset:])
    pixels = images.images[offset:]
    label = (
        f"{images.label}; of those, images {offset + 1}–{n} used (offset {offset}): "
        f"{names[0]} … {names[-1]}"
    )
    fingerprint = content_fingerprint(
        images.dataset, images.partition, names, images.skipped, pixels.numpy()
    )
    return replace(
        images, images=pixels, names=names, label=label, fingerprint=fingerprint, offset=offset
    )
