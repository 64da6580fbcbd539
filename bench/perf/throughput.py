"""Table 1 throughput (`bench perf`): the latent solves of a Table 1 run, per cell against fused.

The mix is the run preset's Table 1 (`bench.runner.plan_table1` with its default methods and
tasks): every grid cell on `select_images` rows and one test cell per (method, task) on
`test_images` rows, for every flow method (`Method.fusable`; BM3D and other methods without a
latent solve are left out: they run as cells either way). The images are seeded random pixels
(a solve's cost does not depend on them). Both paths solve the same problems (`FlowMethod.problem`)
for the same iterations, in one process:

- per cell: one `bench.solve.solve_latents` call per cell, as ``bench run --no-fuse``;
- fused: the rows packed into chunks of `max_batch` generator passes (`bench.runner.fused.
  plan_chunks`), one call per chunk, as ``bench run``.

Figures: image-iterations per second (rows × iterations / wall time; MAP's rows count once,
though they take two passes), and the ratio fused / per cell. The two paths alternate
(per cell, fused, per cell, fused, ...) for `reps` rounds and each figure is the median.
"""

from __future__ import annotations

from time import perf_counter

import numpy as np
import torch

from bench.machine import sync


def table1_cells(run_preset: str):
    """The latent cells of the run preset's Table 1 (grid cells and one test cell per (method,
    task); a test cell's weight stands in for the one the grid would choose: the cost does not
    depend on it) and the preset."""
    from bench import config
    from bench.methods import get_method
    from bench.runner import plan_table1

    preset = config.get_preset(run_preset)
    plan = plan_table1(preset)
    cells = plan.grid_cells + plan.fixed_cells
    cells += [plan.cell("test", m, t, plan.grids[m][0]) for m, t in plan.to_select]
    return [c for c in cells if get_method(c.method).fusable], preset


def _inputs(cells, preset, seed: int = 0):
    """Each cell's (method, task, y, weight, seeds) on seeded random images."""
    from bench.methods import get_method
    from bench.tasks import get_task, image_seeds

    g = torch.Generator().manual_seed(seed)
    n_stage = {"select": preset.select_images, "test": preset.test_images}
    images = {
        s: torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
        for s, n in n_stage.items()
    }
    names = {s: [f"perf-{s}-{i}.png" for i in range(n)] for s, n in n_stage.items()}
    measured: dict = {}
    out = []
    for c in cells:
        task = get_task(c.task)
        key = (c.stage, c.task)
        if key not in measured:
            measured[key] = task.measure(images[c.stage], names[c.stage])
        out.append(
            (get_method(c.method), task, measured[key], c.weight, image_seeds(names[c.stage]))
        )
    return out


def measure_table1_throughput(
    flow, run_preset: str, iters: int, reps: int, device, max_batch: int | None = None
) -> list[dict]:
    """Two rows (figure 'table1_throughput', modes 'per cell' and 'fused'): image-iterations per
    second of the run preset's Table 1 latent solves on `flow`, `iters` iterations each, median
    of `reps` alternating rounds; the fused row carries the ratio to the per-cell one. Each
    path builds its problems (`FlowMethod.problem`) inside its timed part, as the runner does."""
    from bench.runner.fused import default_max_batch, plan_chunks, row_cost
    from bench.solve import solve_latents

    cells, preset = table1_cells(run_preset)
    inputs = _inputs(cells, preset)
    rows = [len(seeds) for *_, seeds in inputs]
    costs = [row_cost(m) for m, *_ in inputs]
    batch = max_batch or default_max_batch(str(device), flow.arch_config.get("hidden"))
    chunks = plan_chunks(cells, rows, costs, batch, split=True)

    def problem(i: int, start: int, stop: int):
        method, task, y, weight, seeds = inputs[i]
        return method.problem(flow, task, y[start:stop], weight, seeds[start:stop], device)

    def per_cell():
        for i, n in enumerate(rows):
            solve_latents(flow, [problem(i, 0, n)], iters)

    def fused():
        for chunk in chunks:
            solve_latents(flow, [problem(s.index, s.start, s.stop) for s in chunk], iters)

    # untimed first: one-time costs (allocator, thread pools, CUDA) are paid by neither path
    solve_latents(flow, [problem(0, 0, min(rows[0], 4))], 1)
    times: dict[str, list[float]] = {"per cell": [], "fused": []}
    for _ in range(max(reps, 1)):
        for mode, fn in (("per cell", per_cell), ("fused", fused)):
            sync(device)
            t0 = perf_counter()
            fn()
            sync(device)
            times[mode].append(perf_counter() - t0)
    work = sum(rows) * iters
    out = []
    for mode, batches, units in (
        ("per cell", np.mean(rows), len(cells)),
        ("fused", batch, len(chunks)),
    ):
        t = np.array(times[mode])
        med = float(np.median(t))
        out.append(
            {
                "figure": "table1_throughput",
                "arch": flow.arch,
                "mode": mode,
                "batch": int(round(batches)),
                "reps": len(t),
                "median_ms": med * 1e3,
                "min_ms": float(t.min()) * 1e3,
                "max_ms": float(t.max()) * 1e3,
                "ms_per_image": med * 1e3 / work,
                "images_per_s": work / med,
                "run_preset": run_preset,
                "cells": len(cells),
                "rows": int(sum(rows)),
                "iters": iters,
                "solves": units,
                "width": flow.arch_config.get("hidden"),
            }
        )
    out[1]["fused_ratio"] = out[1]["images_per_s"] / out[0]["images_per_s"]
    return out
