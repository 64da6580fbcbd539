"""Where a cell runs, and how many torch threads it uses there: a Dask worker's share of its
cores (a local worker's count is `bench.machine.default_threads`)."""

from __future__ import annotations

import sys

from bench import machine


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
    return max(1, machine.available_cpus() // max(1, int(nthreads)))
