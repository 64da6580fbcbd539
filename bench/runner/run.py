"""A Table 1 run (`run_table1`): the flow, the images and the store made ready, then the
grid and fixed cells, the weights chosen on the grid, and the test cells they decide."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import machine, plugins
from bench.config import Preset
from bench.errors import BenchError
from bench.precision import check_precision
from bench.runner.backends import BACKENDS, Executor, Stage, connect_dask
from bench.runner.compute import CellContext, flow_payload
from bench.runner.layout import MANIFEST, NO_FLOW
from bench.runner.manifest import changed_plugins, merge_manifest, run_dir_of, run_key, timestamp
from bench.runner.plan import Cell, Plan, plan_table1
from bench.runner.selection import select_weights
from bench.runner.store import (
    cell_done,
    cell_status,
    read_cells,
    read_manifest,
    stored_failures,
    write_cell,
    write_inputs,
    write_manifest,
)


@dataclass
class RunResult:
    run_dir: Path
    run_id: str
    plan: Plan
    selection: dict[tuple[str, str], float | None]  # reported weight per (method, task)
    computed: list[str]  # cells computed by this call
    reused: list[str]  # finished cells found in the store
    failed: list[str]  # cells with diverged images: 'stage/cell (k/N diverged)'
    seconds: float
    manifest: dict


def stage_images(
    dataset: str,
    data_root: str | Path | None,
    preset: Preset,
    select_on: str = "valid",
    weights: str = "grid",
    progress: bool = True,
    test_offset: int = 0,
):
    """The images a run loads: the test set (after the first `test_offset` test images: the
    replication set of `bench run --test-offset`), and the valid images of a grid on valid
    images (else None), both bench.data.ImageSet."""
    from bench import data

    test = data.load_images(
        dataset, "test", data_root, limit=preset.test_images, progress=progress, offset=test_offset
    )
    select_set = None
    if weights == "grid" and select_on == "valid":
        select_set = data.load_images(
            dataset, "valid", data_root, limit=preset.select_images, progress=progress
        )
    return test, select_set


def acquire_run_lock(run_dir: Path) -> Path:
    """Mark `run_dir` as being written by this process (`.lock` holds its pid). A second
    `bench run` on the same run is refused while the first is alive; a lock left by a killed
    run is taken over (`bench.locks`)."""
    from bench import locks

    return locks.acquire(Path(run_dir), "bench run")


def run_table1(
    flow,
    flow_meta: dict | None,
    preset: Preset,
    dataset: str = "builtin",
    data_root: str | Path | None = None,
    methods: str | Sequence[str] | None = None,
    tasks: str | Sequence[str] | None = None,
    device: str = "cpu",
    jobs: int = 1,
    select_on: str = "valid",
    weights: str = "grid",
    results_dir: str | Path = "results",
    force: bool = False,
    seed: int = 0,
    progress: bool = True,
    backend: str = "joblib",
    scheduler: str | None = None,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
    threads: int | None = None,
    check_run: Callable[[str], None] | None = None,
    flow_dataset: str | None = None,
    fuse: bool = True,
    max_batch: int | None = None,
    precision: str = "fp32",
    test_offset: int = 0,
    chosen: dict | None = None,
    weights_from: str | None = None,
) -> RunResult:
    """Run (or resume) Table 1 with a trained `flow` and store one row per image and cell.

    `flow_meta` is the checkpoint metadata of :func:`bench.train.ensure_flow` (its
    'fingerprint' names the model; computed from the weights when absent). See the
    `bench.runner` docstring for stages, selection and the store.

    Cells run here (`jobs=1`), in `jobs` joblib loky processes, or on the Dask cluster at
    `scheduler` (`backend='dask'`). Each worker uses `threads` torch threads (default
    max(1, CPUs other processes leave free // jobs, see `bench.machine`; on Dask, cores // the
    worker's threads).

    `check_run(run_id)` is called once the run's id is known and before anything is stored
    (the CLI refuses there a report folder made from another run).

    `dataset` is where the images come from; `flow_dataset` (default: the same) is what the
    flow was trained on: a flow restoring images it never saw (PROTOCOL §9's out-of-distribution
    set) is a run of its own, and its manifest states both.

    `fuse` (default) solves the cells of flow methods together, `max_batch` rows per chunk
    (`bench.runner.fused`; None: `fused.default_max_batch`); ``fuse=False`` solves each cell
    alone. Both store the same cells and rows (equal up to batch-size rounding). `precision`
    (`bench.precision`: fp32, tf32, bf16) is the solves' arithmetic; not fp32, it is part of the
    run's id. `test_offset` skips the first test images (`stage_images`); `weights='run'` takes
    the weights `chosen` by the run `weights_from` (`plan_table1`)."""
    from bench import tasks as T

    log = log or (lambda msg: print(msg, file=sys.stderr))
    started = time.perf_counter()
    plan = plan_table1(preset, methods, tasks, select_on, weights, chosen, weights_from)
    threads = _check_execution(backend, jobs, scheduler, threads, max_batch)
    check_precision(precision, device)
    client = connect_dask(scheduler) if backend == "dask" else None
    lock: Path | None = None
    try:
        flow, meta, fingerprint = _ready_flow(flow, flow_meta, device)
        if fuse and max_batch is None and flow is not None:
            from bench.runner.fused import default_max_batch

            max_batch = default_max_batch(device, flow.arch_config.get("hidden"))
        test, select_set = stage_images(
            dataset, data_root, preset, select_on, weights, progress, test_offset
        )
        key = run_key(
            plan, dataset, test, select_set, fingerprint, seed, device, flow_dataset, precision
        )
        run_dir = run_dir_of(results_dir, key)
        if check_run is not None:
            check_run(run_dir.name)
        lock = acquire_run_lock(run_dir)
        execution = {"backend": backend, "jobs": jobs, "threads": threads, "scheduler": scheduler}
        execution.update(fuse=bool(fuse), max_batch=max_batch)
        before = _record_start(
            run_dir, key, plan, meta, test, select_set, device, command, flow, execution, force
        )
        write_inputs(run_dir, test, plan.tasks, seed, force, T)
        ctx = _cell_context(run_dir, dataset, preset, fingerprint, device, seed, precision)
        stages, payload_fn = _stages(test, select_set), _payload_once(flow, fingerprint)
        executor = Executor(
            stages, flow, payload_fn, ctx, jobs, threads, backend, client, progress, fuse, max_batch
        )
        ledger = RunLedger(run_dir, plan, force, started, before)
        _run_waves(plan, ledger, executor, log)
        return ledger.result()
    finally:
        from bench import locks

        locks.release(lock)
        if client is not None:
            client.close()


def _check_execution(
    backend: str, jobs, scheduler: str | None, threads, max_batch=None
) -> int | None:
    """Raise BenchError for an unknown backend, a bad --jobs, --threads or --max-batch, or a
    scheduler without Dask; the torch threads per worker (None on Dask: the worker decides)."""
    if max_batch is not None and (
        isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1
    ):
        raise BenchError(f"--max-batch must be a positive integer, not {max_batch!r}")
    if backend not in BACKENDS:
        raise BenchError(f"unknown --backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise BenchError(f"--jobs must be a positive integer, not {jobs!r}")
    if backend == "joblib" and scheduler:
        raise BenchError("--scheduler is only used with --backend dask")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise BenchError(f"--threads must be a positive integer, not {threads!r}")
    if threads is None and backend == "joblib":
        threads = machine.default_threads(jobs)
    return threads


def _ready_flow(flow, flow_meta: dict | None, device: str):
    """The flow on `device`, in eval mode without gradients; its metadata completed
    (fingerprint, computed from the weights when absent; arch, hidden, num_params); and its
    fingerprint as a string. No flow (None: no method of the run needs one) gives the
    fingerprint NO_FLOW."""
    if flow is None:
        meta = {**(flow_meta or {}), "fingerprint": NO_FLOW, "arch": None}
        return None, meta, NO_FLOW
    flow = flow.to(device).eval()
    flow.requires_grad_(False)
    meta = dict(flow_meta or {})
    if not meta.get("fingerprint"):
        from bench.train import model_fingerprint

        meta["fingerprint"] = model_fingerprint(flow)
    meta.setdefault("arch", getattr(flow, "arch", None))
    meta.setdefault("hidden", flow.arch_config.get("hidden"))
    meta.setdefault("num_params", flow.num_params())
    return flow, meta, str(meta["fingerprint"])


def _record_start(
    run_dir: Path, key, plan: Plan, meta, test, select_set, device, command, flow, execution, force
) -> dict:
    """Write the run's manifest as this call starts it: the one found (if any) merged with
    this call's plan, flow, images, command and `execution` (`merge_manifest`). Returns the
    manifest found ({} for a new run). A plugin file edited since the run's cells were computed
    is refused (BenchError) unless `force` recomputes them."""
    before = read_manifest(run_dir) if (run_dir / MANIFEST).is_file() else {}
    changed = changed_plugins(before, plan)
    if changed and not force:
        raise BenchError(
            f"the plugin of {', '.join(changed)} changed since run {run_dir.name} computed its "
            "cells: pass --force to recompute them, or --results DIR for a new store"
        )
    manifest = merge_manifest(
        before, key, run_dir.name, plan, meta, test, select_set, device, command, flow
    )
    manifest["execution"] = execution
    write_manifest(run_dir, manifest)
    return before


def _cell_context(
    run_dir: Path, dataset: str, preset: Preset, fingerprint: str, device, seed, precision
):
    """What every cell of the run shares (`CellContext`), as workers get it."""
    return CellContext(
        run_id=run_dir.name,
        dataset=dataset,
        preset=preset.name,
        model=fingerprint,
        device=str(device),
        seed=int(seed),
        iters=int(preset.iters),
        plugins=tuple(plugins.loaded_specs()),
        precision=precision,
    )


def _stages(test, select_set) -> dict[str, Stage]:
    """The images of each stage the run loaded (small: uint8 32×32), as workers get them."""
    stages = {"test": Stage(test.images.numpy(), list(test.names))}
    if select_set is not None:
        stages["select"] = Stage(select_set.images.numpy(), list(select_set.names))
    return stages


def _payload_once(flow, fingerprint: str) -> Callable[[], dict]:
    """A function giving the flow's payload (`flow_payload`), built on the first call only."""
    payload_cache: dict = {}

    def payload_fn() -> dict:
        if "p" not in payload_cache:
            payload_cache["p"] = None if flow is None else flow_payload(flow, fingerprint)
        return payload_cache["p"]

    return payload_fn


@dataclass
class RunLedger:
    """What one `run_table1` call does to its run's store: the cells it computes (stored as
    they finish) and reuses, and the selection it records in the manifest."""

    run_dir: Path
    plan: Plan
    force: bool
    started: float  # time.perf_counter() when the call started
    before: dict  # the manifest found at the start ({} for a new run)
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    selection: dict[tuple[str, str], float | None] = field(default_factory=dict)

    def store(self, cell: Cell, out: dict) -> None:
        """Store one computed cell."""
        write_cell(self.run_dir, cell, out["rows"], out["restored"], out.get("trace"))
        self.computed.append(str(cell))

    def pending(self, cells: list[Cell]) -> list[Cell]:
        """The cells to compute (all with `force`); the finished ones count as reused."""
        todo = []
        for c in cells:
            if not self.force and cell_done(self.run_dir, c):
                self.reused.append(str(c))
            else:
                todo.append(c)
        return todo

    def record_selection(self, chosen: dict, complete: bool = False) -> None:
        """Write what is known of the selection to the manifest (reports of an interrupted
        run show every cell whose weight is already decided)."""
        plan, before = self.plan, self.before
        src = "valid grid" if plan.grid_stage == "select" else "test grid"
        man = read_manifest(self.run_dir)
        sel = man.setdefault("selection", {})
        for (m, t), w in chosen.items():
            fixed = plan.fixed.get((m, t))
            sel.setdefault(m, {})[t] = {
                "weight": w,
                "source": fixed[1] if fixed else src,
                "failed": fixed is None and w is None,
            }
            self.selection[(m, t)] = w
        if complete:
            man["complete"] = True
            man["last_seconds"] = round(time.perf_counter() - self.started, 3)
            if not self.computed and before:
                # a rerun that added nothing leaves the run's record as it was (so its
                # reports do not change): not one of its commands, not an update
                for k in ("commands", "command", "updated", "last_seconds", "execution"):
                    if k in before:
                        man[k] = before[k]
        if not (complete and not self.computed and before):
            man["updated"] = timestamp()
        write_manifest(self.run_dir, man)

    def result(self) -> RunResult:
        """The call's result, once its last selection is recorded."""
        manifest = read_manifest(self.run_dir)
        failed = stored_failures(self.run_dir)
        return RunResult(
            run_dir=self.run_dir,
            run_id=self.run_dir.name,
            plan=self.plan,
            selection=self.selection,
            computed=self.computed,
            reused=self.reused,
            failed=failed,
            seconds=time.perf_counter() - self.started,
            manifest=manifest,
        )


def _run_waves(plan: Plan, ledger: RunLedger, executor: Executor, log) -> None:
    """Compute the grid and fixed cells, choose the weights on the grid, then (after a grid
    on valid images) compute the test cells they decide; the selection is recorded as it
    becomes known, and the run marked complete at the end."""
    status = cell_status(plan, ledger.run_dir, ledger.force)  # what reused/computed count
    if status.finished:
        run_id = ledger.run_dir.name
        log(f"resuming run {run_id}: {status.describe()} (finished cells are kept)")
    ledger.record_selection({mt: w for mt, (w, _) in plan.fixed.items()})
    wave1 = ledger.pending(plan.grid_cells + plan.fixed_cells)
    bar = None
    if executor.progress:
        from bench.progress import bar as progress_bar

        bar = progress_bar(total=len(status.todo), desc="Table 1 cells", unit="cell")
    try:
        executor.run(wave1, ledger.store, bar)
        chosen = select_weights(read_cells(ledger.run_dir), plan)
        ledger.record_selection(chosen)
        wave2: list[Cell] = []
        if plan.grid_stage == "select":
            wave2 = ledger.pending(_chosen_test_cells(plan, chosen, log))
            if bar is not None:
                bar.total = bar.n + len(wave2)
                bar.refresh()
            executor.run(wave2, ledger.store, bar)
    finally:
        if bar is not None:
            bar.close()
    ledger.record_selection({}, complete=True)


def _chosen_test_cells(plan: Plan, chosen: dict, log) -> list[Cell]:
    """The test cell of each weight the grid chose; a (method, task) whose every weight
    diverged has none (a warning says so)."""
    cells = []
    for (m, t), w in chosen.items():
        if w is None:
            log(
                f"warning: every {plan.weight_names[m]} tried for {m} on {t} "
                "diverged: nothing to run on the test images"
            )
            continue
        cells.append(plan.cell("test", m, t, w))
    return cells
