"""bench.data: CelebA partitions and preprocessing, the cache, bad inputs, the builtin set and
the model-space conversions (PROTOCOL §1)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import spy_decode
from PIL import Image

import bench.data as data
from bench.config import CELEBA_RANGES, EVAL_IMAGES
from bench.data import (
    DATASETS,
    DataWarning,
    ImageSet,
    cache_dir,
    dequantize,
    image_seed,
    load_images,
    resolve_celeba_root,
    seeded_uniform,
    to_5bit,
    to_model,
    to_pixels,
)
from bench.datasets import builtin
from bench.errors import DataError

TRAIN_FILES = ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"]
VALID_FILES = ["162771.jpg"]
TEST_FILES = ["182638.jpg", "182639.jpg"]


def _load(*args, **kw) -> ImageSet:
    return load_images(*args, progress=False, **kw)


@pytest.fixture
def mini_root(tmp_path, celeba_root) -> Path:
    """A few real CelebA files in a temporary folder, without list_eval_partition.txt."""
    root = tmp_path / "mini"
    (root / "img_align_celeba").mkdir(parents=True)
    for name in TRAIN_FILES + VALID_FILES + TEST_FILES:
        shutil.copy(celeba_root / "img_align_celeba" / name, root / "img_align_celeba" / name)
    return root


# ---- CelebA on the development copy ------------------------------------------------------------
# The evaluation set: the first 192 test-partition files present in the development copy (with
# the full dataset, 182638–182829). Its identity is what the committed runs recorded
# (results/runs/*/run.json, test_images.fingerprint): it must not change when files are added.
EVAL_FIRST, EVAL_LAST = "182638.jpg", "183152.jpg"
EVAL_FINGERPRINT = "7a80f62482228929"


def _present_test_files(root: Path) -> list[str]:
    """Test-partition files present in `root`, read without bench.data: the folder's names that
    list_eval_partition.txt puts in partition 2 (the whole official range when it is absent)."""
    part_file = root / "list_eval_partition.txt"
    if part_file.is_file():
        fields = (line.split() for line in part_file.read_text().splitlines())
        test = {f[0] for f in fields if len(f) == 2 and f[1] == "2"}
    else:
        lo, hi = CELEBA_RANGES["test"]
        test = {f"{i:06d}.jpg" for i in range(lo, hi + 1)}
    return sorted(test.intersection(os.listdir(root / "img_align_celeba")))


def test_test_partition_first_192(celeba_root, tmp_cache):
    present = _present_test_files(celeba_root)  # 384 since the replication set was added
    assert len(present) >= EVAL_IMAGES
    s = _load("celeba", "test", root=celeba_root, limit=EVAL_IMAGES)
    assert len(s) == EVAL_IMAGES == len(s.names)
    assert s.names == present[:EVAL_IMAGES]
    assert s.names[:3] == ["182638.jpg", "182639.jpg", "182640.jpg"]
    assert (s.names[0], s.names[-1]) == (EVAL_FIRST, EVAL_LAST)
    assert s.images.dtype == torch.uint8 and s.images.shape == (EVAL_IMAGES, 3, 32, 32)
    assert (s.dataset, s.partition, s.root, s.skipped) == ("celeba", "test", str(celeba_root), [])
    # the label counts every test file present, and says which of them were used
    assert f"partial copy: {len(present)} of 19962 test files present" in s.label
    assert "first 192 present files used; not the first 192 official test files; " in s.label
    assert s.label.endswith(f"{EVAL_FIRST} … {EVAL_LAST}")
    assert s.fingerprint == EVAL_FINGERPRINT


def test_test_partition_all_present_files(celeba_root, tmp_cache):
    """Every test file present: the evaluation set, then the replication set (the next 192
    test files present, disjoint from it), as the data's README describes."""
    present = _present_test_files(celeba_root)
    s = _load("celeba", "test", root=celeba_root)
    assert s.names == present and len(s) == len(present) and s.skipped == []
    assert f"partial copy: {len(present)} of 19962 test files present): " in s.label
    assert "first" not in s.label  # no limit: nothing left out
    eval_set = _load("celeba", "test", root=celeba_root, limit=EVAL_IMAGES)
    assert torch.equal(s.images[:EVAL_IMAGES], eval_set.images)
    replication = s.names[EVAL_IMAGES : 2 * EVAL_IMAGES]
    assert len(replication) == EVAL_IMAGES and replication[0] > EVAL_LAST
    assert not set(replication) & set(eval_set.names)


def test_train_count_and_limit(celeba_root, tmp_cache):
    s = _load("celeba", "train", root=celeba_root, limit=5)
    assert s.names == ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg", "000005.jpg"]
    assert "15000 of 162770 train files present" in s.label
    assert _load("celeba", "train", root=celeba_root, limit=3).names == s.names[:3]


def test_valid_partition_and_warm_cache(celeba_root, tmp_cache):
    t0 = time.perf_counter()
    cold = _load("celeba", "valid", root=celeba_root)
    t_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm = _load("celeba", "valid", root=celeba_root)
    t_warm = time.perf_counter() - t0
    assert len(cold) == 1000 and cold.names[0] == "162771.jpg" and cold.names[-1] == "166698.jpg"
    lo, hi = CELEBA_RANGES["valid"]
    assert all(lo <= int(n[:6]) <= hi for n in cold.names)
    assert torch.equal(cold.images, warm.images) and cold.names == warm.names
    assert cold.fingerprint == warm.fingerprint
    assert t_warm < t_cold
    assert list(tmp_cache.glob("celeba-valid-*.npz")) and not list(tmp_cache.glob("*.tmp"))


def test_preprocessing_matches_pil(celeba_root, tmp_cache):
    name = "182638.jpg"
    with Image.open(celeba_root / "img_align_celeba" / name) as img:
        assert img.size == (178, 218)
        # shorter side 178 -> 32, longer 218 -> int(32 * 218 / 178) = 39; center crop rows 4..35
        ref = img.convert("RGB").resize((32, 39), Image.BILINEAR).crop((0, 4, 32, 36))
    ref = torch.from_numpy(np.asarray(ref).transpose(2, 0, 1).copy())
    s = _load("celeba", "test", root=celeba_root, limit=1)
    assert s.names == [name]
    assert torch.equal(s.images[0], ref)


# ---- the cache ----------------------------------------------------------------------------------
def test_cache_hit_and_rebuild_on_change(mini_root, tmp_cache, monkeypatch):
    calls = spy_decode(monkeypatch)
    first = _load("celeba", "train", root=mini_root)
    assert calls == [4] and first.names == TRAIN_FILES
    second = _load("celeba", "train", root=mini_root)
    assert calls == [4], "second load must come from the cache"
    assert torch.equal(first.images, second.images) and first.fingerprint == second.fingerprint

    # touching a file (new mtime) triggers a rebuild, but the same images keep their identity
    # (a copy of the data on another machine is recognised)
    path = mini_root / "img_align_celeba" / "000002.jpg"
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    touched = _load("celeba", "train", root=mini_root)
    assert calls == [4, 4] and touched.fingerprint == first.fingerprint
    assert torch.equal(touched.images, first.images)

    # replacing a file's content changes the images
    shutil.copy(mini_root / "img_align_celeba" / "182638.jpg", path)
    replaced = _load("celeba", "train", root=mini_root)
    assert calls == [4, 4, 4] and replaced.fingerprint != touched.fingerprint
    assert not torch.equal(replaced.images[1], first.images[1])
    assert torch.equal(replaced.images[[0, 2, 3]], first.images[[0, 2, 3]])

    # a new file in the partition is picked up
    shutil.copy(mini_root / "img_align_celeba" / "000001.jpg", path.with_name("000010.jpg"))
    assert len(_load("celeba", "train", root=mini_root)) == 5 and calls[-1] == 5


def test_unreadable_cache_is_rebuilt(mini_root, tmp_cache, monkeypatch):
    good = _load("celeba", "test", root=mini_root)
    (cache_file,) = tmp_cache.glob("celeba-test-*.npz")
    cache_file.write_bytes(b"not a zip file")
    calls = spy_decode(monkeypatch)
    again = _load("celeba", "test", root=mini_root)
    assert calls == [2] and torch.equal(good.images, again.images)


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("BENCH_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "bench"


# ---- partial copies and bad inputs --------------------------------------------------------------
def test_partial_copy_without_partition_file_uses_official_ranges(mini_root, tmp_cache):
    assert not (mini_root / "list_eval_partition.txt").exists()
    assert _load("celeba", "train", root=mini_root).names == TRAIN_FILES
    assert _load("celeba", "valid", root=mini_root).names == VALID_FILES
    test = _load("celeba", "test", root=mini_root)
    assert test.names == TEST_FILES
    assert "2 of 19962 test files present" in test.label


def test_partition_file_is_used_when_present(mini_root, tmp_cache):
    # a (fake) partition list that moves 000004.jpg to test
    lines = [f"{n} 0" for n in TRAIN_FILES[:3]] + ["000004.jpg 2", "162771.jpg 1"]
    lines += [f"{n} 2" for n in TEST_FILES]
    (mini_root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    assert _load("celeba", "train", root=mini_root).names == TRAIN_FILES[:3]
    assert _load("celeba", "test", root=mini_root).names == ["000004.jpg"] + TEST_FILES
    (mini_root / "list_eval_partition.txt").write_text("000001.jpg train\n")
    with pytest.raises(DataError, match="malformed"):
        _load("celeba", "train", root=mini_root)


def test_root_resolution(tmp_path, monkeypatch, mini_root):
    monkeypatch.delenv("BENCH_CELEBA", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="not found: pass --data-root or set BENCH_CELEBA"):
        resolve_celeba_root(None)
    monkeypatch.setenv("BENCH_CELEBA", str(mini_root))
    assert resolve_celeba_root(None) == mini_root
    assert resolve_celeba_root(mini_root) == mini_root
    (tmp_path / "data").mkdir()
    shutil.copytree(mini_root, tmp_path / "data" / "celeba")
    monkeypatch.delenv("BENCH_CELEBA")
    assert resolve_celeba_root(None) == tmp_path / "data" / "celeba"


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_bad_layouts(tmp_path, tmp_cache, celeba_root):
    with pytest.raises(DataError, match="not found") as e:
        _load("celeba", "test", root=tmp_path / "missing")
    _one_line(e)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        _load("celeba", "test", root=tmp_path / "file")

    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(DataError, match="no img_align_celeba/ subfolder") as e:
        _load("celeba", "test", root=plain)
    _one_line(e)

    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(celeba_root / "img_align_celeba" / "182638.jpg", flat / "182638.jpg")
    with pytest.raises(DataError, match="move them into"):
        _load("celeba", "test", root=flat)

    inner = tmp_path / "inner" / "img_align_celeba"
    inner.mkdir(parents=True)
    shutil.copy(celeba_root / "img_align_celeba" / "182638.jpg", inner / "182638.jpg")
    with pytest.raises(DataError, match="itself: pass its parent"):
        _load("celeba", "test", root=inner)

    torchvision_style = tmp_path / "tv"
    (torchvision_style / "celeba" / "img_align_celeba").mkdir(parents=True)
    with pytest.raises(DataError, match="--data-root .*tv/celeba"):
        _load("celeba", "test", root=torchvision_style)

    empty = tmp_path / "empty"
    (empty / "img_align_celeba").mkdir(parents=True)
    with pytest.raises(DataError, match="no JPEG files in") as e:
        _load("celeba", "test", root=empty)
    _one_line(e)

    nested = tmp_path / "nested"
    (nested / "img_align_celeba" / "img_align_celeba").mkdir(parents=True)
    with pytest.raises(DataError, match="nested img_align_celeba"):
        _load("celeba", "test", root=nested)

    odd = tmp_path / "odd"
    (odd / "img_align_celeba").mkdir(parents=True)
    shutil.copy(celeba_root / "img_align_celeba" / "182638.jpg", odd / "img_align_celeba" / "a.jpg")
    with pytest.raises(DataError, match="not named like CelebA"):
        _load("celeba", "test", root=odd)


def test_empty_partition(mini_root, tmp_cache):
    for name in TEST_FILES:
        (mini_root / "img_align_celeba" / name).unlink()
    with pytest.raises(DataError, match="no CelebA test files .*182638.jpg–202599.jpg") as e:
        _load("celeba", "test", root=mini_root)
    _one_line(e)


def test_corrupt_file_is_skipped(mini_root, tmp_cache):
    img_dir = mini_root / "img_align_celeba"
    (img_dir / "000002.jpg").write_bytes(b"this is not a jpeg")
    raw = (img_dir / "000003.jpg").read_bytes()
    (img_dir / "000003.jpg").write_bytes(raw[: len(raw) // 2])  # truncated
    with pytest.warns(DataWarning, match="skipped 2 unreadable"):
        s = _load("celeba", "train", root=mini_root)
    assert s.names == ["000001.jpg", "000004.jpg"] and s.skipped == ["000002.jpg", "000003.jpg"]
    assert s.images.shape == (2, 3, 32, 32) and "2 unreadable skipped" in s.label
    with pytest.warns(DataWarning, match="skipped 2 unreadable"):  # from the cache, warns again
        again = _load("celeba", "train", root=mini_root)
    assert again.skipped == s.skipped and torch.equal(again.images, s.images)


def test_all_corrupt_raises(mini_root, tmp_cache):
    for name in TEST_FILES:
        (mini_root / "img_align_celeba" / name).write_bytes(b"\xff\xd8 broken")
    with pytest.raises(DataError, match="all 2 CelebA test files .* unreadable") as e:
        _load("celeba", "test", root=mini_root)
    _one_line(e)


def test_unknown_choices():
    with pytest.raises(DataError, match="celeba, builtin"):
        _load("mnist", "test")
    with pytest.raises(DataError, match="train, valid, test"):
        _load("builtin", "validation")
    with pytest.raises(DataError, match="positive integer"):
        _load("builtin", "test", limit=0)
    assert DATASETS == ("celeba", "builtin")


# ---- builtin -------------------------------------------------------------------------------------
def test_builtin_sets():
    sets = {p: _load("builtin", p) for p in ("train", "valid", "test")}
    for p, n in data.BUILTIN_COUNTS.items():
        s = sets[p]
        assert len(s) == n and s.images.shape == (n, 3, 32, 32) and s.images.dtype == torch.uint8
        assert (s.dataset, s.partition, s.root, s.skipped) == ("builtin", p, None, [])
        assert "NOT CelebA" in s.label
        assert len(set(s.names)) == n
        assert {name.split("@")[0] for name in s.names} == set(data.BUILTIN_PHOTOS[p])
        assert s.images.float().std() > 10  # real photographs, not blank crops
    photos = {p: {n.split("@")[0] for n in s.names} for p, s in sets.items()}
    assert not photos["train"] & photos["test"] and not photos["train"] & photos["valid"]
    assert not photos["valid"] & photos["test"]
    train_bytes = {img.numpy().tobytes() for img in sets["train"].images}
    assert not any(img.numpy().tobytes() in train_bytes for img in sets["test"].images)
    # flips only for train
    assert any(n.endswith("f") for n in sets["train"].names)
    assert not any(n.endswith("f") for n in sets["test"].names + sets["valid"].names)


def test_builtin_deterministic_and_limit():
    a = _load("builtin", "test")
    builtin._builtin_partition.cache_clear()  # regenerate from scratch
    b = _load("builtin", "test")
    assert a.names == b.names and torch.equal(a.images, b.images) and a.fingerprint == b.fingerprint
    c = _load("builtin", "test", limit=10)
    assert c.names == a.names[:10] and torch.equal(c.images, a.images[:10])
    assert c.fingerprint != a.fingerprint


# ---- model space ---------------------------------------------------------------------------------
def test_to_5bit():
    x = torch.arange(256, dtype=torch.uint8)
    x5 = to_5bit(x)
    assert x5.dtype == torch.uint8 and torch.equal(x5, x // 8) and int(x5.max()) == 31
    assert torch.equal(to_5bit(x.float()), x5)
    assert torch.equal(to_5bit(x.to(torch.int64)), x5)
    assert torch.equal(to_5bit(torch.tensor([7.99, 8.0, 255.9])), torch.tensor([0, 1, 31]).byte())


@pytest.mark.parametrize("u_value", [0.0, 0.25, 0.5, 0.999, float(np.nextafter(np.float32(1), 0))])
def test_round_trip_any_u(u_value):
    x255 = torch.arange(256, dtype=torch.uint8).repeat(3, 1)
    x5 = to_5bit(x255)
    x = dequantize(x5, torch.full(x5.shape, u_value))
    assert x.dtype == torch.float32 and float(x.min()) >= -1 and float(x.max()) < 1
    assert torch.equal(to_pixels(x), x5 * 8)


def test_round_trip_random_u_and_model_space():
    g = torch.Generator().manual_seed(1)
    x255 = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g)
    x = to_model(x255, generator=torch.Generator().manual_seed(2))
    assert x.shape == x255.shape and float(x.min()) >= -1 and float(x.max()) < 1
    assert torch.equal(to_pixels(x), to_5bit(x255) * 8)
    again = to_model(x255, generator=torch.Generator().manual_seed(2))
    assert torch.equal(x, again)
    u = torch.rand(x255.shape, generator=g)
    assert torch.equal(to_model(x255, u=u), dequantize(to_5bit(x255), u=u))
    assert torch.allclose(dequantize(to_5bit(x255), u=u), (to_5bit(x255).float() + u) / 16 - 1)
    px = to_pixels(torch.tensor([-5.0, -1.0, 0.0, 0.999, 1.0, 7.0]))
    assert px.dtype == torch.uint8 and px.tolist() == [0, 0, 128, 248, 248, 248]


def test_seeded_uniform_independent_of_batch():
    seeds = [image_seed("182638.jpg"), image_seed("182639.jpg"), image_seed("182640.jpg")]
    batch = seeded_uniform(seeds, (3, 32, 32))
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == torch.float32
    assert float(batch.min()) >= 0 and float(batch.max()) < 1
    assert torch.equal(seeded_uniform(seeds[1:2], (3, 32, 32))[0], batch[1])
    assert torch.equal(seeded_uniform(seeds[::-1], [3, 32, 32])[0], batch[2])
    assert not torch.equal(batch[0], batch[1])


def test_image_seed():
    s = image_seed("182638.jpg")
    assert s == image_seed("182638.jpg") and 0 <= s < 2**63
    assert s != image_seed("182639.jpg") and s != image_seed("182638.jpg", base=1)
