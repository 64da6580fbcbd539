"""Shared fixtures: the development CelebA folder, the `slow` marker, small seeds."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
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
    """The development CelebA copy: $BENCH_TEST_CELEBA, else the CLI's default folder
    ($BENCH_CELEBA, else data/celeba inside the repository)."""
    env = os.environ.get("BENCH_TEST_CELEBA") or os.environ.get("BENCH_CELEBA")
    root = Path(env) if env else REPO / "data" / "celeba"
    return root if (root / "img_align_celeba").is_dir() else None


@pytest.fixture(scope="session")
def celeba_root() -> Path:
    root = celeba_root_or_none()
    if root is None:
        pytest.skip(
            "CelebA folder absent (set BENCH_TEST_CELEBA or BENCH_CELEBA, or use data/celeba)"
        )
    return root


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny solves: they gain nothing from threads, and
    OpenMP threads spinning against other processes on a small shared CPU make them many times
    slower; results are compared within one thread setting. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def check_flow_inverse_and_logdets(flow, x, z, ld) -> None:
    """For a float64 `flow` with `z, ld = flow(x)`: its inverse gives back x with the opposite
    log-det, and the log-dets of both directions equal log|det| of their autograd Jacobians at
    the first image."""
    xr, ldg = flow.inverse(z)
    torch.testing.assert_close(xr, x, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(ldg, -ld, rtol=1e-8, atol=1e-8)
    jac = torch.autograd.functional.jacobian(lambda v: flow(v)[0], x[:1]).reshape(flow.dim, -1)
    torch.testing.assert_close(ld[0], torch.linalg.slogdet(jac)[1], rtol=1e-7, atol=1e-7)
    # the generative direction's log-det against its own Jacobian
    jac_g = torch.autograd.functional.jacobian(lambda v: flow.inverse(v)[0], z[:1])
    jac_g = jac_g.reshape(flow.dim, flow.dim)
    torch.testing.assert_close(ldg[0], torch.linalg.slogdet(jac_g)[1], rtol=1e-7, atol=1e-7)


def tiny_flow(seed: int = 0):
    """A width-8 coupling flow with ActNorm initialised on random images, in eval mode."""
    from bench.flows import build_flow

    torch.manual_seed(seed)
    flow = build_flow("coupling", hidden=8)
    g = torch.Generator().manual_seed(seed)
    flow.initialize(torch.rand(16, 3, 32, 32, generator=g) * 2 - 1)
    return flow.eval()


@pytest.fixture
def width8_checkpoint(tmp_path):
    """A width-8 coupling flow's checkpoint (`tiny_flow`; the smoke preset's width is 16)."""
    flow = tiny_flow()
    path = tmp_path / "flow8.pt"
    torch.save({"arch_config": flow.arch_config, "model": flow.state_dict()}, path)
    return path


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


_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, str(os.getpid()).encode())
print("ready", flush=True)
time.sleep(60)
"""


@contextlib.contextmanager
def lock_holder(lock_file):
    """A live process holding the lock file `lock_file` (as `bench.locks` takes it) for the
    duration of the block; yields its pid."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(lock_file)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def invoke(args):
    """Run `bench ARGS` in this process (exceptions propagate: a traceback fails the test)."""
    from click.testing import CliRunner

    from bench.cli import main

    return CliRunner().invoke(main, args, catch_exceptions=False)


INFO_LINES = ("threads: ",)  # what a command may say on stderr before it starts working


def one_line_error(result, *matches):
    """The command exited 2 with exactly one line on stderr, `error: ...`, containing each of
    `matches` (besides the informational lines a command prints before working, INFO_LINES,
    e.g. the thread count it chose on a busy machine)."""
    assert result.exit_code == 2, result.output
    lines = [x for x in result.stderr.strip().splitlines() if not x.startswith(INFO_LINES)]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for m in matches:
        assert m in lines[0], lines[0]


def spy_decode(monkeypatch) -> list[int]:
    """Counts the files decoded (i.e. cache misses) by `bench.data.load_images`: one entry
    per decoding call, the number of files it decoded."""
    from bench.datasets import celeba

    calls: list[int] = []
    real = celeba._decode_all

    def spy(paths, desc, progress):
        calls.append(len(paths))
        return real(paths, desc, progress)

    monkeypatch.setattr(celeba, "_decode_all", spy)
    return calls
