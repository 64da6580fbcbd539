"""Weight selection: the mean PSNR of a cell and the best weight of each grid."""

from __future__ import annotations

import math

import numpy as np

from bench.runner.plan import Plan


def cell_mean_psnr(rows) -> float:
    """Mean PSNR (dB) of a cell's rows (a DataFrame with 'psnr' and 'diverged').

    +inf when any image was restored exactly (PSNR +inf, a valid value: the best one); NaN
    (never chosen) when there are no rows, any image diverged, or a PSNR is NaN or -inf."""
    if len(rows) == 0 or rows["diverged"].astype(bool).any():
        return math.nan
    values = rows["psnr"].to_numpy(np.float64)
    if np.isnan(values).any() or (values == -np.inf).any():
        return math.nan
    if np.isposinf(values).any():
        return math.inf  # explicit: no inf arithmetic warnings, no NaN from inf - inf
    return float(values.mean())


def select_weights(rows, plan: Plan) -> dict[tuple[str, str], float | None]:
    """The best weight per (method, task) of the plan's grid: {(method, task): weight or None}.

    Best is the highest mean PSNR on the grid stage's images (`cell_mean_psnr`): +inf, a grid
    value that restored some image exactly, is a valid mean and beats every finite one; ties
    (two +inf included) go to the earlier grid value. None when every weight failed (diverged:
    NaN mean) or a weight has not run yet."""
    out: dict[tuple[str, str], float | None] = {}
    stage_rows = rows[rows["stage"] == plan.grid_stage] if len(rows) else rows
    for m, t in plan.to_select:
        sub = (
            stage_rows[(stage_rows["method"] == m) & (stage_rows["task"] == t)]
            if len(stage_rows)
            else stage_rows
        )
        means, complete = [], True
        for w in plan.grids[m]:
            cell_rows = (
                sub[np.isclose(sub["weight"].astype(float), w, rtol=1e-9, atol=0)]
                if len(sub)
                else sub
            )
            if len(cell_rows) == 0:
                complete = False
                continue
            means.append((w, cell_mean_psnr(cell_rows)))
        out[(m, t)] = best_weight(means)[0] if complete else None
    return out


def best_weight(means) -> tuple[float | None, float]:
    """The selection rule (`select_weights`): from (weight, mean PSNR in dB) pairs in grid
    order, the weight of the highest mean and that mean; NaN means (a failed cell) are never
    chosen, +inf beats every finite mean, ties go to the earlier weight. (None, -inf) when
    every mean is NaN."""
    best, best_psnr = None, -math.inf
    for w, psnr in means:
        if not math.isnan(psnr) and (best is None or psnr > best_psnr):
            best, best_psnr = w, psnr
    return best, best_psnr


def stored_selection(run_dir) -> dict[tuple[str, str], float | None]:
    """The weight a stored run reported per (method, task) (its manifest's selection: chosen
    on its grid, the paper's, or none for a weightless method), for `bench run --weights-from`.
    BenchError when the run is not complete, so its selection may still change."""
    from pathlib import Path

    from bench.errors import BenchError
    from bench.runner.store import read_manifest

    man = read_manifest(run_dir)
    if not man.get("complete"):
        raise BenchError(
            f"run {Path(run_dir).name} is not complete, so its weights are not all chosen: "
            "finish it (rerun its command) before taking its weights"
        )
    out: dict[tuple[str, str], float | None] = {}
    for method, tasks in (man.get("selection") or {}).items():
        for task, entry in tasks.items():
            weight = entry.get("weight") if isinstance(entry, dict) else None
            out[(method, task)] = None if weight is None else float(weight)
    return out
