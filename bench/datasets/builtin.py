"""The ``builtin`` dataset: deterministic 32×32 crops of the color photographs bundled with
scikit-image (no download), with disjoint source photographs for train, valid and test. It is
NOT CelebA: it exists so that the harness runs end to end on a fresh offline machine.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

from bench.config import CHANNELS, IMAGE_SIZE
from bench.data import PARTITIONS, ImageSet, content_fingerprint
from bench.datasets.base import DATASETS, Dataset
from bench.errors import DataError

# builtin: color photographs shipped inside the scikit-image wheel (no pooch download needed);
# disjoint photographs per partition (the motorcycle stereo pair stays together in train).
BUILTIN_PHOTOS = {
    "train": (
        "astronaut",
        "hubble_deep_field",
        "immunohistochemistry",
        "retina",
        "motorcycle_left",
        "motorcycle_right",
    ),
    "valid": ("coffee",),
    "test": ("chelsea", "rocket"),
}
BUILTIN_COUNTS = {"train": 4096, "valid": 256, "test": 192}
BUILTIN_SEED = 20190531
BUILTIN_MIN_CROP = 48  # crop side drawn in [48, min(H, W) // 2]
BUILTIN_LABEL = "builtin: scikit-image photographs (NOT CelebA)"


@cache
def _builtin_photo(name: str) -> np.ndarray:
    """A color photograph bundled with scikit-image, (H, W, 3) uint8, read without network."""
    try:
        import skimage.data as skd

        if name.startswith("motorcycle_"):
            left, right, _ = skd.stereo_motorcycle()
            img = left if name == "motorcycle_left" else right
        else:
            img = getattr(skd, name)()
    except Exception as e:  # noqa: BLE001 - any failure means the bundled file is unusable
        raise DataError(
            f"builtin photograph {name!r} could not be read from scikit-image "
            f"({e.__class__.__name__}): reinstall scikit-image, or use --dataset celeba"
        ) from None
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] < 3:
        raise DataError(
            f"builtin photograph {name!r} is not an RGB uint8 image: reinstall scikit-image"
        )
    return np.ascontiguousarray(img[..., :3])


@cache
def _builtin_partition(partition: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Deterministic crops: side in [48, min(H, W) // 2], resized to 32 (bilinear), random
    horizontal flip for train only; photographs used in turn."""
    photos = BUILTIN_PHOTOS[partition]
    count = BUILTIN_COUNTS[partition]
    rng = np.random.default_rng([BUILTIN_SEED, PARTITIONS.index(partition)])
    pil = {p: Image.fromarray(_builtin_photo(p)) for p in photos}
    images = np.empty((count, CHANNELS, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        photo = photos[len(names) % len(photos)]
        img = pil[photo]
        width, height = img.size
        side = int(rng.integers(BUILTIN_MIN_CROP, min(height, width) // 2 + 1))
        y = int(rng.integers(0, height - side + 1))
        x = int(rng.integers(0, width - side + 1))
        flip = partition == "train" and bool(rng.integers(2))
        name = f"{photo}@y{y}x{x}s{side}" + ("f" if flip else "")
        if name in seen:
            continue
        crop = img.crop((x, y, x + side, y + side))
        crop = TF.resize(crop, [IMAGE_SIZE, IMAGE_SIZE], interpolation=InterpolationMode.BILINEAR)
        if flip:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        images[len(names)] = np.asarray(crop, dtype=np.uint8).transpose(2, 0, 1)
        names.append(name)
        seen.add(name)
    images.setflags(write=False)
    return images, tuple(names)


class BuiltinPhotos(Dataset):
    """Crops of scikit-image's photographs (see the module docstring); `root` is ignored. The
    crops of a partition are made once per process and kept (read-only)."""

    name = "builtin"
    label = BUILTIN_LABEL
    needs_root = False

    def load(
        self, partition: str, root: str | Path | None, limit: int | None, progress: bool
    ) -> ImageSet:
        """See :class:`~bench.datasets.base.Dataset`; the label names the photographs."""
        images, names = _builtin_partition(partition)
        images, names = images[:limit], list(names[:limit])
        photos = ", ".join(BUILTIN_PHOTOS[partition])
        return ImageSet(
            images=torch.from_numpy(images.copy()),
            names=names,
            dataset="builtin",
            partition=partition,
            label=f"{BUILTIN_LABEL}: {len(names)} {partition} crops of {photos}",
            root=None,
            skipped=[],
            fingerprint=content_fingerprint("builtin", partition, names, [], images),
        )


DATASETS.add(BuiltinPhotos)
