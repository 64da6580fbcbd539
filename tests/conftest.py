"""Shared fixtures: the development CelebA folder, the `slow` marker, small seeds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("BENCH_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow or BENCH_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def celeba_root_or_none() -> Path | None:
    """The development CelebA copy: $BENCH_TEST_CELEBA, else ../shared/data/celeba."""
    env = os.environ.get("BENCH_TEST_CELEBA")
    root = Path(env) if env else REPO.parent / "shared" / "data" / "celeba"
    return root if (root / "img_align_celeba").is_dir() else None


@pytest.fixture(scope="session")
def celeba_root() -> Path:
    root = celeba_root_or_none()
    if root is None:
        pytest.skip("development CelebA folder absent (set BENCH_TEST_CELEBA)")
    return root


@pytest.fixture(autouse=True)
def _torch_seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A private cache directory so tests never touch the user's cache."""
    d = tmp_path / "cache"
    monkeypatch.setenv("BENCH_CACHE", str(d))
    return d
