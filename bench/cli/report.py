"""`bench report`: rebuild Table 1's reports from stored results, without solving."""

from __future__ import annotations

import click

from bench.cli import main
from bench.cli.common import handle_errors, lock_reports, stored_run_options


@main.command()
@stored_run_options
@handle_errors
def report(results_dir, out, run_id) -> None:
    """Rebuild every report from stored results, identically and without solving:
    reports/table1.md with grid_search.png and Figures 3–6 (from a stored Table 1 run, default
    the latest), table2.md (from RESULTS/timing*, when `bench ablation --timing` stored one)
    and claims.md (`bench findings`). The reports folder is locked meanwhile: a second live
    writer of it is refused."""
    from pathlib import Path

    from bench import findings
    from bench import report as rep
    from bench import timing as tm
    from bench.runner import find_run

    run_dir = find_run(results_dir, run_id)
    with lock_reports(out):
        path = rep.write_table1(run_dir, out)
        click.echo(rep.console_table(run_dir))
        click.echo(f"run: {run_dir}")
        click.echo(f"report: {path} (with {Path(out) / rep.GRID_FILE} and Figures 3–6)")
        if (Path(results_dir) / "timing.csv").is_file():
            df, meta = tm.load_timings(results_dir)
            click.echo(f"report: {tm.write_table2(df, meta, out)} (from {results_dir}/timing*)")
        click.echo(f"report: {findings.write_claims(run_dir, results_dir, out)}")
