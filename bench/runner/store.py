"""The results store: manifests, cell files and stored inputs, written atomically and read
back checked (`bench.stored`); which cells of a plan a run already holds; finding runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.atomic import atomic_write, atomic_write_text
from bench.errors import BenchError
from bench.runner.layout import CELLS_DIR, CSV_COLUMNS, INPUTS_DIR, MANIFEST, RUNS_DIR, STAGES
from bench.runner.plan import Cell, Plan
from bench.runner.selection import select_weights


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


def write_cell(
    run_dir: Path, cell: Cell, rows, restored: np.ndarray, trace: dict | None = None
) -> Path:
    """Store one finished cell: the restored images (.npy) and its convergence trace
    (`bench.traces`, when it has one) first, then the rows (.csv): the CSV's existence marks
    the cell finished."""
    import pandas as pd

    from bench.traces import trace_frame, trace_path

    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=CSV_COLUMNS)
    csv_path = run_dir / cell.relpath(".csv")
    atomic_write(
        run_dir / cell.relpath(".npy"),
        lambda f: np.save(f, np.ascontiguousarray(restored, dtype=np.uint8)),
    )
    path = trace_path(run_dir, cell)
    if trace is not None:
        table = trace_frame(trace, list(frame["image"]))
        atomic_write(path, lambda f: table.to_csv(f, index=False, float_format="%.6g"), mode="w")
    elif path.exists():  # a recomputed cell keeps no trace of an earlier computation
        path.unlink()
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


def write_inputs(run_dir: Path, test, task_names: list[str], seed: int, force: bool, T) -> None:
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
