"""The Python API for notebooks (README, "Use it from Python"): a run's rows as one DataFrame,
a flow from its checkpoint, and a batch restored by a named method.

    import bench
    rows = bench.load_rows("results")                       # the latest run's per-image rows
    flow = bench.load_flow("results/checkpoints/celeba-cpu-coupling.pt")
    out = bench.restore(images, "ours", flow, task="denoising", weight=0.05)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench import config
from bench.provenance import DEFAULT_RESULTS


def load_rows(results: str | Path = DEFAULT_RESULTS, run: str | None = None, stage=None):
    """Every per-image row of a stored run as one pandas DataFrame, one row per (cell, image):
    columns run_id, stage ('select' | 'test'), partition, method, task, weight_name, weight
    (NaN: no weight), image (file name), index, seed, image_seed, psnr (dB, PROTOCOL §6), ssim,
    mse5, loss, diverged, iters, seconds, preset, model, dataset, device.

    `results` is a results folder (its latest run, or `run`, a run id or prefix) or a run's
    own folder; `stage` keeps one stage. Raises BenchError for a missing or unreadable run."""
    from bench import runner

    path = Path(results)
    if run is None and (path / runner.MANIFEST).is_file():
        run_dir = path
    else:
        run_dir = runner.find_run(path, run)
    return runner.read_cells(run_dir, stage)


def load_flow(checkpoint: str | Path, device: str = "cpu"):
    """The flow stored in a checkpoint (eval mode, frozen, on `device`): a
    `bench.flows.MultiScaleFlow` with `forward(x) -> (z, logdet)` and
    `inverse(z) -> (x, logdet)`. Raises CheckpointError for a missing or malformed file."""
    from bench.train import load_checkpoint

    flow, _ = load_checkpoint(checkpoint, device)
    flow.requires_grad_(False)
    return flow


def restore(
    images,
    method: str,
    flow=None,
    task: str = "denoising",
    weight: float | None = None,
    iters: int = config.SOLVER_ITERS,
    names: Sequence[str] | None = None,
    seed: int = 0,
    device: str = "cpu",
):
    """Measure clean images with a task and restore them with a named method.

    `images`: uint8 pixels 0..255, (B, 3, 32, 32) tensor or array; `names` seed each image's
    randomness (default 'img0', 'img1', …; PROTOCOL §4); `weight` None takes the paper's value
    for the task (PROTOCOL §5), `iters` the paper's 1500. Returns a `bench.Restoration`: x
    (B, 3, 32, 32) in model space [-1, 1) on the CPU (`bench.data.to_pixels` gives 0..255), loss,
    diverged, seconds; plus `y` (the measurement) and `psnr` (dB per image, PROTOCOL §6) set
    on it. Raises BenchError for an unknown method or task, a task the method does not handle,
    or a method that needs a flow called without one."""
    import torch

    from bench import data, metrics
    from bench.methods import get_method
    from bench.methods.base import restore_checked
    from bench.tasks import get_task, image_seeds

    x255 = torch.as_tensor(images)
    names = list(names) if names is not None else [f"img{i}" for i in range(x255.shape[0])]
    m, t = get_method(method), get_task(task)
    y = t.measure(x255, names, seed)
    out = restore_checked(m, flow, t, y, weight, iters, image_seeds(names, seed), device)
    out.y = y
    out.psnr = metrics.psnr(data.to_pixels(out.x), x255)
    return out
