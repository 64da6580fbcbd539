"""`bench compare`: two stored Table 1 runs held against each other, image by image."""

from __future__ import annotations

import click

from bench.cli import main
from bench.cli.errors import handle_errors
from bench.cli.options import out_option, replace_option, results_option
from bench.cli.output import command_line
from bench.cli.stores import lock_reports


@main.command()
@click.option(
    "--run",
    "run_id",
    default=None,
    metavar="RUN_ID",
    help="the new run (id or unique prefix) [default: the latest run]",
)
@click.option(
    "--baseline",
    required=True,
    metavar="RUN_ID",
    help="the run to compare against (id or unique prefix)",
)
@results_option("results store written by `bench run`")
@out_option()
@replace_option
@handle_errors
def compare(run_id, baseline, results_dir, out, replace) -> None:
    """Compare two stored Table 1 runs of the same test images and seed: per method and
    task, the paired per-image difference new − baseline of PSNR and SSIM with 95% intervals
    (e.g. after retraining the flow). Writes OUT/compare-BASELINE-to-RUN.md, computing nothing
    but statistics of stored results."""
    from bench.compare import write_comparison
    from bench.errors import BenchError
    from bench.runner import find_run

    new_dir = find_run(results_dir, run_id)
    base_dir = find_run(results_dir, baseline, option="--baseline")
    if new_dir == base_dir:
        raise BenchError(f"--run and --baseline both name {new_dir.name}: pass two runs")
    from pathlib import Path

    from bench import provenance as P
    from bench.compare import comparison_file

    source = P.comparison_source(new_dir.name, base_dir.name)
    target = Path(out) / comparison_file(new_dir.name, base_dir.name)
    with lock_reports(out):
        P.check([target], source, replace)
        path = write_comparison(new_dir, base_dir, out, command_line())
        P.record([path], source)
    click.echo(path.read_text())
    click.echo(f"comparison: {path}")
