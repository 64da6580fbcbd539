"""The Table 1 runner (PROTOCOL §4–6): cells, weight selection, parallel and distributed execution,
and the results store.

A *cell* is one (stage, method, weight, task): the method restores every image of the stage
in one batch and the runner stores one row per image. Stages:

- ``select``: the weight grid on the first ``preset.select_images`` images of the *valid*
  partition (the default, ``select_on='valid'``); the best weight per (method, task) by mean
  PSNR is then run on the test images.
- ``test``: the first ``preset.test_images`` images of the *test* partition. With
  ``select_on='test'`` (the paper's practice) the whole grid runs here and the best is reported;
  with ``weights='paper'`` only the paper's chosen weights run, with no grid.

The results store (read directly by pandas)::

    results/runs/<run-id>/run.json                       manifest: configuration, selection
    results/runs/<run-id>/inputs/test/<task>.npz         targets and measurements, for figures
    results/runs/<run-id>/cells/<stage>/<method>[weight=..]__<task>.csv   one row per image
    results/runs/<run-id>/cells/<stage>/<method>[weight=..]__<task>.npy   restored images, uint8

Every file is written atomically (temporary file + ``os.replace``) and a cell's CSV is written
last, so a cell is finished exactly when its CSV exists: a rerun skips finished cells (an
interrupted run loses at most the cells in flight) and ``force=True`` recomputes them. The
run-id is a hash of everything that determines the numbers (dataset and its files, preset,
model fingerprint, seed, selection mode, device type), so the same command finds its cells.

Workers only compute; the driver process writes every file. That keeps the store consistent
whether cells run in this process, in joblib's loky worker processes, or on a Dask cluster
whose workers do not share this machine's disk.

The modules, in the order a run uses them: `layout` (the store's names and columns), `plan`
(cells and the plan of a run), `estimate` (the run-time estimate), `store` (reading and
writing the store), `selection` (the best weight of a grid), `compute` (one cell's work),
`workers` (a Dask worker's threads), `backends` (in-process, joblib and Dask execution),
`manifest` (a run's id and manifest) and `run` (`run_table1`). Every public name is
importable from `bench.runner` itself.
"""

from bench import config as config  # `runner.config`, as when this package was one module
from bench.machine import default_threads  # `runner.default_threads`: threads per worker
from bench.runner.backends import BACKENDS, SCHEDULER_TIMEOUT_S, Executor, Stage, connect_dask
from bench.runner.compute import CellContext, compute_cell, flow_payload
from bench.runner.estimate import (
    ESTIMATE_ITERS,
    ESTIMATE_WARMUP,
    estimate_seconds,
    format_duration,
    parallel_workers,
    time_method_image,
    time_solver_iteration,
)
from bench.runner.layout import (
    CELLS_DIR,
    CSV_COLUMNS,
    INPUTS_DIR,
    MANIFEST,
    NO_FLOW,
    RUN_FORMAT,
    RUNS_DIR,
    STAGES,
)
from bench.runner.manifest import (
    describe_device,
    make_run_id,
    merge_manifest,
    run_commands,
    run_dir_of,
    run_key,
    timestamp,
)
from bench.runner.plan import (
    SELECT_ON,
    WEIGHT_MODES,
    Cell,
    Plan,
    plan_table1,
    resolve_methods,
    resolve_tasks,
    weight_key,
)
from bench.runner.run import RunLedger, RunResult, acquire_run_lock, run_table1, stage_images
from bench.runner.selection import best_weight, cell_mean_psnr, select_weights, stored_selection
from bench.runner.store import (
    CellStatus,
    cell_done,
    cell_status,
    find_run,
    list_runs,
    read_cells,
    read_inputs,
    read_manifest,
    read_restored,
    runs_root,
    stored_failures,
    write_cell,
    write_inputs,
    write_manifest,
)
from bench.runner.workers import dask_worker_threads, in_dask_worker

__all__ = [
    "BACKENDS",
    "CELLS_DIR",
    "CSV_COLUMNS",
    "ESTIMATE_ITERS",
    "ESTIMATE_WARMUP",
    "INPUTS_DIR",
    "MANIFEST",
    "NO_FLOW",
    "RUNS_DIR",
    "RUN_FORMAT",
    "SCHEDULER_TIMEOUT_S",
    "SELECT_ON",
    "STAGES",
    "WEIGHT_MODES",
    "Cell",
    "CellContext",
    "CellStatus",
    "Executor",
    "Plan",
    "RunLedger",
    "RunResult",
    "Stage",
    "acquire_run_lock",
    "best_weight",
    "cell_done",
    "cell_mean_psnr",
    "cell_status",
    "compute_cell",
    "connect_dask",
    "dask_worker_threads",
    "default_threads",
    "describe_device",
    "estimate_seconds",
    "find_run",
    "flow_payload",
    "format_duration",
    "in_dask_worker",
    "list_runs",
    "make_run_id",
    "merge_manifest",
    "parallel_workers",
    "plan_table1",
    "read_cells",
    "read_inputs",
    "read_manifest",
    "read_restored",
    "resolve_methods",
    "resolve_tasks",
    "run_commands",
    "run_dir_of",
    "run_key",
    "run_table1",
    "runs_root",
    "select_weights",
    "stored_selection",
    "stage_images",
    "stored_failures",
    "time_method_image",
    "time_solver_iteration",
    "timestamp",
    "weight_key",
    "write_cell",
    "write_inputs",
    "write_manifest",
]
