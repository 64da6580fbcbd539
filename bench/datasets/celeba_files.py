"""CelebA's folder and partition file (PROTOCOL §1): where the images are, and which files
belong to which partition.

The usual layout is ``ROOT/img_align_celeba/NNNNNN.jpg``, optionally with
``ROOT/list_eval_partition.txt``; without it the official filename ranges are used. Only the
files that exist are used. The partition file is read whatever tool wrote it (byte-order mark,
line endings, separators); a line it cannot parse is an error, an image file in no partition a
counted warning. Decoding and the cache are :mod:`bench.datasets.celeba`.
"""

from __future__ import annotations

import codecs
import os
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

from bench.config import CELEBA_RANGES
from bench.data import PARTITIONS, DataWarning, short_list
from bench.errors import DataError

DEFAULT_CELEBA_ROOT = Path("data/celeba")
CELEBA_ENV = "BENCH_CELEBA"  # environment variable naming the CelebA folder
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
class Listing:
    """The CelebA files of one partition, and where the partition came from."""

    img_dir: Path
    files: list[str]  # present files of the partition, filename order
    official: list[str]  # every file of the partition per the partition file or ranges
    source: str  # where the partition came from
    n_jpegs: int  # image files in img_align_celeba
    unlisted: list[str]  # image files in img_align_celeba that belong to no partition (ignored)


def list_celeba(root: Path, partition: str) -> Listing:
    """The files of `partition` in `root`: those present, per the partition file or (without
    it) the official filename ranges. Raises DataError (one line) for a folder that cannot be
    listed, holds no JPEG file, or none of the partition; warns (DataWarning) about image files
    that belong to no partition (stacklevel: the caller of load_images, via CelebA.load)."""
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
            f"per {source}: {short_list(unlisted)} (rename them to CelebA's NNNNNN.jpg names, "
            f"or list them in {CELEBA_PARTITION_FILE}, to use them)",
            DataWarning,
            stacklevel=4,
        )
    return Listing(img_dir, files, official, source, len(present), unlisted)


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
