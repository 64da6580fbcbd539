"""`bench perf`: how close solving, generating and training come to what the hardware allows.

One run measures, on one device:

- the float32 matrix-multiply rate (``torch.mm`` of two n×n matrices, 2n³ FLOP), the
  reference ceiling every other figure is held against;
- one iteration of the paper's solver (generation with its log-determinant, L1 data term and
  α·L(z), backward to z, Adam step) through the production loop `bench.solve.solve_latent`,
  at each batch size asked (ms per image, achieved GFLOP/s, % of the matmul rate);
- generation alone (z → x, under `torch.inference_mode`) for both architectures;
- one training step (forward x → z, mean NLL, backward, Adam) of the coupling flow;
- Table 1 throughput: the latent solves of a run preset's Table 1, one solve per cell against
  the runner's fused solve (`throughput`), in image-iterations per second and as a ratio: in
  one process on every thread and, on a CPU with several threads, on as many single-thread
  worker processes (``bench run --jobs N --threads 1``);
- the peak memory of each measurement (CPU: the process's resident-set high-water mark, reset
  before each measurement; CUDA: the allocator's peak).

Times are medians over `reps` timed repetitions after `warmup` untimed ones.

FLOPs: convolutions and matrix products only, one multiply-add = 2 FLOP, counted by
`torch.utils.flop_counter.FlopCounterMode` on the very operations one repetition executes (so a
backward pass counts what autograd runs: gradients with respect to inputs only for the frozen
flow of a solve, inputs and weights in training). Elementwise work (activations, ActNorm,
couplings, Adam) is not counted: it is cheap in FLOPs but not in time, which is why the
achieved rate is below the matmul rate. `analytic_flops` counts the same convolutions from the
architecture alone as a cross-check.

The package: `settings` (files, targets, presets), `host` (threads, machine description, load,
peak memory), `flops` (counted and analytic FLOPs), `measure` (one row per measurement),
`throughput` (Table 1, per cell against fused), `run` (`run_perf`: every measurement in order)
and `report` (perf.md and perf.csv). Every name is re-exported here.
"""

from __future__ import annotations

from bench.perf.flops import analytic_flops, batch_flops, conv2d_flops, count_flops
from bench.perf.host import (
    PeakMemory,
    configure_threads,
    cpu_description,
    load_average,
    machine_info,
)
from bench.perf.measure import (
    bf16_accuracy,
    measure_generation,
    measure_matmul,
    measure_solver,
    measure_training,
    perf_flow,
    precision_accuracy,
    solver_iteration_flops,
)
from bench.perf.report import FLOPS_NOTE, perf_markdown, write_perf
from bench.perf.run import PerfResult, run_perf
from bench.perf.settings import (
    GIB,
    IDLE_BUSY_CPUS,
    MEMORY_BATCH,
    MEMORY_LIMIT_GIB,
    PERF_CSV,
    PERF_MD,
    PERF_PRESETS,
    TARGET_BATCH,
    TARGET_PCT,
    PerfPreset,
    busy_limit,
)
from bench.perf.throughput import (
    measure_table1_throughput,
    measure_table1_workers,
    table1_cells,
)

__all__ = [
    "FLOPS_NOTE",
    "GIB",
    "IDLE_BUSY_CPUS",
    "MEMORY_BATCH",
    "MEMORY_LIMIT_GIB",
    "PERF_CSV",
    "PERF_MD",
    "PERF_PRESETS",
    "TARGET_BATCH",
    "TARGET_PCT",
    "PeakMemory",
    "PerfPreset",
    "PerfResult",
    "analytic_flops",
    "batch_flops",
    "bf16_accuracy",
    "busy_limit",
    "configure_threads",
    "conv2d_flops",
    "count_flops",
    "cpu_description",
    "load_average",
    "machine_info",
    "measure_generation",
    "measure_matmul",
    "measure_solver",
    "measure_table1_throughput",
    "measure_table1_workers",
    "measure_training",
    "perf_flow",
    "perf_markdown",
    "precision_accuracy",
    "run_perf",
    "solver_iteration_flops",
    "table1_cells",
    "write_perf",
]
