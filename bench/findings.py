"""The paper's claims held against a stored run: `bench findings` writes reports/claims.md.

- Table 1 claims: paired per-image differences (same test image, same measurement) of PSNR
  and SSIM between two methods' reported cells, with a Student-t and a BCa bootstrap 95%
  interval. A claim "A beats B" is supported when both metrics' t-intervals lie above 0; a tie
  when both lie inside the equivalence margins below.
- Figure 1's σ claim: a realism proxy computed from a checkpoint and stored in
  results/realism.csv (`bench findings --realism`): the Fréchet distance between samples and
  held-out real images in a PCA space of pixels, and the ratio of high-frequency energy.
- Table 2's claim: the ratio of mean generation times, with a bootstrap interval over the
  timed iterations of results/timing.csv.
- The released code's defects (PROTOCOL §8) that a run measured: 'map-released' against 'map',
  'ours-released' (α = 0) against 'ours', and the PSNR convention.

Everything but the realism proxy is computed from committed CSVs, so the same command
reproduces claims.md exactly.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import config
from bench.atomic import all_or_nothing, atomic_write_text
from bench.metrics import mean_ci
from bench.provenance import as_given, rebuild_options
from bench.report import md_table

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
TIE_PSNR_DB = 0.5  # equivalence margins for "ties": half a dB of standard PSNR ...
TIE_SSIM = 0.01  # ... and a hundredth of SSIM
REALISTIC_STDS = (0.8, 1.2)  # the paper's range of most realistic latent σ (Figure 1)
REALISM_SAMPLES = 500  # samples per σ, and real images per set (two disjoint sets)
REALISM_COMPONENTS = 32  # PCA components of the pixel space for the Fréchet distance
REALISM_REPEATS = 20  # independent draws of samples and of the real split
REALISM_FILE = "realism.csv"
REALISM_META = "realism_meta.json"
CLAIMS_FILE = "claims.md"
TABLE1_TASKS = ("denoising", "deblurring", "inpainting")

# The least evidence a verdict needs; below it the verdict reads NOT_MEANINGFUL and says why.
# 30 paired images: below about 30 the Student-t interval leans on the normality of a handful
# of per-image differences and the BCa bootstrap has few distinct resamples (the smoke preset
# pairs 4 images; the cpu and paper presets 192).
MIN_PAIRED_IMAGES = 30
# A flow trained for a pipeline check cannot stand for the paper's prior: the `smoke` preset
# (1 epoch, width 16), or any flow trained for fewer than MIN_FLOW_EPOCHS epochs or narrower
# than MIN_FLOW_WIDTH channels (the cpu preset trains 24 epochs at width 128, the paper 100 at
# 512). A flow whose epochs or width the run did not record cannot be told apart from one.
SMOKE_PRESET = "smoke"
MIN_FLOW_EPOCHS = 10
MIN_FLOW_WIDTH = 64
# The realism proxy fits a 32-dimensional Gaussian: at least 4 samples per PCA component
MIN_REALISM_SAMPLES = 4 * REALISM_COMPONENTS
# Figure 1's σ claim is about realistic samples: the best σ inside the paper's range must come
# within this factor of the real-vs-real floor (the upper end of its 95% interval at most
# 2× the floor's mean), not only have the lowest distance of the grid
REALISM_FLOOR_FACTOR = 2.0
NOT_MEANINGFUL = "not meaningful at this size"


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: method `a` against method `b` on each task of `tasks`."""

    key: str
    text: str
    a: str
    b: str
    tasks: tuple[str, ...]
    kind: str = "better"  # or "tie"


CLAIMS = (
    Claim("ours>csgm", "the solver beats CSGM (denoising, deblurring, inpainting)", "ours",
          "csgm", TABLE1_TASKS),
    Claim("ours>glowip", "the solver beats GlowIP (denoising, deblurring, inpainting)", "ours",
          "glowip", TABLE1_TASKS),
    Claim("ours=glowip", "the solver ties GlowIP on colorization", "ours", "glowip",
          ("colorization",), kind="tie"),
    Claim("ours>bm3d", "the solver beats BM3D on denoising", "ours", "bm3d", ("denoising",)),
    Claim("ours>map", "the solver beats MAP on denoising", "ours", "map", ("denoising",)),
)  # fmt: skip

# released-code variants (PROTOCOL §8) against the method they corrupt, on every task they ran
DEFECTS = (
    ("map-released", "map", "MAP's loss subtracts −β log p (rewards unlikely images)"),
    ("ours-released", "ours", "the solver's likelihood weight α is zeroed (pure L1 fit)"),
)


# ablation: which ingredient of the solver makes the difference to GlowIP (a − b per task)
ABLATION = (
    ("l1-z0", "glowip", "the data term: L1 instead of squared L2 (both from z₀ = 0, no prior)"),
    ("ours-released", "l1-z0", "the initial latent: z₀ ~ N(0, 0.1² I) instead of 0 (L1, no prior)"),
    ("ours", "ours-released", "the prior term: α·L(z) at the selected α instead of α = 0"),
)


# ---- paired comparisons ------------------------------------------------------------------------
def paired(a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict:
    """Mean of a − b over paired images (1-D arrays of equal length, e.g. PSNR in dB) with
    its Student-t and BCa bootstrap 95% intervals, the share of images where a > b, and the
    paired t-test p-value.

    +inf values (exact restorations, PSNR) are valid: an image where both are +inf differs
    by 0, one where only one side is +inf by ±inf. Then the mean is ±inf (NaN when both signs
    occur) and the intervals and p-value are undefined (NaN); the counts say why:
    'n_exact_a', 'n_exact_b' (+inf on each side), 'n_pos_inf', 'n_neg_inf' (infinite
    differences) and 'n_undefined' (images where a or b is NaN, e.g. diverged)."""
    from scipy import stats

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
    return out


def _infinite(r: dict) -> int:
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
    if psnr.get("n_undefined") or _infinite(ssim):
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


def _verdict_better(psnr: dict, ssim: dict) -> str:
    if _infinite(psnr) or _infinite(ssim):
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


def _verdict_tie(psnr: dict, ssim: dict) -> str:
    if _infinite(psnr) or _infinite(ssim):
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


# ---- strength of the evidence ------------------------------------------------------------------
def flow_shortfalls(model: dict | None, preset: str | None = None) -> list[str]:
    """Why a flow is too small to stand for the paper's prior ([] when it is not): trained
    with the smoke preset (`preset`: the run's preset name, or the flow's own), for fewer than
    MIN_FLOW_EPOCHS epochs, narrower than MIN_FLOW_WIDTH, or with either not recorded."""
    model = model or {}
    if SMOKE_PRESET in (preset, model.get("preset")):
        return ["smoke flow"]
    out = []
    epochs, width = model.get("epochs"), model.get("hidden")
    if not isinstance(epochs, int | float):
        out.append("the flow's training epochs are not recorded")
    elif epochs < MIN_FLOW_EPOCHS:
        out.append(f"flow trained {epochs:g} epoch(s) < {MIN_FLOW_EPOCHS}")
    if not isinstance(width, int | float):
        out.append("the flow's width is not recorded")
    elif width < MIN_FLOW_WIDTH:
        out.append(f"flow width {width:g} < {MIN_FLOW_WIDTH}")
    return out


def flow_words(model: dict | None) -> str:
    """'flow of 24 epoch(s) at width 128' (what the evidence rests on)."""
    model = model or {}
    epochs, width = model.get("epochs"), model.get("hidden")
    return (
        f"flow of {'?' if epochs is None else epochs} epoch(s) at width "
        f"{'?' if width is None else width}"
    )


def _decides(verdict: str) -> bool:
    """Whether a verdict says something of the claim (supported, contradicted, unresolved,
    ...); 'undetermined' (undefined numbers) and 'not run'/'not measured' already say none."""
    return not verdict.startswith(("undetermined", "not run", "not measured"))


def withheld(verdict: str, shortfalls: list[str]) -> str:
    """The verdict, or 'not meaningful at this size (why)' when the evidence falls short."""
    if shortfalls and _decides(verdict):
        return f"{NOT_MEANINGFUL} ({'; '.join(shortfalls)})"
    return verdict


def test_cells(data) -> dict:
    """(method, task) -> per-image test rows of its reported cell, indexed by image name."""
    from bench.report import cell_rows, summary_frame

    cells = {}
    for rec in summary_frame(data).itertuples():
        if rec.status != "ok":
            continue
        w = None if math.isnan(rec.weight) else rec.weight
        rows = cell_rows(data.rows, "test", rec.method, rec.task, w)
        cells[(rec.method, rec.task)] = rows.set_index("image")[["psnr", "ssim", "mse5"]]
    return cells


def compare(cells: dict, a: str, b: str, task: str) -> dict | None:
    """Paired PSNR and SSIM differences of method a minus method b on one task."""
    if (a, task) not in cells or (b, task) not in cells:
        return None
    x, y = cells[(a, task)], cells[(b, task)]
    common = x.index.intersection(y.index)
    if len(common) < 2:
        return None
    x, y = x.loc[common], y.loc[common]
    return {
        "a": a,
        "b": b,
        "task": task,
        "psnr": paired(x["psnr"].to_numpy(), y["psnr"].to_numpy()),
        "ssim": paired(x["ssim"].to_numpy(), y["ssim"].to_numpy()),
    }


def claim_results(data, cells: dict | None = None) -> list[dict]:
    """Every claim of CLAIMS with its per-task comparisons and verdicts (`cells`: the run's
    test cells from `test_cells`, read once by the caller that needs them several times).

    'intervals' is what the intervals alone say; 'verdict' is the same unless the evidence
    falls short (fewer than MIN_PAIRED_IMAGES paired images, or a smoke flow: see
    flow_shortfalls), where it reads 'not meaningful at this size (why)'; 'shortfalls' lists
    why."""
    cells = test_cells(data) if cells is None else cells
    man = data.manifest
    flow_short = flow_shortfalls(man.get("model"), (man.get("preset") or {}).get("name"))
    out = []
    for c in CLAIMS:
        comps = []
        for t in c.tasks:
            r = compare(cells, c.a, c.b, t)
            if r is None:
                comps.append(
                    {"a": c.a, "b": c.b, "task": t, "verdict": "not run", "intervals": "not run"}
                )
                continue
            judge = _verdict_tie if c.kind == "tie" else _verdict_better
            r["intervals"] = judge(r["psnr"], r["ssim"])
            n = r["psnr"]["n"]
            few = [f"{n} images < {MIN_PAIRED_IMAGES}"] if n < MIN_PAIRED_IMAGES else []
            r["shortfalls"] = few + flow_short
            r["verdict"] = withheld(r["intervals"], r["shortfalls"])
            comps.append(r)
        overall = _overall({r["intervals"] for r in comps})
        short = list(
            dict.fromkeys(
                s for r in comps if r["verdict"].startswith(NOT_MEANINGFUL) for s in r["shortfalls"]
            )
        )
        out.append(
            {"claim": c, "comparisons": comps, "intervals": overall,
             "verdict": f"{NOT_MEANINGFUL} ({'; '.join(short)})" if short else overall,
             "shortfalls": short}
        )  # fmt: skip
    return out


def _overall(verdicts: set[str]) -> str:
    """A claim's verdict from its per-task verdicts."""
    decided = [v for v in verdicts if v.startswith(("supported", "contradicted"))]
    if verdicts == {"supported"}:
        return "supported"
    if verdicts == {"not run"}:
        return "not run"
    if not decided:  # unresolved or undetermined (and not run) everywhere
        undetermined = any(v.startswith("undetermined") for v in verdicts)
        return "undetermined" if undetermined else "unresolved"
    if any(v.startswith("contradicted") for v in verdicts) and not any(
        v.startswith("supported") for v in verdicts
    ):
        return "not supported"
    return "partly supported"


def pair_results(data, pairs, cells: dict | None = None) -> list[dict]:
    """Method a against method b on every task of the run where both ran, for each
    (a, b, what) of `pairs`; each result carries its `what`."""
    cells = test_cells(data) if cells is None else cells
    out = []
    for a, b, what in pairs:
        for t in data.manifest["tasks"]:
            r = compare(cells, a, b, t)
            if r is not None:
                r["what"] = what
                out.append(r)
    return out


def ablation_results(data, cells: dict | None = None) -> list[dict]:
    """The steps from GlowIP to the solver, one ingredient at a time (needs 'l1-z0' and
    'ours-released' in the run)."""
    return pair_results(data, ABLATION, cells)


def defect_results(data, cells: dict | None = None) -> list[dict]:
    """Each released-code variant against the method it corrupts."""
    return pair_results(data, DEFECTS, cells)


# ---- unseeded noise (PROTOCOL §8) ----------------------------------------------------------------
def seed_results(results_dir: str | Path, manifest: dict):
    """Runs that differ from each other only in the seed of the noise and initial latents
    (same model, dataset, preset and test images; the paper's weights, so no selection can
    differ): per (method, task, seed) mean PSNR / SSIM and their 95% half-widths."""
    import pandas as pd

    from bench.report import load_run, summary_frame
    from bench.runner import list_runs, read_manifest

    model = (manifest.get("model") or {}).get("fingerprint")
    key = manifest.get("key", {})
    rows = []
    for run_dir in list_runs(results_dir):
        man = read_manifest(run_dir)  # the rows are read only for the runs that qualify
        k = man.get("key", {})
        same = all(k.get(f) == key.get(f) for f in ("dataset", "test_images", "preset"))
        if not same or man.get("weights") != "paper":
            continue
        if (man.get("model") or {}).get("fingerprint") != model:
            continue
        for rec in summary_frame(load_run(run_dir)).itertuples():
            if rec.status != "ok":
                continue
            rows.append(
                {"method": rec.method, "label": rec.label, "task": rec.task, "seed": man["seed"],
                 "n": rec.n, "psnr": rec.psnr, "psnr_ci": rec.psnr_ci, "ssim": rec.ssim,
                 "ssim_ci": rec.ssim_ci, "run": man["run_id"]}
            )  # fmt: skip
    return pd.DataFrame(rows)


def _num(v: float, digits: int, sign: bool = False) -> str:
    """A value in a table: '12.34' (with `sign`: '+12.34'), '+inf', '-inf'; NaN is
    'undefined' (never a silent 'nan')."""
    if v is None or math.isnan(v):
        return "undefined"
    if math.isinf(v):
        return "+inf" if v > 0 else "-inf"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _spread(values, digits: int) -> str:
    """max − min of per-run means; +inf means (exact restorations) spread by 0 among
    themselves and by +inf from a finite one; NaN: 'undefined'."""
    v = np.asarray(values, np.float64)
    if np.isnan(v).any():
        return "undefined"
    if np.isinf(v).any():
        return "0 (all +inf)" if np.isposinf(v).all() else "+inf (some means +inf)"
    return f"{v.max() - v.min():.{digits}f}"


def _mean_defined(values, digits: int, why: str) -> str:
    """The mean of per-run values, or 'undefined (why)' when one is NaN (pandas' mean would
    silently skip it)."""
    v = np.asarray(values, np.float64)
    if np.isnan(v).any():
        return f"undefined ({why})"
    return _num(float(v.mean()), digits)


def _seed_section(results_dir: Path, manifest: dict) -> list[str]:
    df = seed_results(results_dir, manifest)
    if df.empty or df.seed.nunique() < 2:
        return [
            "Not measured: run the same `bench run` with `--weights paper` and two or more "
            "`--seed` values (see reports/README.md)."
        ]
    seeds = sorted(df.seed.unique())
    body = []
    for (_, task), g in df.groupby(["method", "task"], sort=False):
        if g.seed.nunique() < 2:
            continue
        by = g.set_index("seed")
        body.append(
            [task, str(g.label.iloc[0])]
            + [f"{_num(by.psnr[s], 2)} / {by.ssim[s]:.3f}" if s in by.index else "—"
               for s in seeds]
            + [_spread(g.psnr, 2), _mean_defined(g.psnr_ci, 2, "a mean PSNR is +inf"),
               _spread(g.ssim, 4)]
        )  # fmt: skip
    runs = ", ".join(f"`{r}`" for r in sorted(df.run.unique()))
    return [
        "The released code drew its noise (and initial latents) unseeded, so two runs of it "
        "differ. Here the same solves with the paper's weights and different `--seed` values "
        f"(runs {runs}) show how far a Table 1 mean moves with the noise draw alone, against "
        "the 95% half-width of one run's mean:",
        "",
        md_table(
            ["task", "method"]
            + [f"seed {s}: PSNR / SSIM" for s in seeds]
            + ["PSNR spread dB", "PSNR 95% half-width", "SSIM spread"],
            body,
        ),  # fmt: skip
    ]


# ---- Figure 1: realism proxy -------------------------------------------------------------------
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
    from bench.samples import sample_grid

    if len(real) < 2 * n:
        from bench.errors import BenchError

        fits = len(real) // 2
        raise BenchError(
            f"the realism proxy needs {2 * n} real images ({n} per set), {len(real)} found: "
            + (f"pass --samples {fits} or fewer, or " if fits else "")
            + "provide more valid images"
        )
    real = (to_5bit(torch.as_tensor(real[: 2 * n])) * 8).numpy()
    flat = lambda v: v.reshape(len(v), -1).astype(np.float64) / 255.0  # noqa: E731
    rng = np.random.default_rng(seed)
    keys = ["real B", *stds]
    draws = []  # per draw: {key: (fd, hf ratio)}
    dropped: dict[float, int] = {}  # σ -> samples generated as NaN/inf over all draws
    for r in progress_bar(range(repeats), progress=progress, desc="realism draws"):
        perm = rng.permutation(2 * n)
        set_a, set_b = real[perm[:n]], real[perm[n:]]
        pixels_a = flat(set_a)
        mu, basis = _pca_basis(pixels_a, REALISM_COMPONENTS)
        fa, hf_a = (pixels_a - mu) @ basis, hf_energy(set_a).mean()
        finite: list[np.ndarray] = []
        with torch.no_grad():
            samples = sample_grid(flow, stds, n, seed * 100_003 + r, finite=finite).numpy()
        row = {"real B": (frechet((flat(set_b) - mu) @ basis, fa), hf_ratio(set_b, hf_a))}
        for s, imgs, ok in zip(stds, samples, finite, strict=True):
            # samples the flow generates as NaN/inf are dropped, and counted
            dropped[s] = dropped.get(s, 0) + int((~ok).sum())
            imgs = imgs[ok]
            row[s] = (frechet((flat(imgs) - mu) @ basis, fa), hf_ratio(imgs, hf_a))
        draws.append(row)

    def summary(v: np.ndarray) -> tuple[float, float, float]:
        m, half = mean_ci(v, CONFIDENCE)
        return m, m - half, m + half

    rows = []
    for key in keys:
        fd = summary(np.array([d[key][0] for d in draws]))
        hf = summary(np.array([d[key][1] for d in draws]))
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
        diff = summary(
            np.array(
                [min(d[s][0] for s in in_range) - min(d[s][0] for s in outside) for d in draws]
            )
        )
        rows.append(
            {"set": "best in range − best outside", "std": math.nan, "n": n, "repeats": repeats,
             "fd": diff[0], "fd_lo": diff[1], "fd_hi": diff[2],
             "hf_ratio": math.nan, "hf_lo": math.nan, "hf_hi": math.nan}
        )  # fmt: skip
    frame = pd.DataFrame(rows)
    frame.attrs["nonfinite"] = {f"{k:g}": v for k, v in dropped.items() if v}
    return frame


def realism_paths(results_dir: str | Path) -> list[Path]:
    """The files `write_realism` writes."""
    return [Path(results_dir) / REALISM_META, Path(results_dir) / REALISM_FILE]


def write_realism(df, meta: dict, results_dir: str | Path) -> Path:
    results_dir = Path(results_dir)
    with all_or_nothing():
        atomic_write_text(results_dir / REALISM_META, json.dumps(meta, indent=2) + "\n")
        atomic_write_text(results_dir / REALISM_FILE, df.to_csv(index=False, float_format="%.6g"))
    return results_dir / REALISM_FILE


REALISM_SETS = ("real B", "samples", "best in range − best outside")
REALISM_NUMBERS = ("std", "fd", "fd_lo", "fd_hi", "hf_ratio", "hf_lo", "hf_hi")


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


# ---- Table 2: speed ratio -----------------------------------------------------------------------
def speed_ratio(times_glow, times_coupling, seed: int = 0) -> dict:
    """Mean glow time / mean coupling time with a percentile bootstrap 95% interval,
    resampling each configuration's timed iterations (ms, 1-D). Undefined (ratio, lo, hi
    NaN) when either side has no times, a non-finite time, or a mean of 0."""
    g, c = np.asarray(times_glow, np.float64), np.asarray(times_coupling, np.float64)
    if not (g.size and c.size and np.isfinite(g).all() and np.isfinite(c).all()) or not (
        c.mean() > 0 and g.mean() > 0
    ):
        return {"ratio": math.nan, "lo": math.nan, "hi": math.nan, "n_glow": g.size,
                "n_coupling": c.size}  # fmt: skip
    rng = np.random.default_rng(seed)
    boot = [
        rng.choice(g, g.size).mean() / rng.choice(c, c.size).mean()
        for _ in range(BOOTSTRAP_RESAMPLES)
    ]
    return {
        "ratio": float(g.mean() / c.mean()),
        "lo": float(np.quantile(boot, (1 - CONFIDENCE) / 2)),
        "hi": float(np.quantile(boot, (1 + CONFIDENCE) / 2)),
        "n_glow": g.size,
        "n_coupling": c.size,
    }


def timing_fix(results_dir: str | Path) -> str:
    """The fix for damaged timing files, naming them where they are."""
    r = Path(results_dir)
    return (
        f"delete {r / 'timing.csv'}, {r / 'timing_summary.csv'} and {r / 'timing_meta.json'} "
        "and rerun `bench ablation --timing`"
    )


def timing_results(results_dir: str | Path) -> tuple[list[dict], dict]:
    """Glow (every mode) against coupling, for generation and for a solver iteration, from
    the raw times of `bench ablation --timing` (results/timing.csv, timing_meta.json)."""
    from bench import stored

    raw_path = Path(results_dir) / "timing.csv"
    meta_path = Path(results_dir) / "timing_meta.json"
    if not raw_path.is_file():
        return [], {}
    fix = timing_fix(results_dir)
    raw = stored.read_csv(
        raw_path, fix, ("section", "arch", "mode", "ms"), keep_default_na=False, na_values=[""]
    )
    raw["mode"] = raw["mode"].fillna("").astype(str)
    raw["ms"] = stored.numeric(raw, "ms", raw_path, fix, allow_nan=False)
    if not (np.isfinite(raw["ms"]) & (raw["ms"] > 0)).all():
        raise stored.malformed(raw_path, "has a time that is not a positive finite number", fix)
    meta = stored.read_json_object(meta_path, fix) if meta_path.is_file() else {}
    out = []
    for section in ("generation", "solver"):
        sub = raw[raw.section == section]
        base = sub[sub.arch == "coupling"]["ms"].to_numpy(np.float64)
        if base.size == 0:
            continue
        for mode in ("recompute", "cached", "lu"):
            g = sub[(sub.arch == "glow") & (sub["mode"] == mode)]["ms"].to_numpy(np.float64)
            if g.size == 0:
                continue
            r = speed_ratio(g, base)
            r.update(
                section=section, mode=mode, glow_ms=float(g.mean()), coupling_ms=float(base.mean())
            )
            out.append(r)
    return out, meta


# ---- claims.md ---------------------------------------------------------------------------------
def _signed(v: float, digits: int) -> str:
    """+1.23, +inf, -inf; NaN is 'undefined'."""
    return _num(v, digits, sign=True)


def _exact_counts(r: dict) -> str:
    """' (exact: a 3/4, b 0/4)' when either side has +inf values, else ''."""
    if not (r.get("n_exact_a") or r.get("n_exact_b")):
        return ""
    return f" (exact: a {r['n_exact_a']}/{r['n']}, b {r['n_exact_b']}/{r['n']})"


def ci_text(r: dict, digits: int) -> str:
    if r is None:
        return "—"
    if _infinite(r):
        return f"{_signed(r['mean'], digits)} [interval undefined]{_exact_counts(r)}"
    if math.isnan(r["mean"]):
        return "—"
    f = f"{{:+.{digits}f}}"
    return f"{f.format(r['mean'])} [{f.format(r['lo'])}, {f.format(r['hi'])}]" + _exact_counts(r)


def _boot(r: dict, digits: int) -> str:
    if r is None or math.isnan(r["boot_lo"]):
        return "—"
    f = f"{{:+.{digits}f}}"
    return f"[{f.format(r['boot_lo'])}, {f.format(r['boot_hi'])}]"


def _key_numbers(comps: list[dict]) -> str:
    parts = [
        f"{r['task']} {_signed(r['psnr']['mean'], 2)}{_exact_counts(r['psnr'])} / "
        f"{_signed(r['ssim']['mean'], 3)}"
        for r in comps
        if "psnr" in r
    ]
    return "; ".join(parts) or "—"


def _exact_note(comps: list[dict]) -> str:
    """A paragraph on exact restorations (PSNR +inf) among the comparisons, or ''."""
    hit = [r for r in comps if "psnr" in r and (r["psnr"]["n_exact_a"] or r["psnr"]["n_exact_b"])]
    if not hit:
        return ""
    return (
        "Exact restorations (PSNR +inf, a valid value and the best one, not a divergence): "
        "an image exact on both sides differs by 0 dB, one exact on one side only by ±inf, "
        "which makes the mean PSNR difference infinite and its intervals undefined; the "
        "verdict then rests on the SSIM interval and the sign, or is undetermined. Exact "
        "images per comparison (a, b): "
        + "; ".join(
            f"{r['task']} {r['a']} − {r['b']}: {r['psnr']['n_exact_a']}/{r['psnr']['n']}, "
            f"{r['psnr']['n_exact_b']}/{r['psnr']['n']}"
            for r in hit
        )
        + "."
    )


def share_text(v: float) -> str:
    return "—" if v is None or math.isnan(v) else f"{v:.0%}"


def _p(p: float) -> str:
    if math.isnan(p):
        return "—"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def _comparison_rows(comps: list[dict], labels: dict, claim: str = "") -> list[list[str]]:
    body = []
    for r in comps:
        name = f"{labels.get(r['a'], r['a'])} − {labels.get(r['b'], r['b'])}"
        if "psnr" not in r:
            body.append([claim, r["task"], name, "—", "—", "—", "—", "—", "—", "—", r["verdict"]])
            continue
        p, s = r["psnr"], r["ssim"]
        body.append(
            [claim, r["task"], name, ci_text(p, 2), _boot(p, 2), ci_text(s, 4), _boot(s, 4),
             f"{share_text(p['wins'])} / {share_text(s['wins'])}", f"{_p(p['p'])} / {_p(s['p'])}",
             f"n = {p['n']} images", r.get("verdict", "")]
        )  # fmt: skip
    return body


def _claim_evidence(claim: dict, model: dict | None) -> str:
    """'n = 192 images per task; flow of 24 epoch(s) at width 128'."""
    ns = sorted({r["psnr"]["n"] for r in claim["comparisons"] if "psnr" in r})
    if not ns:
        return "—"
    n = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    return f"n = {n} images per task; {flow_words(model)}"


CMP_HEADER = [
    "claim",
    "task",
    "difference",
    "Δ PSNR dB [t 95%]",
    "PSNR bootstrap 95%",
    "Δ SSIM [t 95%]",
    "SSIM bootstrap 95%",
    "images a > b (PSNR / SSIM)",
    "paired t-test p (PSNR / SSIM)",
    "evidence",
    "verdict",
]


def sources_line(man: dict, results_dir: str | Path) -> str:
    """claims.md's header line naming where each part comes from, so that a report mixing
    sources says so: the Table 1 claims from this run; Figure 1's from the realism results
    (this run's flow, or plainly another); Table 2's from a timing (its preset against the
    run's)."""
    results_dir = Path(results_dir)
    run_model = man.get("model") or {}
    run_preset = (man.get("preset") or {}).get("name")
    parts = [f"Table 1 claims: this run (`{man.get('run_id')}`)"]
    df, meta = load_realism(results_dir)
    if df is not None:
        flow = _realism_flow(meta, run_model)
        fp = (flow or {}).get("fingerprint")
        if fp and fp == run_model.get("fingerprint"):
            parts.append(
                f"Figure 1: {as_given(results_dir / REALISM_FILE)}, from this run's flow `{fp}`"
            )
        else:
            parts.append(
                f"Figure 1: {as_given(results_dir / REALISM_FILE)}, from **another flow than this "
                "run's** "
                f"({str(meta.get('model', '?')).split(', trained on')[0]})"
            )
    rows, tmeta = timing_results(results_dir)
    if rows:
        preset = tmeta.get("preset")
        note = "" if preset == run_preset else f", not this run's preset `{run_preset}`"
        parts.append(
            f"Table 2: {as_given(results_dir / 'timing.csv')}, timing preset `{preset}`{note} "
            f"(width {tmeta.get('width')}, batch {tmeta.get('batch')}, {tmeta.get('device')}), "
            "measured apart from this run: generation cost does not depend on its images"
        )
    return "- **Sources**: " + "; ".join(parts)


def _realism_flow(meta: dict, run_model: dict | None) -> dict | None:
    """The flow the realism proxy sampled: as its meta records it, else the run's own flow
    when the meta's model line names the run's fingerprint; None when unknown."""
    if isinstance(meta.get("flow"), dict):
        return meta["flow"]
    fp = (run_model or {}).get("fingerprint")
    line = str(meta.get("model", ""))
    if fp and f"fingerprint `{fp}`" in line:
        return run_model
    # another flow than the run's: what its model line (`bench.report.model_line`) states
    found = {
        key: re.search(pattern, line)
        for key, pattern in (("fingerprint", r"fingerprint `([^`]+)`"),
                             ("hidden", r"width (\d+)"), ("epochs", r"(\d+) epoch\(s\)"))
    }  # fmt: skip
    if not all(found.values()):
        return None
    flow = {k: m.group(1) for k, m in found.items()}
    return {**flow, "hidden": int(flow["hidden"]), "epochs": int(flow["epochs"])}


def _realism_section(
    results_dir: Path, run_model: dict | None = None
) -> tuple[list[str], str, str]:
    """The Figure 1 section of claims.md, its verdict and the evidence it rests on.

    The σ claim is about realistic samples: it is supported only when the best σ inside the
    paper's range beats the best outside it (paired interval below 0) and its distance comes
    within REALISM_FLOOR_FACTOR of the real-vs-real floor (the upper end of its interval);
    not supported when the best outside wins or the interval lies wholly above that bound.
    Withheld ('not meaningful at this size') below MIN_REALISM_SAMPLES samples per σ or for
    a smoke flow (`run_model`: the run's flow, taken as the proxy's when the meta names its
    fingerprint)."""
    df, meta = load_realism(results_dir)
    if df is None:
        return (
            ["Not computed: run `bench findings --realism` with the run's checkpoint."],
            "not measured",
            "—",
        )
    lines = [
        f"- **Model**: {meta.get('model', '?')}",
        f"- **Real images**: {meta.get('real', '?')}",
        f"- **Samples**: {meta.get('n', '?')} per σ (the same standard-normal draws scaled by "
        f"σ, as in Figure 1), seed {meta.get('seed', '?')}; {meta.get('repeats', '?')} "
        "independent draws of the samples and of the real split, averaged (intervals: "
        "Student-t 95% of the mean over the draws)",
        f"- **Command**: `{meta.get('command', '?')}`",
        *(
            [
                "- **Samples the flow generated as NaN or inf** (dropped from the proxies, "
                "over all draws): "
                + ", ".join(f"σ = {k}: {v}" for k, v in meta["nonfinite"].items())
            ]
            if meta.get("nonfinite")
            else []
        ),
        "",
        "Realism proxies (no Inception network offline): the Fréchet distance between Gaussian "
        f"fits in the first {meta.get('components', REALISM_COMPONENTS)} principal components "
        "of the pixels of real set A (lower is more like real images), and the ratio of the "
        "mean squared Laplacian (fine detail and noise) to real set A's (1 is real-like; above "
        "1 noisier, below 1 smoother). Real set B, disjoint from A, gives the floor.",
        "",
    ]
    body = []
    for r in df.itertuples():
        if r.set == "best in range − best outside":
            continue
        name = "real set B (floor)" if r.set == "real B" else f"σ = {r.std:g}"
        body.append([name, _est(r.fd, r.fd_lo, r.fd_hi), _est(r.hf_ratio, r.hf_lo, r.hf_hi)])
    lines.append(md_table(["samples", "Fréchet distance [95%]", "HF energy ratio [95%]"], body))
    samples = df[df.set == "samples"]
    finite = samples[np.isfinite(samples.fd.to_numpy(np.float64))]
    diff = df[df.set == "best in range − best outside"]
    floor = df[df.set == "real B"].fd.to_numpy(np.float64)
    lo, hi = REALISTIC_STDS
    n = _count(samples["n"].iloc[0] if "n" in samples else meta.get("n"))
    repeats = _count(df["repeats"].iloc[0] if "repeats" in df else meta.get("repeats"))
    flow = _realism_flow(meta, run_model)
    short = ["the number of samples per σ is not recorded"] if n is None else []
    if n is not None and n < MIN_REALISM_SAMPLES:
        short.append(f"{n} samples per σ < {MIN_REALISM_SAMPLES}")
    short += ["the flow is not recorded"] if flow is None else flow_shortfalls(flow)
    evidence = (
        f"{'?' if n is None else n} samples per σ × {'?' if repeats is None else repeats} draws; "
        + ("flow not recorded" if flow is None else flow_words(flow))
    )
    if flow is not None and run_model and flow.get("fingerprint") != run_model.get("fingerprint"):
        evidence += f" (flow `{flow.get('fingerprint')}`, not this run's)"
    verdict = "not measured"
    if finite.empty:
        verdict = "undetermined"
        lines += ["", f"No σ has a finite Fréchet distance: **{verdict}**."]
    elif len(diff):
        best = finite.loc[finite.fd.idxmin()]
        inside = finite[(finite["std"] >= lo) & (finite["std"] <= hi)]
        d = diff.iloc[0]
        in_range = lo <= best["std"] <= hi
        b = inside.loc[inside.fd.idxmin()] if len(inside) else None
        f = float(floor[0]) if floor.size else math.nan
        bound = REALISM_FLOOR_FACTOR * f
        if not np.isfinite([d.fd, d.fd_lo, d.fd_hi]).all():
            verdict = "undetermined (interval undefined)"
        elif b is None or not np.isfinite([b.fd, b.fd_lo, b.fd_hi, f]).all():
            verdict = "undetermined (no finite floor or σ inside the range)"
        elif d.fd_lo > 0:
            verdict = "not supported (a σ outside the range comes closer to real images)"
        elif b.fd_lo > bound:
            verdict = (
                f"not supported (the best σ inside the range is {_num(b.fd / f, 1)}× the "
                f"real-vs-real floor; at most {REALISM_FLOOR_FACTOR:g}× needed)"
            )
        elif d.fd_hi < 0 and b.fd_hi <= bound:
            verdict = "supported"
        else:
            verdict = "unresolved"
        verdict = withheld(verdict, short)
        near = ""
        if b is not None and np.isfinite([b.fd, f]).all():
            times = f"{b.fd / f:.1f}× " if f > 0 else ""
            near = (
                f" The best σ inside the range, σ = {b['std']:g}, lies at "
                f"{_est(b.fd, b.fd_lo, b.fd_hi)}, {times}the real-vs-real floor {_num(f, 2)}; "
                f"realistic samples need its interval within {REALISM_FLOOR_FACTOR:g}× the "
                f"floor (≤ {_num(bound, 2)})."
            )
        lines += [
            "",
            f"Lowest Fréchet distance at σ = {best['std']:g} ({'inside' if in_range else 'outside'}"
            f" [{lo:g}, {hi:g}]). Best σ inside the range minus best σ outside it: "
            f"{_signed(d.fd, 2)} [{_signed(d.fd_lo, 2)}, {_signed(d.fd_hi, 2)}] (paired over "
            f"the draws).{near} Evidence: {evidence}. Verdict: **{verdict}**.",
        ]
    return lines, verdict, evidence


def _count(v) -> int | None:
    """A recorded count (a CSV or JSON value), None when absent or not a finite number."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return int(x) if math.isfinite(x) else None


def _est(m: float, lo: float, hi: float, digits: int = 2) -> str:
    """'3.66 [3.36, 3.96]'; an undefined interval or value says so instead of 'nan'."""
    if math.isnan(m):
        return "undefined"
    if math.isnan(lo) or math.isnan(hi):
        return f"{_num(m, digits)} [interval undefined]"
    return f"{_num(m, digits)} [{_num(lo, digits)}, {_num(hi, digits)}]"


def timing_evidence(meta: dict) -> tuple[str, list[str], list[str]]:
    """What a timing measured ('width 512, batch 128, 50 timed iterations per configuration,
    timing preset paper'), why its verdict is withheld (the smoke timing preset, or a width
    below MIN_FLOW_WIDTH) and what qualifies it (a width or batch other than the paper's)."""
    preset, width, batch = meta.get("preset"), _count(meta.get("width")), _count(meta.get("batch"))
    words = (
        f"width {width or '?'}, batch {batch or '?'}, {meta.get('iters', '?')} timed "
        f"iterations per configuration, timing preset {preset or 'not recorded'}"
    )
    short, other = [], []
    if preset == SMOKE_PRESET:
        short.append(f"smoke timing preset: width {width or '?'}, batch {batch or '?'}")
    elif width is not None and width < MIN_FLOW_WIDTH:
        short.append(f"width {width} < {MIN_FLOW_WIDTH}")
    if width != config.HIDDEN:
        other.append(f"width {width or 'not recorded'}, not the paper's {config.HIDDEN}")
    if batch != config.TIMING_BATCH:
        other.append(f"batch {batch or 'not recorded'}, not the paper's {config.TIMING_BATCH}")
    if meta.get("busy_note"):  # `bench ablation --allow-busy`, or load that came during it
        other.append(f"timed on a busy machine: {meta['busy_note']}")
    return words, short, other


def _timing_section(results_dir: Path) -> tuple[list[str], str, str]:
    """The Table 2 section of claims.md, its verdict and what the timing measured."""
    rows, meta = timing_results(results_dir)
    if not rows:
        return ["Not measured: run `bench ablation --timing`."], "not measured", "—"
    evidence, short, other = timing_evidence(meta)
    lines = [
        f"- **Device**: {meta.get('device')}, {meta.get('threads')} thread(s), torch "
        f"{meta.get('torch')}; load {meta.get('load', '?')}",
        f"- **Flows**: width {meta.get('width')}, batch {meta.get('batch')}, "
        f"{meta.get('iters')} timed iterations per configuration "
        f"({meta.get('rounds')} interleaved rounds); {meta.get('weights', '')}",
        f"- **Command**: `{meta.get('command')}`",
        "",
    ]
    body = [
        [r["section"], f"glow ({r['mode']})", f"{r['glow_ms']:.1f}", f"{r['coupling_ms']:.1f}",
         _est(r["ratio"], r["lo"], r["hi"])]
        for r in rows
    ]  # fmt: skip
    lines.append(
        md_table(["timed", "glow mode", "glow ms", "coupling ms", "glow / coupling [95%]"], body)
    )
    paper = [r for r in rows if r["section"] == "generation" and r["mode"] == "recompute"]
    verdict = "not measured"
    if paper:
        r = paper[0]
        if not np.isfinite([r["ratio"], r["lo"], r["hi"]]).all():
            verdict = "undetermined (ratio undefined)"
        elif r["lo"] > 1:
            verdict = "supported"
        else:
            verdict = "not supported" if r["hi"] < 1 else "unresolved"
        verdict = withheld(verdict, short)
        if other and _decides(verdict) and not verdict.startswith(NOT_MEANINGFUL):
            verdict += f" (qualified: {'; '.join(other)})"
        lines += [
            "",
            f"Generation with the paper's glow (inverse recomputed every call) takes "
            f"{_num(r['ratio'], 2)}× [{_num(r['lo'], 2)}, {_num(r['hi'], 2)}] the coupling "
            "flow's time "
            f"(published: {config.PUBLISHED_TABLE2['glow']['ms'] / config.PUBLISHED_TABLE2['coupling']['ms']:.2f}×). "  # noqa: E501
            f"Measured at {evidence}: **{verdict}**.",
        ]
    return lines, verdict, evidence


def _edge_notes(man: dict, summary, labels: dict) -> list[str]:
    """Selections at the edge of their grid: the best weight may lie outside it."""
    notes = []
    for rec in summary[summary.status == "ok"].itertuples():
        grid = sorted(w for w in man.get("grids", {}).get(rec.method, []) if w is not None)
        if len(grid) < 2 or math.isnan(rec.weight) or rec.source != "valid grid":
            continue
        name = man.get("weight_names", {}).get(rec.method) or "weight"
        if rec.weight in (grid[0], grid[-1]) and not (rec.weight == 0 == grid[0]):
            side = "smallest" if rec.weight == grid[0] else "largest"
            notes.append(
                f"- {labels.get(rec.method, rec.method)} on {rec.task}: {name} = {rec.weight:g}, "
                f"the {side} value of its grid {grid}: the best weight may lie beyond it"
            )
    return notes


def _gap(x: float, y: float) -> float:
    """x − y of two means; NaN (undefined) when both are +inf (exact restorations)."""
    if math.isinf(x) and math.isinf(y):
        return math.nan
    return x - y


def _gap_text(v: float) -> str:
    return "undefined (both means +inf)" if math.isnan(v) else _signed(v, 2)


def _convention_section(data, summary, labels: dict) -> list[str]:
    """What the released PSNR convention does to the numbers: +~24 dB and differences halved."""
    body = []
    for t in data.manifest["tasks"]:
        ours = summary[(summary.method == "ours") & (summary.task == t)]
        if ours.empty or ours.iloc[0].status != "ok":
            continue
        o = ours.iloc[0]
        for rec in summary[(summary.task == t) & (summary.status == "ok")].itertuples():
            if rec.method == "ours" or rec.method not in config.PUBLISHED_TABLE1:
                continue
            std_gap, paper_gap = _gap(o.psnr, rec.psnr), _gap(o.paper_psnr, rec.paper_psnr)
            ratio_ok = all(map(math.isfinite, (std_gap, paper_gap))) and abs(std_gap) > 1e-9
            body.append(
                [t, f"Ours − {labels.get(rec.method, rec.method)}", _gap_text(std_gap),
                 _gap_text(paper_gap), f"{paper_gap / std_gap:.2f}" if ratio_ok else "—"]
            )  # fmt: skip
    if not body:
        return ["No comparable cells."]
    return [
        "The released code's PSNR, 20·log10(255 / MSE^¼) with the MSE pooled over 32 images, "
        "equals (PSNR_std + 48.13) / 2 on a batch: it adds about 24 dB and halves every "
        "difference between methods (pooling the MSE also weights the worst images more). "
        "Reading its MSE on the 0..31 values of the 5-bit images instead of their 8-bit "
        "display (x5 · 8) would add 5·log10(64) = 9.03 dB to every entry. "
        "Gaps between Ours and each method, in both conventions:",
        "",
        md_table(
            [
                "task",
                "gap",
                "standard PSNR dB (mean of images)",
                "paper convention",
                "paper / standard",
            ],
            body,
        ),  # fmt: skip
    ]


def render_claims(data, results_dir: str | Path, out_dir: str | Path | None = None) -> str:
    """The Markdown of claims.md for a loaded run (report.RunData); `out_dir`: where it is
    written, for its rebuild line."""
    from bench.report import (
        images_line,
        model_line,
        paper_table,
        preset_line,
        run_commands_line,
        summary_frame,
    )

    results_dir = Path(results_dir)
    man = data.manifest
    labels = man.get("method_labels", {})
    summary = summary_frame(data)
    cells = test_cells(data)
    claims = claim_results(data, cells)
    realism_lines, realism_verdict, realism_evidence = _realism_section(
        results_dir, man.get("model")
    )
    timing_lines, timing_verdict, timing_evidence = _timing_section(results_dir)
    lines = [
        f"# The paper's claims, tested on run `{man['run_id']}`",
        "",
        f"- **Test images**: {images_line(man.get('test_images'))}",
        f"- **Preset**: {preset_line(man['preset'])}",
        f"- **Solver**: {man['iters']} iterations per solve, seed {man['seed']}",
        f"- **Model**: {model_line(man.get('model', {}))}",
        run_commands_line(man),
        f"- **Rebuild**: `bench findings --run {man['run_id']}"
        f"{rebuild_options(results_dir, out_dir)}` rewrites this file from the stored results "
        f"(and {as_given(results_dir / REALISM_FILE)}, {as_given(results_dir / 'timing*.csv')}), "
        "identically, "
        "without solving",
        sources_line(man, results_dir),
        "",
        "Differences are paired per image (same test image, same noisy measurement) between "
        "the two methods' reported cells: mean a − b with the Student-t 95% interval, and the "
        f"BCa bootstrap 95% interval ({BOOTSTRAP_RESAMPLES:,} resamples). A claim that A beats "
        "B is *supported* when both the PSNR and the SSIM t-intervals lie above 0; a tie is "
        f"*supported* when both lie inside ±{TIE_PSNR_DB} dB and ±{TIE_SSIM} SSIM. No "
        "correction for multiple comparisons. A verdict needs at least "
        f"{MIN_PAIRED_IMAGES} paired images (below that the t-interval rests on the normality "
        "of a handful of differences and the bootstrap has few distinct resamples) and a flow "
        f"that is not a smoke flow (not the `{SMOKE_PRESET}` preset, at least "
        f"{MIN_FLOW_EPOCHS} epochs, width at least {MIN_FLOW_WIDTH}); short of either it reads "
        f"*{NOT_MEANINGFUL}* and says why. Each verdict states its evidence.",
        "",
        "## Summary",
        "",
    ]
    summary_rows = [
        [c["claim"].text, c["verdict"], _claim_evidence(c, man.get("model")),
         _key_numbers(c["comparisons"])]
        for c in claims
    ]  # fmt: skip
    summary_rows.append(
        [f"latent σ in [{REALISTIC_STDS[0]:g}, {REALISTIC_STDS[1]:g}] gives the most realistic "
         "samples (Figure 1)", realism_verdict, realism_evidence, "see below"]
    )  # fmt: skip
    summary_rows.append(
        ["coupling permutations generate faster than invertible 1×1 convolutions (Table 2)",
         timing_verdict, timing_evidence, "see below"]
    )  # fmt: skip
    lines += [
        md_table(
            ["claim of the paper", "our run", "evidence", "Δ PSNR dB / Δ SSIM (a − b, mean)"],
            summary_rows,
        ),
        "",
    ]
    lines += ["## Table 1 claims: paired per-image differences", ""]
    body = []
    for c in claims:
        body += _comparison_rows(c["comparisons"], labels, c["claim"].text)
    lines += [md_table(CMP_HEADER, body), ""]
    exact = _exact_note([r for c in claims for r in c["comparisons"]])
    if exact:
        lines += [exact, ""]
    edges = _edge_notes(man, summary, labels)
    if edges:
        lines += ["Weights selected at the edge of their grid (reported cells):", ""] + edges
        lines.append("")
    lines += ["## Figure 1: which latent σ gives the most realistic samples", ""]
    lines += realism_lines + [""]
    lines += ["## Table 2: generation time, coupling permutations against 1×1 convolutions", ""]
    lines += timing_lines + [""]
    ablation = ablation_results(data, cells)
    if any(r["a"] == "l1-z0" for r in ablation):
        gw = summary[(summary.method == "glowip")]
        gammas = ", ".join(
            f"{r.task} γ = {r.weight:g}" for r in gw.itertuples() if r.status == "ok"
        )
        lines += [
            "## What makes the solver better than GlowIP (ablation, not in the paper)",
            "",
            "The solver differs from GlowIP in its data term (L1, not squared L2), its initial "
            "latent (z₀ ~ N(0, 0.1² I), not 0) and its prior term (α·L(z), not γ‖z‖²). Each row "
            f"changes one of them (GlowIP at its selected weight: {gammas}):",
            "",
            md_table(
                CMP_HEADER[1:-1] + ["ingredient"],
                [row[1:-1] + [r["what"]] for r, row in
                 zip(ablation, _comparison_rows(ablation, labels), strict=True)],
            ),
            "",
        ]  # fmt: skip
    lines += [
        "## Paper convention beside the published Table 1",
        "",
        "Our PSNR in the released code's convention / our SSIM (published values in parentheses).",
        "",
        paper_table(
            summary,
            [m for m in man["methods"] if m in config.PUBLISHED_TABLE1],
            man["tasks"],
            labels,
        ),
        "",
        "## Defects of the released code (PROTOCOL §8), measured",
        "",
    ]
    defects = defect_results(data, cells)
    lines += ["### Released-code variants", ""]
    if defects:
        lines += [
            "Each released-code variant against the method it corrupts, same test images and "
            "measurements (variant − corrected):",
            "",
            md_table(CMP_HEADER[1:-1] + ["defect"],
                   [row[1:-1] + [r["what"]] for r, row in
                    zip(defects, _comparison_rows(defects, labels), strict=True)]),
            "",
        ]  # fmt: skip
    else:
        lines += ["No released-code variant in this run (add `--methods map-released,"
                  "ours-released` to the run command).", ""]  # fmt: skip
    lines += ["### The PSNR formula", ""] + _convention_section(data, summary, labels)
    lines += ["", "### Unseeded noise", ""] + _seed_section(results_dir, man)
    return "\n".join(lines) + "\n"


def write_claims(
    run_dir: str | Path,
    results_dir: str | Path = "results",
    out_dir: str | Path = "reports",
) -> Path:
    from bench.report import load_run

    return atomic_write_text(
        Path(out_dir) / CLAIMS_FILE, render_claims(load_run(run_dir), results_dir, out_dir)
    )


def claims_source(run_dir: str | Path):
    """What claims.md of this stored run is made from (`bench.provenance.claims_source`)."""
    from bench import provenance as P
    from bench.report import read_manifest

    return P.claims_source(P.run_source(read_manifest(run_dir)))
