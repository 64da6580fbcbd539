"""A stored run read into frames: its per-image rows, one summary row per (method, task) and
the grid search's mean per weight. Rows are read with pandas from the CSV files the runner
stores (`bench.runner.read_cells`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import config
from bench.report.declared import task_title, weight_symbol
from bench.report.text import num, weight_text
from bench.runner import read_cells, read_manifest, weight_key

GRID_COLUMNS = [
    "method",
    "task",
    "weight",
    "n",
    "n_diverged",
    "n_exact",
    "psnr",
    "ssim",
    "selected",
]


@dataclass
class RunData:
    run_dir: Path
    manifest: dict
    rows: object  # pandas DataFrame, one row per image and cell
    cache: dict = field(default_factory=dict)  # summary and grid frames, computed once


def load_run(run_dir: str | Path) -> RunData:
    run_dir = Path(run_dir)
    return RunData(run_dir, read_manifest(run_dir), read_cells(run_dir))


def as_run_data(data: RunData | str | Path) -> RunData:
    """`data` as it is when already loaded, else the stored run at that path, loaded."""
    return data if isinstance(data, RunData) else load_run(data)


def grid_stage(man: dict) -> str:
    """The stage whose rows the grid search ran on: 'select' (the valid images) or 'test'."""
    return "select" if man.get("select_on") == "valid" else "test"


def cell_rows(rows, stage: str, method: str, task: str, weight):
    if len(rows) == 0:
        return rows
    sel = rows[(rows["stage"] == stage) & (rows["method"] == method) & (rows["task"] == task)]
    w = sel["weight"].astype(float)
    if weight is None:
        sel = sel[w.isna()]
    else:
        sel = sel[np.isclose(w, float(weight), rtol=1e-9, atol=0)]
    return sel.sort_values("index")


def paper_convention_psnr(mse5_in_order, batch: int = config.EVAL_BATCH) -> tuple[float, int]:
    """The released code's PSNR (PROTOCOL §6, dB), MSE pooled over consecutive batches of `batch`
    images (a last partial batch included), averaged over batches: (value, batches).

    A batch whose pooled MSE is 0 (every image exact) has a PSNR of +inf, and so has the
    average (see `exact_batches`); no values or a non-finite MSE: (nan, 0)."""
    from bench import metrics

    v = np.asarray(mse5_in_order, dtype=np.float64)
    if v.size == 0 or not np.isfinite(v).all():
        return math.nan, 0
    groups = [v[i : i + batch] for i in range(0, v.size, batch)]
    values = [metrics.paper_psnr(g) for g in groups]
    if any(math.isinf(x) for x in values):
        return math.inf, len(groups)
    return float(np.mean(values)), len(groups)


def exact_batches(mse5_in_order, batch: int = config.EVAL_BATCH) -> int:
    """How many of `paper_convention_psnr`'s batches have a pooled MSE of 0 (PSNR +inf)."""
    v = np.asarray(mse5_in_order, dtype=np.float64)
    return sum(int(np.all(v[i : i + batch] == 0)) for i in range(0, v.size, batch))


# ---- the summary: one row per (method, task) ---------------------------------------------------
def summary_frame(data: RunData | str | Path):
    """One row per (method, task) of the run, in table order: status ('ok', 'failed',
    'skipped', 'not run'), the reported weight and its source, image count, PSNR and SSIM mean
    and 95% half-width, paper-convention PSNR, published values."""
    import pandas as pd

    data = as_run_data(data)
    if "summary" in data.cache:
        return data.cache["summary"]
    man = data.manifest
    out = [_summary_record(data, m, t) for m in man["methods"] for t in man["tasks"]]
    data.cache["summary"] = pd.DataFrame(out)
    return data.cache["summary"]


def _blank_record(man: dict, m: str, t: str) -> dict:
    """A summary row of a cell not run yet, with the published values of Table 1."""
    rec = {
        "method": m,
        "label": man.get("method_labels", {}).get(m, m),
        "task": t,
        "status": "not run",
        "reason": "",
        "weight_name": man.get("weight_names", {}).get(m) or "",
        "weight_symbol": weight_symbol(man, m),
        "task_label": task_title(man, t),
        "weight": math.nan,
        "source": "",
        "cell": "",
        "n": 0,
        "n_diverged": 0,
        "n_exact": 0,  # images restored exactly: PSNR +inf
        "psnr": math.nan,
        "psnr_ci": math.nan,
        "ssim": math.nan,
        "ssim_ci": math.nan,
        "paper_psnr": math.nan,
        "paper_batches": 0,
        "paper_exact": 0,  # batches whose pooled MSE is 0: paper PSNR +inf
        "psnr_finite": math.nan,  # mean PSNR of the images not restored exactly
        "published_psnr": math.nan,
        "published_ssim": math.nan,
    }
    pub = config.PUBLISHED_TABLE1.get(m, {}).get(t)
    if pub:
        rec["published_psnr"], rec["published_ssim"] = pub
    return rec


def _summary_record(data: RunData, m: str, t: str) -> dict:
    """The summary row of method `m` on task `t`: skipped, not selected yet, failed on every
    weight, or the measures of its reported cell's test images."""
    man = data.manifest
    rec = _blank_record(man, m, t)
    reason = man.get("skipped", {}).get(m, {}).get(t)
    sel = man.get("selection", {}).get(m, {}).get(t)
    if reason and not sel:
        rec.update(status="skipped", reason=reason)
        return rec
    if not sel:
        return rec
    rec["source"] = sel.get("source", "")
    w = sel.get("weight")
    if w is None and sel.get("failed"):
        stale = _stale_failure(data, m, t)
        if stale:
            rec.update(reason=stale)  # status stays 'not run'
        else:
            rec.update(status="failed", reason="every weight of the grid diverged")
        return rec
    rec["weight"] = math.nan if w is None else float(w)
    rec["cell"] = man.get("labels", {}).get(m, {}).get(weight_key(w), m)
    cell = cell_rows(data.rows, "test", m, t, w)
    if len(cell):
        _add_measures(rec, cell)
    return rec


def _add_measures(rec: dict, cell) -> None:
    """Fill `rec` from its cell's test rows: failed when an image diverged, else 'ok' with the
    PSNR and SSIM means and intervals and the paper-convention PSNR."""
    from bench import metrics

    diverged = cell["diverged"].astype(bool)
    rec["n"], rec["n_diverged"] = len(cell), int(diverged.sum())
    if diverged.any():
        rec.update(
            status="failed",
            reason=f"{int(diverged.sum())}/{len(cell)} images diverged (NaN or inf)",
        )
        return
    rec["status"] = "ok"
    psnr = cell["psnr"].to_numpy(float)
    exact = np.isposinf(psnr)
    rec["n_exact"] = int(exact.sum())
    if exact.any():
        # the mean of values that include +inf is +inf; no interval can be formed
        rec["psnr"], rec["psnr_ci"] = math.inf, math.nan
        if not exact.all():
            rec["psnr_finite"] = float(psnr[~exact].mean())
    else:
        rec["psnr"], rec["psnr_ci"] = metrics.mean_ci(psnr)
        rec["psnr_finite"] = rec["psnr"]
    rec["ssim"], rec["ssim_ci"] = metrics.mean_ci(cell["ssim"].to_numpy(float))
    mse = cell["mse5"].to_numpy(float)
    rec["paper_psnr"], rec["paper_batches"] = paper_convention_psnr(mse)
    rec["paper_exact"] = exact_batches(mse)


def _stale_failure(data: RunData, method: str, task: str) -> str:
    """For a selection stored as failed (every weight diverged): '' when the stored grid rows
    agree, else why they do not (a selection made before exact restorations, PSNR +inf,
    counted as valid means) and the fix."""
    from bench.runner import best_weight, cell_mean_psnr

    man = data.manifest
    stage = grid_stage(man)
    means = []
    for w in man.get("grids", {}).get(method, []):
        cell = cell_rows(data.rows, stage, method, task, w) if w is not None else []
        means.append((w, cell_mean_psnr(cell) if len(cell) else math.nan))
    best, best_psnr = best_weight(means)
    if best is None:
        return ""
    return (
        "the stored selection says every weight diverged, but "
        f"{weight_text(weight_symbol(man, method), best)} has a mean PSNR of "
        f"{num(best_psnr, 2)} dB: rerun the run's command to select and run it"
    )


# ---- the grid search: one row per (method, task, weight) ---------------------------------------
def grid_frame(data: RunData | str | Path):
    """Mean PSNR (dB; +inf when an image was restored exactly, NaN when one diverged) and SSIM
    per (method, task, weight) on the grid stage's images (the selection images, or the test
    images with select_on='test'), with the image counts n, n_diverged and n_exact (PSNR
    +inf); empty without a grid."""
    import pandas as pd

    data = as_run_data(data)
    if "grid" in data.cache:
        return data.cache["grid"]
    man, rows = data.manifest, data.rows
    if man.get("weights") != "grid" or len(rows) == 0:
        data.cache["grid"] = pd.DataFrame(columns=GRID_COLUMNS)
        return data.cache["grid"]
    data.cache["grid"] = pd.DataFrame(_grid_records(data), columns=GRID_COLUMNS)
    return data.cache["grid"]


def _grid_records(data: RunData) -> list[dict]:
    """One record per grid weight of each (method, task) whose weight the grid selected."""
    man = data.manifest
    stage = grid_stage(man)
    out = []
    for m in man["methods"]:
        grid = [w for w in man.get("grids", {}).get(m, []) if w is not None]
        if len(grid) < 2:
            continue
        for t in man["tasks"]:
            sel = man.get("selection", {}).get(m, {}).get(t) or {}
            if sel.get("source") not in ("valid grid", "test grid"):
                continue
            for w in grid:
                cell = cell_rows(data.rows, stage, m, t, w)
                if len(cell):
                    out.append(_grid_record(cell, m, t, w, sel.get("weight")))
    return out


def _grid_record(cell, m: str, t: str, w, chosen) -> dict:
    """The grid row of weight `w` from its cell's rows (`chosen`: the selected weight)."""
    from bench.runner import cell_mean_psnr

    div = cell["diverged"].astype(bool)
    ok = not div.any()
    return {
        "method": m,
        "task": t,
        "weight": float(w),
        "n": len(cell),
        "n_diverged": int(div.sum()),
        "n_exact": int(np.isposinf(cell["psnr"].to_numpy(float)).sum()),
        # +inf when an image is exact, NaN when one diverged
        "psnr": cell_mean_psnr(cell),
        "ssim": float(cell["ssim"].mean()) if ok else math.nan,
        "selected": chosen is not None and math.isclose(float(chosen), float(w)),
    }
