"""grid_search.png: mean PSNR against the weight per method, one panel per task (log x axis;
a weight of 0 is drawn one decade left of the smallest positive weight and labelled 0)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.report.declared import weight_symbol
from bench.report.frames import RunData, as_run_data, grid_frame, grid_stage
from bench.report.png import save_png
from bench.report.text import STAGE_WORDS, format_weight


def write_grid_png(data: RunData | str | Path, path: str | Path) -> Path:
    """PSNR against the weight per method, one panel per task; 0 drawn one decade left of the
    smallest positive weight on the log axis and labelled 0."""
    from matplotlib.figure import Figure

    data = as_run_data(data)
    man = data.manifest
    grid = grid_frame(data)
    tasks = [t for t in man["tasks"] if len(grid) and (grid.task == t).any()]
    if not tasks:
        fig = Figure(figsize=(5, 1.5))
        fig.text(0.5, 0.5, "no grid search in this run", ha="center", va="center")
        return save_png(fig, Path(path))
    positive = [w for w in grid.weight if w > 0]
    zero_at = (min(positive) / 10) if positive else 1e-3
    any_inf = bool(np.isposinf(grid.psnr.to_numpy(float)).any())
    fig = Figure(figsize=(4.2 * len(tasks), 3.4), layout="constrained")
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    for ax, t in zip(axes, tasks, strict=True):
        _draw_task(ax, t, grid[grid.task == t], man, zero_at)
    _fitted_suptitle(
        fig,
        f"Grid search on the {STAGE_WORDS[grid_stage(man)]} (★ selected, × diverged"
        + (", ▲ +inf: an image restored exactly" if any_inf else "")
        + ") — "
        f"{man['dataset']}, preset {man['preset']['name']}",
    )
    return save_png(fig, Path(path))


def _draw_task(ax, t: str, sub, man: dict, zero_at: float) -> None:
    """One task's panel: a curve per method, the +inf line, the axes and their labels."""
    labels = man.get("method_labels", {})
    ticks = sorted(set(sub.weight))
    _, top = grid_y(sub.psnr)
    finite = sub.psnr[np.isfinite(sub.psnr.to_numpy(float))]
    for m in man["methods"]:
        ms = sub[sub.method == m].sort_values("weight")
        if len(ms) == 0:
            continue
        sym = weight_symbol(man, m)
        _draw_method(ax, ms, f"{labels.get(m, m)} ({sym})", zero_at, top, finite)
    _draw_plus_inf_line(ax, top, finite)
    ax.set_xscale("log")
    ax.set_xticks([w if w > 0 else zero_at for w in ticks])
    ax.set_xticklabels([format_weight(w) for w in ticks], rotation=45, fontsize=8)
    ax.minorticks_off()
    ax.set_title(t)
    ax.set_xlabel(
        "weight (log scale; 0 drawn one decade left)" if 0.0 in ticks else "weight (log scale)"
    )
    ax.set_ylabel("mean PSNR (dB)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def _draw_method(ax, ms, label: str, zero_at: float, top: float | None, finite) -> None:
    """One method's curve on a panel, with markers for exact restorations (▲ on the +inf
    line), the selected weight (★) and diverged weights (× at the lowest finite mean)."""
    xs = np.array([w if w > 0 else zero_at for w in ms.weight])
    ys, _ = grid_y(ms.psnr, top)
    line = ax.plot(xs, ys, marker="o", label=label)[0]
    # exact restorations: drawn on the +inf line, not dropped
    _mark(ax, xs, ys, np.isposinf(ms.psnr.to_numpy(float)), "^", 9, line.get_color())
    _mark(ax, xs, ys, ms.selected.to_numpy(bool), "*", 14, line.get_color())
    bad = ms[ms.n_diverged > 0]
    if len(bad):
        bx = [w if w > 0 else zero_at for w in bad.weight]
        ymin = float(finite.min()) if len(finite) else (top if top is not None else 0.0)
        ax.plot(bx, [ymin] * len(bx), marker="x", color=line.get_color(), linestyle="none")


def _mark(ax, xs, ys, which, marker: str, size: int, color) -> None:
    """Markers alone (no line) at the points `which` selects, if any."""
    if which.any():
        ax.plot(xs[which], ys[which], marker=marker, markersize=size, color=color, linestyle="none")


def _draw_plus_inf_line(ax, top: float | None, finite) -> None:
    """The dotted +inf line at height `top` (when a mean is +inf), labelled +inf on the y
    axis below which the finite ticks stay."""
    if top is not None:
        ax.axhline(top, color="0.5", linestyle=":", linewidth=1)
    if top is not None and not len(finite):  # every mean +inf: the height means only that
        ax.set_yticks([top], ["+inf"])
    elif top is not None:  # finite ticks below the +inf line, which is labelled +inf
        y0, y1 = ax.get_ylim()
        gap = top - float(finite.max())
        yticks = [float(y) for y in ax.get_yticks() if y0 <= y <= top - gap / 2]
        ax.set_yticks(yticks + [top], [f"{y:g}" for y in yticks] + ["+inf"])
        ax.set_ylim(y0, max(y1, top + gap / 4))


def _fitted_suptitle(fig, title: str, fontsize: float = 10) -> None:
    """`fig`'s title wrapped to its width (`bench.plots`), the figure made taller by the
    lines it added (its constrained layout keeps the title clear of the axes)."""
    from bench.plots import text_height_in, wrap_title

    wrapped = wrap_title(fig, title, fontsize)
    extra = text_height_in(fig, wrapped, fontsize) - text_height_in(fig, "Hg", fontsize)
    if wrapped != title and extra > 0:
        fig.set_size_inches(fig.get_figwidth(), fig.get_figheight() + extra)
    fig.suptitle(wrapped, fontsize=fontsize)


def grid_y(psnr, top: float | None = None) -> tuple[np.ndarray, float | None]:
    """Plot heights for mean PSNRs (dB) on a linear axis: finite values as they are, NaN (a
    diverged cell) as a gap, +inf (an exact restoration) on a line `top` above the finite
    values (matplotlib would silently drop it). Returns (heights, top); `top` is computed
    when not given (None when there is no +inf)."""
    v = np.asarray(psnr, dtype=np.float64)
    inf = np.isposinf(v)
    if top is None and inf.any():
        fin = v[np.isfinite(v)]
        if fin.size:
            lo, hi = float(fin.min()), float(fin.max())
            top = hi + max(1.0, 0.15 * (hi - lo))
        else:
            top = 0.0
    ys = v.copy()
    ys[~np.isfinite(v)] = np.nan
    if inf.any():
        ys[inf] = top
    return ys, top
