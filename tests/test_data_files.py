"""bench.data reading files written by other tools: the partition file in any encoding
signature, line ending and column separator; lines it cannot parse; image files that belong to
no partition; EXIF orientation; corrupt, truncated, foreign or unwritable caches.

Runs without the development copy: a tiny CelebA-layout folder of small JPEGs made by PIL."""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import spy_decode
from PIL import Image

import bench.data as data
from bench.data import DataWarning, ImageSet, load_images
from bench.datasets import celeba, celeba_files
from bench.errors import DataError

TRAIN = ["000001.jpg", "000002.jpg", "000003.jpg"]
VALID = ["162771.jpg"]
TEST = ["182638.jpg", "182639.jpg"]
ALL = TRAIN + VALID + TEST
OFFICIAL = {"train": TRAIN, "valid": VALID, "test": TEST}
CODES = {"train": "0", "valid": "1", "test": "2"}


def _load(*args, **kw) -> ImageSet:
    return load_images(*args, progress=False, **kw)


def _jpeg(path: Path, seed: int, size: tuple[int, int] = (36, 44)) -> None:
    """A small JPEG with CelebA's portrait aspect, different for every seed."""
    rng = np.random.default_rng(seed)
    block = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    img = Image.fromarray(block).resize(size, Image.NEAREST)
    img.save(path, quality=95)


@pytest.fixture
def root(tmp_path, tmp_cache) -> Path:
    """A CelebA-layout folder with three train, one valid and two test JPEGs, no partition
    file, and a private cache."""
    r = tmp_path / "celeba"
    (r / "img_align_celeba").mkdir(parents=True)
    for i, name in enumerate(ALL):
        _jpeg(r / "img_align_celeba" / name, seed=i)
    return r


def _lines() -> list[str]:
    return [f"{n} {CODES[p]}" for p, names in OFFICIAL.items() for n in names]


def _write_partition(root: Path, text: str, encoding: str = "utf-8") -> Path:
    path = root / "list_eval_partition.txt"
    path.write_bytes(text.encode(encoding))
    return path


def _listed(root: Path) -> dict[str, list[str]]:
    """The present files of each partition as the loader sees them (no decoding)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # nothing may be left out here
        return {p: celeba_files.list_celeba(root, p).files for p in OFFICIAL}


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and "\r" not in msg
    return msg


# ---- the partition file -------------------------------------------------------------------------
def test_bom_partition_file_keeps_000001(root):
    """The reported bug: with a UTF-8 byte-order mark, 000001.jpg was dropped in silence."""
    _write_partition(root, "\n".join(_lines()) + "\n", encoding="utf-8-sig")
    assert (root / "list_eval_partition.txt").read_bytes()[:3] == b"\xef\xbb\xbf"
    s = _load("celeba", "train", root=root)
    assert s.names == TRAIN and len(s) == 3
    assert "all 3 files present" in s.label


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-be-bom", "utf-32"])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_partition_file_encodings_and_line_endings(root, encoding, newline):
    text = newline.join(_lines()) + newline
    if encoding == "utf-16-be-bom":  # Python's 'utf-16' writes little-endian
        raw = b"\xfe\xff" + text.encode("utf-16-be")
        (root / "list_eval_partition.txt").write_bytes(raw)
    else:
        _write_partition(root, text, encoding)
    assert _listed(root) == OFFICIAL


def test_partition_file_blank_lines_whitespace_and_separators(root):
    text = (
        "\r\n\r\n"
        "000001.jpg 0   \r\n"  # trailing spaces
        "  000002.jpg\t0\r\n"  # leading spaces, tab
        "\r\n   \r\n\t\r\n"  # blank and whitespace-only lines
        "000003.jpg     0\t \r\n"  # several spaces, trailing tab
        "162771.jpg\t\t1\n"  # mixed line endings
        "182638.jpg 2\r"
        "182639.jpg 2"  # no final newline
    )
    _write_partition(root, text, "utf-8-sig")
    assert _listed(root) == OFFICIAL


def test_partition_file_csv_with_header(root):
    """Kaggle's list_eval_partition.csv saved under the official name: a header, commas."""
    text = "image_id,partition\r\n" + "\r\n".join(line.replace(" ", ",") for line in _lines())
    _write_partition(root, text, "utf-8-sig")
    assert _listed(root) == OFFICIAL


def test_partition_file_joined_with_cat_keeps_both_halves(root):
    """Two UTF-8-with-BOM files concatenated: the second mark sits at the start of a line."""
    lines = _lines()
    raw = ("\n".join(lines[:3]) + "\n").encode("utf-8-sig")
    raw += ("\n".join(lines[3:]) + "\n").encode("utf-8-sig")
    (root / "list_eval_partition.txt").write_bytes(raw)
    assert _listed(root) == OFFICIAL


def test_duplicate_line_counts_once(root):
    _write_partition(root, "\n".join(_lines() + ["000001.jpg 0"]) + "\n")
    listing = celeba_files.list_celeba(root, "train")
    assert listing.files == TRAIN and listing.official == TRAIN


@pytest.mark.parametrize(
    ("bad_line", "match"),
    [
        ("000004.jpg 3", r"line 7 is malformed: it has partition '3', not 0, 1 or 2"),
        ("000004.jpg", r"line 7 is malformed: it has 1 field"),
        ("000004.jpg 0 extra", r"line 7 is malformed: it has 3 field"),
        ("img_align_celeba/000004.jpg 0", r"line 7 is malformed: it names .*not a plain JPEG file"),
        ("000004.png 0", r"line 7 is malformed: it names '000004.png', not a plain JPEG file name"),
        ("000004 0", r"line 7 is malformed: it names '000004', not a plain JPEG file name"),
        ("0 000004.jpg", r"line 7 is malformed: it names '0'"),
        ("\u200b000004.jpg 0", r"line 7 is malformed: it names '\\u200b000004.jpg', not a plain"),
        ("000001.jpg 2", r"lists 000001.jpg in two partitions \(train on line 1, test on line 7\)"),
    ],
)
def test_unmatched_partition_line_is_an_error(root, bad_line, match):
    """A line the loader cannot match is a one-line DataError naming the line and the fix,
    never a name dropped in silence (the old loader kept 'img_align_celeba/000004.jpg' and
    '000004.png' as names no file could match, and let a file sit in two partitions)."""
    _write_partition(root, "\n".join(_lines() + [bad_line]) + "\n")
    for partition in ("train", "test"):
        with pytest.raises(DataError, match=match) as e:
            _load("celeba", partition, root=root)
        msg = _one_line(e)
        assert "list_eval_partition.txt" in msg and "delete it to use the official" in msg


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("\n".join(_lines()).encode("utf-16-le"), "NUL characters .*without a byte-order mark"),
        ("000001.jpg 0\n\xe9t\xe9 0\n".encode("latin-1"), r"is not UTF-8 text: byte 13 is invalid"),
        (b"\xff\xfe" + b"\x00\xd8", r"is not utf-16-le text, as its byte-order mark says"),
        (b"\xef\xbb\xbf \r\n\t\r\n", "lists no files"),
        (b"", "lists no files"),
    ],
)
def test_undecodable_partition_file_is_an_error(root, raw, match):
    (root / "list_eval_partition.txt").write_bytes(raw)
    with pytest.raises(DataError, match=match) as e:
        _load("celeba", "train", root=root)
    assert "save it as UTF-8" in _one_line(e) or "lists no files" in str(e.value)


def test_something_else_in_place_of_the_partition_file_is_an_error(root):
    """A folder or a broken link named list_eval_partition.txt used to be ignored in silence
    (the official ranges were used instead of the file the user meant)."""
    part = root / "list_eval_partition.txt"
    part.mkdir()
    with pytest.raises(DataError, match="list_eval_partition.txt is a folder: replace it") as e:
        _load("celeba", "train", root=root)
    _one_line(e)
    part.rmdir()
    part.symlink_to(root / "missing.txt")
    with pytest.raises(DataError, match="is a broken link"):
        _load("celeba", "train", root=root)
    part.unlink()
    assert _load("celeba", "train", root=root).names == TRAIN  # absent: the official ranges


# ---- image files in no partition ---------------------------------------------------------------
@pytest.mark.parametrize("with_partition_file", [False, True])
def test_image_files_in_no_partition_are_counted_in_a_warning(root, with_partition_file):
    """Names no partition can match (another tool's upper-case suffix, macOS '._' files, a
    copy) are ignored with a counted warning, never in silence."""
    if with_partition_file:
        _write_partition(root, "\n".join(_lines()) + "\n")
    img_dir = root / "img_align_celeba"
    odd = ["000004.JPG", "._000001.jpg", "000005 (copy).jpeg", "202600.jpg"]
    for i, name in enumerate(odd):
        _jpeg(img_dir / name, seed=50 + i)
    with pytest.warns(DataWarning, match=r"ignored 4 image file\(s\) .* belong to no partition"):
        s = _load("celeba", "train", root=root)
    assert s.names == TRAIN
    with pytest.warns(DataWarning) as record:
        listing = celeba_files.list_celeba(root, "train")
    assert listing.unlisted == sorted(odd)
    assert all(n in str(record[0].message) for n in sorted(odd))


def test_no_warning_when_every_file_is_in_a_partition(root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _load("celeba", "test", root=root).names == TEST


# ---- image files --------------------------------------------------------------------------------
def test_exif_orientation_is_applied(root):
    """A JPEG re-saved by a photo tool with an EXIF orientation tag is used as viewers show
    it: 6 = rotate 90° clockwise (PIL's ROTATE_270), so its 44×36 pixels become 36×44."""
    path = root / "img_align_celeba" / "182639.jpg"
    stored = Image.fromarray(
        np.random.default_rng(7).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    ).resize((44, 36), Image.NEAREST)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, quality=95, exif=exif)
    with Image.open(path) as img:
        img.load()
        assert img.getexif()[0x0112] == 6
        upright = celeba._preprocess(img.transpose(Image.Transpose.ROTATE_270))
        as_stored = celeba._preprocess(img)
    assert not np.array_equal(upright, as_stored)
    s = _load("celeba", "test", root=root)
    assert s.names == TEST
    assert np.array_equal(s.images[1].numpy(), upright)


def test_untagged_images_decode_as_before(root):
    """No orientation tag: the pixels of plain PIL decoding and PROTOCOL §1's resize and crop, so
    the content fingerprints recorded by earlier runs still match."""
    s = _load("celeba", "train", root=root)
    for name, img in zip(s.names, s.images, strict=True):
        with Image.open(root / "img_align_celeba" / name) as pil:
            pil.load()
            assert "exif" not in pil.info or pil.getexif().get(0x0112) is None
            # shorter side 36 -> 32, longer 44 -> int(32 * 44 / 36) = 39; centre rows 4..35
            ref = pil.convert("RGB").resize((32, 39), Image.BILINEAR).crop((0, 4, 32, 36))
        assert np.array_equal(img.numpy(), np.asarray(ref).transpose(2, 0, 1))


# ---- the cache ----------------------------------------------------------------------------------
def _cache_file(cache: Path) -> Path:
    (path,) = cache.glob("celeba-train-*.npz")
    return path


class _Trap:
    """Unpickling this creates a marker file: proof that loading executed code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _corrupt(kind: str, path: Path, tmp_path: Path) -> None:
    good = path.read_bytes()
    if kind == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "flipped":  # a byte of the image data changed: the zip CRC no longer matches
        raw = bytearray(good)
        raw[len(raw) // 2] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif kind == "npy":  # a foreign .npy (not an archive) under the cache's name
        with open(path, "wb") as f:
            np.save(f, np.zeros((3, 3, 32, 32), np.uint8))
    elif kind == "pickle":  # a pickle that would run code if loaded with allow_pickle=True
        with open(path, "wb") as f:
            pickle.dump(_Trap(str(tmp_path / "executed")), f)
    elif kind == "pickled-member":  # an archive whose names are a pickled object array
        with np.load(tmp_path / "good.npz") as z:
            fields = {k: z[k] for k in z.files}
        fields["names"] = np.array([_Trap(str(tmp_path / "executed"))] * 3, dtype=object)
        with open(path, "wb") as f:
            np.savez(f, **fields)
    elif kind in ("wrong-names", "wrong-shape", "old-format", "2d-names"):
        with np.load(tmp_path / "good.npz") as z:
            fields = {k: z[k] for k in z.files}
        if kind == "wrong-names":  # current fingerprint, but not the files it claims to hold
            fields["names"] = np.array(["000009.jpg", "000002.jpg", "000003.jpg"])
        elif kind == "wrong-shape":
            fields["images"] = fields["images"][:, :, :16]
        elif kind == "2d-names":
            fields["names"] = fields["names"].reshape(1, 3)
        else:
            fields["format"] = np.array(data.CACHE_FORMAT - 1)
        with open(path, "wb") as f:
            np.savez(f, **fields)
    else:
        raise AssertionError(kind)


CACHE_FAULTS = [
    "garbage",
    "empty",
    "truncated",
    "flipped",
    "npy",
    "pickle",
    "pickled-member",
    "wrong-names",
    "wrong-shape",
    "2d-names",
    "old-format",
]


@pytest.mark.parametrize("kind", CACHE_FAULTS)
def test_bad_cache_file_is_rebuilt(root, tmp_cache, tmp_path, monkeypatch, caplog, kind):
    """A corrupt, truncated or foreign cache is rebuilt (never executed, never a traceback),
    and the rebuilt cache is then used."""
    good = _load("celeba", "train", root=root)
    path = _cache_file(tmp_cache)
    shutil.copy(path, tmp_path / "good.npz")
    _corrupt(kind, path, tmp_path)
    calls = spy_decode(monkeypatch)
    with caplog.at_level(logging.INFO, logger="bench.data"):
        again = _load("celeba", "train", root=root)
    assert calls == [3], "the bad cache must be rebuilt"
    assert again.names == TRAIN and torch.equal(again.images, good.images)
    assert again.fingerprint == good.fingerprint
    assert not (tmp_path / "executed").exists(), "loading the cache executed code"
    assert "rebuilding" in caplog.text
    assert _load("celeba", "train", root=root).names == TRAIN and calls == [3]  # cache hit


def test_unwritable_cache_only_warns(root, tmp_path, monkeypatch):
    """A cache that cannot be written warns and the images are still returned (atomic_write
    raises WriteError, which is not an OSError: it used to abort the load)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("BENCH_CACHE", str(blocker / "cache"))
    with pytest.warns(DataWarning, match="could not write the image cache .* set BENCH_CACHE"):
        s = _load("celeba", "test", root=root)
    assert s.names == TEST and s.images.shape == (2, 3, 32, 32)


def test_folder_in_place_of_the_cache_file(root, tmp_cache):
    s = _load("celeba", "valid", root=root)
    (path,) = tmp_cache.glob("celeba-valid-*.npz")
    path.unlink()
    path.mkdir()
    with pytest.warns(DataWarning, match="could not write the image cache"):
        again = _load("celeba", "valid", root=root)
    assert again.names == VALID and torch.equal(again.images, s.images)
    assert not [p for p in os.listdir(tmp_cache) if p.endswith(".tmp")]
