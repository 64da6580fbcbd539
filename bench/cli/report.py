"""`bench report`: rebuild Table 1's reports from stored results, without solving."""

from __future__ import annotations

import click

from bench.cli import main
from bench.cli.common import handle_errors


@main.command()
@click.option(
    "--results",
    "results_dir",
    default="results",
    show_default=True,
    help="results store written by `bench run`",
)
@click.option("--out", default="reports", show_default=True, help="reports folder")
@click.option(
    "--run",
    "run_id",
    default=None,
    metavar="RUN_ID",
    help="run id (or a unique prefix) under RESULTS/runs [default: the latest run]",
)
@handle_errors
def report(results_dir, out, run_id) -> None:
    """Rebuild reports/table1.md, reports/grid_search.png and Figures 3–6 from a stored
    Table 1 run (default the latest); nothing is solved."""
    from pathlib import Path

    from bench import report as rep
    from bench.runner import find_run

    run_dir = find_run(results_dir, run_id)
    path = rep.write_table1(run_dir, out)
    click.echo(rep.console_table(run_dir))
    click.echo(f"run: {run_dir}")
    click.echo(f"report: {path} (with {Path(out) / rep.GRID_FILE} and Figures 3–6)")
