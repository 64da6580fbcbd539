"""Image data (PROTOCOL §1): CelebA from a folder, an offline builtin fallback, and model space.

Every dataset returns an :class:`ImageSet`: uint8 RGB images of shape (N, 3, 32, 32) and the
names of the files they came from, in a deterministic order.

- ``celeba``: the aligned-and-cropped CelebA JPEGs in the usual layout
  (``ROOT/img_align_celeba/NNNNNN.jpg``, optionally ``ROOT/list_eval_partition.txt``; without it
  the official filename ranges are used). Only the files that exist are used, and the label says
  how many. The partition file is read whatever tool wrote it (byte-order mark, line endings,
  separators); a line it cannot parse is an error, an image file in no partition a counted
  warning. Preprocessing is PROTOCOL §1: EXIF orientation applied, shorter side resized to 32
  (bilinear, 178×218 → 32×39), then a 32×32 center crop. Decoded images are cached in
  :func:`cache_dir` (plain .npz, loaded without pickles) and the cache is rebuilt whenever the
  source files change (names, sizes, mtimes) or the cache file is unreadable.
- ``builtin``: deterministic 32×32 crops of the color photographs bundled with scikit-image
  (no download), with disjoint source photographs for train, valid and test. It is NOT CelebA:
  it exists so that the harness runs end to end on a fresh offline machine.

Model space (PROTOCOL §1): ``x5 = floor(x255 / 8)``; the flow sees ``(x5 + u) / 32 * 2 - 1`` with
``u ~ U[0, 1)``; images return to pixels by ``clip(floor((x + 1) / 2 * 32), 0, 31) * 8``.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import re
import stat
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageOps
from torchvision.transforms import InterpolationMode

from bench.atomic import atomic_write
from bench.config import CELEBA_RANGES, CHANNELS, DATASETS, IMAGE_SIZE, N_BINS
from bench.errors import BenchWarning, DataError, WriteError
from bench.progress import bar as progress_bar

logger = logging.getLogger(__name__)

# ---- constants of this module ------------------------------------------------------------------
PARTITIONS = ("train", "valid", "test")
DEFAULT_CELEBA_ROOT = Path("data/celeba")
CELEBA_ENV = "BENCH_CELEBA"  # environment variable naming the CelebA folder
CACHE_ENV = "BENCH_CACHE"  # environment variable naming the cache folder
CELEBA_IMAGE_DIR = "img_align_celeba"
CELEBA_PARTITION_FILE = "list_eval_partition.txt"
CELEBA_PARTITION_CODES = {"0": "train", "1": "valid", "2": "test"}
CELEBA_NAME = re.compile(r"^(\d{6})\.jpg$")
IMAGE_SUFFIXES = (".jpg", ".jpeg")
# a name in the partition file: a bare JPEG file name, any case, of printable ASCII other than
# '/' and backslash (the ranges skip 0x2f and 0x5c): no folder, no invisible or look-alike character
PARTITION_NAME = re.compile(r"^[!-.0-\[\]-~]+\.jpe?g$", re.IGNORECASE)
# the header line of the comma-separated list_eval_partition.csv (Kaggle's CelebA)
PARTITION_HEADER = ("image_id", "partition")
# byte-order marks a text file may start with, and the encoding each one announces (UTF-32 LE
# first: its mark begins with UTF-16 LE's)
TEXT_SIGNATURES = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# bump when the decoded pixels for the same source files would change
PREPROCESS_VERSION = 1
# bump when cached pixels may differ from what the decoder now gives (cache-only: identities,
# i.e. content fingerprints, do not change). 2: EXIF orientation applied; untagged files such as
# CelebA's decode to the same pixels as before, so their fingerprints are unchanged.
CACHE_FORMAT = 2
DECODE_JOBS = 2  # joblib workers (threads: PIL releases the GIL while decoding and resizing)
DECODE_CHUNK = 250  # files per joblib task
PARALLEL_MIN = 500  # fewer files than this are decoded in-process
MAX_NAMES_IN_MESSAGE = 5

PIXEL_STEP = 256 // N_BINS  # 8: one 5-bit level in 8-bit pixels
# u is clamped to [0, U_MAX] so that float32 rounding of (x5 + u) can never reach x5 + 1:
# to_pixels(dequantize(x5, u)) == x5 * 8 for every u in [0, 1). The mass moved is 2**-16.
U_MAX = 1.0 - 2.0**-16

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
    shape = (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)
    out = torch.empty((len(seeds), *shape), dtype=torch.float32)
    for i, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(int(seed))
        out[i] = torch.rand(shape, generator=g, dtype=torch.float32)
    return out


def image_seed(name: str, base: int = 0) -> int:
    """A deterministic 63-bit seed from an image's file name (and a base seed): every method and
    every run sees the same noise for the same image."""
    digest = hashlib.blake2b(f"{int(base)}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


# ---- common ------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """$BENCH_CACHE, else ~/.cache/bench."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bench"


def _check_choice(kind: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise DataError(f"unknown {kind} {value!r}: choose one of {', '.join(choices)}")


def _short_list(names: Sequence[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES_IN_MESSAGE])
    more = len(names) - MAX_NAMES_IN_MESSAGE
    return shown + (f" and {more} more" if more > 0 else "")


def _preprocess(img: Image.Image) -> np.ndarray:
    """PROTOCOL §1 on a PIL image: shorter side to 32 (bilinear), center crop 32; (3, 32, 32)
    uint8."""
    img = img.convert("RGB")
    img = TF.resize(img, IMAGE_SIZE, interpolation=InterpolationMode.BILINEAR)
    img = TF.center_crop(img, IMAGE_SIZE)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


def load_images(
    dataset: str,
    partition: str,
    root: str | Path | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> ImageSet:
    """The images of one partition ('train', 'valid', 'test') of a dataset ('celeba', 'builtin').

    Returns an :class:`ImageSet` of uint8 images, shape (N, 3, 32, 32), pixel values 0..255.
    `limit` keeps the first `limit` files present in the partition (filename order for
    CelebA), e.g. the evaluation set is ``load_images('celeba', 'test', limit=192)``; the label
    still counts every file of the partition present. `root` is the CelebA folder (see
    :func:`resolve_celeba_root`); the builtin set ignores it.

    Raises DataError (one line: the problem and the fix) for an unknown dataset or partition, a
    bad `limit`, a missing or wrongly laid out folder, a malformed list_eval_partition.txt (see
    :func:`_read_partition_file`), or a partition with no readable file. Warns
    (:class:`DataWarning`, with counts) about image files that were skipped as unreadable, that
    belong to no partition, or a cache that could not be written. A corrupt, truncated or
    foreign cache file is rebuilt, never executed (no pickles).
    """
    _check_choice("dataset", dataset, DATASETS)
    _check_choice("partition", partition, PARTITIONS)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"image limit must be a positive integer or None, not {limit!r}")
    if dataset == "builtin":
        return _load_builtin(partition, limit)
    return _load_celeba(resolve_celeba_root(root), partition, limit, progress)


# ---- CelebA ------------------------------------------------------------------------------------
def resolve_celeba_root(root: str | Path | None) -> Path:
    """The CelebA folder: `root` (--data-root), else $BENCH_CELEBA, else data/celeba.

    It must contain img_align_celeba/; otherwise a DataError names the problem and the fix.
    """
    if root is not None and str(root) != "":
        path, origin = Path(root), "--data-root"
    elif os.environ.get(CELEBA_ENV):
        path, origin = Path(os.environ[CELEBA_ENV]), f"${CELEBA_ENV}"
    else:
        path, origin = DEFAULT_CELEBA_ROOT, "the default"
    path = path.expanduser().absolute()
    fix = (
        f"pass --data-root or set {CELEBA_ENV} to a folder containing {CELEBA_IMAGE_DIR}/ "
        "(CelebA's aligned-and-cropped images)"
    )
    if not path.exists():
        raise DataError(f"CelebA folder {path} (from {origin}) not found: {fix}")
    if not path.is_dir():
        raise DataError(f"CelebA path {path} (from {origin}) is not a folder: {fix}")
    img_dir = path / CELEBA_IMAGE_DIR
    if img_dir.is_dir():
        return path
    if img_dir.exists():
        raise DataError(f"{img_dir} is not a folder: {fix}")
    if path.name == CELEBA_IMAGE_DIR:
        raise DataError(
            f"{path} is the {CELEBA_IMAGE_DIR} folder itself: pass its parent {path.parent} "
            f"instead (--data-root or {CELEBA_ENV})"
        )
    if (path / "celeba" / CELEBA_IMAGE_DIR).is_dir():
        raise DataError(
            f"{path} has no {CELEBA_IMAGE_DIR}/ but {path / 'celeba'} does: "
            f"pass --data-root {path / 'celeba'} (or set {CELEBA_ENV} to it)"
        )
    if _has_images(path):
        raise DataError(
            f"{path} holds image files but no {CELEBA_IMAGE_DIR}/ subfolder: move them into "
            f"{img_dir}/ (CelebA's usual layout)"
        )
    raise DataError(
        f"CelebA folder {path} (from {origin}) has no {CELEBA_IMAGE_DIR}/ subfolder: extract "
        f"img_align_celeba.zip there, or {fix}"
    )


def _has_images(folder: Path) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(e.name.lower().endswith(IMAGE_SUFFIXES) for e in it)
    except OSError:
        return False


def _decode_text(raw: bytes, path: Path, fix: str) -> str:
    """Text of a file written by any tool: a UTF-8, UTF-16 or UTF-32 byte-order mark selects
    the encoding (and is removed); without one the file must be UTF-8 (ASCII included).

    Raises DataError (one line) for bytes that are not text in that encoding, or NUL characters
    (UTF-16/32 saved without a byte-order mark)."""
    encoding, body, signed = "utf-8", raw, False
    for bom, name in TEXT_SIGNATURES:
        if raw.startswith(bom):
            encoding, body, signed = name, raw[len(bom) :], True
            break
    try:
        text = body.decode(encoding, errors="strict")
    except UnicodeDecodeError as e:
        what = f"{encoding} text, as its byte-order mark says" if signed else "UTF-8 text"
        raise DataError(
            f"{path} is not {what}: byte {e.start + (len(raw) - len(body))} is invalid; save it "
            f"as UTF-8, or {fix}"
        ) from None
    if "\x00" in text:
        raise DataError(
            f"{path} holds NUL characters (UTF-16 or UTF-32 text without a byte-order mark?): "
            f"save it as UTF-8, or {fix}"
        )
    return text


def _read_partition_file(path: Path) -> dict[str, list[str]]:
    """list_eval_partition.txt: 'NNNNNN.jpg 0|1|2' per line -> sorted names per partition.

    Read whatever tool wrote it: a UTF-8/16/32 byte-order mark, LF, CRLF or CR line endings,
    blank lines, leading or trailing whitespace, tabs, several spaces or a comma between the
    two columns, and the ``image_id,partition`` header of Kaggle's CSV copy. Every other line
    must name one JPEG file and a partition code.

    Raises DataError (one line, naming the line number) for an unreadable file, a line that is
    not two fields, a name that is not a bare .jpg/.jpeg file name, a partition code other than
    0, 1, 2, a file listed in two partitions, or a file listing nothing.
    """
    fix = "replace it with the official file, or delete it to use the official filename ranges"
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(
            f"cannot read {path} ({e.strerror or e.__class__.__name__}): {fix}"
        ) from None
    text = _decode_text(raw, path, fix)
    expected = "expected 'NNNNNN.jpg 0|1|2'"
    where: dict[str, tuple[str, int]] = {}  # name -> (partition, first line)
    first = True
    for lineno, line in enumerate(text.splitlines(), 1):
        # a byte-order mark inside the text (files joined with cat) is no part of a name
        fields = line.lstrip("\ufeff").replace(",", " ").split()
        if not fields:
            continue
        if first and tuple(f.lower() for f in fields) == PARTITION_HEADER:
            first = False
            continue
        first = False
        shown = line.strip()[:40]
        if len(fields) != 2:
            problem = f"has {len(fields)} field(s)"
        elif not PARTITION_NAME.match(fields[0]):
            problem = f"names {fields[0][:40]!r}, not a plain JPEG file name"
        elif fields[1] not in CELEBA_PARTITION_CODES:
            problem = f"has partition {fields[1][:10]!r}, not 0, 1 or 2"
        else:
            problem = ""
        if problem:
            raise DataError(
                f"{path} line {lineno} is malformed: it {problem} ({shown!r}; {expected}): {fix}"
            )
        name, part = fields[0], CELEBA_PARTITION_CODES[fields[1]]
        seen = where.setdefault(name, (part, lineno))
        if seen[0] != part:
            raise DataError(
                f"{path} lists {name} in two partitions ({seen[0]} on line {seen[1]}, {part} on "
                f"line {lineno}): {fix}"
            )
    if not where:
        raise DataError(f"{path} lists no files: {fix}")
    parts: dict[str, list[str]] = {p: [] for p in PARTITIONS}
    for name, (part, _) in where.items():
        parts[part].append(name)
    for names in parts.values():
        names.sort()
    return parts


@dataclass
class _Listing:
    img_dir: Path
    files: list[str]  # present files of the partition, filename order
    official: list[str]  # every file of the partition per the partition file or ranges
    source: str  # where the partition came from
    n_jpegs: int  # image files in img_align_celeba
    unlisted: list[str]  # image files in img_align_celeba that belong to no partition (ignored)


def _list_celeba(root: Path, partition: str) -> _Listing:
    img_dir = root / CELEBA_IMAGE_DIR
    try:
        with os.scandir(img_dir) as it:
            entries = [(e.name, e.is_dir()) for e in it]
    except OSError as e:
        raise DataError(
            f"cannot list {img_dir} ({e.strerror or e.__class__.__name__}): check that it is a "
            f"readable folder, or pass --data-root / set {CELEBA_ENV} to another CelebA copy"
        ) from None
    present = {n for n, is_dir in entries if not is_dir and n.lower().endswith(IMAGE_SUFFIXES)}
    if not present:
        if any(is_dir and n == CELEBA_IMAGE_DIR for n, is_dir in entries):
            raise DataError(
                f"{img_dir} holds no images but a nested {CELEBA_IMAGE_DIR}/ (zip extracted "
                f"twice): pass --data-root {img_dir} or move the files up one level"
            )
        raise DataError(
            f"no JPEG files in {img_dir}: extract CelebA's img_align_celeba.zip there "
            f"(000001.jpg … 202599.jpg), or pass --data-root / set {CELEBA_ENV}"
        )
    part_file = root / CELEBA_PARTITION_FILE
    if _partition_file_present(part_file):
        parts = _read_partition_file(part_file)
        official = parts[partition]
        source = CELEBA_PARTITION_FILE
        listed = set().union(*parts.values())
        unlisted = sorted(n for n in present if n not in listed)
    else:
        lo, hi = CELEBA_RANGES[partition]
        official = [f"{i:06d}.jpg" for i in range(lo, hi + 1)]
        source = "the official filename ranges (no list_eval_partition.txt)"
        unlisted = sorted(n for n in present if not _in_official_ranges(n))
    files = sorted(present.intersection(official))
    if not files:
        if not any(CELEBA_NAME.match(n) for n in present):
            raise DataError(
                f"the {len(present)} image files in {img_dir} are not named like CelebA's "
                f"(NNNNNN.jpg, e.g. 000001.jpg): point --data-root / {CELEBA_ENV} at a CelebA copy"
            )
        span = f"{official[0]}–{official[-1]}" if official else "empty"
        raise DataError(
            f"no CelebA {partition} files among the {len(present)} images in {img_dir} "
            f"(the {partition} partition is {span} per {source}): add them, or choose another "
            "partition"
        )
    if unlisted:
        warnings.warn(
            f"ignored {len(unlisted)} image file(s) in {img_dir} that belong to no partition "
            f"per {source}: {_short_list(unlisted)} (rename them to CelebA's NNNNNN.jpg names, "
            f"or list them in {CELEBA_PARTITION_FILE}, to use them)",
            DataWarning,
            stacklevel=4,
        )
    return _Listing(img_dir, files, official, source, len(present), unlisted)


def _partition_file_present(path: Path) -> bool:
    """Whether list_eval_partition.txt is there to be read. Absent: False (the official ranges
    are used). Raises DataError when something else is in its place (a folder, a broken link,
    an unreadable entry), rather than falling back to the ranges in silence."""
    fix = "replace it with the official file, or remove it to use the official filename ranges"
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise DataError(f"{path} is a broken link: {fix}") from None
        return False
    except OSError as e:
        raise DataError(
            f"cannot read {path} ({e.strerror or e.__class__.__name__}): {fix}"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise DataError(f"{path} is {kind}: {fix}")
    return True


def _in_official_ranges(name: str) -> bool:
    m = CELEBA_NAME.match(name)
    if m is None:
        return False
    number = int(m.group(1))
    return any(lo <= number <= hi for lo, hi in CELEBA_RANGES.values())


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
    listing: _Listing, partition: str, limit: int | None, names: list[str], skipped: list[str]
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


def _load_celeba(root: Path, partition: str, limit: int | None, progress: bool) -> ImageSet:
    listing = _list_celeba(root, partition)
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
            f"skipped {len(skipped)} unreadable CelebA {partition} file(s) in {listing.img_dir}: "
            f"{_short_list(skipped)} (re-extract them to use them)",
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


# ---- builtin -----------------------------------------------------------------------------------
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


def _load_builtin(partition: str, limit: int | None) -> ImageSet:
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
