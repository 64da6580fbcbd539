"""The machine `bench perf` runs on: its threads, its description, its load, and the peak
memory of a measurement (`PeakMemory`)."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
from pathlib import Path

import torch

from bench import machine
from bench.machine import cpu_description, gpu_name


def configure_threads(threads: int | None = None, interop: int | None = 1) -> dict:
    """Intra-op threads (default: one per available CPU, `bench.machine.available_cpus`) and
    inter-op threads (default 1: the flows are sequential, a second inter-op pool only
    competes for the cores). Setting the inter-op pool fails once torch has used it; that is
    reported, not raised."""
    torch.set_num_threads(threads or machine.available_cpus())
    note = ""
    if interop is not None and torch.get_num_interop_threads() != interop:
        try:
            torch.set_num_interop_threads(interop)
        except RuntimeError:
            note = "inter-op threads already fixed by earlier torch work"
    return {
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "threads_note": note,
    }


def machine_info(device) -> dict:
    """The machine columns of perf.csv: CPU (`bench.machine.cpu_description`), device, torch,
    Python, threads, torch's CPU capability, oneDNN, and the GPU's name on CUDA."""
    dev = str(device)
    info = {
        **cpu_description(),
        "device": dev,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available(),
    }
    if dev.startswith("cuda"):
        info["gpu"] = gpu_name(dev)
    return info


def load_average() -> tuple[float, float, float] | None:
    return os.getloadavg() if hasattr(os, "getloadavg") else None


# ---- memory ---------------------------------------------------------------------------------
def _vm_hwm() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def _release_free_memory() -> None:
    """Hand memory that malloc keeps for reuse (see `bench.solve.keep_freed_memory`) back to
    the kernel, so that a peak measured next is that of the next block alone."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak memory of a block, in bytes (`.peak`). CPU: the resident-set high-water mark of the
    process, reset on entry through /proc/self/clear_refs (Linux); where that is impossible, the
    lifetime maximum (`.exact` False). CUDA: `torch.cuda.max_memory_allocated`."""

    def __init__(self, device):
        self.device = str(device)
        self.peak: int | None = None
        self.exact = True

    def __enter__(self):
        if self.device.startswith("cuda"):
            machine.sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        _release_free_memory()
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.exact = False
        return self

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            machine.sync(self.device)
            self.peak = int(torch.cuda.max_memory_allocated(self.device))
            return False
        hwm = _vm_hwm()
        if hwm is None:
            self.exact = False
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.peak = hwm
        return False
