"""Paired per-image differences between two methods and what their intervals say of a claim
that one beats the other, or that they tie."""

from __future__ import annotations

import math

import numpy as np

from bench.findings.constants import BOOTSTRAP_RESAMPLES, CONFIDENCE, TIE_PSNR_DB, TIE_SSIM
from bench.metrics import mean_ci


def paired(a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict:
    """Mean of a − b over paired images (1-D arrays of equal length, e.g. PSNR in dB) with
    its Student-t and BCa bootstrap 95% intervals, the share of images where a > b, and the
    paired t-test p-value.

    +inf values (exact restorations, PSNR) are valid: an image where both are +inf differs
    by 0, one where only one side is +inf by ±inf. Then the mean is ±inf (NaN when both signs
    occur) and the intervals and p-value are undefined (NaN); the counts say why:
    'n_exact_a', 'n_exact_b' (+inf on each side), 'n_pos_inf', 'n_neg_inf' (infinite
    differences) and 'n_undefined' (images where a or b is NaN, e.g. diverged)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.size} vs {b.size}")
    both = np.isposinf(a) & np.isposinf(b)
    with np.errstate(invalid="ignore"):
        d = a - b
    d[both] = 0.0  # both exact: no difference
    n = d.size
    out = {"n": n, "mean": math.nan, "lo": math.nan, "hi": math.nan, "boot_lo": math.nan,
           "boot_hi": math.nan, "wins": math.nan, "p": math.nan,
           "n_exact_a": int(np.isposinf(a).sum()), "n_exact_b": int(np.isposinf(b).sum()),
           "n_pos_inf": int(np.isposinf(d).sum()), "n_neg_inf": int(np.isneginf(d).sum()),
           "n_undefined": int(np.isnan(d).sum())}  # fmt: skip
    if n < 2 or out["n_undefined"]:
        return out
    if out["n_pos_inf"] or out["n_neg_inf"]:
        pos, neg = out["n_pos_inf"], out["n_neg_inf"]
        out["mean"] = math.inf if not neg else (-math.inf if not pos else math.nan)
        out["wins"] = float((d > 0).mean())
        return out
    _add_intervals(out, d, seed)
    return out


def _add_intervals(out: dict, d: np.ndarray, seed: int) -> None:
    """Fill `out` with the mean of the finite differences `d`, its Student-t and BCa bootstrap
    intervals, the share of wins and the paired t-test p-value."""
    from scipy import stats

    n = d.size
    mean, half = mean_ci(d, CONFIDENCE)
    sem = float(d.std(ddof=1) / math.sqrt(n))
    out.update(mean=mean, lo=mean - half, hi=mean + half, wins=float((d > 0).mean()))
    if sem > 0:
        out["p"] = float(2 * stats.t.sf(abs(mean) / sem, n - 1))
        boot = stats.bootstrap(
            (d,), np.mean, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=CONFIDENCE,
            method="BCa", random_state=np.random.default_rng(seed),
        )  # fmt: skip
        out["boot_lo"], out["boot_hi"] = map(float, boot.confidence_interval)
    else:
        out["boot_lo"] = out["boot_hi"] = mean


def infinite(r: dict) -> int:
    """Images whose difference is ±inf (one side restored exactly) or undefined."""
    return r.get("n_pos_inf", 0) + r.get("n_neg_inf", 0) + r.get("n_undefined", 0)


def _inf_words(r: dict) -> str:
    """Why a difference has no interval: 'PSNR +inf on 3 image(s) (a exact, b not)'."""
    parts = []
    if r.get("n_pos_inf"):
        parts.append(f"+inf on {r['n_pos_inf']} image(s) (a exact, b not)")
    if r.get("n_neg_inf"):
        parts.append(f"-inf on {r['n_neg_inf']} image(s) (b exact, a not)")
    if r.get("n_undefined"):
        parts.append(f"undefined on {r['n_undefined']} image(s) (no value)")
    return "PSNR difference " + " and ".join(parts) + ": no interval"


def _verdict_infinite(psnr: dict, ssim: dict, kind: str) -> str:
    """A verdict when the PSNR difference is infinite on some images (an exact restoration on
    one side only): its interval is undefined, so only the SSIM interval and the sign of the
    infinite differences can decide, and only when they agree; else 'undetermined'."""
    why = _inf_words(psnr)
    if psnr.get("n_undefined") or infinite(ssim):
        return f"undetermined ({why})"
    sign = (psnr.get("n_pos_inf", 0) > 0) - (psnr.get("n_neg_inf", 0) > 0)
    if kind == "tie":
        if ssim["lo"] > TIE_SSIM or ssim["hi"] < -TIE_SSIM:
            return f"contradicted (SSIM difference beyond the margin; {why})"
        return f"undetermined ({why})"
    if sign > 0 and ssim["lo"] > 0:
        return f"supported on SSIM; {why}"
    if sign < 0 and ssim["hi"] < 0:
        return f"contradicted on SSIM; {why}"
    return f"undetermined ({why}; the SSIM interval does not agree with its sign)"


def verdict_better(psnr: dict, ssim: dict) -> str:
    """What the paired PSNR and SSIM differences say of the claim that a beats b."""
    if infinite(psnr) or infinite(ssim):
        return _verdict_infinite(psnr, ssim, "better")
    ups = [r["lo"] > 0 for r in (psnr, ssim)]
    downs = [r["hi"] < 0 for r in (psnr, ssim)]
    if all(ups):
        return "supported"
    if all(downs):
        return "contradicted"
    if any(downs) and not any(ups):
        return "contradicted on " + ("PSNR" if downs[0] else "SSIM")
    if any(ups) and not any(downs):
        return "supported on " + ("PSNR" if ups[0] else "SSIM") + " only"
    if any(ups) and any(downs):
        return "split (one metric each way)"
    return "unresolved"


def verdict_tie(psnr: dict, ssim: dict) -> str:
    """What the paired PSNR and SSIM differences say of the claim that a ties b (both
    intervals inside the equivalence margins TIE_PSNR_DB and TIE_SSIM)."""
    if infinite(psnr) or infinite(ssim):
        return _verdict_infinite(psnr, ssim, "tie")
    margins = (TIE_PSNR_DB, TIE_SSIM)
    inside = [-m < r["lo"] and r["hi"] < m for r, m in zip((psnr, ssim), margins, strict=True)]
    outside = [r["lo"] > m or r["hi"] < -m for r, m in zip((psnr, ssim), margins, strict=True)]
    if all(inside):
        return "supported"
    if any(outside):
        beyond = [name for name, o in zip(("PSNR", "SSIM"), outside, strict=True) if o]
        return f"contradicted ({' and '.join(beyond)} difference beyond the margin)"
    return "unresolved"
