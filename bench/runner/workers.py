"""How many torch threads a worker uses: the CPUs this process may run on, the default per
worker, and a Dask worker's share of its cores."""

from __future__ import annotations

import sys


def available_cores() -> int:
    """CPUs this process may run on."""
    from bench.machine import available_cpus

    return available_cpus()


def default_threads(jobs: int) -> int:
    """Torch threads per worker when `jobs` workers share this machine with whatever else
    runs: max(1, the CPUs other processes leave free // jobs), measured now
    (`bench.machine.default_threads`)."""
    from bench import machine

    return machine.default_threads(jobs)


def in_dask_worker() -> bool:
    """Whether this code runs inside a Dask worker."""
    if "distributed" not in sys.modules:
        return False
    try:
        from distributed import get_worker

        get_worker()
        return True
    except (ImportError, ValueError):
        return False


def dask_worker_threads() -> int:
    """Torch threads of one task on this Dask worker: its cores // the worker's threads."""
    from distributed import get_worker

    nthreads = getattr(get_worker(), "nthreads", None) or getattr(get_worker().state, "nthreads", 1)
    # a Dask worker shares its cores among its own threads only (no busy reading per cell)
    return max(1, available_cores() // max(1, int(nthreads)))
