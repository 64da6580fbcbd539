"""Figure 1: samples of a trained flow for several latent standard deviations σ."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from bench import config
from bench.atomic import atomic_write


@torch.no_grad()
def sample_grid(
    flow,
    stds: Sequence[float],
    per_row: int = config.SAMPLES_PER_ROW,
    seed: int = 0,
    finite: list | None = None,
) -> torch.Tensor:
    """uint8 samples of shape (len(stds), per_row, 3, 32, 32). Every row uses the same
    standard-normal draws scaled by its σ, so rows differ only in σ (σ = 0 gives z = 0).

    Raises BenchError when the flow generates NaN or inf (finite weights can still overflow):
    a figure of black squares would hide it. With a list `finite`, a bool numpy array of
    shape (per_row,) per σ, which samples are finite, is appended to it instead: the caller
    drops the others (the realism proxy), whose pixels are meaningless."""
    from bench.data import to_pixels
    from bench.errors import BenchError

    device = next(flow.parameters()).device
    eps = torch.randn(per_row, flow.dim, generator=torch.Generator().manual_seed(seed))
    rows = []
    for s in stds:
        x, _ = flow.inverse((eps * float(s)).to(device))
        ok = torch.isfinite(x.reshape(len(x), -1)).all(1)
        bad = int((~ok).sum())
        if finite is not None:
            finite.append(ok.cpu().numpy())
        elif bad:
            raise BenchError(
                f"the flow generates NaN or inf for {bad} of {len(x)} samples at σ = {s:g}: "
                "its weights overflow; use another checkpoint (or retrain it)"
            )
        rows.append(to_pixels(x.float().cpu()))
    return torch.stack(rows)


FIG1_TILE_IN = (0.7, 0.75)  # width, height of one sample in Figure 1, inches
FIG1_LABEL_IN = 0.75  # room left of the rows for their σ labels
FIG1_TITLE_FONT = 8


def figure1(samples: torch.Tensor, stds: Sequence[float], title: str):
    """Figure 1 as a matplotlib Figure: one row per σ, labelled, under `title` (wrapped to
    the figure's width, with room made above the rows for every line of it)."""
    from matplotlib.figure import Figure

    from bench.plots import text_height_in, wrap_title

    n_rows, n_cols = samples.shape[:2]
    tile_w, tile_h = FIG1_TILE_IN
    width, grid_h, bottom, pad = FIG1_LABEL_IN + n_cols * tile_w + 0.05, n_rows * tile_h, 0.05, 0.08
    fig = Figure(figsize=(width, grid_h + bottom))
    title = wrap_title(fig, title, FIG1_TITLE_FONT)
    title_h = pad + text_height_in(fig, title, FIG1_TITLE_FONT) + pad
    height = grid_h + bottom + title_h
    fig.set_size_inches(width, height)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.imshow(samples[r, c].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"σ={stds[r]:g}", rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title, fontsize=FIG1_TITLE_FONT, y=1 - pad / height, va="top")
    fig.subplots_adjust(
        left=FIG1_LABEL_IN / width,
        right=1 - 0.05 / width,
        top=1 - title_h / height,
        bottom=bottom / height,
        wspace=0.05,
        hspace=0.05,
    )
    return fig


def write_figure1(
    samples: torch.Tensor, stds: Sequence[float], path: str | Path, title: str
) -> Path:
    """A PNG grid: one row per σ, labelled, with a title naming model and data
    (`figure1`)."""
    fig = figure1(samples, stds, title)
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
