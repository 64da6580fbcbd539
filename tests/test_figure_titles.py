"""Figure titles fit their figures: wrapped to the width, with room made above the axes, for a
long command line too (issue 11, item 7c): Figure 1, Figures 3–6 and grid_search.png."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import report
from bench.samples import figure1

LONG_COMMAND = (
    "bench sample --checkpoint results/checkpoints/celeba-cpu-coupling.pt --preset cpu "
    "--dataset celeba --stds 0,0.25,0.5,0.75,0.8,1,1.2 --out "
    "/a/rather/long/folder/of/reports/that/goes/on/and/on/without/any/space/fig1_samples.png"
)
TITLE = (
    "Figure 1: coupling flow, width 128, 3,456,789 params, 24 epochs on CelebA (development "
    f"copy: 15,000 of 162,770 train images) (valid 2.835 bits/dim), seed 0\n{LONG_COMMAND}"
)


def assert_title_fits(fig):
    """The title's drawn extent lies inside the figure and above every axes."""
    fig.canvas.draw()
    title = fig._suptitle
    box, frame = title.get_window_extent(), fig.bbox
    assert box.x0 >= frame.x0 and box.x1 <= frame.x1, (box, frame)
    assert box.y0 >= frame.y0 and box.y1 <= frame.y1, (box, frame)
    for ax in fig.axes:
        assert box.y0 >= ax.get_window_extent().y1 - 1e-6, (box, ax.get_window_extent())


@pytest.mark.parametrize("shape", [(7, 16), (2, 2), (1, 1)])
def test_figure1_title_fits_for_a_long_command(shape):
    rows, per_row = shape
    samples = torch.zeros((rows, per_row, 3, 32, 32), dtype=torch.uint8)
    fig = figure1(samples, [0.5 * r for r in range(rows)], TITLE)
    assert_title_fits(fig)
    assert "fig1_samples.png" in fig._suptitle.get_text().replace("\n", "")


def test_figure1_keeps_a_short_title_on_its_lines():
    samples = torch.zeros((2, 16, 3, 32, 32), dtype=torch.uint8)
    fig = figure1(samples, [0, 1], "Figure 1: a short title\nbench sample")
    assert fig._suptitle.get_text() == "Figure 1: a short title\nbench sample"
    assert_title_fits(fig)


@pytest.mark.parametrize("n", [1, 4, 8])
def test_mosaic_title_fits(n):
    rows = [("target", np.zeros((n, 3, 32, 32), np.uint8)), ("measurement", None)]
    fig = report.mosaic(rows, n, f"Figure 3: denoising — {LONG_COMMAND}")
    assert_title_fits(fig)


def test_grid_search_title_fits(monkeypatch, tmp_path):
    """A one-task grid (a narrow figure) under the longest title the plot can have."""
    import pandas as pd

    grid = pd.DataFrame(
        {
            "task": ["denoising"] * 2,
            "method": ["ours"] * 2,
            "weight": [0.0, 0.02],
            "psnr": [np.inf, 30.0],
            "selected": [True, False],
            "n_diverged": [0, 0],
        }
    )
    manifest = {
        "tasks": ["denoising"],
        "methods": ["ours"],
        "select_on": "valid",
        "weight_names": {"ours": "alpha"},
        "dataset": "a-dataset-with-a-rather-long-name",
        "preset": {"name": "cpu"},
    }
    data = report.RunData(tmp_path, manifest, rows=None, cache={"grid": grid})
    saved = []
    monkeypatch.setattr(
        "bench.report.grid_figure.save_png", lambda fig, path: saved.append(fig) or path
    )
    report.write_grid_png(data, tmp_path / "grid.png")
    assert_title_fits(saved[0])
