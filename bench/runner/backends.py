"""Where cells run: in this process, in joblib's loky worker processes, or on a Dask cluster.
Each result goes back to the driver, which stores it as soon as it arrives."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.runner.compute import CellContext, compute_cell
from bench.runner.plan import Cell

BACKENDS = ("joblib", "dask")
SCHEDULER_TIMEOUT_S = 10


@dataclass
class Stage:
    """The images of one stage, as the workers receive them."""

    images: np.ndarray
    names: list[str]


@dataclass
class Executor:
    """How a run computes its cells: the stages' images, the flow (and a picklable payload of
    it for other processes), what every cell shares, and where the cells run."""

    stages: dict[str, Stage]
    flow: Any
    payload_fn: Callable[[], dict]
    ctx: CellContext
    jobs: int
    threads: int | None
    backend: str
    client: Any
    progress: bool
    fuse: bool = False  # the fused solve (`bench.runner.fused`); False: one solve per cell
    max_batch: int | None = None  # rows per fused chunk (None: `fused.default_max_batch`)

    def run(self, cells: list[Cell], store: Callable[[Cell, dict], None], bar) -> None:
        """Compute `cells` and hand each result to `store` as soon as it finishes."""
        if not cells:
            return
        if self.fuse:
            from bench.runner.fused_run import run_fused

            run_fused(self, cells, store, bar)
            return
        stages, ctx, threads = self.stages, self.ctx, self.threads
        if self.backend == "dask":
            _execute_dask(cells, stages, self.payload_fn, ctx, threads, self.client, store, bar)
        elif self.jobs == 1:
            for cell in cells:
                st = stages[cell.stage]
                if bar is not None:
                    bar.set_postfix_str(str(cell), refresh=True)
                out = compute_cell(
                    cell, st.images, st.names, self.flow, ctx, threads, self.progress
                )
                store(cell, out)
                if bar is not None:
                    bar.update(1)
        else:
            _execute_joblib(cells, stages, self.payload_fn, ctx, self.jobs, threads, store, bar)


def _execute_joblib(cells, stages, payload_fn, ctx, jobs, threads, store, bar) -> None:
    """Compute `cells` in `jobs` loky processes, storing each result as it arrives."""
    from joblib import Parallel, delayed

    payload = payload_fn()
    parallel = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")
    results = parallel(
        delayed(_compute_tagged)(
            cell, stages[cell.stage].images, stages[cell.stage].names, payload, ctx, threads
        )
        for cell in cells
    )
    try:
        for cell, out in results:
            store(cell, out)
            if bar is not None:
                bar.set_postfix_str(str(cell), refresh=False)
                bar.update(1)
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()


def _compute_tagged(cell, images, names, payload, ctx, threads):
    """`compute_cell` in a loky worker, its result tagged with its cell."""
    return cell, compute_cell(cell, images, names, payload, ctx, threads, False)


def connect_dask(scheduler: str | None):
    """A dask.distributed Client for an existing scheduler, or a one-line BenchError."""
    if not scheduler:
        raise BenchError("--backend dask needs --scheduler ADDRESS (e.g. tcp://127.0.0.1:8786)")
    try:
        from distributed import Client
    except ImportError:
        raise BenchError(
            "--backend dask needs dask.distributed: pip install "
            "'dask[distributed]' (or pip install -e '.[dask]')"
        ) from None
    try:
        return Client(scheduler, timeout=SCHEDULER_TIMEOUT_S)
    except Exception as e:  # noqa: BLE001 - any connection failure is the same user problem
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise BenchError(
            f"cannot reach the Dask scheduler at {scheduler} ({msg}): start one "
            "(`dask scheduler` and `dask worker ADDRESS`) or fix --scheduler"
        ) from None


def _execute_dask(cells, stages, payload_fn, ctx, threads, client, store, bar) -> None:
    """Compute `cells` on the Dask cluster of `client`, storing each result as it arrives."""
    from distributed import as_completed

    [payload] = client.scatter([payload_fn()], broadcast=True, hash=False)
    futures = {}
    for cell in cells:
        st = stages[cell.stage]
        fut = client.submit(
            compute_cell,
            cell,
            st.images,
            st.names,
            payload,
            ctx,
            threads,  # None: cores // the worker's threads, decided on the worker
            False,
            pure=False,
            key=f"bench-{ctx.run_id}-{cell.stage}-{cell.stem}-{time.time_ns()}",
        )
        futures[fut] = cell
    try:
        for fut in as_completed(list(futures)):
            cell = futures[fut]
            store(cell, fut.result())
            if bar is not None:
                bar.set_postfix_str(str(cell), refresh=False)
                bar.update(1)
    except BaseException:
        client.cancel(list(futures))
        raise
    finally:
        client.cancel([payload])
