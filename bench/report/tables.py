"""The Markdown tables of table1.md (and of the console after a run): our results, the paper
convention beside the published values, the selected weights, the grid search, and the notes
on skipped, failed and exact cells."""

from __future__ import annotations

import math

import numpy as np

from bench.report.declared import task_title, weight_symbol
from bench.report.text import (
    format_weight,
    md_table,
    num,
    paper_psnr_text,
    pm,
    psnr_text,
    weight_text,
)


def _status_text(rec) -> str:
    if rec["status"] == "skipped":
        return "n/a"
    if rec["status"] == "failed":
        return f"**failed** ({rec['reason']})"
    if rec["status"] == "not run":
        return "not run"
    return ""


def _record(summary, m: str, t: str):
    """The summary row of method `m` on task `t`."""
    return summary[(summary.method == m) & (summary.task == t)].iloc[0]


def _method_table(summary, methods: list[str], tasks: list[str], labels: dict, cell) -> str:
    """A table of one row per method, one column per task, `cell(rec)` the text of each."""
    body = [[labels.get(m, m)] + [cell(_record(summary, m, t)) for t in tasks] for m in methods]
    titles = [_record(summary, methods[0], t).task_label if methods else t for t in tasks]
    return md_table(["method"] + titles, body)


def ours_table(summary, methods: list[str], tasks: list[str], labels: dict) -> str:
    def cell(rec) -> str:
        return _status_text(rec) or (f"{psnr_text(rec)} / {pm(rec.ssim, rec.ssim_ci, 3)}")

    return _method_table(summary, methods, tasks, labels, cell)


def paper_table(summary, methods: list[str], tasks: list[str], labels: dict) -> str:
    def cell(rec) -> str:
        pub = (
            f"{num(rec.published_psnr, 2)} / {num(rec.published_ssim, 3)}"
            if not math.isnan(rec.published_psnr)
            else "—"
        )
        ours = _status_text(rec) or f"{paper_psnr_text(rec)} / {num(rec.ssim, 3)}"
        return f"{ours} (paper: {pub})"

    return _method_table(summary, methods, tasks, labels, cell)


def _weight_cell(rec) -> str:
    """The selected weight of a summary row and where it came from, or why there is none."""
    if rec.status == "skipped":
        return "n/a"
    if not rec.source:
        return "not run"
    if rec.status == "failed" and not rec.cell:
        return f"none ({rec.reason})"
    if rec.status == "not run" and not rec.cell:
        return "none yet (rerun the command)"
    if not rec.weight_name:
        return "no weight"
    w = None if math.isnan(rec.weight) else rec.weight
    return f"{weight_text(rec.weight_symbol, w)} ({rec.source})"


def weights_table(summary, methods: list[str], tasks: list[str], labels: dict) -> str:
    return _method_table(summary, methods, tasks, labels, _weight_cell)


def grid_tables(grid, methods: list[str], tasks: list[str], labels: dict, man: dict) -> str:
    parts = []
    for t in tasks:
        sub = grid[grid.task == t]
        if len(sub) == 0:
            continue
        weights = sorted(set(sub.weight))
        body = []
        for m in methods:
            ms = sub[sub.method == m]
            if len(ms) == 0:
                continue
            row = [f"{labels.get(m, m)} ({weight_symbol(man, m)})"]
            body.append(row + [_grid_cell(ms, w) for w in weights])
        parts.append(
            f"**{task_title(man, t)}**\n\n"
            + md_table(["method"] + [format_weight(w) for w in weights], body)
        )
    return "\n\n".join(parts)


def _grid_cell(ms, w) -> str:
    """The text of one method's grid row at weight `w`: its mean PSNR, failed or exact
    counts, in bold when selected; '' when the method has no row at that weight."""
    c = ms[np.isclose(ms.weight, w)]
    if len(c) == 0:
        return ""
    c = c.iloc[0]
    if c.n_diverged:
        text = f"failed ({c.n_diverged}/{c.n})"
    elif c.n_exact:
        text = f"+inf ({c.n_exact}/{c.n} exact)"
    else:
        text = num(c.psnr, 2)
    return f"**{text}**" if c.selected else text


def _grid_note(rec, man: dict, labels: dict) -> str:
    """'- CSGM on denoising, γ = 0.1 (grid): ': how a note about a grid cell begins."""
    return (
        f"- {labels.get(rec.method, rec.method)} on {rec.task}, "
        f"{weight_text(weight_symbol(man, rec.method), rec.weight)} (grid): "
    )


def cell_notes(summary, grid, man: dict, labels: dict) -> list[str]:
    """One line per skipped, failed or not yet run reported cell, and per grid cell with
    diverged images."""
    notes = []
    for rec in summary.itertuples():
        if rec.status == "skipped":
            notes.append(f"- {rec.label} on {rec.task}: skipped — {rec.reason}")
        elif rec.status == "failed":
            notes.append(f"- {rec.label} on {rec.task}: **failed** — {rec.reason}")
        elif rec.status == "not run":
            notes.append(
                f"- {rec.label} on {rec.task}: not run yet"
                + (f" — {rec.reason}" if rec.reason else "")
            )
    failed_grid = grid[grid.n_diverged > 0] if len(grid) else grid
    for rec in failed_grid.itertuples():
        notes.append(
            f"{_grid_note(rec, man, labels)}**failed** — {rec.n_diverged}/{rec.n} images diverged"
        )
    return notes


def exact_notes(summary, grid, man: dict, labels: dict) -> list[str]:
    """One line per reported cell and grid cell with images restored exactly (PSNR +inf: a
    valid value, the best one, and not a divergence): how many, and what that does to the
    mean and its interval."""
    notes = []
    for rec in summary[(summary.status == "ok") & (summary.n_exact > 0)].itertuples():
        k, n = int(rec.n_exact), int(rec.n)
        rest = (
            "" if k == n else f"; the other {n - k} image(s) average {num(rec.psnr_finite, 2)} dB"
        )
        notes.append(
            f"- {rec.label} on {rec.task}: {k}/{n} test images restored exactly (PSNR +inf), so "
            f"the mean PSNR is +inf and its 95% interval is undefined{rest}; SSIM "
            f"{pm(rec.ssim, rec.ssim_ci, 3)}"
        )
    exact_grid = grid[grid.n_exact > 0] if len(grid) else grid
    for rec in exact_grid.itertuples():
        notes.append(
            f"{_grid_note(rec, man, labels)}{rec.n_exact}/{rec.n} images exact, mean PSNR +inf"
            + (" (selected: ties go to the earlier grid value)" if rec.selected else "")
        )
    return notes
