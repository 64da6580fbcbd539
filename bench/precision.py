"""The arithmetic a solve runs in (`bench run --precision`): float32 (the protocol, and the
default), TF32 tensor-core matrix products and convolutions on CUDA, or bfloat16 autocast.

TF32 and bfloat16 are speed options for GPUs: they change the numbers (a run made with one is a
run of its own: its id includes the precision), so their PSNR difference from float32 must be
measured before they are trusted (`bench perf --bf16` on the device; scripts/gpu_table.sh).
On CUDA, "fp32" turns TF32 off for convolutions too (PyTorch allows it there by default), so
that float32 means float32 on every device. On a CPU, "tf32" is float32.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from bench.errors import BenchError

PRECISIONS = ("fp32", "tf32", "bf16")
DEFAULT_PRECISION = "fp32"

# the autocast dtype solves use when they are given none (`bench.solve.solve_latents`)
AUTOCAST: contextvars.ContextVar = contextvars.ContextVar("bench_autocast", default=None)


def check_precision(precision: str, device=None) -> str:
    """`precision` if it is one of PRECISIONS (and, with a `device`, one it has: TF32 is CUDA's),
    else a one-line BenchError naming the choices."""
    if precision not in PRECISIONS:
        raise BenchError(
            f"unknown --precision {precision!r}: choose one of {', '.join(PRECISIONS)}"
        )
    if precision == "tf32" and device is not None and not str(device).startswith("cuda"):
        raise BenchError(
            f"--precision tf32 is a CUDA mode, and the device is {device}: use fp32 (or bf16) "
            "there, or --device cuda"
        )
    return precision


@contextlib.contextmanager
def precision(name: str, device) -> Iterator[None]:
    """Inside the block, solves on `device` run in precision `name` (PRECISIONS): the CUDA TF32
    switches set for it, and bfloat16 autocast made the solves' default (`AUTOCAST`). Both are
    restored afterwards."""
    import torch

    check_precision(name)
    cuda = str(device).startswith("cuda")
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    token = AUTOCAST.set(torch.bfloat16 if name == "bf16" else None)
    try:
        if cuda:
            tf32 = name == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        yield
    finally:
        AUTOCAST.reset(token)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
