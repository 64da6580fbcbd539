"""`bench scale`: the scale study's runs (`bench.scale`) and reports/scale.md."""

from __future__ import annotations

import click

from bench.cli import main
from bench.cli.errors import handle_errors
from bench.cli.options import (
    device_option,
    max_hours_option,
    out_option,
    progress_option,
    replace_option,
    resolve_device,
    results_option,
)
from bench.cli.output import command_line
from bench.cli.threads import resolve_threads, threads_option


@main.command()
@click.option(
    "--part",
    type=click.Choice(["replication", "budget", "sweep", "report"]),
    required=True,
    help="replication: the baseline's cells on the test images after its own; budget: 64 test "
    "images at the paper's 1500 iterations; sweep: one flow (--checkpoint) on 64 test images; "
    "report: only rebuild reports/scale.md",
)
@click.option(
    "--run",
    "run_id",
    default=None,
    metavar="RUN_ID",
    help="the baseline Table 1 run whose weights every part uses [default: the one "
    "RESULTS/scale.json records, else the run OUT/table1.md was made from]",
)
@click.option("--checkpoint", default=None, help="--part sweep: the flow to test")
@click.option(
    "--data-root",
    default=None,
    help="CelebA folder holding img_align_celeba/ (else $BENCH_CELEBA, else data/celeba)",
)
@device_option
@threads_option()
@progress_option
@max_hours_option(24.0, "refuse, before it starts, a run of the part estimated longer")
@results_option("results store (runs; scale.json records the study's runs)")
@out_option()
@replace_option
@handle_errors
def scale(
    part, run_id, checkpoint, data_root, device, threads, progress, max_hours, results_dir, out,
    replace,
) -> None:  # fmt: skip
    """Run one part of the scale study with the baseline run's selected weights, record it in
    RESULTS/scale.json, and rebuild OUT/scale.md with its figures. Each part is a Table 1 run
    of its own in the store and resumes like one."""
    from bench import scale as S
    from bench.cli.stores import lock_reports, report_run
    from bench.report.scale import write_scale_report

    record = S.read_record(results_dir)
    if run_id is None and record:
        run_id = record["baseline"]
    baseline = report_run(results_dir, out, run_id, "table1.md")
    if part != "report":
        dev = resolve_device(device)
        n_threads = resolve_threads(threads, 1)
        estimate = part_estimate(part, data_root, results_dir, dev, n_threads, progress, max_hours)
        ids = S.run_part(
            part, baseline, results_dir, data_root, dev, n_threads, progress, click.echo,
            checkpoint, command_line(), before=estimate,
        )  # fmt: skip
        click.echo(f"scale study, {part}: run(s) {', '.join(ids)}")
    with lock_reports(out):
        click.echo(f"report: {write_scale_report(results_dir, out, replace)}")


def part_estimate(part, data_root, results_dir, dev, threads, progress, max_hours):
    """The `before` hook of `bench.scale.run_part`: each run's plan, where its cells stand and
    its estimated time, as `bench run` states them; BenchError over `max_hours`."""
    from bench.cli.run_checks import check_inputs, fused_rows, say_estimate

    def before(plan, s: dict) -> None:
        inputs = check_inputs(
            plan, s["dataset"], data_root, s["checkpoint"], results_dir, s["seed"], dev, False,
            progress, False, "coupling", test_offset=s.get("test_offset", 0),
        )  # fmt: skip
        title = f"scale study, {part} ({s['role']})"
        fused = fused_rows(True, None, dev, inputs)
        say_estimate(inputs, s["dataset"], dev, 1, threads, max_hours, title, fused, False)

    return before
