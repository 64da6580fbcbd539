"""Unseeded noise (PROTOCOL §8): how far a Table 1 mean moves with the seed of the noise and
initial latents alone, from runs that differ only in their seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.findings.text import num
from bench.report import md_table


def seed_results(results_dir: str | Path, manifest: dict):
    """Runs that differ from each other only in the seed of the noise and initial latents
    (same model, dataset, preset and test images; the paper's weights, so no selection can
    differ): per (method, task, seed) mean PSNR / SSIM and their 95% half-widths."""
    import pandas as pd

    from bench.runner import list_runs, read_manifest

    rows = []
    for run_dir in list_runs(results_dir):
        man = read_manifest(run_dir)  # the rows are read only for the runs that qualify
        if _same_but_seed(man, manifest):
            rows += _seed_rows(run_dir, man)
    return pd.DataFrame(rows)


def _same_but_seed(man: dict, manifest: dict) -> bool:
    """Whether run `man` solved what `manifest`'s run did (same model, dataset, preset and
    test images) with the paper's weights."""
    key = manifest.get("key", {})
    k = man.get("key", {})
    same = all(k.get(f) == key.get(f) for f in ("dataset", "test_images", "preset"))
    if not same or man.get("weights") != "paper":
        return False
    model = (manifest.get("model") or {}).get("fingerprint")
    return (man.get("model") or {}).get("fingerprint") == model


def _seed_rows(run_dir: Path, man: dict) -> list[dict]:
    """The run's reported cells that ran: mean PSNR / SSIM and their half-widths, its seed."""
    from bench.report import load_run, summary_frame

    rows = []
    for rec in summary_frame(load_run(run_dir)).itertuples():
        if rec.status != "ok":
            continue
        rows.append(
            {"method": rec.method, "label": rec.label, "task": rec.task, "seed": man["seed"],
             "n": rec.n, "psnr": rec.psnr, "psnr_ci": rec.psnr_ci, "ssim": rec.ssim,
             "ssim_ci": rec.ssim_ci, "run": man["run_id"]}
        )  # fmt: skip
    return rows


def spread(values, digits: int) -> str:
    """max − min of per-run means; +inf means (exact restorations) spread by 0 among
    themselves and by +inf from a finite one; NaN: 'undefined'."""
    v = np.asarray(values, np.float64)
    if np.isnan(v).any():
        return "undefined"
    if np.isinf(v).any():
        return "0 (all +inf)" if np.isposinf(v).all() else "+inf (some means +inf)"
    return f"{v.max() - v.min():.{digits}f}"


def mean_defined(values, digits: int, why: str) -> str:
    """The mean of per-run values, or 'undefined (why)' when one is NaN (pandas' mean would
    silently skip it)."""
    v = np.asarray(values, np.float64)
    if np.isnan(v).any():
        return f"undefined ({why})"
    return num(float(v.mean()), digits)


def seed_section(results_dir: Path, manifest: dict) -> list[str]:
    """The 'Unseeded noise' section of claims.md: per-seed means, their spread and one run's
    half-width, or how to measure them."""
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
            + [f"{num(by.psnr[s], 2)} / {by.ssim[s]:.3f}" if s in by.index else "—"
               for s in seeds]
            + [spread(g.psnr, 2), mean_defined(g.psnr_ci, 2, "a mean PSNR is +inf"),
               spread(g.ssim, 4)]
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
