"""Where the Table 1 reports go: their file names, the folders a stored run lives in, and the
`bench report` command that rebuilds them."""

from __future__ import annotations

from pathlib import Path

from bench.report.declared import figure_file

TABLE1_FILE = "table1.md"
GRID_FILE = "grid_search.png"


def results_of(run_dir: str | Path) -> Path:
    """The results folder (as given) that holds the stored run `run_dir` (RESULTS/runs/ID)."""
    return Path(run_dir).parent.parent


def rebuild_command(run_dir: str | Path, out_dir: str | Path | None = None) -> str:
    """`bench report` for this run, with the --results and --out that make it work exactly
    as printed from the folder the report was written from."""
    from bench.provenance import rebuild_options

    run_dir = Path(run_dir)
    return f"bench report --run {run_dir.name}{rebuild_options(results_of(run_dir), out_dir)}"


def table1_tasks(man: dict | None = None) -> list[str]:
    """Every task whose figure table1's folder may hold: the registered tasks (built-ins and
    loaded plugins) and a run's own (`man`)."""
    from bench.tasks import TASKS

    return list(dict.fromkeys([*TASKS, *((man or {}).get("tasks", []))]))


def table1_paths(out_dir: str | Path, man: dict | None = None) -> list[Path]:
    """Every file `write_table1` writes or removes under `out_dir` (the table, the grid
    figure, the figure of every task: Figures 3–6 and any other task's)."""
    out = Path(out_dir)
    figures = [out / figure_file(t, man) for t in table1_tasks(man)]
    return [out / TABLE1_FILE, out / GRID_FILE] + figures
