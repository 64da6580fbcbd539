"""Metrics (PROTOCOL §6) against hand-computed cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from bench.metrics import PEAK_DB, mean_ci, mse5, paper_psnr, psnr, reference, ssim


def _images(n=3, hi=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, hi, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def test_psnr_constant_offset_exact():
    x = _images()
    for offset in (1, 8, 20):
        got = psnr(x + offset, x)
        assert got.shape == (3,)
        assert np.allclose(got, 10 * math.log10(255**2 / offset**2), rtol=0, atol=1e-12)
    # numpy input, per image values differ when offsets differ
    xh = x.clone()
    xh[1] += 4
    xh[2] += 16
    got = psnr(xh.numpy(), x.numpy())
    assert got[0] == math.inf
    assert np.allclose(got[1:], [10 * math.log10(255**2 / 16), 10 * math.log10(255**2 / 256)])


def test_identical_images_inf_without_warning():
    x = _images(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.all(psnr(x, x) == np.inf)
        assert np.allclose(ssim(x, x), 1.0)
    assert mean_ci(psnr(x, x))[0] == math.inf and math.isnan(mean_ci(psnr(x, x))[1])


def test_ssim_properties():
    x = _images(2, hi=256)
    g = torch.Generator().manual_seed(1)
    noisy = (x.float() + 20 * torch.randn(x.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    noisier = (x.float() + 60 * torch.randn(x.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    s1, s2 = ssim(noisy, x), ssim(noisier, x)
    assert s1.shape == (2,) and np.all(s1 < 1) and np.all(s2 < s1)
    # a constant offset on a constant image: luminance term only, (2ab + C1)/(a² + b² + C1)
    a = torch.full((1, 3, 32, 32), 100, dtype=torch.uint8)
    b = torch.full((1, 3, 32, 32), 120, dtype=torch.uint8)
    c1 = (0.01 * 255) ** 2
    assert ssim(b, a)[0] == pytest.approx((2 * 100 * 120 + c1) / (100**2 + 120**2 + c1))


def test_mse5():
    x = reference(_images())  # multiples of 8
    assert np.all(mse5(x, x) == 0)
    assert np.all(mse5(x + 7, x) == 0)  # same 5-bit level
    assert np.allclose(mse5(x + 8, x), 1.0)
    assert np.allclose(mse5(x + 16, x), 4.0)


def test_reference():
    x = torch.tensor([[[[0, 7, 8, 255]]]], dtype=torch.uint8)
    assert reference(x).tolist() == [[[[0, 0, 8, 248]]]]
    assert reference(x.numpy()).tolist() == [[[[0, 0, 8, 248]]]]


def test_paper_psnr_formula_and_identity():
    values = [1.0, 2.0, 3.0]  # per-image MSEs of the 5-bit values
    assert paper_psnr(values) == pytest.approx(20 * math.log10(255 / (64 * 2.0) ** 0.25))
    assert paper_psnr(values, units="5bit") == pytest.approx(20 * math.log10(255 / 2.0**0.25))
    assert paper_psnr(values, units="5bit") - paper_psnr(values) == pytest.approx(
        5 * math.log10(64)
    )
    # pooled over the batch, not averaged per image
    assert paper_psnr([0.5, 1.5]) == pytest.approx(paper_psnr([1.0]))
    assert paper_psnr([0.0]) == math.inf
    with pytest.raises(ValueError, match="units"):
        paper_psnr(values, units="bits")
    # PROTOCOL §6: == (PSNR_std + 48.13) / 2, PSNR_std the standard PSNR of the pooled 8-bit MSE
    rng = np.random.default_rng(0)
    x = reference(_images())
    noisy = np.clip(x + rng.integers(-24, 25, x.shape), 0, 255)
    m5 = mse5(noisy, x)
    std = 10 * math.log10(255**2 / float(np.mean(m5) * 64))
    assert paper_psnr(m5) == pytest.approx((std + PEAK_DB) / 2, abs=1e-12)
    assert paper_psnr(m5) == pytest.approx((std + 48.13) / 2, abs=1e-3)
    # end to end: one 5-bit level (8 at 8 bits) everywhere -> PSNR_std 30.07 -> 39.10
    assert paper_psnr(mse5(x + 8, x)) == pytest.approx((10 * math.log10(255**2 / 64) + PEAK_DB) / 2)


def test_mean_ci():
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(4.302652729911275 * 1.0 / math.sqrt(3))
    mean, half = mean_ci([5.0])
    assert mean == 5.0 and math.isnan(half)
    assert all(math.isnan(v) for v in mean_ci([]))
    assert mean_ci([2.0, 2.0, 2.0]) == (2.0, 0.0)
    m, h = mean_ci([1.0, 3.0], confidence=0.9)
    assert m == 2.0 and h == pytest.approx(6.313751514675043 * 1.0)
