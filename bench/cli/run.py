"""`bench run --table 1`: Table 1 and Figures 3–6 (the runner, then the reports)."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli import main
from bench.cli.errors import handle_errors
from bench.cli.options import (
    arch_option,
    data_options,
    device_option,
    max_hours_option,
    out_option,
    preset_option,
    progress_option,
    replace_option,
    resolve_device,
    results_option,
    seed_option,
)
from bench.cli.output import command_line
from bench.cli.run_checks import (
    borrowed_weights,
    check_inputs,
    check_table1_only,
    fused_rows,
    say_estimate,
    sized_preset,
)
from bench.cli.stores import lock_reports
from bench.cli.threads import resolve_threads, threads_option

# a run estimated longer than this many hours is refused unless --max-hours allows it: more
# than a day on a CPU is a mistake far more often than a plan (the paper preset's solves alone
# are estimated at more than a day on a 2-core CPU, before its flow is even trained)
MAX_HOURS = 24.0


@main.command()
@click.option(
    "--table",
    default=None,
    metavar="1|general",
    help="the table to run: 1 (Table 1 and Figures 3–6) or general (every task × every "
    "method, in and out of distribution: reports/general.md); required",
)
@click.option(
    "--ood-dataset",
    default=None,
    metavar="NAME",
    help="--table general: the out-of-distribution test images, restored with the flow "
    "trained on --dataset ('none' for no such set) [default: builtin]",
)
@preset_option()
@data_options
@click.option(
    "--methods",
    default=None,
    help="comma-separated methods [default: those declaring default = True, Table 1's: "
    "csgm,glowip,map,bm3d,ours; --table general: every method that is not a variant]; "
    "`bench info --list` lists every one, plugins included",
)
@click.option(
    "--tasks",
    default=None,
    help="comma-separated tasks [default: Table 1's, denoising,deblurring,inpainting,"
    "colorization; --table general: every registered task]; `bench info --list` lists every "
    "one, plugins included; also denoising-F, sr-K and cs-R for other levels",
)
@device_option
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="cells run in parallel (joblib loky processes)",
)
@threads_option("the CPUs other processes leave free // jobs, per worker")
@click.option(
    "--fuse/--no-fuse",
    default=True,
    show_default=True,
    help="solve the cells of flow methods together, one generator pass per iteration over "
    "the rows of many cells (--no-fuse: one solve per cell; same rows up to rounding)",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=None,
    help="rows per fused solve [default: 256 on a CPU; on CUDA what half the free memory holds]",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "tf32", "bf16"]),
    default="fp32",
    show_default=True,
    help="the solves' arithmetic: float32 (the protocol), TF32 on CUDA, or bfloat16 autocast; "
    "not fp32, a run of its own (its id includes it)",
)
@click.option(
    "--backend",
    type=click.Choice(["joblib", "dask"]),
    default="joblib",
    show_default=True,
    help="where cells run: local joblib workers or a Dask cluster",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Dask scheduler address for --backend dask, e.g. tcp://127.0.0.1:8786",
)
@click.option(
    "--select-on",
    type=click.Choice(["valid", "test"]),
    default="valid",
    show_default=True,
    help="where the weight grid runs: valid images (then the best weight runs on the "
    "test images), or the test images themselves (the paper's practice)",
)
@click.option(
    "--weights",
    type=click.Choice(["grid", "paper"]),
    default="grid",
    show_default=True,
    help="grid-search the weights, or use the paper's chosen ones",
)
@click.option(
    "--weights-from",
    default=None,
    metavar="RUN",
    help="use the weights a finished run reported (its id under --results; a unique prefix "
    "is enough): no grid, only test cells, e.g. to replicate it on other images",
)
@click.option(
    "--test-offset",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="skip the first N test images (with the cpu preset's 192 test images, 192 restores "
    "the next 192: the replication set)",
)
@click.option(
    "--test-images",
    type=click.IntRange(min=1),
    default=None,
    help="override the preset's number of test images (a run of its own)",
)
@click.option(
    "--iters",
    type=click.IntRange(min=1),
    default=None,
    help="override the preset's solver iterations, e.g. the paper's 1500 (a run of its own)",
)
@click.option(
    "--checkpoint",
    default=None,
    help="trained flow (default results/checkpoints/DATASET-PRESET-coupling.pt, "
    "trained first if missing)",
)
@click.option("--force", is_flag=True, help="recompute finished cells instead of resuming")
@max_hours_option(
    MAX_HOURS, "refuse, before anything runs, a run whose estimated solve time is longer"
)
@out_option()
@results_option("results store (runs, checkpoints)")
@seed_option("base seed of the per-image noise and initial latents")
@progress_option
@replace_option
@arch_option
@handle_errors
def run(
    table,
    ood_dataset,
    preset,
    dataset,
    data_root,
    methods,
    tasks,
    device,
    jobs,
    threads,
    fuse,
    max_batch,
    precision,
    backend,
    scheduler,
    select_on,
    weights,
    weights_from,
    test_offset,
    test_images,
    iters,
    checkpoint,
    force,
    max_hours,
    out,
    results_dir,
    seed,
    progress,
    replace,
    arch,
) -> None:
    """Run Table 1 (every method on every task, weights chosen by grid search) and write
    reports/table1.md, reports/grid_search.png and Figures 3–6, at the preset's sizes
    (--preset paper is the paper's full protocol, GPU work). A run estimated longer than
    --max-hours is refused before anything runs. Rerunning resumes: finished cells are kept.

    --table general runs every registered task × every method that supports it (PROTOCOL §9) on
    the test images of --dataset and on those of --ood-dataset (images the flow never saw),
    at the preset's general-table sizes, and writes reports/general.md."""
    from bench import provenance as P
    from bench import report, runner
    from bench.config import GENERAL_OOD_DATASET, get_preset

    if _check_table(table, ood_dataset) == "general":
        from bench.cli.general import run_general

        check_table1_only(weights_from, test_offset, test_images, iters)
        _check_execution(None, backend, scheduler)
        options = dict(locals())
        options["ood_dataset"] = ood_dataset or GENERAL_OOD_DATASET
        run_general(options)
        return
    p = sized_preset(get_preset(preset), test_images, iters)
    dev = resolve_device(device)
    chosen, weights, weights_from = borrowed_weights(weights_from, weights, results_dir)
    plan = runner.plan_table1(p, methods, tasks, select_on, weights, chosen, weights_from)
    # refuse now, before training or solving, a reports folder made from another dataset or
    # preset; the run's own id is checked as soon as it is known (check_run below)
    targets = report.table1_paths(out)
    source = lambda run_id: P.table1_source(run_id, dataset, p.name)  # noqa: E731
    P.check(targets, source(None), replace, partial=True)
    _check_execution(checkpoint, backend, scheduler)

    inputs = check_inputs(
        plan, dataset, data_root, checkpoint, results_dir, seed, dev, force, progress, replace,
        arch, test_offset=test_offset,
    )  # fmt: skip
    if inputs.run_id is not None:  # the run is known (its flow is trained): refuse it now
        P.check(targets, source(inputs.run_id), replace)
    fused = fused_rows(fuse, max_batch, dev, inputs)
    threads = _threads_and_estimate(inputs, dataset, dev, backend, jobs, threads, max_hours, fused)

    flow, meta = (None, {})  # no chosen method needs a flow: none is trained or loaded
    if inputs.needs_flow:
        flow, meta = _ready_flow(
            p, dataset, data_root, dev, checkpoint, results_dir, progress, replace, arch
        )
    result = runner.run_table1(
        flow, meta, p, dataset, data_root, plan.methods, plan.tasks, dev, jobs, select_on,
        weights, results_dir, force, seed, progress, backend=backend, scheduler=scheduler,
        command=command_line(), log=click.echo, threads=threads,
        check_run=lambda run_id: P.check(targets, source(run_id), replace), fuse=fuse,
        max_batch=max_batch, precision=precision, test_offset=test_offset, chosen=chosen,
        weights_from=weights_from,
    )  # fmt: skip
    path = _write_report(result, targets, source(result.run_id), out, replace)
    _say_done(result, path, out)


def _check_execution(checkpoint, backend: str, scheduler) -> None:
    """Refuse, before anything runs, a --checkpoint that is not a file and a --scheduler
    without Dask; with --backend dask, reach its scheduler now (BenchError naming it)."""
    from bench import runner
    from bench.errors import BenchError, CheckpointError

    if checkpoint is not None and not Path(checkpoint).is_file():
        raise CheckpointError(
            f"checkpoint {checkpoint} not found: pass an existing file to "
            "--checkpoint, or leave it out to use (or train) the preset's flow"
        )
    if backend == "joblib" and scheduler:
        raise BenchError("--scheduler is only used with --backend dask")
    if backend == "dask":
        runner.connect_dask(scheduler).close()


def _threads_and_estimate(inputs, dataset, dev, backend, jobs, threads, max_hours, fused_batch):
    """--threads as a count for local workers (auto resolved now: after every refusal, before
    the work, so that the estimate and the workers use the same count; None on Dask), then
    the estimate (`say_estimate`, which refuses one over `max_hours`); returns the count."""
    if backend == "joblib":
        threads = resolve_threads(threads, jobs)
    workers = jobs if backend == "joblib" else 1
    say_estimate(inputs, dataset, dev, workers, threads, max_hours, fused_batch=fused_batch)
    return threads


def _ready_flow(p, dataset, data_root, dev, checkpoint, results_dir, progress, replace, arch):
    """The run's flow and its checkpoint's metadata: --checkpoint, else the preset's flow,
    trained first (or its training finished) when needed (`bench.train.ensure_flow`)."""
    from bench import train

    return train.ensure_flow(
        p,
        dataset,
        data_root,
        dev,
        arch=arch,
        checkpoint=checkpoint,
        results_dir=results_dir,
        progress=progress,
        log=click.echo,
        replace=replace,
    )


def _write_report(result, targets, source, out, replace: bool) -> Path:
    """Write table1.md and its figures from the run, holding the reports folder's lock, and
    record what they were made from (`source`, `bench.provenance`); returns table1.md's
    path."""
    from bench import provenance as P
    from bench import report

    with lock_reports(out):
        P.check(targets, source, replace)
        path = report.write_table1(result.run_dir, out)
        P.record(targets, source)
    return path


def _check_table(table, ood_dataset=None) -> str:
    """'1' or 'general'; BenchError for anything else, and for --ood-dataset with Table 1."""
    from bench.errors import BenchError

    if table is None:
        raise BenchError(
            "bench run needs --table 1 (Table 1 and Figures 3–6) or --table general (every "
            "task × every method); Table 2 is `bench ablation`"
        )
    which = str(table).strip().lower()
    if which not in ("1", "general"):
        raise BenchError(
            f"--table {table} is not run by `bench run`: use --table 1 or --table general "
            "(Table 2 is `bench ablation`)"
        )
    if which == "1" and ood_dataset is not None:
        raise BenchError("--ood-dataset is only used with --table general")
    return which


def _say_done(result, path, out) -> None:
    """The table, and what the run did: its cells counted as the start line counted them
    (`runner.cell_status`: computed now + finished before = every cell of the run)."""
    from bench import report, runner

    click.echo("")
    click.echo(report.console_table(result.run_dir))
    n_all = len(result.computed) + len(result.reused)
    click.echo(
        f"run {result.run_id}: {len(result.computed)} of {n_all} cells computed, "
        f"{len(result.reused)} finished before and reused, in "
        f"{runner.format_duration(result.seconds)}"
    )
    for line in result.failed:
        click.echo(f"failed: {line}")
    click.echo(f"results: {result.run_dir}")
    click.echo(f"report: {path} (with {Path(out) / report.GRID_FILE} and the task figures)")
