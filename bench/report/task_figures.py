"""Figures 3–6 (``fig3_denoising.png`` … ``fig6_colorization.png``): rows target, measurement
and each method, on the first test images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bench import config
from bench.report.declared import figure_caption, split_methods, task_info
from bench.report.frames import RunData, as_run_data, summary_frame
from bench.report.png import save_png
from bench.report.text import weight_text
from bench.runner import read_inputs

FIGURE_IMAGES = 8  # columns of Figures 3–6: the first test images


def _hwc(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(1, 2, 0))


def write_figure(
    data: RunData | str | Path, task: str, path: str | Path, n_images: int = FIGURE_IMAGES
) -> Path | None:
    """One of Figures 3–6: rows target, measurement and each method that ran on the task
    (its reported cell), columns the first `n_images` test images. None without inputs."""

    from bench.runner import read_restored

    data = as_run_data(data)
    man = data.manifest
    inputs = read_inputs(data.run_dir, task)
    if inputs is None:
        return None
    n = min(n_images, len(inputs["names"]))
    summary = summary_frame(data)
    rows: list[tuple[str, np.ndarray | None]] = [
        ("target", inputs["target"][:n]),
        (task_info(man, task).get("display_label", "measurement"), inputs["measurement"][:n]),
    ]
    main, _ = split_methods(man["methods"], man)
    for rec in summary[summary.task == task].itertuples():
        if rec.method not in main or rec.status not in ("ok", "failed") or not rec.cell:
            continue
        imgs = read_restored(data.run_dir, rec.cell, task)
        w = None if math.isnan(rec.weight) else rec.weight
        name = rec.label + ("" if not rec.weight_name else f"\n{weight_text(rec.weight_symbol, w)}")
        if rec.status == "failed":
            name += "\n(failed)"
        rows.append((name, None if imgs is None else imgs[:n]))
    return save_png(
        mosaic(
            rows,
            n,
            f"{figure_caption(man, task)} — {man['dataset']}{_flow_words(man)}, "
            f"preset {man['preset']['name']}",
        ),
        Path(path),
    )


def _flow_words(man: dict) -> str:
    """', flow trained on celeba' for a run whose flow saw other images than its test set."""
    flow = man.get("flow_dataset", man["dataset"])
    return "" if flow == man["dataset"] else f", flow trained on {flow}"


def mosaic(rows: list[tuple[str, np.ndarray | None]], n: int, title: str):
    """One image of rows × n tiles (white gaps; a missing row stays gray) with row labels:
    a single Axes, so that even a 7 × 8 figure draws in a fraction of a second."""
    from matplotlib.figure import Figure

    size, gap = config.IMAGE_SIZE, 2
    step = size + gap
    canvas = np.full((len(rows) * step + gap, n * step + gap, 3), 255, dtype=np.uint8)
    for r, (_, imgs) in enumerate(rows):
        for c in range(n):
            y, x = gap + r * step, gap + c * step
            if imgs is not None and c < len(imgs):
                canvas[y : y + size, x : x + size] = _hwc(imgs[c])
            else:
                canvas[y : y + size, x : x + size] = 200
    from bench.plots import text_height_in, wrap_title

    tile_in = 0.85
    label_in = 1.3
    width = label_in + n * tile_in
    fig = Figure(figsize=(width, len(rows) * tile_in))
    title = wrap_title(fig, title, 10)  # fits the width; its lines get the room they need
    height = len(rows) * tile_in + max(0.45, 0.12 + text_height_in(fig, title, 10) + 0.1)
    fig.set_size_inches(width, height)
    ax = fig.add_axes((label_in / width, 0.0, n * tile_in / width, len(rows) * tile_in / height))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    for r, (name, _) in enumerate(rows):
        ax.text(-gap * 2, gap + r * step + size / 2, name, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10, y=1 - 0.12 / height, va="top")
    return fig
