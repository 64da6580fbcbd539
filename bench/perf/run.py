"""One run of `bench perf`: wait for an idle machine, take every measurement in order, hold
each figure against the matmul ceiling and its target, and note the machine (`run_perf`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from time import perf_counter

import torch

from bench import machine
from bench.perf.flops import analytic_flops
from bench.perf.host import configure_threads, load_average, machine_info
from bench.perf.measure import (
    bf16_accuracy,
    measure_generation,
    measure_matmul,
    measure_solver,
    measure_training,
    perf_flow,
    precision_accuracy,
)
from bench.perf.settings import TARGET_BATCH, TARGET_PCT, PerfPreset, busy_limit


@dataclass
class PerfResult:
    rows: list[dict]
    info: dict


def run_perf(
    preset: PerfPreset,
    device="cpu",
    threads: int | None = None,
    bf16: bool = False,
    reference: bool = False,
    checkpoint: str | None = None,
    log: Callable[[str], None] = print,
    wait_idle: float = 0.0,
) -> PerfResult:
    """Every measurement of `bench perf` in one run (see `bench.perf`). `threads`:
    intra-op threads for the run (default one per CPU; torch's setting is restored after);
    `wait_idle`: seconds to wait, at most, for other processes to leave the CPUs."""
    previous = torch.get_num_threads()
    try:
        return _run_perf(preset, device, threads, bf16, reference, checkpoint, log, wait_idle)
    finally:
        torch.set_num_threads(previous)


def _run_perf(preset, device, threads, bf16, reference, checkpoint, log, wait_idle):
    thread_info = configure_threads(threads) if not str(device).startswith("cuda") else {}
    busy = _wait_for_idle(threads, wait_idle, log)
    load_start = load_average()
    started = datetime.now().astimezone()
    ctx = contextlib.nullcontext()
    if reference:
        from bench.flows.layers import reference_path

        ctx = reference_path()
    with ctx:
        rows, mm_end, coupling, preset = _measure_all(preset, device, bf16, checkpoint, log)
    mm = rows[0]
    mm["gflop_s_start"], mm["gflop_s_end"] = mm["gflop_s"], mm_end["gflop_s"]
    if mm_end["gflop_s"] > mm["gflop_s"]:
        mm.update({k: mm_end[k] for k in ("median_ms", "min_ms", "max_ms", "gflop_s")})
    log(f"  {mm_end['gflop_s']:.1f} GFLOP/s; ceiling {mm['gflop_s']:.1f} GFLOP/s")
    _hold_against_targets(rows, mm["gflop_s"], preset.width, analytic_flops(coupling))
    info = {
        **machine_info(device),
        **thread_info,
        "preset": preset.name,
        "width": preset.width,
        "reps": preset.reps,
        "warmup": preset.warmup,
        "matmul_n": preset.matmul_n,
        "weights": checkpoint or "untrained, ActNorm initialised, parameters perturbed by 0.01",
        "path": "straightforward (reference_path)" if reference else "optimised (default)",
        "busy_cpus": busy,
        "load_start": load_start,
        "load_end": load_average(),
        "date": started.isoformat(timespec="seconds"),
        "params": coupling.num_params(),
    }
    return PerfResult(rows, info)


def _wait_for_idle(threads, wait_idle: float, log) -> float | None:
    """Other processes' busy CPUs (`bench.machine.busy_cpus`, over a second at first), read
    again (for at most `wait_idle` seconds in all) while they are above `busy_limit`; the last
    reading."""
    busy = machine.busy_cpus(1.0)
    deadline = perf_counter() + wait_idle
    limit = busy_limit(threads)
    while busy is not None and busy > limit and perf_counter() < deadline:
        log(f"{busy:.2f} CPUs busy with other work: waiting for an idle machine ...")
        busy = machine.busy_cpus(min(10.0, max(deadline - perf_counter(), 0.1)))
    return busy


def _measure_all(preset: PerfPreset, device, bf16: bool, checkpoint, log):
    """(rows, matmul row at the end, coupling flow, preset with the flow's width): every
    measurement, in order, the matmul at the start first."""
    log(f"matmul {preset.matmul_n}x{preset.matmul_n} ...")
    mm = measure_matmul(preset.matmul_n, preset.reps, preset.warmup, device)
    rows: list[dict] = [mm]
    mm_rate = mm["gflop_s"]
    log(f"  {mm_rate:.1f} GFLOP/s")
    if checkpoint:
        from bench.train import load_checkpoint

        coupling, _ = load_checkpoint(checkpoint, device, arch="coupling")
        coupling.requires_grad_(False)
        preset = replace(preset, width=coupling.arch_config["hidden"])
    else:
        coupling = perf_flow("coupling", preset.width, device)
    rows += _solver_rows(coupling, preset, device, mm_rate, bf16, log)
    # glow stays alive to the end of the measurements (the training rows' peak memory
    # included it before this function was split out; keep the figures comparable)
    glow = perf_flow("glow", preset.width, device)
    rows += _generation_rows((coupling, glow), preset, device, mm_rate, log)
    rows += _training_rows(coupling, preset, device, mm_rate, log)
    rows += _throughput_rows(coupling, preset, device, log)
    log("matmul again (the ceiling is the better of the two) ...")
    mm_end = measure_matmul(preset.matmul_n, preset.reps, preset.warmup, device)
    return rows, mm_end, coupling, preset


def _solver_rows(coupling, preset: PerfPreset, device, mm_rate: float, bf16: bool, log):
    """A solver iteration at each batch; with `bf16`, one under bf16 autocast at the first
    batch and the bf16 accuracy check."""
    from bench.precision import precision

    rows = []
    for b in preset.batches:
        log(f"solver iteration, batch {b} ...")
        with precision("fp32", device):  # float32 on CUDA too (no TF32 convolutions)
            rows.append(measure_solver(coupling, b, preset.reps, preset.warmup, device, mm_rate))
        log(f"  {rows[-1]['ms_per_image']:.3f} ms/image, {rows[-1]['pct_matmul']:.0f}% of mm")
    if bf16:
        b = preset.batches[0]
        log(f"solver iteration, batch {b}, bf16 autocast ...")
        rows.append(
            measure_solver(
                coupling,
                b,
                min(preset.reps, 3),  # slow where the CPU has no bf16 instructions
                preset.warmup,
                device,
                mm_rate,
                autocast=torch.bfloat16,
                mode="bf16 autocast",
            )
        )
        log(f"bf16 accuracy: {preset.bf16_images} images, {preset.bf16_iters} iterations ...")
        rows.append(bf16_accuracy(coupling, preset.bf16_images, preset.bf16_iters, device))
    if str(device).startswith("cuda"):
        rows += _tf32_rows(coupling, preset, device, mm_rate, log)
    return rows


def _tf32_rows(coupling, preset: PerfPreset, device, mm_rate: float, log) -> list[dict]:
    """On CUDA: a solver iteration with TF32 matrix products and convolutions at the first
    batch, and its accuracy against float32 (`precision_accuracy`)."""
    from bench.precision import precision

    b = preset.batches[0]
    log(f"solver iteration, batch {b}, TF32 ...")
    with precision("tf32", device):
        row = measure_solver(coupling, b, preset.reps, preset.warmup, device, mm_rate, mode="tf32")
    log(f"tf32 accuracy: {preset.bf16_images} images, {preset.bf16_iters} iterations ...")
    acc = precision_accuracy(coupling, preset.bf16_images, preset.bf16_iters, device, "tf32")
    return [row, acc]


def _generation_rows(flows, preset: PerfPreset, device, mm_rate: float, log) -> list[dict]:
    """Generation of each flow at each batch."""
    rows = []
    for flow in flows:
        for b in preset.batches:
            log(f"generation, {flow.arch}, batch {b} ...")
            rows.append(measure_generation(flow, b, preset.reps, preset.warmup, device, mm_rate))
            log(f"  {rows[-1]['ms_per_image']:.3f} ms/image, {rows[-1]['pct_matmul']:.0f}% of mm")
    return rows


def _training_rows(coupling, preset: PerfPreset, device, mm_rate: float, log) -> list[dict]:
    """A training step of the coupling flow, with torch's default and its fused Adam."""
    rows = []
    for fused in (False, True):
        log(f"training step, batch {preset.train_batch}{', fused Adam' if fused else ''} ...")
        rows.append(
            measure_training(
                coupling,
                preset.train_batch,
                preset.reps,
                preset.warmup,
                device,
                mm_rate,
                fused=fused,
            )
        )
        log(f"  {rows[-1]['images_per_s']:.1f} images/s, {rows[-1]['pct_matmul']:.0f}% of mm")
    return rows


def _throughput_rows(coupling, preset: PerfPreset, device, log) -> list[dict]:
    """Table 1's latent solves per cell against fused (`bench.perf.throughput`), with the given
    flow when it has the run preset's width, else a timing flow of that width."""
    from bench import config
    from bench.perf.throughput import measure_table1_throughput

    width = config.get_preset(preset.table1_preset).hidden
    flow = coupling
    if coupling.arch_config.get("hidden") != width:
        flow = perf_flow("coupling", width, device)
    log(
        f"Table 1 throughput ({preset.table1_preset} preset's cells, width {width}, "
        f"{preset.table1_iters} iterations), per cell and fused ..."
    )
    rows = measure_table1_throughput(
        flow, preset.table1_preset, preset.table1_iters, preset.table1_reps, device
    )
    per_cell, fused = rows
    log(
        f"  {per_cell['images_per_s']:.0f} vs {fused['images_per_s']:.0f} image-iterations/s: "
        f"fused {fused['fused_ratio']:.2f}× per cell"
    )
    workers = torch.get_num_threads()
    if torch.device(device).type == "cpu" and workers >= 2:
        from bench.perf.throughput import measure_table1_workers

        log(f"  ... and on {workers} single-thread workers (--jobs {workers} --threads 1)")
        more = measure_table1_workers(
            flow, preset.table1_preset, preset.table1_iters, preset.table1_reps, workers
        )
        log(
            f"  {more[0]['images_per_s']:.0f} vs {more[1]['images_per_s']:.0f} "
            f"image-iterations/s: fused {more[1]['fused_ratio']:.2f}× per cell"
        )
        rows += more
    return rows


def _hold_against_targets(rows: list[dict], ceiling: float, width: int, analytic: dict) -> None:
    """Every row's width, % of the matmul `ceiling`, target (fp32 rows at the target's batch)
    and, for the coupling flow, its analytic GFLOP per image."""
    for r in rows:
        r.setdefault("width", width)
        if r["figure"] not in ("matmul", "bf16_accuracy", "tf32_accuracy", "table1_throughput"):
            r["pct_matmul"] = 100 * r["gflop_s"] / ceiling
        target = TARGET_PCT.get(r["figure"])
        tb = TARGET_BATCH.get(r["figure"])
        if target is not None and r["mode"] == "fp32" and (tb is None or tb == r["batch"]):
            r["target_pct"] = target
            r["meets_target"] = bool(r["pct_matmul"] >= target)
        if r["figure"] in analytic and r["arch"] == "coupling":
            r["analytic_gflop_per_image"] = analytic[r["figure"]] / 1e9
