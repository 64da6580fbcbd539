"""How many CPUs this process may use, how many other processes keep busy, and the torch
thread count that follows (`--threads auto`, the default of every command that computes).

torch's OpenMP threads spin at every barrier; with another busy process on one of their cores
they wait for each other at every operation, and a 2-thread job next to one busy process runs
many times slower than a 1-thread one. So the default is the CPUs left free by other
processes, measured just before the work starts:

    default_threads(jobs) = max(1, free // jobs),  free = min(available, round(available - busy))

`busy_cpus` reads /proc/stat twice, `interval` seconds apart, over the CPUs this process may run
on, and subtracts this process's own CPU time (so it can also be read at the end of a run);
without /proc/stat it falls back to the 1-minute load average (which counts this process too
while it runs: read it before the work starts). Tests replace `busy_cpus` / `available_cpus`
(or `PROC_STAT`) with fakes.

The device helpers name the machine as the reports print it (`cpu_name`, `cpu_description`,
`gpu_name`, `describe_device`; committed reports embed these strings, so their text must not
change) and wait for queued CUDA work (`sync`). They import torch only when called.
"""

from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path

PROC_STAT = Path("/proc/stat")
CPUINFO = Path("/proc/cpuinfo")
BUSY_INTERVAL_S = 0.2  # how long `busy_cpus` watches the CPUs by default
# `bench ablation --timing` refuses to time when other processes keep more CPUs busy than this
TIMING_BUSY_LIMIT = 0.5


def available_cpus() -> int:
    """CPUs this process may run on (its affinity set; else every CPU)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _affinity() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def cpu_ticks(path: Path | None = None) -> tuple[int, int, int] | None:
    """(busy ticks, all ticks, CPUs counted) from /proc/stat, summed over the CPUs this process
    may run on (the aggregate line when the per-CPU lines do not name them); None without the
    file. Busy: everything but idle and iowait (steal counts as busy: the CPU was taken)."""
    try:
        lines = (path or PROC_STAT).read_text().splitlines()
    except OSError:
        return None
    rows: dict[str, list[int]] = {}
    for line in lines:
        if not line.startswith("cpu"):
            continue
        name, *fields = line.split()
        try:
            rows[name] = [int(v) for v in fields[:8]]
        except ValueError:
            continue
    mine = _affinity()
    names = [f"cpu{i}" for i in sorted(mine)] if mine else []
    if names and all(n in rows for n in names):
        picked = [rows[n] for n in names]
    elif "cpu" in rows:
        n = sum(1 for k in rows if k != "cpu") or os.cpu_count() or 1
        picked = [rows["cpu"]]
        names = ["cpu"] * n
    else:
        return None
    busy = total = 0
    for f in picked:
        f = f + [0] * (8 - len(f))
        total += sum(f)
        busy += sum(f) - f[3] - f[4]
    return busy, total, len(names)


def busy_mark() -> tuple:
    """A reading to measure from: `busy_since(busy_mark())` after some work or a sleep."""
    return cpu_ticks(), time.process_time(), time.perf_counter()


def busy_since(mark: tuple) -> float | None:
    """CPUs kept busy by other processes on average since `mark` (0 … available): the busy
    ticks of /proc/stat over the CPUs this process may run on, less this process's own CPU
    time; None when /proc/stat is unreadable or no tick has passed."""
    a, own_a, t_a = mark
    b, own_b, t_b = cpu_ticks(), time.process_time(), time.perf_counter()
    if a is None or b is None or b[1] <= a[1] or b[2] != a[2]:
        return None
    n = a[2]
    busy = (b[0] - a[0]) / (b[1] - a[1]) * n
    own = (own_b - own_a) / max(t_b - t_a, 1e-9)
    return min(float(n), max(0.0, busy - own))


def busy_cpus(interval: float = BUSY_INTERVAL_S) -> float | None:
    """CPUs kept busy by other processes now (0 … available), averaged over `interval`
    seconds (`busy_since`); without /proc/stat, the 1-minute load average; None when neither
    can be read."""
    mark = busy_mark()
    if mark[0] is None:
        try:
            return max(0.0, float(os.getloadavg()[0]))
        except (AttributeError, OSError):
            return None
    time.sleep(interval)
    return busy_since(mark)


def default_threads(jobs: int = 1, busy: float | None = None, available: int | None = None) -> int:
    """Torch threads per worker for `jobs` workers: the CPUs other processes leave free
    (rounded half up), shared among the workers, at least 1. `busy` and `available` default
    to fresh readings (`busy_cpus`, `available_cpus`); an unreadable `busy` counts as 0."""
    cpus = available_cpus() if available is None else available
    if busy is None:
        busy = busy_cpus()
    free = min(cpus, max(0, math.floor(cpus - (busy or 0.0) + 0.5)))
    return max(1, free // max(1, jobs))


def choose_threads(jobs: int = 1, busy: float | None = None) -> tuple[int, str]:
    """The auto thread count (per worker) and the one line that says which and why, e.g.
    `threads: 1 of 2 CPUs (1.0 busy with other processes; --threads N to choose)`. `busy`:
    a reading already taken (default: a fresh `busy_cpus()`)."""
    cpus = available_cpus()
    if busy is None:
        busy = busy_cpus()
    n = default_threads(jobs, 0.0 if busy is None else busy, cpus)
    why = (
        "busy CPUs unreadable, counted as idle" if busy is None
        else f"{busy:.1f} busy with other processes"
    )  # fmt: skip
    per = f"{n} per worker × {jobs} workers" if jobs > 1 else f"{n}"
    return n, f"threads: {per} of {cpus} CPUs ({why}; --threads N to choose)"


def describe_busy(busy: float | None, cpus: int | None = None) -> str:
    """'1.0 of 2 CPUs busy with other processes, load 1.70/1.20/0.90' (load when readable)."""
    cpus = available_cpus() if cpus is None else cpus
    text = "busy CPUs unreadable" if busy is None else f"{busy:.1f} of {cpus} CPUs busy"
    text += " with other processes"
    if hasattr(os, "getloadavg"):
        try:
            text += ", load " + "/".join(f"{v:.2f}" for v in os.getloadavg())
        except OSError:
            pass
    return text


# ---- the device ------------------------------------------------------------------------------
CPU_EXTENSIONS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def _cpuinfo() -> tuple[list[str], set[str]]:
    """The `model name` of every CPU in /proc/cpuinfo (in order) and the flags of the first
    `flags` line that lists any; both empty when the file is unreadable."""
    names: list[str] = []
    flags: set[str] = set()
    try:
        lines = CPUINFO.read_text().splitlines()
    except OSError:
        return names, flags
    for line in lines:
        if line.startswith("model name"):
            names.append(line.split(":", 1)[1].strip())
        elif line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    return names, flags


def cpu_name() -> str:
    """The CPU's model: the first `model name` of /proc/cpuinfo, else the platform's processor
    (or machine) name."""
    names, _ = _cpuinfo()
    return names[0] if names else platform.processor() or platform.machine()


def cpu_description() -> dict:
    """CPU model (the last `model name` of /proc/cpuinfo, else the platform's processor or
    machine name), logical CPUs and the vector/matrix extensions torch can use:
    {'cpu': ..., 'cpus': ..., 'cpu_ext': 'avx2 fma' or 'unknown'} (`bench perf`)."""
    names, flags = _cpuinfo()
    name = names[-1] if names else platform.processor() or platform.machine()
    ext = [f for f in CPU_EXTENSIONS if f in flags]
    return {"cpu": name, "cpus": os.cpu_count(), "cpu_ext": " ".join(ext) or "unknown"}


def gpu_name(device) -> str:
    """The name of a CUDA device (`torch.cuda.get_device_name`): `device` a device such as
    'cuda:1' ('cuda': the current device) or an index."""
    import torch

    return torch.cuda.get_device_name(
        device if isinstance(device, int) else torch.device(str(device))
    )


def describe_device(device, style: str = "run") -> str:
    """The device in one line, as the reports print it.

    style 'run' (run manifests; `bench.runner`'s text): 'cuda:0 (NAME, torch VERSION)' with the
    GPU at the device's index (0 when it names none), else — also for a CUDA device without
    CUDA — 'cpu (N cores, PROCESSOR, torch VERSION)' with the platform's processor name.
    style 'timing' (Table 2's header): 'cuda:0 (NAME, cuDNN TF32 on|off)', else
    'cpu (MODEL)' with the model of `cpu_name`."""
    import torch

    dev = str(device)
    if style == "timing":
        if dev.startswith("cuda"):
            tf32 = f"cuDNN TF32 {'on' if torch.backends.cudnn.allow_tf32 else 'off'}"
            return f"{dev} ({gpu_name(dev)}, {tf32})"
        return f"cpu ({cpu_name()})"
    if style != "run":
        raise ValueError(f"unknown style {style!r}: 'run' or 'timing'")
    if dev.startswith("cuda") and torch.cuda.is_available():
        idx = torch.device(dev).index or 0
        return f"{dev} ({gpu_name(idx)}, torch {torch.__version__})"
    cpu = platform.processor() or platform.machine()
    return f"cpu ({os.cpu_count()} cores, {cpu}, torch {torch.__version__})"


def sync(device) -> None:
    """Wait for the CUDA work queued on `device`; nothing on a CPU."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


__all__ = [
    "BUSY_INTERVAL_S",
    "CPUINFO",
    "CPU_EXTENSIONS",
    "PROC_STAT",
    "TIMING_BUSY_LIMIT",
    "available_cpus",
    "busy_cpus",
    "busy_mark",
    "busy_since",
    "choose_threads",
    "cpu_description",
    "cpu_name",
    "cpu_ticks",
    "default_threads",
    "describe_busy",
    "describe_device",
    "gpu_name",
    "sync",
]
