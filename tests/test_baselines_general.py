"""The weight-free baselines of the general table (PROTOCOL §9) give the right values: the
measurement floor equals its closed forms, TV and PnP-BM3D beat the floor where they should,
biharmonic inpainting reads the task's own mask, BM3D denoises at the task's level, MAP takes
its σ from the task. (That each runs through the runner on every task it supports is the
conformance suite's job.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench import config, data, metrics
from bench.methods import METHODS
from bench.tasks import Task, get_task, image_seeds
from bench_baselines.biharmonic import missing_pixels
from bench_baselines.bm3d import sigma_psd
from bench_baselines.measurement import conjugate_gradients, floor_image

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]


def smooth_images(n: int = 4, seed: int = 0) -> torch.Tensor:
    """uint8 (n, 3, 32, 32): a smooth colour field (4×4 random colours, bilinear) with a
    sharp-edged rectangle of another colour: piecewise smooth, like the images TV and BM3D
    suit."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    x = F.interpolate(low, size=32, mode="bilinear", align_corners=False)
    for i in range(n):
        r0, c0 = torch.randint(4, 14, (2,), generator=g).tolist()
        x[i, :, r0 : r0 + 14, c0 : c0 + 12] = torch.rand(3, 1, 1, generator=g)
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


def measured(task_name: str, n: int = 4):
    x255 = smooth_images(n)
    task = get_task(task_name)
    y = task.measure(x255, NAMES[:n])
    return task, y, image_seeds(NAMES[:n]), x255


def psnr(x: torch.Tensor, x255: torch.Tensor) -> float:
    return float(np.mean(metrics.psnr(data.to_pixels(x), data.to_5bit(x255) * 8)))


def restore(method: str, task, y, seeds, weight=None, iters: int = 300):
    return METHODS[method].restore(None, task, y, weight, iters, seeds, "cpu")


# ---- measurement -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "denoising-0.05",
        "denoising",
        "deblurring",
        "inpainting",
        "inpainting-random",
        "colorization",
        "sr-2",
        "sr-4",
        "cs-0.1",
    ],
)
def test_measurement_is_the_closed_form_floor(name):
    task, y, seeds, _ = measured(name, 3)
    x = restore("measurement", task, y, seeds).x
    if name in ("denoising-0.05", "denoising", "deblurring"):
        want = y
    elif name.startswith("inpainting"):  # the masked image: observed pixels, 0 elsewhere
        want = task.for_images(seeds).A(y)
        assert torch.equal(want, y)
    elif name == "colorization":
        want = y.expand(-1, 3, -1, -1)
    elif name.startswith("sr-"):
        want = task.upsample(y)
    else:
        want = task.pseudo_inverse(y.double()).float()
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    torch.testing.assert_close(x, want.clamp(-1, 1), rtol=0, atol=1e-5)


def test_measurement_cg_reaches_the_minimum_norm_least_squares_image():
    """Without a pseudo-inverse, CG on the normal equations from 0 converges to A⁺y (checked
    on compressed sensing, whose A⁺ is known), not to another least-squares image."""
    task, y, _, _ = measured("cs-0.25", 2)
    y = y.double()

    class NoPinv:  # the same operator, no pseudo_inverse: the generic path
        kind = "compressed-sensing"
        A, adjoint = task.A, task.adjoint

    x = floor_image(NoPinv(), y)
    torch.testing.assert_close(x, task.pseudo_inverse(y), rtol=0, atol=1e-6)
    # CG is per image: the same image alone gives the same result
    one = conjugate_gradients(lambda v: task.adjoint(task.A(v)), task.adjoint(y[1:]), 50)
    torch.testing.assert_close(one[0], x[1], rtol=0, atol=1e-9)


@pytest.mark.parametrize("method", ["measurement", "tv", "pnp-bm3d"])
def test_linear_baselines_skip_nonlinear_tasks(method):
    class Square(Task):
        name, linear = "square", False

        def A(self, x):
            return x**2

    assert METHODS[method].supports(Square()) is not None
    assert METHODS[method].supports("cs-0.1") is None


# ---- TV ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "lam"), [("denoising", 0.12), ("deblurring", 2e-4)])
def test_tv_beats_the_floor(name, lam):
    task, y, seeds, x255 = measured(name)
    floor = restore("measurement", task, y, seeds).x
    res = restore("tv", task, y, seeds, weight=lam)
    assert res.x.shape == (4, 3, 32, 32) and not res.diverged.any()
    assert psnr(res.x, x255) > psnr(floor, x255) + 2.0
    # the solver minimises its objective: lower than at the floor image
    import deepinv

    at_floor = 0.5 * (task.A(floor) - y).pow(2).flatten(1).sum(1)
    at_floor = at_floor + lam * deepinv.optim.TVPrior().fn(floor)
    assert np.all(res.loss < at_floor.double().numpy())


def test_tv_iterations_are_bounded_by_iters():
    from bench_baselines import tv

    task, y, seeds, _ = measured("deblurring", 2)
    ticks = []
    METHODS["tv"].restore(None, task, y, 2e-4, 7, seeds, "cpu", progress=ticks.append)
    assert ticks == list(range(1, 8))
    assert METHODS["tv"].grid("smoke") == tv.TV_GRID


# ---- PnP-BM3D ----------------------------------------------------------------------------------
def test_pnp_bm3d_beats_the_floor_on_deblurring():
    task, y, seeds, x255 = measured("deblurring")
    floor = restore("measurement", task, y, seeds).x
    res = restore("pnp-bm3d", task, y, seeds)
    assert psnr(res.x, x255) > psnr(floor, x255) + 3.0


# ---- biharmonic --------------------------------------------------------------------------------
def test_biharmonic_reads_the_tasks_mask():
    from bench.tasks.inpainting import inpainting_mask

    task, y, seeds, _ = measured("inpainting-random")
    bound = task.for_images(seeds)
    assert torch.equal(missing_pixels(bound, y), bound.masks[:, 0] == 0)
    square, ys, _, _ = measured("inpainting", 2)
    assert torch.equal(missing_pixels(square, ys), (inpainting_mask() == 0).expand(2, -1, -1))


def test_biharmonic_beats_the_floor_on_random_inpainting_and_keeps_observed_pixels():
    task, y, seeds, x255 = measured("inpainting-random")
    floor = restore("measurement", task, y, seeds).x
    x = restore("biharmonic", task, y, seeds).x
    assert psnr(x, x255) > psnr(floor, x255) + 5.0
    observed = task.for_images(seeds).masks.expand(-1, 3, -1, -1) > 0
    torch.testing.assert_close(x[observed], y[observed].clamp(-1, 1), rtol=0, atol=1e-5)


# ---- BM3D and MAP on every denoising level -----------------------------------------------------
def test_bm3d_denoises_at_the_tasks_level(monkeypatch):
    import bm3d

    seen = []

    def fake(img, sigma_psd, profile=None):
        seen.append(sigma_psd)
        assert profile is not None and profile.num_threads == 1  # one thread, see bm3d.py
        return img

    monkeypatch.setattr(bm3d, "bm3d_rgb", fake)
    for name, level in [("denoising-0.05", 0.05), ("denoising", 0.1), ("denoising-0.2", 0.2)]:
        task, y, seeds, _ = measured(name, 1)
        assert METHODS["bm3d"].supports(task) is None
        restore("bm3d", task, y, seeds)
        assert seen[-1] == level == task.fraction == sigma_psd(task)
    assert sigma_psd(get_task("denoising")) == config.BM3D_SIGMA


def test_map_takes_sigma_from_each_denoising_level():
    from bench_baselines.map import MAP

    for name in ("denoising-0.05", "denoising", "denoising-0.2"):
        task = get_task(name)
        assert METHODS["map"].supports(task) is None
        assert MAP.sigma(task) == pytest.approx(2 * task.fraction)
