"""`bench run --table 1`: Table 1 and Figures 3–6 (the runner, then the reports)."""

from __future__ import annotations

import click

from bench.cli import main
from bench.cli.common import (
    command_line,
    data_options,
    device_option,
    handle_errors,
    preset_option,
    resolve_device,
)


@main.command()
@click.option(
    "--table",
    default=None,
    metavar="1",
    help="the table to run: 1 (Table 1 and Figures 3–6); required",
)
@preset_option(None)
@data_options
@click.option(
    "--methods", default=None, help="comma-separated methods [default: csgm,glowip,map,bm3d,ours]"
)
@click.option(
    "--tasks",
    default=None,
    help="comma-separated tasks [default: denoising,deblurring,inpainting,colorization]",
)
@device_option
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="cells run in parallel (joblib loky processes)",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="torch threads per worker [default: cores // jobs]",
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
    "--checkpoint",
    default=None,
    help="trained flow (default results/checkpoints/DATASET-PRESET-coupling.pt, "
    "trained first if missing)",
)
@click.option("--force", is_flag=True, help="recompute finished cells instead of resuming")
@click.option("--out", default="reports", show_default=True, help="reports folder")
@click.option(
    "--results",
    "results_dir",
    default="results",
    show_default=True,
    help="results store (runs, checkpoints)",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="base seed of the per-image noise and initial latents",
)
@click.option("--no-progress", is_flag=True, help="no progress bars")
@handle_errors
def run(
    table,
    preset,
    dataset,
    data_root,
    methods,
    tasks,
    device,
    jobs,
    threads,
    backend,
    scheduler,
    select_on,
    weights,
    checkpoint,
    force,
    out,
    results_dir,
    seed,
    no_progress,
) -> None:
    """Run Table 1 (every method on every task, weights chosen by grid search) and write
    reports/table1.md, reports/grid_search.png and Figures 3–6. Without --preset this is the
    paper's full protocol (preset 'paper'). Rerunning resumes: finished cells are kept."""
    from pathlib import Path

    from bench import report, runner, train
    from bench.config import DEFAULT_PRESET, get_preset
    from bench.errors import BenchError, CheckpointError

    if table is None:
        raise BenchError(
            "bench run needs --table 1 (Table 1 and Figures 3–6); Table 2 is `bench ablation`"
        )
    if str(table).strip() != "1":
        raise BenchError(
            f"--table {table} is not run by `bench run`: use --table 1 "
            "(Table 2 is `bench ablation`)"
        )
    p = get_preset(preset or DEFAULT_PRESET)
    dev = resolve_device(device)
    plan = runner.plan_table1(p, methods, tasks, select_on, weights)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise CheckpointError(
            f"checkpoint {checkpoint} not found: pass an existing file to "
            "--checkpoint, or leave it out to use (or train) the preset's flow"
        )
    if backend == "joblib" and scheduler:
        raise BenchError("--scheduler is only used with --backend dask")
    if backend == "dask":
        runner.connect_dask(scheduler).close()
    progress = not no_progress

    what = (
        f"preset {p.name}"
        if preset
        else f"preset {p.name} (the paper's full protocol: no --preset given)"
    )
    click.echo(f"Table 1 on {dataset}, {what}: {plan.describe()}, {p.iters} iterations each")
    est = runner.estimate_seconds(
        plan, dev, jobs=jobs if backend == "joblib" else 1, threads=threads
    )
    ckpt = (
        Path(checkpoint)
        if checkpoint
        else train.default_checkpoint_path(dataset, p.name, "coupling", results_dir)
    )
    extra = "" if ckpt.is_file() else f", plus training the flow first (no checkpoint {ckpt})"
    click.echo(
        f"estimated time on {dev}: {runner.format_duration(est)}{extra} "
        f"(from 2 timed solver iterations of a width-{p.hidden} flow)"
    )

    flow, meta = train.ensure_flow(
        p,
        dataset,
        data_root,
        dev,
        checkpoint=checkpoint,
        results_dir=results_dir,
        progress=progress,
        log=click.echo,
    )
    result = runner.run_table1(
        flow,
        meta,
        p,
        dataset,
        data_root,
        plan.methods,
        plan.tasks,
        dev,
        jobs,
        select_on,
        weights,
        results_dir,
        force,
        seed,
        progress,
        backend=backend,
        scheduler=scheduler,
        command=command_line(),
        log=click.echo,
        threads=threads,
    )
    path = report.write_table1(result.run_dir, out)
    click.echo("")
    click.echo(report.console_table(result.run_dir))
    click.echo(
        f"run {result.run_id}: {len(result.computed)} cell(s) computed, "
        f"{len(result.reused)} reused, in {runner.format_duration(result.seconds)}"
    )
    for line in result.failed:
        click.echo(f"failed: {line}")
    click.echo(f"results: {result.run_dir}")
    click.echo(f"report: {path} (with {Path(out) / report.GRID_FILE} and Figures 3–6)")
