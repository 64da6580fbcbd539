"""Figure 1's realism proxy, computed from a checkpoint and stored in results/realism.csv
(`bench findings --realism`): the Fréchet distance between samples and held-out real images
in a PCA space of pixels, and the ratio of high-frequency energy, per latent σ."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from bench import config
from bench.atomic import all_or_nothing, atomic_write_text
from bench.findings.constants import (
    CONFIDENCE,
    REALISM_COMPONENTS,
    REALISM_FILE,
    REALISM_META,
    REALISM_REPEATS,
    REALISM_SAMPLES,
    REALISTIC_STDS,
)
from bench.metrics import mean_ci

REALISM_SETS = ("real B", "samples", "best in range − best outside")
REALISM_NUMBERS = ("std", "fd", "fd_lo", "fd_hi", "hf_ratio", "hf_lo", "hf_hi")


def _pca_basis(ref: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    mu = ref.mean(axis=0)
    _, _, vt = np.linalg.svd(ref - mu, full_matrices=False)
    return mu, vt[:k].T


def _sqrt_psd(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet(f1: np.ndarray, f2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows are samples):
    |m1 − m2|² + tr(C1 + C2 − 2 (C1^½ C2 C1^½)^½), computed with symmetric eigendecompositions
    so that singular covariances (e.g. identical samples at σ = 0) are exact."""
    m1, m2 = f1.mean(axis=0), f2.mean(axis=0)
    c1, c2 = np.atleast_2d(np.cov(f1, rowvar=False)), np.atleast_2d(np.cov(f2, rowvar=False))
    s1 = _sqrt_psd(c1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(s1 @ c2 @ s1), 0, None)).sum()
    return float(((m1 - m2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * cross)


def hf_energy(imgs: np.ndarray) -> np.ndarray:
    """Per image of uint8 (N, C, H, W) images: the mean squared 4-neighbour Laplacian in
    0..1 pixel units, shape (N,), a measure of fine detail and of noise (exactly 0 for a flat
    image)."""
    # the Laplacian on the integer pixel values is exact, so a flat image has exactly 0 (not
    # a rounding residue that a ratio to it would blow up), then scaled to 0..1 pixels
    x = imgs.astype(np.float64)
    c = x[:, :, 1:-1, 1:-1]
    n = x[:, :, :-2, 1:-1] + x[:, :, 2:, 1:-1] + x[:, :, 1:-1, :-2] + x[:, :, 1:-1, 2:]
    lap = (4 * c - n) / 255.0
    return (lap**2).reshape(len(x), -1).mean(axis=1)


def hf_ratio(imgs: np.ndarray, hf_ref: float) -> float:
    """Mean high-frequency energy of `imgs` over the reference's `hf_ref`. When the reference
    has none (flat real images) the ratio is undefined: NaN for images without any either,
    +inf for images with some (no division warning, no silent 0/0)."""
    e = float(hf_energy(imgs).mean())
    if hf_ref > 0:
        return e / hf_ref
    return math.nan if e == 0 else math.inf


def realism(
    flow,
    real: np.ndarray,
    stds=config.SAMPLE_STDS,
    n: int = REALISM_SAMPLES,
    seed: int = 0,
    repeats: int = REALISM_REPEATS,
    progress: bool = True,
):
    """A realism proxy per latent σ, averaged over `repeats` independent draws.

    Each draw splits the 2n real images (uint8 (N, 3, 32, 32), quantized to 5 bits like the
    samples) at random into sets A and B, fits a PCA of the pixels on A, draws n fresh samples
    per σ (one standard-normal draw scaled by every σ, as in Figure 1) and records the Fréchet
    distance to A and the high-frequency energy ratio against A; B against A is the floor.
    Intervals are Student-t 95% intervals of the mean over the draws (paired over σ)."""
    import pandas as pd
    import torch

    from bench.data import to_5bit
    from bench.progress import bar as progress_bar

    _check_enough_real(real, n)
    real = (to_5bit(torch.as_tensor(real[: 2 * n])) * 8).numpy()
    rng = np.random.default_rng(seed)
    draws = []  # per draw: {key: (fd, hf ratio)}
    dropped: dict[float, int] = {}  # σ -> samples generated as NaN/inf over all draws
    for r in progress_bar(range(repeats), progress=progress, desc="realism draws"):
        draws.append(_draw(flow, real, stds, n, seed * 100_003 + r, rng, dropped))
    frame = pd.DataFrame(_realism_rows(draws, stds, n, repeats))
    frame.attrs["nonfinite"] = {f"{k:g}": v for k, v in dropped.items() if v}
    return frame


def _check_enough_real(real: np.ndarray, n: int) -> None:
    """Raise BenchError naming the --samples that fit when there are fewer than 2n images."""
    if len(real) < 2 * n:
        from bench.errors import BenchError

        fits = len(real) // 2
        raise BenchError(
            f"the realism proxy needs {2 * n} real images ({n} per set), {len(real)} found: "
            + (f"pass --samples {fits} or fewer, or " if fits else "")
            + "provide more valid images"
        )


def _flat(v: np.ndarray) -> np.ndarray:
    """Images as rows of 0..1 pixel values."""
    return v.reshape(len(v), -1).astype(np.float64) / 255.0


def _draw(flow, real, stds, n: int, sample_seed: int, rng, dropped: dict) -> dict:
    """One draw: real sets A and B split at random, n samples per σ; {'real B' or σ: (Fréchet
    distance to A, HF energy ratio to A)}. Samples generated as NaN/inf are dropped and
    counted per σ in `dropped`."""
    import torch

    from bench.samples import sample_grid

    perm = rng.permutation(2 * n)
    set_a, set_b = real[perm[:n]], real[perm[n:]]
    pixels_a = _flat(set_a)
    mu, basis = _pca_basis(pixels_a, REALISM_COMPONENTS)
    fa, hf_a = (pixels_a - mu) @ basis, hf_energy(set_a).mean()
    finite: list[np.ndarray] = []
    with torch.no_grad():
        samples = sample_grid(flow, stds, n, sample_seed, finite=finite).numpy()
    row = {"real B": (frechet((_flat(set_b) - mu) @ basis, fa), hf_ratio(set_b, hf_a))}
    for s, imgs, ok in zip(stds, samples, finite, strict=True):
        # samples the flow generates as NaN/inf are dropped, and counted
        dropped[s] = dropped.get(s, 0) + int((~ok).sum())
        imgs = imgs[ok]
        row[s] = (frechet((_flat(imgs) - mu) @ basis, fa), hf_ratio(imgs, hf_a))
    return row


def _mean_interval(v: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high) of the Student-t 95% interval of the mean."""
    m, half = mean_ci(v, CONFIDENCE)
    return m, m - half, m + half


def _realism_rows(draws: list[dict], stds, n: int, repeats: int) -> list[dict]:
    """realism.csv's rows: real set B, each σ, and the best σ inside the paper's range minus
    the best outside it (paired over the draws) when σ lie on both sides."""
    rows = []
    for key in ["real B", *stds]:
        fd = _mean_interval(np.array([d[key][0] for d in draws]))
        hf = _mean_interval(np.array([d[key][1] for d in draws]))
        rows.append(
            {"set": "real B" if key == "real B" else "samples",
             "std": math.nan if key == "real B" else float(key), "n": n, "repeats": repeats,
             "fd": fd[0], "fd_lo": fd[1], "fd_hi": fd[2],
             "hf_ratio": hf[0], "hf_lo": hf[1], "hf_hi": hf[2]}
        )  # fmt: skip
    in_range = [s for s in stds if REALISTIC_STDS[0] <= s <= REALISTIC_STDS[1]]
    outside = [s for s in stds if s not in in_range]
    if in_range and outside:
        # paired over draws: best σ inside the paper's range minus best σ outside it
        diff = _mean_interval(
            np.array(
                [min(d[s][0] for s in in_range) - min(d[s][0] for s in outside) for d in draws]
            )
        )
        rows.append(
            {"set": "best in range − best outside", "std": math.nan, "n": n, "repeats": repeats,
             "fd": diff[0], "fd_lo": diff[1], "fd_hi": diff[2],
             "hf_ratio": math.nan, "hf_lo": math.nan, "hf_hi": math.nan}
        )  # fmt: skip
    return rows


def realism_paths(results_dir: str | Path) -> list[Path]:
    """The files `write_realism` writes."""
    return [Path(results_dir) / REALISM_META, Path(results_dir) / REALISM_FILE]


def write_realism(df, meta: dict, results_dir: str | Path) -> Path:
    results_dir = Path(results_dir)
    with all_or_nothing():
        atomic_write_text(results_dir / REALISM_META, json.dumps(meta, indent=2) + "\n")
        atomic_write_text(results_dir / REALISM_FILE, df.to_csv(index=False, float_format="%.6g"))
    return results_dir / REALISM_FILE


def load_realism(results_dir: str | Path):
    """(results/realism.csv as a DataFrame, realism_meta.json as a dict), or (None, {}) when
    the proxy was not computed. Values may be NaN (undefined) or ±inf (e.g. a ratio to flat
    real images). Raises BenchError naming the file and the fix (delete and rerun `bench
    findings --realism`) for a file that is unreadable, not UTF-8, not a JSON object, lacks a
    column, holds a non-number or an unknown set."""
    from bench import stored

    path = Path(results_dir) / REALISM_FILE
    if not path.is_file():
        return None, {}
    fix = (
        f"delete it and {REALISM_META} beside it, then rerun `bench findings --realism` "
        "(or delete both to leave the proxy out)"
    )
    meta_path = Path(results_dir) / REALISM_META
    meta = stored.read_json_object(meta_path, fix) if meta_path.is_file() else {}
    df = stored.read_csv(path, fix, ("set",) + REALISM_NUMBERS)
    for col in REALISM_NUMBERS:
        df[col] = stored.numeric(df, col, path, fix)
    unknown = ~df["set"].isin(REALISM_SETS)
    if unknown.any():
        raise stored.malformed(path, f"has an unknown set {str(df['set'][unknown].iloc[0])!r}", fix)
    if not (df["set"] == "samples").any():
        raise stored.malformed(path, "has no samples rows", fix)
    return df, meta
