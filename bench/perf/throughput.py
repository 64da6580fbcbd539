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

`measure_table1_workers` measures the same two paths on a CPU as ``bench run --jobs N --threads
1`` runs them: N single-thread worker processes that take units of work (a cell; a chunk of
whole cells, `bench.runner.fused.work_units`' packing) from one queue, largest first. On a
small CPU this is the fairer baseline: a one-process solve of a 32-image cell on several threads
loses much of its time to the threads waiting for each other, which separate processes do not.
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


def _plan(run_preset: str):
    """(cells, preset, rows, costs) of the run preset's Table 1 latent cells, without measuring
    any image: each cell's rows (its stage's images) and generator passes per row."""
    from bench.methods import get_method
    from bench.runner.fused import row_cost

    cells, preset = table1_cells(run_preset)
    n_stage = {"select": preset.select_images, "test": preset.test_images}
    rows = [n_stage[c.stage] for c in cells]
    return cells, preset, rows, [row_cost(get_method(c.method)) for c in cells]


def _problem(flow, inputs, segment: tuple[int, int, int], device):
    """The latent problem of rows start:stop of cell i (`segment` = (i, start, stop)), built as
    the runner builds it (`FlowMethod.problem`) from that cell's `_inputs` entry."""
    i, start, stop = segment
    method, task, y, weight, seeds = inputs[i]
    return method.problem(flow, task, y[start:stop], weight, seeds[start:stop], device)


def measure_table1_throughput(
    flow, run_preset: str, iters: int, reps: int, device, max_batch: int | None = None
) -> list[dict]:
    """Two rows (figure 'table1_throughput', modes 'per cell' and 'fused'): image-iterations per
    second of the run preset's Table 1 latent solves on `flow`, `iters` iterations each, median
    of `reps` alternating rounds; the fused row carries the ratio to the per-cell one. Each
    path builds its problems (`FlowMethod.problem`) inside its timed part, as the runner does."""
    from bench.runner.fused import default_max_batch, plan_chunks
    from bench.solve import solve_latents

    cells, preset, rows, costs = _plan(run_preset)
    inputs = _inputs(cells, preset)
    batch = max_batch or default_max_batch(str(device), flow.arch_config.get("hidden"))
    chunks = plan_chunks(cells, rows, costs, batch, split=True)

    def per_cell():
        for i, n in enumerate(rows):
            solve_latents(flow, [_problem(flow, inputs, (i, 0, n), device)], iters)

    def fused():
        for chunk in chunks:
            segments = [(s.index, s.start, s.stop) for s in chunk]
            solve_latents(flow, [_problem(flow, inputs, seg, device) for seg in segments], iters)

    # untimed first: one-time costs (allocator, thread pools, CUDA) are paid by neither path
    solve_latents(flow, [_problem(flow, inputs, (0, 0, min(rows[0], 4)), device)], 1)
    times: dict[str, list[float]] = {"per cell": [], "fused": []}
    for _ in range(max(reps, 1)):
        for mode, fn in (("per cell", per_cell), ("fused", fused)):
            sync(device)
            t0 = perf_counter()
            fn()
            sync(device)
            times[mode].append(perf_counter() - t0)
    common = dict(run_preset=run_preset, cells=len(cells), rows=int(sum(rows)), iters=iters)
    return throughput_rows(
        flow,
        times,
        {"per cell": (int(round(np.mean(rows))), len(cells)), "fused": (batch, len(chunks))},
        workers=1,
        **common,
    )


def _units(cells, rows: list[int], costs: list[float], mode: str, max_batch: int):
    """The units of work of `mode` ('per cell': each cell; 'fused': whole cells packed into
    chunks of at most `max_batch` passes, as ``bench run --jobs N``), each a list of (cell
    index, first row, stop row), largest unit first."""
    from bench.runner.fused import plan_chunks

    if mode == "per cell":
        units = [[(i, 0, n)] for i, n in enumerate(rows)]
    else:
        chunks = plan_chunks(cells, rows, costs, max_batch, split=False)
        units = [[(s.index, s.start, s.stop) for s in chunk] for chunk in chunks]
    return sorted(units, key=lambda u: -sum((b - a) * costs[i] for i, a, b in u))


def _shard_worker(state, arch_config, run_preset, iters, units, queue, barrier, done):
    """One single-thread worker of `measure_table1_workers`: rebuilds the flow, solves one
    untimed warm-up, waits for the others at `barrier`, then takes unit numbers from `queue`
    until it is empty and solves each of those `units`. Puts its own rows and seconds on
    `done`."""
    import queue as queue_module

    from bench.flows import flow_from_config
    from bench.solve import solve_latents

    torch.set_num_threads(1)
    flow = flow_from_config(arch_config)
    flow.load_state_dict(state)
    flow.eval().requires_grad_(False)
    cells, preset = table1_cells(run_preset)
    inputs = _inputs(cells, preset)
    warm = (0, 0, min(len(inputs[0][4]), 4))  # rows of cell 0, as measure_table1_throughput
    solve_latents(flow, [_problem(flow, inputs, warm, "cpu")], 1)
    barrier.wait()
    t0, solved = perf_counter(), 0
    while True:
        try:
            k = queue.get_nowait()
        except queue_module.Empty:
            break
        solve_latents(flow, [_problem(flow, inputs, seg, "cpu") for seg in units[k]], iters)
        solved += sum(b - a for _, a, b in units[k])
    done.put((solved, perf_counter() - t0))


def _time_workers(flow, run_preset: str, iters: int, units: list, workers: int) -> float:
    """Wall seconds for `workers` single-thread processes to solve every one of `units`, from
    the moment all of them are warm to the last one's finish. RuntimeError if the workers did
    not solve every row of the units."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue, done, barrier = ctx.Queue(), ctx.Queue(), ctx.Barrier(workers + 1)
    for k in range(len(units)):
        queue.put(k)
    state = {k: v.detach().cpu() for k, v in flow.state_dict().items()}
    args = (state, flow.arch_config, run_preset, iters, units, queue, barrier, done)
    procs = [ctx.Process(target=_shard_worker, args=args, daemon=True) for _ in range(workers)]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=600)
        t0 = perf_counter()
        results = [done.get(timeout=3600) for _ in procs]
        seconds = perf_counter() - t0
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    solved, total = sum(r for r, _ in results), sum(b - a for u in units for _, a, b in u)
    if solved != total:
        raise RuntimeError(f"workers solved {solved} of {total} rows")
    return seconds


def measure_table1_workers(
    flow, run_preset: str, iters: int, reps: int, workers: int, max_batch: int | None = None
) -> list[dict]:
    """Two rows like `measure_table1_throughput`'s (modes 'per cell' and 'fused', with
    `workers` = the number of processes, one thread each), measured on the CPU as ``bench run
    --jobs N --threads 1`` computes: `workers` spawned single-thread processes taking units of
    work from one queue (`_units`). Median of `reps` alternating rounds; the fused row carries
    the ratio. ValueError for fewer than 2 workers."""
    from bench.runner.fused import default_max_batch

    if workers < 2:
        raise ValueError(f"workers must be at least 2, got {workers}")
    batch = max_batch or default_max_batch("cpu", flow.arch_config.get("hidden"))
    cells, _, rows, costs = _plan(run_preset)
    units = {mode: _units(cells, rows, costs, mode, batch) for mode in ("per cell", "fused")}
    times: dict[str, list[float]] = {mode: [] for mode in units}
    for _ in range(max(reps, 1)):
        for mode in times:
            times[mode].append(_time_workers(flow, run_preset, iters, units[mode], workers))
    shape = {
        "per cell": (int(round(np.mean(rows))), len(units["per cell"])),
        "fused": (batch, len(units["fused"])),
    }
    common = dict(run_preset=run_preset, cells=len(cells), rows=int(sum(rows)), iters=iters)
    return throughput_rows(flow, times, shape, workers=workers, **common)


def throughput_rows(flow, times: dict, shape: dict, workers: int, **common) -> list[dict]:
    """The rows 'per cell' and 'fused' of the figure 'table1_throughput' from each mode's
    timed `times` (seconds, one per round) and `shape` ((rows per solve, solves)); `common`
    holds run_preset, cells, rows and iters. The fused row carries the ratio."""
    work = common["rows"] * common["iters"]
    out = []
    for mode in ("per cell", "fused"):
        t = np.array(times[mode])
        med = float(np.median(t))
        batch, solves = shape[mode]
        out.append(
            {
                "figure": "table1_throughput",
                "arch": flow.arch,
                "mode": mode,
                "workers": workers,
                "batch": int(batch),
                "reps": len(t),
                "median_ms": med * 1e3,
                "min_ms": float(t.min()) * 1e3,
                "max_ms": float(t.max()) * 1e3,
                "ms_per_image": med * 1e3 / work,
                "images_per_s": work / med,
                **common,
                "solves": solves,
                "width": flow.arch_config.get("hidden"),
            }
        )
    out[1]["fused_ratio"] = out[1]["images_per_s"] / out[0]["images_per_s"]
    return out
