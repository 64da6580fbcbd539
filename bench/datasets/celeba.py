"""The ``celeba`` dataset (PROTOCOL §1): CelebA's aligned-and-cropped JPEGs from a folder.

Which files make up a partition is :mod:`bench.datasets.celeba_files` (folder layout, partition
file or the official filename ranges). Preprocessing is PROTOCOL §1: EXIF orientation applied,
shorter side resized to 32 (bilinear, 178×218 → 32×39), then a 32×32 center crop. Decoded
images are cached in :func:`bench.data.cache_dir` (plain .npz, loaded without pickles) and the
cache is rebuilt whenever the source files change (names, sizes, mtimes) or the cache file is
unreadable.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageOps
from torchvision.transforms import InterpolationMode

from bench.atomic import atomic_write
from bench.config import CHANNELS, IMAGE_SIZE
from bench.data import (
    CACHE_ENV,
    PREPROCESS_VERSION,
    DataWarning,
    ImageSet,
    cache_dir,
    content_fingerprint,
    short_list,
)
from bench.datasets.base import DATASETS, Dataset
from bench.datasets.celeba_files import Listing, list_celeba, resolve_celeba_root
from bench.errors import DataError, WriteError
from bench.progress import bar as progress_bar

# the logger of the module these functions came from: `bench.data` names every data message
logger = logging.getLogger("bench.data")

# bump when cached pixels may differ from what the decoder now gives (cache-only: identities,
# i.e. content fingerprints, do not change). 2: EXIF orientation applied; untagged files such as
# CelebA's decode to the same pixels as before, so their fingerprints are unchanged.
CACHE_FORMAT = 2
DECODE_JOBS = 2  # joblib workers (threads: PIL releases the GIL while decoding and resizing)
DECODE_CHUNK = 250  # files per joblib task
PARALLEL_MIN = 500  # fewer files than this are decoded in-process


def _preprocess(img: Image.Image) -> np.ndarray:
    """PROTOCOL §1 on a PIL image: shorter side to 32 (bilinear), center crop 32; (3, 32, 32)
    uint8."""
    img = img.convert("RGB")
    img = TF.resize(img, IMAGE_SIZE, interpolation=InterpolationMode.BILINEAR)
    img = TF.center_crop(img, IMAGE_SIZE)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


def _stamp(img_dir: Path, names: Sequence[str], partition: str) -> str:
    """Cache validity key: short hash of names + sizes + mtimes of the source files and the
    preprocessing version (cheap: no file is read)."""
    h = hashlib.sha256(f"celeba\0v{PREPROCESS_VERSION}\0{partition}\n".encode())
    for name in names:
        try:
            st = os.stat(img_dir / name)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        h.update(f"{name}\t{size}\t{mtime}\n".encode())
    return h.hexdigest()[:16]


def _cache_path(root: Path, partition: str, limit: int | None) -> Path:
    key = hashlib.sha256(f"{root.resolve()}\0{partition}\0{limit}".encode()).hexdigest()[:12]
    return cache_dir() / f"celeba-{partition}-{'all' if limit is None else limit}-{key}.npz"


def _read_cache(
    path: Path, fingerprint: str, files: Sequence[str]
) -> tuple[np.ndarray, list[str], list[str]] | None:
    """The cached (images, names, skipped) of `files`, or None when the cache must be rebuilt:
    absent, stale (other format or fingerprint) or unusable (truncated, corrupt, not an .npz
    written here, wrong shapes or names). Never executes code from the file (no pickles) and
    never raises: a cache is disposable."""
    try:
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as z:  # a .npy or pickle here raises, caught below
            fmt, stamp = z["format"], z["fingerprint"]
            current = (
                fmt.shape == ()
                and fmt.dtype.kind in "iu"
                and int(fmt) == CACHE_FORMAT
                and stamp.shape == ()
                and stamp.dtype.kind == "U"
                and str(stamp) == fingerprint
            )
            if not current:
                logger.info("cache %s is stale: rebuilding", path)
                return None
            images, names_arr, skipped_arr = z["images"], z["names"], z["skipped"]
    except Exception as e:  # noqa: BLE001 - any failure to read a cache means: rebuild it
        logger.warning("unreadable cache %s (%s): rebuilding", path, e.__class__.__name__)
        return None
    lists_ok = all(
        a.ndim == 1 and (a.size == 0 or a.dtype.kind == "U") for a in (names_arr, skipped_arr)
    )
    names = [str(n) for n in names_arr] if lists_ok else []
    skipped = [str(n) for n in skipped_arr] if lists_ok else []
    shape_ok = images.ndim == 4 and images.shape[1:] == (CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
    if (
        not lists_ok
        or images.dtype != np.uint8
        or not shape_ok
        or len(names) != len(images)
        or sorted(names + skipped) != sorted(files)
    ):
        logger.warning("malformed cache %s: rebuilding", path)
        return None
    return images, names, skipped


def _write_cache(
    path: Path, images: np.ndarray, names: list[str], skipped: list[str], fingerprint: str
) -> None:
    """Atomically (bench.atomic); a cache that cannot be written only warns."""
    try:
        atomic_write(
            path,
            lambda f: np.savez(
                f,
                format=np.array(CACHE_FORMAT),
                fingerprint=np.array(fingerprint),
                images=images,
                names=np.array(names, dtype=str),
                skipped=np.array(skipped, dtype=str),
            ),
        )
    except (OSError, WriteError) as e:
        warnings.warn(
            f"could not write the image cache {path} ({e}): set {CACHE_ENV} to a writable folder",
            DataWarning,
            stacklevel=3,
        )


def _decode_file(path: Path) -> np.ndarray | str:
    """The preprocessed image, or the reason it could not be read."""
    try:
        with Image.open(path) as img:
            img.load()
            return _preprocess(_upright(img))
    except Exception as e:  # noqa: BLE001 - any decoder failure means a corrupt/unreadable file
        return f"{e.__class__.__name__}: {e}".splitlines()[0][:120]


def _upright(img: Image.Image) -> Image.Image:
    """The image as viewers show it: an EXIF orientation tag (a photo tool's way of saying
    'rotate me') is applied to the pixels. Unreadable EXIF metadata leaves the pixels as stored."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - broken metadata must not make a decodable image unusable
        return img


def _decode_chunk(paths: Sequence[Path]) -> list[np.ndarray | str]:
    return [_decode_file(p) for p in paths]


def _decode_all(paths: list[Path], desc: str, progress: bool) -> list[np.ndarray | str]:
    bar = progress_bar(total=len(paths), progress=progress, desc=desc, unit="img")
    out: list[np.ndarray | str] = []
    try:
        if len(paths) < PARALLEL_MIN or DECODE_JOBS <= 1:
            for p in paths:
                out.append(_decode_file(p))
                bar.update(1)
        else:
            from joblib import Parallel, delayed

            chunks = [paths[i : i + DECODE_CHUNK] for i in range(0, len(paths), DECODE_CHUNK)]
            jobs = Parallel(n_jobs=DECODE_JOBS, backend="threading", return_as="generator")
            for result in jobs(delayed(_decode_chunk)(c) for c in chunks):
                out.extend(result)
                bar.update(len(result))
    finally:
        bar.close()
    return out


def _celeba_label(
    listing: Listing, partition: str, limit: int | None, names: list[str], skipped: list[str]
) -> str:
    n_present, n_official = len(listing.files), len(listing.official)
    if n_present == n_official:
        label = f"CelebA ({partition}: all {n_official} files present)"
    else:
        label = f"CelebA (partial copy: {n_present} of {n_official} {partition} files present)"
    extra = []
    n_used = len(names) + len(skipped)
    if limit is not None:
        extra.append(f"first {n_used} present files used")
        if listing.files[:n_used] != listing.official[:n_used]:
            extra.append(f"not the first {n_used} official {partition} files")
    if names:
        extra.append(f"{names[0]} … {names[-1]}")
    if skipped:
        extra.append(f"{len(skipped)} unreadable skipped")
    return label + (": " + "; ".join(extra) if extra else "")


class CelebA(Dataset):
    """CelebA's aligned-and-cropped images from --data-root (else $BENCH_CELEBA, else
    data/celeba): the files present of each partition, in filename order, decoded once and
    cached. ``ImageSet.root`` is the folder; ``skipped`` the unreadable files (warned)."""

    name = "celeba"
    label = "CelebA, aligned and cropped (--data-root)"
    needs_root = True

    def load(
        self, partition: str, root: str | Path | None, limit: int | None, progress: bool
    ) -> ImageSet:
        """See :class:`~bench.datasets.base.Dataset`; the label counts the files present."""
        root = resolve_celeba_root(root)
        listing = list_celeba(root, partition)
        files = listing.files[:limit] if limit is not None else listing.files
        stamp = _stamp(listing.img_dir, files, partition)
        cpath = _cache_path(root, partition, limit)
        cached = _read_cache(cpath, stamp, files)
        summary = (
            f"CelebA {partition}: {len(listing.files)} of {len(listing.official)} files present in "
            f"{listing.img_dir} (partition from {listing.source})"
            + (f", using the first {len(files)}" if len(files) < len(listing.files) else "")
            + (f"; cached in {cpath}" if cached is not None else "")
        )
        logger.info(summary)
        if progress:
            print(summary, file=sys.stderr)

        if cached is not None:
            images, names, skipped = cached
        else:
            decoded = _decode_all(
                [listing.img_dir / n for n in files], f"decoding CelebA {partition}", progress
            )
            pairs = list(zip(files, decoded, strict=True))
            good = [(n, d) for n, d in pairs if not isinstance(d, str)]
            bad = [(n, d) for n, d in pairs if isinstance(d, str)]
            skipped = [n for n, _ in bad]
            if not good:
                raise DataError(
                    f"all {len(files)} CelebA {partition} files tried in {listing.img_dir} are "
                    f"unreadable (e.g. {bad[0][0]}: {bad[0][1]}): re-extract img_align_celeba.zip"
                )
            names = [n for n, _ in good]
            images = np.stack([d for _, d in good])
            _write_cache(cpath, images, names, skipped, stamp)
        if skipped:
            warnings.warn(
                f"skipped {len(skipped)} unreadable CelebA {partition} file(s) in "
                f"{listing.img_dir}: {short_list(skipped)} (re-extract them to use them)",
                DataWarning,
                stacklevel=3,
            )
        return ImageSet(
            images=torch.from_numpy(np.ascontiguousarray(images)),
            names=names,
            dataset="celeba",
            partition=partition,
            label=_celeba_label(listing, partition, limit, names, skipped),
            root=str(root),
            skipped=skipped,
            fingerprint=content_fingerprint("celeba", partition, names, skipped, images),
        )


DATASETS.add(CelebA)
