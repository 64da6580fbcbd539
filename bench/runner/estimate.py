"""The run-time estimate: solver iterations and flowless methods timed on this machine,
scaled to a plan's cells and divided among the workers that really run at once."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence

from bench import config, machine
from bench.machine import sync
from bench.methods.base import restore_checked
from bench.runner.plan import Cell, Plan
from bench.runner.store import cell_status

ESTIMATE_ITERS = 2  # solver iterations timed for the run-time estimate (the faster counts)
ESTIMATE_WARMUP = 2  # untimed iterations first (allocator, thread pools)


def time_solver_iteration(
    hidden: int | None = None,
    device: str = "cpu",
    batch: int = config.EVAL_BATCH,
    arch: str = "coupling",
    flow_config: dict | None = None,
) -> float:
    """Seconds per image per solver iteration of a freshly built flow: the architecture of
    `flow_config` (a flow's or checkpoint's `arch_config`: the flow that will really run)
    when given, else an `arch` flow of width `hidden`. Timed over ESTIMATE_ITERS iterations
    of the shared solver on a batch (after a warm-up); untrained weights cost the same."""
    import torch

    from bench.flows import build_flow, flow_from_config
    from bench.solve import solve_latent

    if flow_config is None and hidden is None:
        raise ValueError("time_solver_iteration needs a width (hidden) or a flow_config")
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):  # the caller's RNG is left as it was
        torch.manual_seed(0)
        flow = (
            flow_from_config(dict(flow_config))
            if flow_config is not None
            else build_flow(arch, hidden=hidden)
        ).to(device)
    flow.initialize((torch.rand(batch, 3, 32, 32, generator=g) * 2 - 1).to(device))
    flow.eval().requires_grad_(False)
    y = (torch.rand(batch, 3, 32, 32, generator=g) * 2 - 1).to(device)

    def objective(z, x, logdet):
        return (x - y).abs().flatten(1).sum(1)

    z0 = (0.1 * torch.randn(batch, flow.dim, generator=g)).to(device)
    solve_latent(flow, objective, z0, iters=ESTIMATE_WARMUP, lr=config.SOLVER_LR)
    stamps = [time.perf_counter()]

    def tick(_t: int) -> None:
        sync(device)
        stamps.append(time.perf_counter())

    solve_latent(flow, objective, z0, iters=ESTIMATE_ITERS, lr=config.SOLVER_LR, progress=tick)
    # the faster step: a transient hiccup of a busy machine should not inflate the estimate
    step = min(b - a for a, b in itertools.pairwise(stamps))
    return step / batch


def time_method_image(
    method: str, task: str, weight: float | None = None, iters: int = 1, device: str = "cpu"
) -> float:
    """Seconds to restore one image with a method that needs no flow (BM3D), timed once on
    a random image with its task's measurement: such methods restore images one at a time, so
    a cell costs about this times its number of images."""
    import torch

    from bench import tasks as T
    from bench.methods import get_method

    m = get_method(method)
    t = T.get_task(task)
    g = torch.Generator().manual_seed(0)
    x255 = torch.randint(0, 256, (1, 3, 32, 32), generator=g, dtype=torch.uint8)
    names = ["estimate.png"]
    y = t.measure(x255, names, seed=0)
    seeds = T.image_seeds(names, 0)
    start = time.perf_counter()
    restore_checked(m, None, t, y, weight, iters, seeds, device)
    return time.perf_counter() - start


def estimate_seconds(
    plan: Plan,
    device: str = "cpu",
    arch: str = "coupling",
    jobs: int = 1,
    threads: int | None = None,
    flow_config: dict | None = None,
    cells: Sequence[Cell] | None = None,
    fused_batch: int | None = None,
) -> float:
    """Estimated solve time on this device of `cells` (default: every cell of the plan; pass
    `cell_status(...).todo` to count only those still to compute), divided by the workers
    that run at once: `jobs`, but no more than the available CPUs hold at each worker's
    threads (`jobs` workers on fewer CPUs share them and run no faster):

    - flow methods: ESTIMATE_ITERS timed solver iterations, with each worker's `threads`, of
      the flow that will run (`flow_config`: its `arch_config`; default an `arch` flow of the
      preset's width), scaled by images × iterations × cells × the method's declared `cost`
      (MAP's second pass through the flow: 2);
    - methods without a flow (BM3D): one image restored and timed per (method, task), scaled
      by the images of each cell.

    `fused_batch`: the rows of a fused solve (`bench.runner.fused`): the solver iteration is
    timed at that batch (at most the rows of the flow cells) rather than at a cell's (at most
    EVAL_BATCH images). With one job and several threads a fused run computes the cells without
    a flow in a one-thread worker beside the solve (`bench.runner.fused_run`), so their time
    overlaps it (`overlapped`). Images are those the plan counts (`Plan.images`: the images
    actually loaded once `Plan.with_images` has set them)."""
    import torch

    from bench import methods as M

    cells = list(cell_status(plan).todo if cells is None else cells)
    flow_cells = [c for c in cells if M.get_method(c.method).needs_flow]
    before = torch.get_num_threads()
    threads = machine.default_threads(jobs) if threads is None else threads
    torch.set_num_threads(threads)
    try:
        per_image_iter = 0.0
        if flow_cells:
            batch = max(1, min(max(plan.images(c.stage) for c in flow_cells), config.EVAL_BATCH))
            if fused_batch:
                rows = sum(plan.images(c.stage) for c in flow_cells)
                batch = max(1, min(rows, fused_batch))
            per_image_iter = time_solver_iteration(
                plan.preset.hidden, device, batch, arch, flow_config=flow_config
            )
        per_image: dict[tuple[str, str], float] = {}
        solve = other = 0.0
        for c in cells:
            n = plan.images(c.stage)
            if M.get_method(c.method).needs_flow:
                cost = float(M.get_method(c.method).cost)
                solve += per_image_iter * n * plan.preset.iters * cost
                continue
            if (c.method, c.task) not in per_image:
                per_image[(c.method, c.task)] = time_method_image(
                    c.method, c.task, c.weight, plan.preset.iters, device
                )
            other += per_image[(c.method, c.task)] * n
    finally:
        torch.set_num_threads(before)
    if fused_batch and jobs == 1 and threads >= 2 and solve > 0 and other > 0:
        return overlapped(solve, other, threads)
    return (solve + other) / parallel_workers(jobs, threads)


def overlapped(solve: float, other: float, threads: int) -> float:
    """Seconds of a fused solve of `solve` seconds (on `threads` threads) with `other` seconds
    of one-thread cells beside it: while they run the solve has one thread fewer, so it loses
    about other / threads seconds of progress; cells longer than the solve finish last."""
    return max(solve + other / threads, other)


def parallel_workers(jobs: int, threads: int = 1) -> int:
    """How many of `jobs` workers of `threads` torch threads each really run at once: at most
    the available CPUs // threads (at least 1)."""
    return max(1, min(jobs, machine.available_cpus() // max(1, threads)))


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"
