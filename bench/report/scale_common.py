"""What the parts of reports/scale.md share: the study's runs read as paired test cells, how a
paired difference is written, and the row of panels each figure is drawn on."""

from __future__ import annotations

import math
from pathlib import Path

from bench.findings import test_cells
from bench.report.frames import load_run
from bench.report.text import num
from bench.runner import find_run

FIGURES_DIR = "scale"


def cells_of(results_dir, run_id: str | None, rename: dict | None = None, images=None) -> dict:
    """A stored run's reported test cells (`test_cells`), methods renamed by `rename`, rows
    restricted to `images` (names) when given; {} for no run."""
    if not run_id:
        return {}
    cells = test_cells(load_run(find_run(results_dir, run_id)))
    out = {}
    for (m, t), frame in cells.items():
        if images is not None:
            frame = frame.loc[frame.index.isin(images)]
        out[((rename or {}).get(m, m), t)] = frame
    return out


def diff_text(r: dict | None, key: str = "psnr", digits: int = 2) -> str:
    if r is None:
        return "—"
    d = r[key]
    return f"{num(d['mean'], digits)} [{num(d['lo'], digits)}, {num(d['hi'], digits)}]"


def bpd_key(flow: dict) -> float:
    v = flow.get("val_bpd")
    return -float(v) if isinstance(v, (int, float)) else math.inf


def panel_row(n: int, width: float, height: float):
    """A row of `n` matplotlib panels, each `width` × `height` inches (Agg backend): (fig, axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, axes[0]


def colors_of(names) -> dict:
    """One matplotlib color per name, the same in every panel of a figure (sorted names): the
    default cycle's ten, or tab20's twenty for more names (repeating after twenty)."""
    import matplotlib

    names = sorted(set(names))
    if len(names) <= 10:
        return {name: f"C{i}" for i, name in enumerate(names)}
    tab20 = matplotlib.colormaps["tab20"].colors
    return {name: tab20[i % 20] for i, name in enumerate(names)}


def finish_row(fig, axes, ylabel: str, legend_size: int, title: str, png: Path) -> None:
    """Label the first panel, put on the last a legend of every line in any panel, title the
    row and save it as `png`."""
    import matplotlib.pyplot as plt

    from bench.report.png import save_png

    axes[0].set_ylabel(ylabel)
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    axes[-1].legend(list(handles.values()), list(handles), fontsize=legend_size)
    fig.suptitle(title)
    png.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, png)
    plt.close(fig)
