"""Where the fused solve runs (`run_fused`, called by `bench.runner.backends.Executor` with
``fuse=True``): in this process with ``--jobs 1``, the cells that are not fusable in a one-thread
background worker beside it (`Background`); else as units of work (`fused.work_units`) on
joblib's loky workers or the Dask cluster. Every result is stored by this process."""

from __future__ import annotations

import time
from collections.abc import Callable

from bench.runner.compute import CellContext, compute_cell, torch_threads
from bench.runner.fused import (
    FusedSolver,
    compute_unit,
    default_max_batch,
    split_fusable,
    work_units,
)
from bench.runner.plan import Cell


class Background:
    """Cells run one after the other in one worker process with one thread (torch, BLAS and
    OpenMP) while this process solves; each result is handed to `store` by this process
    (`poll`)."""

    def __init__(self, cells: list[Cell], stages, flow_source, ctx: CellContext):
        from joblib.externals.loky import ProcessPoolExecutor

        one = "1"  # numpy's BLAS and OpenMP too: the solve keeps the other threads
        env = {k: one for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        self.executor = ProcessPoolExecutor(max_workers=1, env=env)
        self.futures = {
            self.executor.submit(compute_unit, [c], stages, flow_source, ctx, 1, 1): c
            for c in cells
        }

    def poll(self, store: Callable[[Cell, dict], None]) -> bool:
        """Store the results that have arrived; True once every cell is stored."""
        for fut in [f for f in self.futures if f.done()]:
            del self.futures[fut]
            for cell, out in fut.result():
                store(cell, out)
        return not self.futures

    def take_back(self, store: Callable[[Cell, dict], None]) -> list[Cell]:
        """Once the solve is done: the cells the worker has not started (cancelled there, to
        run here with every thread), after waiting for and storing the one it is running."""
        taken = [c for f, c in self.futures.items() if f.cancel()]
        self.futures = {f: c for f, c in self.futures.items() if not f.cancelled()}
        while not self.poll(store):
            time.sleep(0.2)
        self.executor.shutdown(wait=True)
        return taken

    def kill(self) -> None:
        """Cancel everything and stop the worker now (an interrupted run)."""
        for fut in self.futures:
            fut.cancel()
        self.executor.shutdown(wait=False, kill_workers=True)


def run_fused(ex, cells: list[Cell], store: Callable[[Cell, dict], None], bar) -> None:
    """Compute `cells` with the fused solve (`bench.runner.backends.Executor` `ex` with
    ``fuse=True``): in this process with ``--jobs 1`` (the other cells in a background worker
    when there are threads to spare), else as units of work (`work_units`) on joblib's
    workers or the Dask cluster. `store` gets each cell as it finishes."""
    stages = {k: (st.images, st.names) for k, st in ex.stages.items()}
    width = None if ex.flow is None else ex.flow.arch_config.get("hidden")
    max_batch = ex.max_batch or default_max_batch(ex.ctx.device, width)

    def stored(cell: Cell, out: dict) -> None:
        store(cell, out)
        if bar is not None:
            bar.set_postfix_str(str(cell), refresh=False)
            bar.update(1)

    if ex.backend == "dask" or ex.jobs > 1:
        _dispatch(ex, work_units(cells, stages, max_batch), stages, max_batch, stored)
        return
    fused, other = split_fusable(cells, ex.flow is not None)
    _in_process(ex, fused, other, stages, max_batch, stored, bar)


def _in_process(ex, fused, other, stages, max_batch, stored, bar) -> None:
    """The fused cells solved here; the others in a one-thread background worker while the
    solve uses the remaining threads (all of them again once the background is done), or here
    afterwards when there is one thread only."""
    import torch

    from bench import methods as M

    threads = ex.threads or torch.get_num_threads()
    background = None
    if fused and other and threads >= 2:
        needs_flow = any(M.get_method(c.method).needs_flow for c in other)
        background = Background(other, stages, ex.payload_fn() if needs_flow else None, ex.ctx)
    try:
        with torch_threads(threads - 1 if background else threads):

            def tick() -> None:
                if background is not None and background.poll(stored):
                    if torch.get_num_threads() != threads:
                        torch.set_num_threads(threads)

            def on_chunk(k: int, n: int) -> None:
                if bar is not None and n > 1:
                    bar.set_postfix_str(f"fused chunk {k + 1}/{n}", refresh=True)

            solver = FusedSolver(stages, ex.flow, ex.ctx, max_batch)
            solver.run(fused, stored, tick=tick, on_chunk=on_chunk)
        rest = other if background is None else background.take_back(stored)
        for cell in rest:
            images, names = stages[cell.stage]
            stored(cell, compute_cell(cell, images, names, ex.flow, ex.ctx, threads))
    except BaseException:
        if background is not None:
            background.kill()
        raise


def _dispatch(ex, units: list[list[Cell]], stages, max_batch: int, stored) -> None:
    """Compute the units on joblib's loky workers (``--jobs``) or the Dask cluster, storing
    each cell as its unit's result arrives."""
    payload = ex.payload_fn()
    if ex.backend == "dask":
        from distributed import as_completed

        [payload] = ex.client.scatter([payload], broadcast=True, hash=False)  # sent once
        args = (stages, payload, ex.ctx, ex.threads, max_batch)
        futures = [
            ex.client.submit(compute_unit, unit, *args, pure=False, key=_unit_key(ex, unit))
            for unit in units
        ]
        try:
            for fut in as_completed(futures):
                for cell, out in fut.result():
                    stored(cell, out)
        except BaseException:
            ex.client.cancel(futures)
            raise
        finally:
            ex.client.cancel([payload])
        return
    args = (stages, payload, ex.ctx, ex.threads, max_batch)
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=ex.jobs, backend="loky", return_as="generator_unordered")
    results = parallel(delayed(compute_unit)(unit, *args) for unit in units)
    try:
        for outs in results:
            for cell, out in outs:
                stored(cell, out)
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()


def _unit_key(ex, unit: list[Cell]) -> str:
    return f"bench-{ex.ctx.run_id}-{unit[0].stage}-{unit[0].stem}-{len(unit)}-{time.time_ns()}"
