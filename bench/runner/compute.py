"""One cell's computation (in this process, a loky worker or a Dask worker): measure, restore
and score every image of the cell. Workers only compute; the driver stores the results."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.methods.base import restore_checked
from bench.precision import precision
from bench.runner.plan import Cell
from bench.runner.workers import dask_worker_threads, in_dask_worker

_FLOW_CACHE: dict[tuple[str, str], Any] = {}


def flow_payload(flow, fingerprint: str) -> dict:
    """A picklable description of a flow (numpy weights: joblib memory-maps large arrays)."""
    state = {k: v.detach().cpu().numpy() for k, v in flow.state_dict().items()}
    return {"fingerprint": fingerprint, "config": dict(flow.arch_config), "state": state}


def flow_from(source, device: str):
    """The flow itself (in-process), or a cached rebuild of a payload (workers)."""
    if not isinstance(source, dict):
        return source
    key = (source["fingerprint"], str(device))
    flow = _FLOW_CACHE.get(key)
    if flow is None:
        import torch

        from bench.flows import flow_from_config

        flow = flow_from_config(source["config"])
        flow.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in source["state"].items()})
        flow = flow.to(device).eval().requires_grad_(False)
        _FLOW_CACHE.clear()  # one flow per worker at a time
        _FLOW_CACHE[key] = flow
    return flow


@dataclass(frozen=True)
class CellContext:
    """What every cell of a run shares (small and picklable; the flow travels separately)."""

    run_id: str
    dataset: str
    preset: str
    model: str
    device: str
    seed: int
    iters: int
    # plugins a worker loads before it looks up the cell's method and task
    # (`bench.plugins.loaded_specs`; built-ins and entry points load by themselves)
    plugins: tuple[str, ...] = ()
    precision: str = "fp32"  # `bench.precision`: fp32, tf32 (CUDA), bf16 autocast


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the body with `threads` torch threads (None: a Dask worker's share of its cores,
    elsewhere as they are), then restore the number there was."""
    import torch

    previous_threads = torch.get_num_threads()
    if threads is None and in_dask_worker():
        threads = dask_worker_threads()
    if threads and threads != previous_threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous_threads:
            torch.set_num_threads(previous_threads)


@dataclass
class CellInputs:
    """What restoring one cell starts from: its method and task (registry objects), the clean
    uint8 images (B, 3, H, W), their names, the measurement y (model space, CPU) and one base
    seed per image (`tasks.image_seeds`)."""

    method: Any
    task: Any
    x255: Any
    names: list[str]
    y: Any
    image_seeds: list[int]


def cell_inputs(cell: Cell, images: np.ndarray, names: Sequence[str], ctx: CellContext, y=None):
    """The inputs of one cell (`CellInputs`); `y`: its measurement when already made (the
    fused path measures each task's images once per stage)."""
    import torch

    from bench import methods as M
    from bench import plugins
    from bench import tasks as T

    plugins.load(ctx.plugins)
    method = M.get_method(cell.method)
    task = T.get_task(cell.task)
    x255 = torch.from_numpy(np.ascontiguousarray(images))
    names = list(names)
    if y is None:
        y = task.measure(x255, names, seed=ctx.seed)
    # one base seed per image (tasks.image_seeds): the measurement noise, dequantization and
    # the solvers' z0 use distinct streams of it (see bench.tasks)
    return CellInputs(method, task, x255, names, y, T.image_seeds(names, ctx.seed))


def compute_cell(
    cell: Cell,
    images: np.ndarray,
    names: Sequence[str],
    flow_source,
    ctx: CellContext,
    threads: int | None = None,
    progress: bool = False,
) -> dict:
    """Measure, restore and score every image of one cell; returns {'rows', 'restored',
    'trace'} (`cell_output`).

    A diverging solve (NaN or inf in the loss or the image) gives rows with diverged=True and
    NaN metrics; it does not raise because of it (other errors propagate: a bug is not a
    failed cell)."""
    with torch_threads(threads):
        inp = cell_inputs(cell, images, names, ctx)
        method = inp.method
        flow = flow_from(flow_source, ctx.device) if method.needs_flow else None
        t0 = time.perf_counter()
        trace = None
        with precision(ctx.precision, ctx.device):
            if flow is not None and method.fusable:
                res, trace = solve_cell(cell, inp, flow, ctx, progress)
            else:
                res = restore_checked(
                    method,
                    flow,
                    inp.task,
                    inp.y,
                    cell.weight,
                    ctx.iters,
                    inp.image_seeds,
                    ctx.device,
                    progress,
                )
        seconds = float(getattr(res, "seconds", None) or (time.perf_counter() - t0))
        return cell_output(cell, ctx, inp, res, seconds, trace)


def cell_problem(cell: Cell, inp: CellInputs, flow, ctx: CellContext, rows: slice = slice(None)):
    """The latent problem (`bench.solve.LatentProblem`) of rows `rows` of a cell of a fusable
    flow method (`FlowMethod.problem`, exactly what its `restore` solves), its objective
    guarded as a plugin's is (`guarded_objective`)."""
    from bench.methods import guarded_objective, plugin_call

    method, task = inp.method, inp.task
    problem = plugin_call(
        method,
        task.name,
        method.problem,
        flow,
        task,
        inp.y[rows],
        cell.weight,
        inp.image_seeds[rows],
        ctx.device,
    )
    problem.objective = guarded_objective(method, task.name, problem.objective)
    return problem


def solve_cell(cell: Cell, inp: CellInputs, flow, ctx: CellContext, progress=None):
    """One cell of a fusable flow method solved alone (the per-cell path: what its `restore`
    does), traced (`bench.traces`): (Restoration, trace)."""
    from bench.methods import Restoration
    from bench.solve import solve_latents
    from bench.traces import TraceRecorder

    recorder = TraceRecorder(inp.x255)
    problem = cell_problem(cell, inp, flow, ctx)
    res = solve_latents(flow, [problem], ctx.iters, progress, trace=recorder)[0]
    restoration = Restoration(
        x=res.x.cpu(), loss=res.loss, diverged=res.diverged, seconds=res.seconds
    )
    return restoration, recorder.part(slice(None))


def cell_output(
    cell: Cell, ctx: CellContext, inp: CellInputs, res, seconds: float, trace: dict | None = None
) -> dict:
    """{'rows', 'restored', 'trace'} of a cell from its restoration `res` (x, loss, diverged per
    image) and the `seconds` it took: the restored uint8 images, one scored row per image, and
    its convergence `trace` (`bench.traces`; None for a method that is not a latent solve)."""
    x, loss, diverged = _outcome(res, len(inp.names))
    restored, scores = _score(x, diverged, inp.x255)
    method = inp.method
    iters = int(getattr(res, "iters", ctx.iters) or ctx.iters) if method.needs_flow else 0
    per_image = {**scores, "loss": loss, "diverged": diverged, "image_seed": inp.image_seeds}
    rows = _rows(cell, ctx, method.weight_name, inp.names, per_image, iters, seconds)
    return {"rows": rows, "restored": restored.numpy(), "trace": trace}


def _outcome(res, n: int):
    """A restoration's images (float32, CPU; zeros where diverged), per-image loss (NaN when
    the method reports none) and divergence (flagged, non-finite image or infinite loss)."""
    import torch

    x = res.x.detach().to("cpu", torch.float32)
    finite = torch.isfinite(x.reshape(n, -1)).all(1).numpy()
    loss = np.asarray(res.loss, dtype=np.float64).reshape(-1)
    if loss.size != n:
        loss = np.full(n, np.nan)
    diverged = np.asarray(res.diverged, dtype=bool).reshape(-1)
    if diverged.size != n:
        diverged = np.zeros(n, bool)
    # a non-finite loss counts only for methods that report a loss (NaN = no loss)
    diverged = diverged | ~finite | np.isinf(loss)
    x = torch.where(torch.from_numpy(~diverged)[:, None, None, None], x, torch.zeros_like(x))
    return x, loss, diverged


def _score(x, diverged: np.ndarray, x255):
    """The restored images as uint8 pixels (0 where diverged) and their PSNR, SSIM and MSE
    against the 5-bit targets (NaN where diverged)."""
    import torch

    from bench import data, metrics

    restored = data.to_pixels(x)
    restored[torch.from_numpy(diverged)] = 0
    target = data.to_5bit(x255) * 8
    psnr = np.asarray(metrics.psnr(restored, target), dtype=np.float64)
    ssim = np.asarray(metrics.ssim(restored, target), dtype=np.float64)
    mse5 = np.asarray(metrics.mse5(restored, target), dtype=np.float64)
    for arr in (psnr, ssim, mse5):
        arr[diverged] = np.nan
    return restored, {"psnr": psnr, "ssim": ssim, "mse5": mse5}


def _rows(
    cell: Cell,
    ctx: CellContext,
    weight_name: str | None,
    names: list[str],
    per_image: dict,
    iters: int,
    seconds: float,
) -> list[dict]:
    """One row (CSV_COLUMNS) per image of a cell; `per_image` holds the arrays 'psnr', 'ssim',
    'mse5', 'loss', 'diverged' and 'image_seed', one value per image."""
    weight = math.nan if cell.weight is None else float(cell.weight)
    diverged = per_image["diverged"]
    return [
        {
            "run_id": ctx.run_id,
            "stage": cell.stage,
            "partition": cell.partition,
            "method": cell.method,
            "task": cell.task,
            "weight_name": weight_name or "",
            "weight": weight,
            "image": name,
            "index": i,
            "seed": ctx.seed,
            "image_seed": per_image["image_seed"][i],
            "psnr": per_image["psnr"][i],
            "ssim": per_image["ssim"][i],
            "mse5": per_image["mse5"][i],
            "loss": per_image["loss"][i] if not diverged[i] else np.nan,
            "diverged": bool(diverged[i]),
            "iters": iters,
            "seconds": seconds,
            "preset": ctx.preset,
            "model": ctx.model,
            "dataset": ctx.dataset,
            "device": ctx.device,
        }
        for i, name in enumerate(names)
    ]
