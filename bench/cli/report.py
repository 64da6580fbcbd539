"""`bench report`: rebuild Table 1's reports from stored results, without solving."""

from __future__ import annotations

import click

from bench.cli import main
from bench.cli.errors import handle_errors
from bench.cli.options import replace_option, stored_run_options
from bench.cli.stores import lock_reports, report_run


@main.command()
@stored_run_options
@replace_option
@handle_errors
def report(results_dir, out, run_id, replace) -> None:
    """Rebuild Table 1, Table 2 and the claims from stored results, identically and without
    solving: OUT/table1.md with grid_search.png and Figures 3–6 (from the stored Table 1 run
    that --run names), OUT/general.md with its figures (from the runs of `bench run --table
    general` it was made from), table2.md (from RESULTS/timing*, when `bench ablation
    --timing` stored one) and claims.md (as `bench findings` writes it). Not rebuilt here:
    perf.md (`bench perf` measures it anew) and Figure 1, fig1_samples.png (`bench sample`
    draws it from a checkpoint). The reports folder is locked meanwhile: a second live
    writer of it is refused."""
    from pathlib import Path

    from bench import findings
    from bench import provenance as P
    from bench import report as rep
    from bench import timing as tm
    from bench.cli.general import recorded_general_runs, write_general_reports
    from bench.cli.stores import is_general_run
    from bench.runner import list_runs
    from bench.scale import read_record as scale_record

    general = recorded_general_runs(results_dir, out)
    if general and run_id is None and all(is_general_run(d) for d in list_runs(results_dir)):
        # a store holding only a general table's runs: general.md is the report to rebuild
        click.echo(f"report: {write_general_reports(general, out, replace)}")
        return
    run_dir = report_run(results_dir, out, run_id, rep.TABLE1_FILE)
    manifest = rep.read_manifest(run_dir)
    run_src = P.run_source(manifest)
    timing = None
    if (Path(results_dir) / "timing.csv").is_file():
        timing = tm.load_timings(results_dir)
    table2 = Path(out) / tm.TABLE2_FILE
    claims = Path(out) / findings.CLAIMS_FILE
    with lock_reports(out):
        # every report is checked before any is written: all are rebuilt, or none
        P.check(rep.table1_paths(out, manifest), run_src, replace)
        if timing is not None:
            P.check([table2], P.timing_source(timing[1]), replace)
        claims_src = findings.claims_source_of(run_dir)
        P.check([claims], claims_src, replace)
        study = scale_record(results_dir)
        if study:  # scale.md, from the study's runs (`bench scale`)
            from bench.report.scale import scale_paths, scale_source

            P.check(scale_paths(out), scale_source(study), replace)
        path = rep.write_table1(run_dir, out)
        P.record(rep.table1_paths(out, manifest), run_src)
        click.echo(rep.console_table(run_dir))
        click.echo(f"run: {run_dir}")
        click.echo(f"report: {path} (with {Path(out) / rep.GRID_FILE} and the task figures)")
        if timing is not None:
            click.echo(f"report: {tm.write_table2(*timing, out)} (from {results_dir}/timing*)")
            P.record([table2], P.timing_source(timing[1]))
        click.echo(f"report: {findings.write_claims(run_dir, results_dir, out)}")
        P.record([claims], claims_src)
    if general:  # general.md, from the runs it was made from (`bench run --table general`)
        click.echo(f"report: {write_general_reports(general, out, replace)}")
    if study:
        from bench.report.scale import write_scale_report

        with lock_reports(out):
            click.echo(f"report: {write_scale_report(results_dir, out, replace)}")
