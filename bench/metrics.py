"""Image quality metrics (PROTOCOL §6): standard PSNR and SSIM per image, the released code's PSNR
convention, and confidence intervals.

All functions take 8-bit images, batched ``(B, 3, H, W)`` (torch tensors or numpy arrays; a
single ``(3, H, W)`` image is treated as a batch of one). The reference image for every metric
is the 5-bit clean target at 8 bits, ``data.to_5bit(x255) * 8`` (:func:`reference`): the data
the flow models. Metrics know nothing about methods or tasks.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bench import config

DATA_RANGE = 255.0
PEAK_DB = 20 * math.log10(DATA_RANGE)  # 48.1308...: the "48.13" of PROTOCOL §6
CONFIDENCE = 0.95
_PIXEL_STEP = 256 // config.N_BINS  # 8


def _batch(x) -> np.ndarray:
    """float64 numpy (B, C, H, W) from a torch tensor or an array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {a.shape}")
    return a


def _pair(x_hat255, x255) -> tuple[np.ndarray, np.ndarray]:
    a, b = _batch(x_hat255), _batch(x255)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    return a, b


def reference(x255):
    """The metrics' reference image: the 5-bit clean target at 8 bits, ``floor(x / 8) * 8``,
    as uint8 (same container type as given: torch in, torch out)."""
    if hasattr(x255, "detach"):
        import torch

        return (
            torch.div(x255.to(torch.int64), _PIXEL_STEP, rounding_mode="floor")
            .mul(_PIXEL_STEP)
            .clamp(0, 255)
            .to(torch.uint8)
        )
    x = np.asarray(x255)
    return (np.floor_divide(x.astype(np.int64), _PIXEL_STEP) * _PIXEL_STEP).astype(np.uint8)


def psnr(x_hat255, x255) -> np.ndarray:
    """Standard PSNR per image, ``10 log10(255² / MSE)`` on 8-bit values
    (``skimage.metrics.peak_signal_noise_ratio`` with data_range 255).

    Identical images (MSE = 0) give ``+inf``, explicitly and without a warning: no cap is
    applied, so a mean over images that contains one is ``inf`` (see :func:`mean_ci`)."""
    a, b = _pair(x_hat255, x255)
    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        if np.array_equal(a[i], b[i]):
            out[i] = np.inf
        else:
            out[i] = peak_signal_noise_ratio(b[i], a[i], data_range=DATA_RANGE)
    return out


def ssim(x_hat255, x255) -> np.ndarray:
    """SSIM per image (``skimage.metrics.structural_similarity``): Gaussian window 11,
    σ 1.5, population covariance, data range 255, mean over the color channels."""
    a, b = _pair(x_hat255, x255)
    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        out[i] = structural_similarity(
            b[i],
            a[i],
            gaussian_weights=True,
            sigma=config.SSIM_SIGMA,
            win_size=config.SSIM_WINDOW,
            use_sample_covariance=False,
            data_range=DATA_RANGE,
            channel_axis=0,
        )
    return out


def mse5(x_hat255, x255) -> np.ndarray:
    """Per-image MSE of the 5-bit values ``floor(x / 8)`` (0..31) of both images."""
    a, b = _pair(x_hat255, x255)
    d = np.floor(a / _PIXEL_STEP) - np.floor(b / _PIXEL_STEP)
    return (d**2).reshape(d.shape[0], -1).mean(axis=1)


PAPER_MSE_UNITS = ("8bit", "5bit")


def paper_psnr(mse5_values, units: str = "8bit") -> float:
    """The released code's PSNR convention (PROTOCOL §6, not a standard PSNR):
    ``20·log10(255 / MSE^¼)`` with MSE pooled over the batch (32 images in the paper) — the
    mean of the given per-image MSEs of the 5-bit values (:func:`mse5`).

    ``units='8bit'`` (default) takes the MSE of the 5-bit images at 8 bits (``x5 · 8``, the
    images every other metric reads, so MSE = 64 · MSE5): then the value equals
    ``(PSNR_std + 48.13) / 2`` with ``PSNR_std`` the standard PSNR of the pooled MSE, PROTOCOL §6's
    identity, and puts our BM3D where the published one is. ``units='5bit'`` takes the MSE of
    the 0..31 values themselves, which reads 5·log10(64) = 9.03 dB higher. A pooled MSE of 0
    gives ``+inf``."""
    if units not in PAPER_MSE_UNITS:
        raise ValueError(f"units must be one of {PAPER_MSE_UNITS}, not {units!r}")
    m = float(np.mean(np.asarray(mse5_values, dtype=np.float64)))
    if units == "8bit":
        m *= _PIXEL_STEP**2
    if m == 0.0:
        return math.inf
    return 20 * math.log10(DATA_RANGE / m**0.25)


def mean_ci(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """(mean, half width) of the two-sided Student-t confidence interval (95% by default) of
    the values (any shape, flattened), in their units.

    One value: half width ``nan``; no values: ``(nan, nan)``; any ``inf`` among the values
    (e.g. PSNR of an exact restoration): ``(inf or -inf, nan)``, the interval undefined; both
    ``+inf`` and ``-inf``, or any ``nan``: ``(nan, nan)``. Callers that must tell these apart
    count the non-finite values themselves (see `bench.report.summary_frame`)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    n = v.size
    if n == 0:
        return math.nan, math.nan
    with np.errstate(invalid="ignore"):
        mean = float(v.mean())
    if n == 1 or not np.isfinite(mean):
        return mean, math.nan
    sem = float(v.std(ddof=1)) / math.sqrt(n)
    return mean, float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sem)
