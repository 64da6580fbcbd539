"""Convergence traces (docs/PROTOCOL.md §10): each image's PSNR and objective at log-spaced
steps of a latent solve (`bench.solve.trace_steps`: 0, 1, 2, 3, 5, 10, 20, 30, ... and the last),
taken from the G(z) and the loss that the iteration computes anyway, and stored beside the cell
(traces/<stage>/<cell>.csv, one row per image and step).

A trace never influences the solve: `TraceRecorder` only reads the detached evaluation. Its PSNR
is the one the cell's rows report (`bench.metrics.psnr`: standard PSNR of the 8-bit pixels of
G(z) against the 5-bit clean target), so a trace's last step equals the stored PSNR of the
image. It is computed here on the solve's device for the whole batch at once, not with
scikit-image's per-image function, so that tracing costs a few tensor operations per traced
step and no host round trip per image.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from bench import data, metrics

TRACES_DIR = "traces"
TRACE_COLUMNS = ["step", "image", "index", "psnr", "objective"]


def batch_psnr(x: torch.Tensor, target255: torch.Tensor) -> torch.Tensor:
    """Standard PSNR (dB) per image of model-space images x (B, C, H, W), [-1, 1), against
    the metrics' reference of the clean uint8 images `target255` (B, C, H, W), pixels 0..255:
    ``10 log10(255² / MSE)`` of the 8-bit pixels `data.to_pixels(x)` (+inf where identical),
    as `bench.metrics.psnr` gives it, in float64 on x's device."""
    pixels = data.to_pixels(x).to(torch.float64)
    reference = metrics.reference(target255).to(device=x.device, dtype=torch.float64)
    mse = (pixels - reference).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(metrics.DATA_RANGE**2 / mse)


class TraceRecorder:
    """The `trace` hook of `bench.solve.solve_latents`: at each traced step, every row's PSNR
    (`batch_psnr` against `targets255`, the clean uint8 images (B, C, H, W) of the solve's rows
    stacked in problem order) and objective; NaN for a row that has diverged."""

    def __init__(self, targets255: torch.Tensor):
        self.targets255 = targets255
        self.steps: list[int] = []
        self._psnr: list[np.ndarray] = []
        self._loss: list[np.ndarray] = []

    def __call__(self, step: int, x: torch.Tensor, loss: torch.Tensor, diverged: torch.Tensor):
        if self.targets255.device != x.device:
            self.targets255 = self.targets255.to(x.device)
        psnr = batch_psnr(x, self.targets255)
        psnr = torch.where(diverged, torch.full_like(psnr, math.nan), psnr)
        loss = torch.where(diverged, torch.full_like(loss, math.nan), loss)
        self.steps.append(int(step))
        self._psnr.append(psnr.cpu().numpy())
        self._loss.append(loss.detach().to("cpu", torch.float64).numpy())

    def part(self, rows: slice) -> dict:
        """The trace of rows `rows` of the solve: {'steps': [S], 'psnr': (S, n),
        'objective': (S, n)}."""
        return {
            "steps": list(self.steps),
            "psnr": np.stack(self._psnr)[:, rows],
            "objective": np.stack(self._loss)[:, rows],
        }


def join_parts(parts: list[dict]) -> dict:
    """One trace from the traces of consecutive row ranges of a cell (same steps)."""
    return {
        "steps": parts[0]["steps"],
        "psnr": np.concatenate([p["psnr"] for p in parts], axis=1),
        "objective": np.concatenate([p["objective"] for p in parts], axis=1),
    }


def trace_frame(trace: dict, names: list[str]):
    """A cell's trace as a DataFrame of TRACE_COLUMNS, one row per image and step (`names`:
    the cell's images in row order)."""
    import pandas as pd

    steps = np.asarray(trace["steps"], dtype=np.int64)
    n = len(names)
    return pd.DataFrame(
        {
            "step": np.repeat(steps, n),
            "image": np.tile(np.asarray(names, dtype=object), len(steps)),
            "index": np.tile(np.arange(n), len(steps)),
            "psnr": np.asarray(trace["psnr"], dtype=np.float64).reshape(-1),
            "objective": np.asarray(trace["objective"], dtype=np.float64).reshape(-1),
        },
        columns=TRACE_COLUMNS,
    )


def trace_path(run_dir: str | Path, cell) -> Path:
    """Where a cell's trace is stored: traces/<stage>/<cell stem>.csv in the run."""
    return Path(run_dir) / TRACES_DIR / cell.stage / f"{cell.stem}.csv"


def read_traces(run_dir: str | Path, stage: str = "test"):
    """Every stored trace of a run's finished cells of `stage`, joined with its cell's method,
    task and weight (from the cell's stored rows): a DataFrame of TRACE_COLUMNS + method, task,
    weight; empty when the run has none (runs made before traces existed). A trace whose cell
    CSV is absent (an interrupted write, a deleted cell) is left out. Raises BenchError naming
    a trace file that cannot be read, and the fix. PSNR and objective are stored to 6
    significant digits."""
    import pandas as pd

    from bench.errors import BenchError
    from bench.runner.layout import CELLS_DIR

    frames = []
    for path in sorted((Path(run_dir) / TRACES_DIR / stage).glob("*.csv")):
        cell_csv = Path(run_dir) / CELLS_DIR / stage / path.name
        if not cell_csv.is_file():  # a cell not finished (its CSV marks it): no trace yet
            continue
        try:
            frame = pd.read_csv(path)
            cell = pd.read_csv(cell_csv, usecols=["method", "task", "weight"], nrows=1)
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise BenchError(
                f"trace {path} or its cell {cell_csv} is unreadable ({type(e).__name__}): "
                "delete both and rerun the run to recompute the cell"
            ) from None
        missing = [c for c in TRACE_COLUMNS if c not in frame.columns]
        if missing or cell.empty:
            raise BenchError(
                f"trace {path} lacks {', '.join(missing) or 'its cell row'}: delete it and its "
                "cell and rerun the run to recompute the cell"
            )
        frames.append(frame.assign(**cell.iloc[0].to_dict()))
    if not frames:
        return pd.DataFrame(columns=[*TRACE_COLUMNS, "method", "task", "weight"])
    return pd.concat(frames, ignore_index=True)


def summarize(traces):
    """Mean PSNR and its Student-t 95% interval per (task, method, weight, step) over the
    images whose PSNR is finite at that step (a diverged image, NaN, and an exact restoration,
    +inf, are left out of the mean; `n` counts the images used): a DataFrame with columns task,
    method, weight, step, n, mean, lo, hi (`bench.metrics.mean_ci`)."""
    import pandas as pd

    out = []
    keys = ["task", "method", "weight", "step"]
    for key, g in traces.groupby(keys, dropna=False, sort=True):
        values = g["psnr"].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        mean, half = metrics.mean_ci(values) if len(values) else (math.nan, math.nan)
        out.append((*key, len(values), mean, mean - half, mean + half))
    return pd.DataFrame(out, columns=[*keys, "n", "mean", "lo", "hi"])


PEAK_MARGIN = 0.1  # dB: a fall after the best step smaller than this is not listed


def peaks(traces, margin: float = PEAK_MARGIN):
    """The solves whose mean PSNR peaks before their last traced step and falls after it by
    more than `margin` dB (a weight that regularises partly by stopping early), from
    `read_traces`' frame (one row per image and step).

    The peak step is the step of highest mean PSNR over the images finite at that step (as in
    `summarize`); the fall is paired per image, peak minus last step, over the images finite at
    both (a diverged or exact image is left out), with its Student-t 95% interval. Returns a
    DataFrame with columns task, method, weight, peak_step, peak_mean, last_step, last_mean
    (dB, over those images), fall, fall_lo, fall_hi (dB), n, and objective_peak,
    objective_last (the method's objective, its mean over the same images); a solve with no
    finite image at its last step is not listed."""
    import pandas as pd

    out = []
    for key, g in traces.groupby(["task", "method", "weight"], dropna=False, sort=True):
        # dropna=False keeps a step where every image diverged (the last one is checked)
        at = g.pivot_table(index="image", columns="step", values=["psnr", "objective"],
                           aggfunc="first", dropna=False)  # fmt: skip
        psnr = at["psnr"]
        means = psnr.where(np.isfinite(psnr)).mean()  # per step, over its finite images
        if means.isna().iloc[-1]:
            continue
        steps = [means.idxmax(), psnr.columns[-1]]  # the peak and the last step
        pair = psnr[steps][np.isfinite(psnr[steps]).all(axis=1)]
        if steps[0] == steps[1] or pair.empty:
            continue
        fall, half = metrics.mean_ci(pair[steps[0]] - pair[steps[1]])
        if fall > margin:
            objective = at["objective"].loc[pair.index, steps].mean()
            out.append((*key, int(steps[0]), pair[steps[0]].mean(), int(steps[1]),
                        pair[steps[1]].mean(), fall, fall - half, fall + half, len(pair),
                        *objective.tolist()))  # fmt: skip
    columns = ["task", "method", "weight", "peak_step", "peak_mean", "last_step", "last_mean",
               "fall", "fall_lo", "fall_hi", "n", "objective_peak", "objective_last"]  # fmt: skip
    return pd.DataFrame(out, columns=columns)
