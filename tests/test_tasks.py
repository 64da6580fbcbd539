"""Tasks (PROTOCOL §4): operators, adjoints, mask, measurement noise and per-image seeding."""

from __future__ import annotations

import pytest
import torch

from bench import config, data
from bench.errors import BenchError
from bench.tasks import (
    DEQUANT_STREAM,
    LATENT_STREAM,
    NOISE_STREAM,
    TASKS,
    get_task,
    image_seeds,
    inpainting_mask,
    stream_seed,
)

NAMES = ["000001.jpg", "000002.jpg", "000003.jpg"]


def _images(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def test_registry_order_and_unknown_task():
    paper = ["denoising", "deblurring", "inpainting", "colorization"]
    more = ["denoising-0.05", "denoising-0.2", "inpainting-random", "sr-2", "sr-4"]
    assert list(TASKS)[:11] == paper + more + ["cs-0.1", "cs-0.25"]  # PROTOCOL §9's after Table 1's
    assert get_task("inpainting") is TASKS["inpainting"]
    with pytest.raises(BenchError, match="denoising, deblurring, inpainting, colorization, "):
        get_task("superres")


@pytest.mark.parametrize("name", list(TASKS))
def test_adjointness_float64(name):
    task = TASKS[name].for_images(list(range(4)))
    assert task.linear
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 32, 32, generator=g, dtype=torch.float64)
    y = torch.randn(task.A(x).shape, generator=g, dtype=torch.float64)
    lhs = (task.A(x) * y).sum()
    rhs = (x * task.adjoint(y)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-12, atol=1e-12)


def test_inpainting_mask_region():
    mask = inpainting_mask(32)
    assert mask.shape == (32, 32)
    hole = mask == 0
    assert int(hole.sum()) == 13 * 13
    rows, cols = torch.nonzero(hole, as_tuple=True)
    assert (int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())) == (9, 21, 9, 21)
    assert bool((mask[9:22, 9:22] == 0).all()) and int(mask.sum()) == 32 * 32 - 169
    x = torch.ones(2, 3, 32, 32)
    y = TASKS["inpainting"].A(x)
    assert bool((y[:, :, 9:22, 9:22] == 0).all())  # all channels
    assert float(y.sum()) == 2 * 3 * (1024 - 169)


def test_denoising_noise_std_before_rounding():
    task = TASKS["denoising"]
    names = [f"{i:06d}.jpg" for i in range(32)]
    x = torch.full((32, 3, 32, 32), 128, dtype=torch.uint8)  # clipping needs |n| > 5
    y255 = task.noisy_pixels(x, names)
    d = y255.double() - 128  # floor(25.5 n): std sqrt(25.5² + 1/12), mean -1/2
    assert abs(float(d.std()) - 25.5) < 0.3
    assert abs(float(d.mean()) + 0.5) < 0.3
    assert task.noise_std == pytest.approx(0.2)
    # in model space: std 0.2 (plus the 5-bit quantisation, 8/sqrt(12) on 0..255)
    r = task.measure(x, names) - task.clean(x, names)
    assert abs(float(r.std()) - 0.2) < 0.01


def test_denoising_floor_and_clip():
    task = TASKS["denoising"]
    names = [f"{i}.png" for i in range(8)]
    black = torch.zeros(8, 3, 32, 32, dtype=torch.uint8)
    white = torch.full((8, 3, 32, 32), 255, dtype=torch.uint8)
    yb, yw = task.noisy_pixels(black, names), task.noisy_pixels(white, names)
    assert yb.dtype == torch.uint8 and int(yb.min()) == 0 and int(yw.max()) == 255
    # same noise n for the same names: y = clip(floor(x + 25.5 n)) at both ends
    n = torch.empty(8, 3, 32, 32)
    for i, s in enumerate(image_seeds(names)):
        g = torch.Generator().manual_seed(stream_seed(s, NOISE_STREAM))
        n[i] = torch.randn(3, 32, 32, generator=g)
    expect = torch.floor(25.5 * n.double()).clamp(0, 255).to(torch.uint8)
    assert torch.equal(yb, expect)


@pytest.mark.parametrize("name", list(TASKS))
def test_measurement_independent_of_batch_order(name):
    task = TASKS[name]
    x = _images(2)
    ab = task.measure(x, NAMES[:2], seed=3)
    ba = task.measure(x.flip(0), NAMES[:2][::-1], seed=3)
    assert torch.equal(ab, ba.flip(0))
    alone = task.measure(x[1:], NAMES[1:2], seed=3)
    assert torch.equal(ab[1:], alone)
    assert torch.equal(task.clean(x, NAMES[:2], 3), task.clean(x.flip(0), NAMES[1::-1], 3).flip(0))
    # reruns identical; another base seed differs (denoising: noise; all: dequantization)
    assert torch.equal(ab, task.measure(x, NAMES[:2], seed=3))
    assert not torch.equal(ab, task.measure(x, NAMES[:2], seed=4))


def test_clean_roundtrip_and_streams_differ():
    task = TASKS["deblurring"]
    x = _images(3)
    c = task.clean(x, NAMES)
    assert c.dtype == torch.float32 and c.shape == (3, 3, 32, 32)
    assert float(c.min()) >= -1 and float(c.max()) < 1
    assert torch.equal(data.to_pixels(c), data.to_5bit(x) * 8)
    s = image_seeds(NAMES)[0]
    seeds = {stream_seed(s, k) for k in (NOISE_STREAM, DEQUANT_STREAM, LATENT_STREAM)}
    assert len(seeds) == 3 and stream_seed(s, NOISE_STREAM) == data.image_seed(NAMES[0], 0)


def test_deblurring_hand_computed():
    task = TASKS["deblurring"]
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64) * 2 - 1
    y = task.A(x)
    # corner: the 3x3 window holds 4 pixels and 5 zeros of padding, divided by 9
    assert torch.allclose(y[0, :, 0, 0], x[0, :, :2, :2].sum((1, 2)) / 9)
    assert torch.allclose(y[0, :, 31, 0], x[0, :, 30:, :2].sum((1, 2)) / 9)
    assert torch.allclose(y[0, :, 0, 5], x[0, :, :2, 4:7].sum((1, 2)) / 9)
    assert torch.allclose(y[0, :, 5, 7], x[0, :, 4:7, 6:9].mean((1, 2)))
    # measurement = A(clean), noiseless
    xi = _images(2)
    assert torch.equal(task.measure(xi, NAMES[:2]), task.A(task.clean(xi, NAMES[:2])))
    assert task.noise_std == 0


def test_colorization_shape_and_display():
    task = TASKS["colorization"]
    x = _images(2)
    y = task.measure(x, NAMES[:2])
    assert y.shape == (2, 1, 32, 32)
    assert torch.allclose(y, task.clean(x, NAMES[:2]).mean(1, keepdim=True))
    shown = task.display(y)
    assert shown.shape == (2, 3, 32, 32) and shown.dtype == torch.uint8
    assert torch.equal(shown[:, 0], shown[:, 1]) and torch.equal(shown[:, 1], shown[:, 2])


@pytest.mark.parametrize("name", list(TASKS))
def test_display_uint8(name):
    task = TASKS[name]
    shown = task.display(task.measure(_images(2), NAMES[:2]))
    assert shown.shape == (2, 3, 32, 32) and shown.dtype == torch.uint8


def test_bad_inputs():
    task = TASKS["denoising"]
    with pytest.raises(ValueError):
        task.measure(_images(2), NAMES[:1])
    with pytest.raises(TypeError):
        task.measure(_images(2).float(), NAMES[:2])
    assert config.IMAGE_SIZE == 32
