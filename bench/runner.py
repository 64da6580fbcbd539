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
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import config
from bench.atomic import atomic_write, atomic_write_text
from bench.config import Preset
from bench.errors import BenchError

# ---- constants of this module ------------------------------------------------------------------
RUN_FORMAT = 1  # bump when the stored layout or the meaning of a cell changes
STAGES = ("select", "test")
SELECT_ON = ("valid", "test")
WEIGHT_MODES = ("grid", "paper")
BACKENDS = ("joblib", "dask")
RUNS_DIR = "runs"
CELLS_DIR = "cells"
INPUTS_DIR = "inputs"
MANIFEST = "run.json"
ESTIMATE_ITERS = 2  # solver iterations timed for the run-time estimate (the faster counts)
ESTIMATE_WARMUP = 2  # untimed iterations first (allocator, thread pools)
# relative cost of one iteration compared with a plain G(z) solve (MAP pushes G(z) back
# through the flow: two passes); methods without a flow are timed on one image instead
ESTIMATE_PASSES = {"map": 2.0}  # by method-name prefix (map, map-all, map-released)
SCHEDULER_TIMEOUT_S = 10

CSV_COLUMNS = (
    "run_id",
    "stage",
    "partition",
    "method",
    "task",
    "weight_name",
    "weight",
    "image",
    "index",
    "seed",
    "image_seed",
    "psnr",
    "ssim",
    "mse5",
    "loss",
    "diverged",
    "iters",
    "seconds",
    "preset",
    "model",
    "dataset",
    "device",
)


# ---- plan --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One (stage, method, weight, task): all images of the stage restored in one batch."""

    stage: str  # 'select' (valid images) or 'test'
    method: str
    task: str
    weight: float | None
    label: str  # the method's run name, e.g. 'csgm[gamma=0.01]'

    @property
    def partition(self) -> str:
        return "valid" if self.stage == "select" else "test"

    @property
    def stem(self) -> str:
        return f"{self.label}__{self.task}"

    def relpath(self, suffix: str = ".csv") -> Path:
        return Path(CELLS_DIR) / self.stage / f"{self.stem}{suffix}"

    def __str__(self) -> str:
        return f"{self.stage}/{self.stem}"


@dataclass
class Plan:
    """Which cells a Table 1 run needs; built (and validated) before any work starts."""

    preset: Preset
    methods: list[str]
    tasks: list[str]
    select_on: str
    weights: str
    weight_names: dict[str, str | None]
    grids: dict[str, tuple]  # the weights tried per method ((None,) for weightless methods)
    skipped: dict[tuple[str, str], str]  # (method, task) -> reason it does not apply
    fixed: dict[tuple[str, str], tuple[float | None, str]]  # -> (weight, source), no selection
    to_select: list[tuple[str, str]]  # (method, task) pairs whose weight a grid decides
    grid_cells: list[Cell]  # the grid: stage 'select' (valid) or 'test' (select_on='test')
    fixed_cells: list[Cell]  # test cells whose weight is known up front
    labels: dict[tuple[str, float | None], str] = field(default_factory=dict)
    # images actually loaded per stage ('select', 'test'), set once they are known
    # (`with_images`); until then a stage counts the preset's number
    loaded: dict[str, int] = field(default_factory=dict)

    @property
    def grid_stage(self) -> str:
        return "select" if self.select_on == "valid" else "test"

    @property
    def n_after_selection(self) -> int:
        """Test cells that can only run once the grid has chosen their weight."""
        return len(self.to_select) if self.grid_stage == "select" else 0

    @property
    def n_cells(self) -> int:
        return len(self.grid_cells) + len(self.fixed_cells) + self.n_after_selection

    def images(self, stage: str) -> int:
        """Images a cell of `stage` restores: those actually loaded when known (a partial
        CelebA copy or a small dataset may hold fewer than the preset asks), else the
        preset's number."""
        if stage in self.loaded:
            return self.loaded[stage]
        return self.preset.select_images if stage == "select" else self.preset.test_images

    def with_images(self, **loaded: int) -> Plan:
        """This plan with the numbers of images actually loaded, e.g.
        ``plan.with_images(test=len(test_set), select=len(valid_set))``."""
        from dataclasses import replace

        unknown = set(loaded) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}: use {', '.join(STAGES)}")
        return replace(self, loaded={**self.loaded, **{k: int(v) for k, v in loaded.items()}})

    def cell(self, stage: str, method: str, task: str, weight: float | None) -> Cell:
        return Cell(stage, method, task, weight, self.labels[(method, _wkey(weight))])

    def describe(self) -> str:
        """One line: how many cells on how many images (the images actually loaded once
        `with_images` has set them)."""

        def count(n: int, what: str) -> str:
            return f"{n} {what}{'' if n == 1 else 's'}"

        parts = []
        if self.grid_cells:
            partition = "valid" if self.grid_stage == "select" else "test"
            images = count(self.images(self.grid_stage), f"{partition} image")
            parts.append(f"{count(len(self.grid_cells), 'grid cell')} on {images}")
        n_test = len(self.fixed_cells) + self.n_after_selection
        if n_test:
            images = count(self.images("test"), "test image")
            parts.append(f"{count(n_test, 'test cell')} on {images}")
        return f"{count(self.n_cells, 'cell')} ({', '.join(parts) or 'nothing to run'})"


def _wkey(weight: float | None) -> float | None:
    return None if weight is None else float(weight)


def weight_key(weight) -> str:
    """A weight as a manifest key: repr of the float, 'None' for no weight (NaN is None)."""
    if weight is None or (isinstance(weight, float) and math.isnan(weight)):
        return "None"
    return repr(float(weight))


def _registry():
    """The methods registry with every default method registered (imports the baselines)."""
    from bench import methods as M

    M.all_methods()
    return M


def default_methods() -> list[str]:
    """Table 1's methods (methods.DEFAULT_METHODS), in its row order; the registered variants
    (e.g. 'ours-released', 'map-all') run only when named in --methods."""
    M = _registry()
    return [m for m in M.DEFAULT_METHODS if m in M.METHODS]


def _split_names(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        item = str(item).strip()
        if item and item not in out:
            out.append(item)
    return out


def resolve_methods(value: str | Sequence[str] | None) -> list[str]:
    """Method names (comma-separated or a list; None: every registered method), checked."""
    M = _registry()
    names = _split_names(value)
    if names is None:
        return default_methods()
    if not names:
        raise BenchError(f"--methods is empty: name one or more of {', '.join(M.all_methods())}")
    for name in names:
        M.get_method(name)  # raises BenchError naming the choices
    return names


def resolve_tasks(value: str | Sequence[str] | None) -> list[str]:
    """Task names (comma-separated or a list; None: all four), checked."""
    from bench import tasks as T

    names = _split_names(value)
    if names is None:
        return list(T.TASKS)
    if not names:
        raise BenchError(f"--tasks is empty: name one or more of {', '.join(T.TASKS)}")
    for name in names:
        T.get_task(name)  # raises BenchError naming the choices
    return names


def plan_table1(
    preset: Preset,
    methods: str | Sequence[str] | None = None,
    tasks: str | Sequence[str] | None = None,
    select_on: str = "valid",
    weights: str = "grid",
) -> Plan:
    """The cells of a Table 1 run. Raises BenchError (before any work) for unknown methods or
    tasks, an unknown selection mode, or an empty weight grid."""
    if select_on not in SELECT_ON:
        raise BenchError(f"unknown --select-on {select_on!r}: choose one of {', '.join(SELECT_ON)}")
    if weights not in WEIGHT_MODES:
        raise BenchError(f"unknown --weights {weights!r}: choose one of {', '.join(WEIGHT_MODES)}")
    for knob in ("test_images", "iters") + (("select_images",) if weights == "grid" else ()):
        value = getattr(preset, knob)
        if not isinstance(value, int) or value < 1:
            raise BenchError(f"preset {preset.name!r} has {knob}={value!r}: it must be >= 1")
    M = _registry()
    method_names = resolve_methods(methods)
    task_names = resolve_tasks(tasks)
    grid_stage = "select" if select_on == "valid" else "test"

    weight_names: dict[str, str | None] = {}
    grids: dict[str, tuple] = {}
    labels: dict[tuple[str, float | None], str] = {}
    skipped: dict[tuple[str, str], str] = {}
    fixed: dict[tuple[str, str], tuple[float | None, str]] = {}
    to_select: list[tuple[str, str]] = []
    for m in method_names:
        method = M.get_method(m)
        weight_names[m] = method.weight_name
        if method.weight_name is None:
            grid: tuple = (None,)
        else:
            grid = tuple(float(w) for w in method.grid(preset))
        grids[m] = grid
        supported = []
        for t in task_names:
            reason = method.supports(t)
            if reason:
                skipped[(m, t)] = str(reason)
            else:
                supported.append(t)
        if not supported:
            continue
        if method.weight_name is not None and weights == "grid" and not grid:
            raise BenchError(
                f"empty weight grid for {m} ({method.weight_name}) under preset {preset.name!r}: "
                "give the preset a non-empty grid, or use --weights paper"
            )
        for t in supported:
            if method.weight_name is None:
                fixed[(m, t)] = (None, "no weight")
            elif weights == "paper":
                w = method.paper_weight(t)
                if w is not None:
                    fixed[(m, t)] = (float(w), "paper")
                elif len(grid) == 1:
                    fixed[(m, t)] = (grid[0], "only value")
                else:
                    skipped[(m, t)] = f"the paper gives no {method.weight_name} for {m} on {t}"
            elif len(grid) == 1:
                fixed[(m, t)] = (grid[0], "only value")
            else:
                to_select.append((m, t))
        ws = set(grid) | {w for (mm, _), (w, _) in fixed.items() if mm == m}
        for w in ws:
            labels[(m, _wkey(w))] = method.run_name(w)
        stems = [labels[(m, _wkey(w))] for w in ws]
        if len(set(stems)) != len(stems):
            raise BenchError(f"{m}: two weights of its grid share a run name ({stems})")

    grid_cells = [
        Cell(grid_stage, m, t, w, labels[(m, _wkey(w))]) for (m, t) in to_select for w in grids[m]
    ]
    fixed_cells = [Cell("test", m, t, w, labels[(m, _wkey(w))]) for (m, t), (w, _) in fixed.items()]
    if not grid_cells and not fixed_cells:
        raise BenchError(
            "nothing to run: every chosen method is skipped on every chosen task "
            f"({'; '.join(f'{m} on {t}: {r}' for (m, t), r in skipped.items())})"
        )
    return Plan(
        preset=preset,
        methods=method_names,
        tasks=task_names,
        select_on=select_on,
        weights=weights,
        weight_names=weight_names,
        grids=grids,
        skipped=skipped,
        fixed=fixed,
        to_select=to_select,
        grid_cells=grid_cells,
        fixed_cells=fixed_cells,
        labels=labels,
    )


# ---- run time estimate -------------------------------------------------------------------------
def time_solver_iteration(
    hidden: int | None = None,
    device: str = "cpu",
    batch: int = config.EVAL_BATCH,
    arch: str = "coupling",
    flow_config: dict | None = None,
) -> float:
    """Seconds per image per solver iteration of a freshly built flow: the architecture of
    `flow_config` (a flow's or checkpoint's `arch_config`: the flow that will really run)
    when given, else an `arch` flow of width `hidden`. Timed over ESTIMATE_ITERS iterations
    of the shared solver on a batch (after a warm-up); untrained weights cost the same."""
    import torch

    from bench.flows import build_flow, flow_from_config
    from bench.solve import solve_latent

    if flow_config is None and hidden is None:
        raise ValueError("time_solver_iteration needs a width (hidden) or a flow_config")
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):  # the caller's RNG is left as it was
        torch.manual_seed(0)
        flow = (
            flow_from_config(dict(flow_config))
            if flow_config is not None
            else build_flow(arch, hidden=hidden)
        ).to(device)
    flow.initialize((torch.rand(batch, 3, 32, 32, generator=g) * 2 - 1).to(device))
    flow.eval().requires_grad_(False)
    y = (torch.rand(batch, 3, 32, 32, generator=g) * 2 - 1).to(device)

    def objective(z, x, logdet):
        return (x - y).abs().flatten(1).sum(1)

    z0 = (0.1 * torch.randn(batch, flow.dim, generator=g)).to(device)
    solve_latent(flow, objective, z0, iters=ESTIMATE_WARMUP, lr=config.SOLVER_LR)
    stamps = [time.perf_counter()]

    def tick(_t: int) -> None:
        _sync(device)
        stamps.append(time.perf_counter())

    solve_latent(flow, objective, z0, iters=ESTIMATE_ITERS, lr=config.SOLVER_LR, progress=tick)
    # the faster step: a transient hiccup of a busy machine should not inflate the estimate
    step = min(b - a for a, b in itertools.pairwise(stamps))
    return step / batch


def time_method_image(
    method: str, task: str, weight: float | None = None, iters: int = 1, device: str = "cpu"
) -> float:
    """Seconds to restore one image with a method that needs no flow (BM3D), timed once on
    a random image with its task's measurement: such methods restore images one at a time, so
    a cell costs about this times its number of images."""
    import torch

    from bench import tasks as T

    m = _registry().get_method(method)
    t = T.get_task(task)
    g = torch.Generator().manual_seed(0)
    x255 = torch.randint(0, 256, (1, 3, 32, 32), generator=g, dtype=torch.uint8)
    names = ["estimate.png"]
    y = t.measure(x255, names, seed=0)
    seeds = T.image_seeds(names, 0)
    start = time.perf_counter()
    m.restore(None, t, y, weight, iters, seeds, device)
    return time.perf_counter() - start


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def estimate_seconds(
    plan: Plan,
    device: str = "cpu",
    arch: str = "coupling",
    jobs: int = 1,
    threads: int | None = None,
    flow_config: dict | None = None,
    cells: Sequence[Cell] | None = None,
) -> float:
    """Estimated solve time on this device of `cells` (default: every cell of the plan; pass
    `cell_status(...).todo` to count only those still to compute), divided by the workers
    that run at once: `jobs`, but no more than the available CPUs hold at each worker's
    threads (`jobs` workers on fewer CPUs share them and run no faster):

    - flow methods: ESTIMATE_ITERS timed solver iterations, with each worker's `threads`, of
      the flow that will run (`flow_config`: its `arch_config`; default an `arch` flow of the
      preset's width), scaled by images × iterations × cells (× ESTIMATE_PASSES);
    - methods without a flow (BM3D): one image restored and timed per (method, task), scaled
      by the images of each cell.

    Images are those the plan counts (`Plan.images`: the images actually loaded once
    `Plan.with_images` has set them)."""
    import torch

    M = _registry()
    cells = list(cell_status(plan).todo if cells is None else cells)
    flow_cells = [c for c in cells if M.get_method(c.method).needs_flow]
    before = torch.get_num_threads()
    threads = default_threads(jobs) if threads is None else threads
    torch.set_num_threads(threads)
    try:
        per_image_iter = 0.0
        if flow_cells:
            batch = max(1, min(max(plan.images(c.stage) for c in flow_cells), config.EVAL_BATCH))
            per_image_iter = time_solver_iteration(
                plan.preset.hidden, device, batch, arch, flow_config=flow_config
            )
        per_image: dict[tuple[str, str], float] = {}
        total = 0.0
        for c in cells:
            n = plan.images(c.stage)
            if M.get_method(c.method).needs_flow:
                passes = next(
                    (v for k, v in ESTIMATE_PASSES.items() if c.method.startswith(k)), 1.0
                )
                total += per_image_iter * n * plan.preset.iters * passes
                continue
            if (c.method, c.task) not in per_image:
                per_image[(c.method, c.task)] = time_method_image(
                    c.method, c.task, c.weight, plan.preset.iters, device
                )
            total += per_image[(c.method, c.task)] * n
    finally:
        torch.set_num_threads(before)
    return total / parallel_workers(jobs, threads)


def parallel_workers(jobs: int, threads: int = 1) -> int:
    """How many of `jobs` workers of `threads` torch threads each really run at once: at most
    the available CPUs // threads (at least 1)."""
    return max(1, min(jobs, available_cores() // max(1, threads)))


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


# ---- the results store -------------------------------------------------------------------------
def runs_root(results_dir: str | Path) -> Path:
    return Path(results_dir) / RUNS_DIR


def read_manifest(run_dir: str | Path) -> dict:
    """The manifest (run.json) of the run stored in `run_dir`, as a dict, checked against the
    keys and types its readers use (`bench.stored.manifest_problem`).

    Raises BenchError, one line naming the file and the fix: no run.json (not a run), or one
    that is unreadable, not UTF-8, not JSON, not a JSON object, or of the wrong schema (a
    required key missing, a key of the wrong type). Nothing in it is executed (json only)."""
    from bench import stored

    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise BenchError(
            f"{run_dir} is not a Table 1 run (no {MANIFEST}): run "
            "`bench run --table 1` first, or pass another --run"
        )
    fix = (
        f"delete the run folder {Path(run_dir)} and rerun the `bench run --table 1` command "
        "that made it"
    )
    man = stored.read_json_object(path, fix)
    problem = stored.manifest_problem(man)
    if problem:
        raise stored.malformed(path, problem, fix)
    return man


def write_manifest(run_dir: Path, manifest: dict) -> None:
    atomic_write_text(run_dir / MANIFEST, json.dumps(manifest, indent=1, default=str) + "\n")


def cell_done(run_dir: Path, cell: Cell) -> bool:
    return (run_dir / cell.relpath(".csv")).is_file()


@dataclass(frozen=True)
class CellStatus:
    """Where a plan's cells stand in a run's store: `finished` (stored: kept, not recomputed)
    and `todo` (to compute). Both count grid cells and test cells alike; a test cell whose
    weight the grid has not chosen yet is in `todo` with weight None. A (method, task) whose
    every grid weight diverged has no test cell, so it is in neither."""

    finished: list[str]
    todo: list[Cell]

    @property
    def total(self) -> int:
        return len(self.finished) + len(self.todo)

    def describe(self) -> str:
        """'N of M cells finished, K to compute' (M: the grid and test cells of the run)."""
        return f"{len(self.finished)} of {self.total} cells finished, {len(self.todo)} to compute"


def cell_status(plan: Plan, run_dir: Path | None = None, force: bool = False) -> CellStatus:
    """Which cells of `plan` the run at `run_dir` already holds (none with `force` or without
    a `run_dir`): the same cells `run_table1` then reuses. A test cell after a valid-image grid
    counts as finished when its grid is complete and the weight it chose is stored."""

    def done(c: Cell) -> bool:
        return not force and run_dir is not None and cell_done(run_dir, c)

    finished: list[str] = []
    todo: list[Cell] = []
    for c in plan.grid_cells + plan.fixed_cells:
        if done(c):
            finished.append(str(c))
        else:
            todo.append(c)
    if plan.grid_stage != "select":
        return CellStatus(finished, todo)
    open_grids = {(c.method, c.task) for c in todo if c.stage == "select"}
    chosen = {}
    if any(mt not in open_grids for mt in plan.to_select):  # some grid is complete
        chosen = select_weights(read_cells(run_dir, "select"), plan)
    for m, t in plan.to_select:
        if (m, t) in open_grids:
            todo.append(Cell("test", m, t, None, ""))  # its weight is not chosen yet
        elif chosen.get((m, t)) is not None:  # None: every weight diverged, nothing to run
            c = plan.cell("test", m, t, chosen[(m, t)])
            if done(c):
                finished.append(str(c))
            else:
                todo.append(c)
    return CellStatus(finished, todo)


def write_cell(run_dir: Path, cell: Cell, rows, restored: np.ndarray) -> Path:
    """Store one finished cell: the restored images (.npy) first, then the rows (.csv): the
    CSV's existence marks the cell finished."""
    import pandas as pd

    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=CSV_COLUMNS)
    csv_path = run_dir / cell.relpath(".csv")
    atomic_write(
        run_dir / cell.relpath(".npy"),
        lambda f: np.save(f, np.ascontiguousarray(restored, dtype=np.uint8)),
    )
    atomic_write(csv_path, lambda f: frame.to_csv(f, index=False), mode="w")
    return csv_path


def read_cells(run_dir: str | Path, stage: str | None = None):
    """Every stored row of a run (optionally one stage) as one pandas DataFrame: one row per
    image and cell, columns CSV_COLUMNS; 'diverged' bool (True only where the solver produced
    NaN or inf), 'weight' float (NaN: a method without a weight), 'psnr' in dB (+inf: an
    exact restoration, a valid value), 'ssim', 'mse5' float; 'loss' NaN for methods without a
    loss (not a divergence).

    Raises BenchError naming the cell file and the fix (delete it and rerun) for a cell file
    that is unreadable, not UTF-8, empty, lacks a column, holds a non-number, a 'diverged'
    that is not True/False, or a NaN metric on a row not marked diverged
    (`bench.stored.read_cell_csv`)."""
    import pandas as pd

    from bench import stored

    base = Path(run_dir) / CELLS_DIR
    stages = [stage] if stage else list(STAGES)
    frames = []
    for st in stages:
        for path in sorted((base / st).glob("*.csv")):
            frames.append(stored.read_cell_csv(path, st))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in CSV_COLUMNS})
    frame = pd.concat(frames, ignore_index=True)
    frame["diverged"] = frame["diverged"].astype(bool)
    return frame


def read_restored(run_dir: str | Path, cell_label: str, task: str, stage: str = "test"):
    """The restored images of one stored cell, uint8 (N, 3, H, W), or None if absent.

    Loaded without pickle; raises BenchError naming the file and the fix (delete the cell's
    .npy and .csv and rerun) when it is truncated, not a .npy array, or not uint8 images."""
    from bench import stored

    path = Path(run_dir) / CELLS_DIR / stage / f"{cell_label}__{task}.npy"
    if not path.is_file():
        return None
    fix = stored.cell_fix(path)
    imgs = stored.load_array(path, fix)
    if imgs.dtype != np.uint8 or imgs.ndim != 4 or imgs.shape[1] != 3:
        raise stored.malformed(
            path, f"holds {imgs.dtype} {imgs.shape}, not uint8 images (N, 3, H, W)", fix
        )
    return imgs


def read_inputs(run_dir: str | Path, task: str, stage: str = "test") -> dict | None:
    """Targets and measurements (display), uint8 (N, 3, H, W), and the N image names of a
    task's images, as stored for figures; None if absent.

    Loaded without pickle; raises BenchError naming the file and the fix (delete it and rerun
    `bench run`, which rewrites it) when it is truncated, not an .npz archive, lacks an array,
    or holds arrays of the wrong type or shape."""
    from bench import stored

    path = Path(run_dir) / INPUTS_DIR / stage / f"{task}.npz"
    if not path.is_file():
        return None
    fix = "delete it and rerun the `bench run` command (it is rewritten)"
    z = stored.load_arrays(path, fix, ("target", "measurement", "names"))
    n = len(z["names"]) if z["names"].ndim == 1 else -1
    for key in ("target", "measurement"):
        a = z[key]
        if a.dtype != np.uint8 or a.ndim != 4 or a.shape[0] != n or a.shape[1] != 3:
            raise stored.malformed(
                path, f"holds a {key} of {a.dtype} {a.shape}, not uint8 ({n}, 3, H, W)", fix
            )
    if z["names"].dtype.kind != "U":
        raise stored.malformed(path, "holds image names that are not strings", fix)
    return {
        "target": z["target"],
        "measurement": z["measurement"],
        "names": [str(n) for n in z["names"]],
    }


def list_runs(results_dir: str | Path) -> list[Path]:
    """Run folders of a results store, the most recently updated last."""
    root = runs_root(results_dir)
    runs = [p.parent for p in root.glob(f"*/{MANIFEST}")]

    def updated(p: Path) -> tuple:
        # only the order: a damaged manifest sorts first, and read_manifest names its problem
        try:
            man = json.loads((p / MANIFEST).read_text(encoding="utf-8"))
            when = man.get("updated", "") if isinstance(man, dict) else ""
            return (str(when), (p / MANIFEST).stat().st_mtime)
        except (OSError, ValueError, RecursionError):
            return ("", 0.0)

    return sorted(runs, key=updated)


def find_run(results_dir: str | Path, run_id: str | None = None, option: str = "--run") -> Path:
    """The folder of run `run_id` (a unique prefix is enough), or the latest run; `option`
    names the command-line option that gave the id, for the error message."""
    root = runs_root(results_dir)
    runs = list_runs(results_dir)
    if not runs:
        raise BenchError(
            f"no Table 1 runs in {root}: run `bench run --table 1` first (or pass --results)"
        )
    if run_id is None:
        return runs[-1]
    exact = [p for p in runs if p.name == run_id]
    match = exact or [p for p in runs if p.name.startswith(run_id)]
    if len(match) != 1:
        names = ", ".join(p.name for p in runs[-5:])
        what = "matches no run" if not match else "is ambiguous"
        raise BenchError(f"{option} {run_id!r} {what} in {root}: choose one of {names}")
    return match[0]


def stored_failures(run_dir: str | Path) -> list[str]:
    """Stored cells with diverged images, as 'stage/cell (k/N diverged)'. Raises BenchError
    naming the file and the fix for a damaged cell file (`bench.stored.read_cell_csv`)."""
    from bench import stored

    out = []
    for path in sorted((Path(run_dir) / CELLS_DIR).glob("*/*.csv")):
        frame = stored.read_cell_csv(path, path.parent.name)
        k = int(frame["diverged"].sum())
        if k:
            out.append(f"{path.parent.name}/{path.stem} ({k}/{len(frame)} diverged)")
    return out


# ---- selection ---------------------------------------------------------------------------------
def cell_mean_psnr(rows) -> float:
    """Mean PSNR (dB) of a cell's rows (a DataFrame with 'psnr' and 'diverged').

    +inf when any image was restored exactly (PSNR +inf, a valid value: the best one); NaN
    (never chosen) when there are no rows, any image diverged, or a PSNR is NaN or -inf."""
    if len(rows) == 0 or rows["diverged"].astype(bool).any():
        return math.nan
    values = rows["psnr"].to_numpy(np.float64)
    if np.isnan(values).any() or (values == -np.inf).any():
        return math.nan
    if np.isposinf(values).any():
        return math.inf  # explicit: no inf arithmetic warnings, no NaN from inf - inf
    return float(values.mean())


def select_weights(rows, plan: Plan) -> dict[tuple[str, str], float | None]:
    """The best weight per (method, task) of the plan's grid: {(method, task): weight or None}.

    Best is the highest mean PSNR on the grid stage's images (`cell_mean_psnr`): +inf, a grid
    value that restored some image exactly, is a valid mean and beats every finite one; ties
    (two +inf included) go to the earlier grid value. None when every weight failed (diverged:
    NaN mean) or a weight has not run yet."""
    out: dict[tuple[str, str], float | None] = {}
    stage_rows = rows[rows["stage"] == plan.grid_stage] if len(rows) else rows
    for m, t in plan.to_select:
        sub = (
            stage_rows[(stage_rows["method"] == m) & (stage_rows["task"] == t)]
            if len(stage_rows)
            else stage_rows
        )
        means, complete = [], True
        for w in plan.grids[m]:
            cell_rows = (
                sub[np.isclose(sub["weight"].astype(float), w, rtol=1e-9, atol=0)]
                if len(sub)
                else sub
            )
            if len(cell_rows) == 0:
                complete = False
                continue
            means.append((w, cell_mean_psnr(cell_rows)))
        out[(m, t)] = best_weight(means)[0] if complete else None
    return out


def best_weight(means) -> tuple[float | None, float]:
    """The selection rule (`select_weights`): from (weight, mean PSNR in dB) pairs in grid
    order, the weight of the highest mean and that mean; NaN means (a failed cell) are never
    chosen, +inf beats every finite mean, ties go to the earlier weight. (None, -inf) when
    every mean is NaN."""
    best, best_psnr = None, -math.inf
    for w, psnr in means:
        if not math.isnan(psnr) and (best is None or psnr > best_psnr):
            best, best_psnr = w, psnr
    return best, best_psnr


# ---- cell computation (runs in this process, a loky worker or a Dask worker) -------------------
_FLOW_CACHE: dict[tuple[str, str], Any] = {}


def flow_payload(flow, fingerprint: str) -> dict:
    """A picklable description of a flow (numpy weights: joblib memory-maps large arrays)."""
    state = {k: v.detach().cpu().numpy() for k, v in flow.state_dict().items()}
    return {"fingerprint": fingerprint, "config": dict(flow.arch_config), "state": state}


def _flow_from(source, device: str):
    """The flow itself (in-process), or a cached rebuild of a payload (workers)."""
    if not isinstance(source, dict):
        return source
    key = (source["fingerprint"], str(device))
    flow = _FLOW_CACHE.get(key)
    if flow is None:
        import torch

        from bench.flows import flow_from_config

        flow = flow_from_config(source["config"])
        flow.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in source["state"].items()})
        flow = flow.to(device).eval().requires_grad_(False)
        _FLOW_CACHE.clear()  # one flow per worker at a time
        _FLOW_CACHE[key] = flow
    return flow


@dataclass(frozen=True)
class CellContext:
    """What every cell of a run shares (small and picklable; the flow travels separately)."""

    run_id: str
    dataset: str
    preset: str
    model: str
    device: str
    seed: int
    iters: int


def compute_cell(
    cell: Cell,
    images: np.ndarray,
    names: Sequence[str],
    flow_source,
    ctx: CellContext,
    threads: int | None = None,
    progress: bool = False,
) -> dict:
    """Measure, restore and score every image of one cell; returns {'rows', 'restored'}.

    A diverging solve (NaN or inf in the loss or the image) gives rows with diverged=True and
    NaN metrics; it does not raise because of it (other errors propagate: a bug is not a
    failed cell)."""
    import torch

    from bench import data, metrics
    from bench import tasks as T

    M = _registry()
    previous_threads = torch.get_num_threads()
    if threads is None and _in_dask_worker():
        threads = _dask_worker_threads()
    if threads and threads != previous_threads:
        torch.set_num_threads(threads)
    try:
        method = M.get_method(cell.method)
        task = T.get_task(cell.task)
        x255 = torch.from_numpy(np.ascontiguousarray(images))
        names = list(names)
        y = task.measure(x255, names, seed=ctx.seed)
        flow = _flow_from(flow_source, ctx.device) if method.needs_flow else None
        # one base seed per image (tasks.image_seeds): the measurement noise, dequantization and
        # the solvers' z0 use distinct streams of it (see bench.tasks)
        image_seeds = T.image_seeds(names, ctx.seed)
        t0 = time.perf_counter()
        res = method.restore(
            flow, task, y, cell.weight, ctx.iters, image_seeds, ctx.device, progress=progress
        )
        seconds = float(getattr(res, "seconds", None) or (time.perf_counter() - t0))
        x = res.x.detach().to("cpu", torch.float32)
        n = len(names)
        finite = torch.isfinite(x.reshape(n, -1)).all(1).numpy()
        loss = np.asarray(res.loss, dtype=np.float64).reshape(-1)
        if loss.size != n:
            loss = np.full(n, np.nan)
        diverged = np.asarray(res.diverged, dtype=bool).reshape(-1)
        if diverged.size != n:
            diverged = np.zeros(n, bool)
        # a non-finite loss counts only for methods that report a loss (NaN = no loss)
        diverged = diverged | ~finite | np.isinf(loss)
        x = torch.where(torch.from_numpy(~diverged)[:, None, None, None], x, torch.zeros_like(x))
        restored = data.to_pixels(x)
        restored[torch.from_numpy(diverged)] = 0
        target = data.to_5bit(x255) * 8
        psnr = np.asarray(metrics.psnr(restored, target), dtype=np.float64)
        ssim = np.asarray(metrics.ssim(restored, target), dtype=np.float64)
        mse5 = np.asarray(metrics.mse5(restored, target), dtype=np.float64)
        for arr in (psnr, ssim, mse5):
            arr[diverged] = np.nan
        iters = int(getattr(res, "iters", ctx.iters) or ctx.iters) if method.needs_flow else 0
        weight = math.nan if cell.weight is None else float(cell.weight)
        rows = [
            {
                "run_id": ctx.run_id,
                "stage": cell.stage,
                "partition": cell.partition,
                "method": cell.method,
                "task": cell.task,
                "weight_name": method.weight_name or "",
                "weight": weight,
                "image": name,
                "index": i,
                "seed": ctx.seed,
                "image_seed": image_seeds[i],
                "psnr": psnr[i],
                "ssim": ssim[i],
                "mse5": mse5[i],
                "loss": loss[i] if not diverged[i] else np.nan,
                "diverged": bool(diverged[i]),
                "iters": iters,
                "seconds": seconds,
                "preset": ctx.preset,
                "model": ctx.model,
                "dataset": ctx.dataset,
                "device": ctx.device,
            }
            for i, name in enumerate(names)
        ]
        return {"rows": rows, "restored": restored.numpy()}
    finally:
        if torch.get_num_threads() != previous_threads:
            torch.set_num_threads(previous_threads)


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


def _in_dask_worker() -> bool:
    if "distributed" not in sys.modules:
        return False
    try:
        from distributed import get_worker

        get_worker()
        return True
    except (ImportError, ValueError):
        return False


def _dask_worker_threads() -> int:
    from distributed import get_worker

    nthreads = getattr(get_worker(), "nthreads", None) or getattr(get_worker().state, "nthreads", 1)
    # a Dask worker shares its cores among its own threads only (no busy reading per cell)
    return max(1, available_cores() // max(1, int(nthreads)))


# ---- executors ---------------------------------------------------------------------------------
@dataclass
class _Stage:
    images: np.ndarray
    names: list[str]


def _execute(
    cells: list[Cell],
    stages: dict[str, _Stage],
    flow,
    payload_fn: Callable[[], dict],
    ctx: CellContext,
    jobs: int,
    threads: int | None,
    backend: str,
    client,
    progress: bool,
    store: Callable[[Cell, dict], None],
    bar,
) -> None:
    """Compute `cells` and hand each result to `store` as soon as it finishes."""
    if not cells:
        return
    if backend == "dask":
        _execute_dask(cells, stages, payload_fn, ctx, threads, client, store, bar)
    elif jobs == 1:
        for cell in cells:
            st = stages[cell.stage]
            if bar is not None:
                bar.set_postfix_str(str(cell), refresh=True)
            out = compute_cell(cell, st.images, st.names, flow, ctx, threads, progress)
            store(cell, out)
            if bar is not None:
                bar.update(1)
    else:
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


# ---- the run -----------------------------------------------------------------------------------
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


def make_run_id(key: dict, dataset: str, preset_name: str) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return f"{dataset}-{preset_name}-{digest[:12]}"


def _image_summary(imgs) -> dict:
    return {
        "label": imgs.label,
        "partition": imgs.partition,
        "count": len(imgs.names),
        "first": imgs.names[0] if imgs.names else None,
        "last": imgs.names[-1] if imgs.names else None,
        "fingerprint": imgs.fingerprint,
        "root": imgs.root,
        "skipped": list(imgs.skipped),
    }


def describe_device(device: str) -> str:
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        idx = torch.device(device).index or 0
        return f"{device} ({torch.cuda.get_device_name(idx)}, torch {torch.__version__})"
    cpu = platform.processor() or platform.machine()
    return f"cpu ({os.cpu_count()} cores, {cpu}, torch {torch.__version__})"


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _ordered(names: Iterable[str], order: Sequence[str]) -> list[str]:
    """`names` without duplicates, those in `order` first (in that order)."""
    names = list(dict.fromkeys(names))
    order = [n for n in dict.fromkeys(order) if n in names]
    return order + [n for n in names if n not in order]


def stage_images(
    dataset: str,
    data_root: str | Path | None,
    preset: Preset,
    select_on: str = "valid",
    weights: str = "grid",
    progress: bool = True,
):
    """The images a run loads: the test set, and the valid images of a grid on valid images
    (else None), both bench.data.ImageSet."""
    from bench import data

    test = data.load_images(dataset, "test", data_root, limit=preset.test_images, progress=progress)
    select_set = None
    if weights == "grid" and select_on == "valid":
        select_set = data.load_images(
            dataset, "valid", data_root, limit=preset.select_images, progress=progress
        )
    return test, select_set


def run_key(plan: Plan, dataset: str, test, select_set, fingerprint: str, seed: int, device):
    """Everything that determines a run's numbers (its id is a hash of it): the plan's preset
    and selection, the images (`stage_images`), the model fingerprint, the seed and the
    device type."""
    import torch

    return {
        "format": RUN_FORMAT,
        "dataset": dataset,
        "test_images": test.fingerprint,
        "select_images": select_set.fingerprint if select_set is not None else None,
        "preset": plan.preset.to_dict(),
        "model": str(fingerprint),
        "seed": int(seed),
        "select_on": plan.select_on if plan.weights == "grid" else None,
        "weights": plan.weights,
        "device": torch.device(device).type,
    }


def run_dir_of(results_dir: str | Path, key: dict) -> Path:
    """The store folder of the run with this `run_key` (it may not exist yet)."""
    return runs_root(results_dir) / make_run_id(key, key["dataset"], key["preset"]["name"])


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
) -> RunResult:
    """Run (or resume) Table 1 with a trained `flow` and store one row per image and cell.

    `flow_meta` is the checkpoint metadata of :func:`bench.train.ensure_flow` (its
    'fingerprint' names the model; computed from the weights when absent). See the module
    docstring for stages, selection and the store.

    Cells run here (`jobs=1`), in `jobs` joblib loky processes, or on the Dask cluster at
    `scheduler` (`backend='dask'`). Each worker uses `threads` torch threads (default
    max(1, CPUs other processes leave free // jobs, see `bench.machine`; on Dask, cores // the
    worker's threads).

    `check_run(run_id)` is called once the run's id is known and before anything is stored
    (the CLI refuses there a report folder made from another run)."""
    from bench import tasks as T

    log = log or (lambda msg: print(msg, file=sys.stderr))
    started = time.perf_counter()
    plan = plan_table1(preset, methods, tasks, select_on, weights)
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
        threads = default_threads(jobs)
    client = connect_dask(scheduler) if backend == "dask" else None
    lock: Path | None = None
    try:
        flow = flow.to(device).eval()
        flow.requires_grad_(False)
        meta = dict(flow_meta or {})
        if not meta.get("fingerprint"):
            from bench.train import model_fingerprint

            meta["fingerprint"] = model_fingerprint(flow)
        meta.setdefault("arch", getattr(flow, "arch", None))
        meta.setdefault("hidden", flow.arch_config.get("hidden"))
        meta.setdefault("num_params", flow.num_params())
        fingerprint = str(meta["fingerprint"])

        # images (small: uint8 32×32) -------------------------------------------------------
        test, select_set = stage_images(dataset, data_root, preset, select_on, weights, progress)
        stages = {"test": _Stage(test.images.numpy(), list(test.names))}
        if select_set is not None:
            stages["select"] = _Stage(select_set.images.numpy(), list(select_set.names))

        key = run_key(plan, dataset, test, select_set, fingerprint, seed, device)
        run_dir = run_dir_of(results_dir, key)
        run_id = run_dir.name
        if check_run is not None:
            check_run(run_id)
        lock = acquire_run_lock(run_dir)
        before = read_manifest(run_dir) if (run_dir / MANIFEST).is_file() else {}
        manifest = _merge_manifest(
            before, key, run_id, plan, meta, test, select_set, device, command, flow
        )
        manifest["execution"] = {
            "backend": backend,
            "jobs": jobs,
            "threads": threads,
            "scheduler": scheduler,
        }
        write_manifest(run_dir, manifest)
        _write_inputs(run_dir, test, plan.tasks, seed, force, T)

        ctx = CellContext(
            run_id=run_id,
            dataset=dataset,
            preset=preset.name,
            model=fingerprint,
            device=str(device),
            seed=int(seed),
            iters=int(preset.iters),
        )
        computed: list[str] = []
        reused: list[str] = []

        def store(cell: Cell, out: dict) -> None:
            write_cell(run_dir, cell, out["rows"], out["restored"])
            computed.append(str(cell))

        def pending(cells: list[Cell]) -> list[Cell]:
            todo = []
            for c in cells:
                if not force and cell_done(run_dir, c):
                    reused.append(str(c))
                else:
                    todo.append(c)
            return todo

        payload_cache: dict = {}

        def payload_fn() -> dict:
            if "p" not in payload_cache:
                payload_cache["p"] = flow_payload(flow, fingerprint)
            return payload_cache["p"]

        src = "valid grid" if plan.grid_stage == "select" else "test grid"
        selection: dict[tuple[str, str], float | None] = {}

        def record_selection(chosen: dict, complete: bool = False) -> None:
            """Write what is known of the selection to the manifest (reports of an interrupted
            run show every cell whose weight is already decided)."""
            man = read_manifest(run_dir)
            sel = man.setdefault("selection", {})
            for (m, t), w in chosen.items():
                fixed = plan.fixed.get((m, t))
                sel.setdefault(m, {})[t] = {
                    "weight": w,
                    "source": fixed[1] if fixed else src,
                    "failed": fixed is None and w is None,
                }
                selection[(m, t)] = w
            if complete:
                man["complete"] = True
                man["last_seconds"] = round(time.perf_counter() - started, 3)
                if not computed and before:
                    # a rerun that added nothing leaves the run's record as it was (so its
                    # reports do not change): not one of its commands, not an update
                    for k in ("commands", "command", "updated", "last_seconds", "execution"):
                        if k in before:
                            man[k] = before[k]
            if not (complete and not computed and before):
                man["updated"] = _now()
            write_manifest(run_dir, man)

        status = cell_status(plan, run_dir, force)  # what the reused/computed counts count
        if status.finished:
            log(f"resuming run {run_id}: {status.describe()} (finished cells are kept)")
        record_selection({mt: w for mt, (w, _) in plan.fixed.items()})
        wave1 = pending(plan.grid_cells + plan.fixed_cells)
        bar = None
        if progress:
            from bench.progress import bar as progress_bar

            bar = progress_bar(total=len(status.todo), desc="Table 1 cells", unit="cell")

        def run_wave(cells: list[Cell]) -> None:
            _execute(
                cells,
                stages,
                flow,
                payload_fn,
                ctx,
                jobs,
                threads,
                backend,
                client,
                progress,
                store,
                bar,
            )

        try:
            run_wave(wave1)
            chosen = select_weights(read_cells(run_dir), plan)
            record_selection(chosen)
            wave2: list[Cell] = []
            if plan.grid_stage == "select":
                for (m, t), w in chosen.items():
                    if w is None:
                        log(
                            f"warning: every {plan.weight_names[m]} tried for {m} on {t} "
                            "diverged: nothing to run on the test images"
                        )
                        continue
                    wave2.append(plan.cell("test", m, t, w))
                wave2 = pending(wave2)
                if bar is not None:
                    bar.total = bar.n + len(wave2)
                    bar.refresh()
                run_wave(wave2)
        finally:
            if bar is not None:
                bar.close()
        record_selection({}, complete=True)
        manifest = read_manifest(run_dir)

        failed = stored_failures(run_dir)
        return RunResult(
            run_dir=run_dir,
            run_id=run_id,
            plan=plan,
            selection=selection,
            computed=computed,
            reused=reused,
            failed=failed,
            seconds=time.perf_counter() - started,
            manifest=manifest,
        )
    finally:
        from bench import locks

        locks.release(lock)
        if client is not None:
            client.close()


def acquire_run_lock(run_dir: Path) -> Path:
    """Mark `run_dir` as being written by this process (`.lock` holds its pid). A second
    `bench run` on the same run is refused while the first is alive; a lock left by a killed
    run is taken over (`bench.locks`)."""
    from bench import locks

    return locks.acquire(Path(run_dir), "bench run")


def _merge_manifest(
    old: dict,
    key: dict,
    run_id: str,
    plan: Plan,
    meta: dict,
    test,
    select_set,
    device: str,
    command: str | None,
    flow,
) -> dict:
    """The run's manifest, merged with the one already there (a rerun with other methods or
    tasks adds to the same run); `old` is the manifest already there ({} for a new run)."""
    methods = _ordered(list(old.get("methods", [])) + plan.methods, _registry().DEFAULT_METHODS)
    from bench import tasks as T

    task_order = list(T.TASKS)
    task_names = _ordered(list(old.get("tasks", [])) + plan.tasks, task_order)
    skipped = {m: dict(v) for m, v in old.get("skipped", {}).items()}
    for (m, t), reason in plan.skipped.items():
        skipped.setdefault(m, {})[t] = reason
    grids = dict(old.get("grids", {}))
    grids.update({m: list(g) for m, g in plan.grids.items()})
    weight_names = dict(old.get("weight_names", {}))
    weight_names.update(plan.weight_names)
    labels = {m: dict(v) for m, v in old.get("labels", {}).items()}
    for (m, w), label in plan.labels.items():
        labels.setdefault(m, {})[weight_key(w)] = label
    M = _registry()
    method_labels = dict(old.get("method_labels", {}))
    method_labels.update({m: M.get_method(m).label or m for m in plan.methods})
    meta_clean = {k: v for k, v in meta.items() if _jsonable(v)}
    return {
        "format": RUN_FORMAT,
        "run_id": run_id,
        "created": old.get("created", _now()),
        "updated": _now(),
        "key": key,
        "dataset": key["dataset"],
        "test_images": _image_summary(test),
        "select_images": _image_summary(select_set) if select_set is not None else None,
        "preset": plan.preset.to_dict(),
        "iters": plan.preset.iters,
        "lr": config.SOLVER_LR,
        "seed": key["seed"],
        "select_on": plan.select_on,
        "weights": plan.weights,
        "model": {**meta_clean, "arch_config": dict(flow.arch_config)},
        "device": str(device),
        "device_description": describe_device(device),
        "command": command or old.get("command"),
        "commands": run_commands(old, command),
        "methods": methods,
        "tasks": task_names,
        "grids": grids,
        "weight_names": weight_names,
        "labels": labels,
        "method_labels": method_labels,
        "skipped": skipped,
        "selection": old.get("selection", {}),
        "complete": False,
    }


def run_commands(old: dict, command: str | None = None) -> list[str]:
    """Every distinct command recorded in a run's manifest `old` (older manifests hold only
    'command'), oldest first, plus `command` when it is new."""
    cmds = list(old.get("commands") or ([old["command"]] if old.get("command") else []))
    if command and command not in cmds:
        cmds.append(command)
    return cmds


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def _write_inputs(run_dir: Path, test, task_names: list[str], seed: int, force: bool, T) -> None:
    """Targets (5-bit at 8 bits, the metrics' reference) and measurements for the figures."""
    from bench import data

    target = (data.to_5bit(test.images) * 8).numpy()
    for t in task_names:
        path = run_dir / INPUTS_DIR / "test" / f"{t}.npz"
        if path.is_file() and not force:
            continue
        task = T.get_task(t)
        y = task.measure(test.images, list(test.names), seed=seed)
        shown = task.display(y)
        shown = shown.numpy() if hasattr(shown, "numpy") else np.asarray(shown)
        atomic_write(
            path,
            lambda f, shown=shown: np.savez(
                f,
                target=target,
                measurement=shown.astype(np.uint8),
                names=np.array(test.names, dtype=str),
            ),
        )
