"""What `bench perf` measures and against which targets: its files, the targets (% of the
matmul rate), the memory bound, the busy-machine limit and the presets."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from bench import config

PERF_CSV = "perf.csv"
PERF_MD = "perf.md"
# targets (% of the measured matmul rate, float32) and the memory bound of the issue
TARGET_PCT = {"solver": 50.0, "generation": 50.0, "training": 40.0}
TARGET_BATCH = {"solver": 32, "generation": None, "training": config.TRAIN_BATCH}
MEMORY_LIMIT_GIB = 8.0
MEMORY_BATCH = config.EVAL_IMAGES  # 192 images solved in one batch
# other work may keep at most (CPUs - our threads + this) CPUs busy, else the figures are
# marked unreliable: OpenMP threads that wait for a descheduled sibling stall every operation
IDLE_BUSY_CPUS = 0.5


def busy_limit(threads: int | None) -> float:
    """The most CPUs other work may keep busy before the figures are marked unreliable."""
    return (os.cpu_count() or 1) - (threads or torch.get_num_threads()) + IDLE_BUSY_CPUS


GIB = 1024**3


@dataclass(frozen=True)
class PerfPreset:
    """Size knobs of `bench perf`."""

    name: str
    width: int
    batches: tuple[int, ...]  # solver (and generation) batch sizes
    train_batch: int
    reps: int
    warmup: int
    matmul_n: int
    bf16_images: int  # images restored for the bf16 accuracy check
    bf16_iters: int  # solver iterations of that check
    # Table 1 throughput (`bench.perf.throughput`): the latent cells of this run preset's Table 1,
    # per cell against fused, with a flow of the run preset's width
    table1_preset: str = "cpu"
    table1_iters: int = 10
    table1_reps: int = 2


PERF_PRESETS: dict[str, PerfPreset] = {
    "default": PerfPreset(
        "default", config.HIDDEN, (32, MEMORY_BATCH), config.TRAIN_BATCH, 7, 2, 2048, 4, 20
    ),
    "smoke": PerfPreset("smoke", 16, (4, 8), 4, 3, 1, 256, 2, 5, "smoke", 2, 1),
}
