"""`bench run --table 1`: Table 1 and Figures 3–6 (the runner, then the reports)."""

from __future__ import annotations

import click

from bench.cli import main
from bench.cli.common import (
    command_line,
    data_options,
    device_option,
    handle_errors,
    lock_reports,
    out_option,
    preset_option,
    progress_option,
    resolve_device,
    results_option,
    seed_option,
    threads_option,
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
@threads_option("cores // jobs, per worker")
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
@out_option()
@results_option("results store (runs, checkpoints)")
@seed_option("base seed of the per-image noise and initial latents")
@progress_option
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
    progress,
) -> None:
    """Run Table 1 (every method on every task, weights chosen by grid search) and write
    reports/table1.md, reports/grid_search.png and Figures 3–6. Without --preset this is the
    paper's full protocol (preset 'paper'). Rerunning resumes: finished cells are kept."""
    from pathlib import Path

    from bench import data, report, runner, train
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

    # what the console says is what will run: the images each stage really loads (a partial
    # CelebA copy may hold fewer than the preset asks), the flow that will really solve (the
    # checkpoint's width and architecture) and every method (BM3D too)
    loaded = {
        "test": len(
            data.load_images(dataset, "test", data_root, limit=p.test_images, progress=progress)
        )
    }
    if plan.grid_cells and plan.grid_stage == "select":
        loaded["select"] = len(
            data.load_images(dataset, "valid", data_root, limit=p.select_images, progress=progress)
        )
    plan = plan.with_images(**loaded)
    ckpt = (
        Path(checkpoint)
        if checkpoint
        else train.default_checkpoint_path(dataset, p.name, "coupling", results_dir)
    )
    flow_config, extra, source = None, "", "the preset's {flow}, to be trained"
    if ckpt.is_file():
        peek, peek_meta = train.load_checkpoint(ckpt, "cpu", arch="coupling")
        flow_config = dict(peek.arch_config)
        del peek
        source = f"checkpoint {ckpt}'s {{flow}}"
        if not checkpoint and not (peek_meta["complete"] and peek_meta["epochs"] >= p.epochs):
            extra = (
                f", plus finishing the flow's training first ({ckpt} holds "
                f"{peek_meta['epochs']} of {p.epochs} epochs)"
            )
    else:
        extra = f", plus training the flow first (no checkpoint {ckpt})"
    cfg = flow_config or {"arch": "coupling", "hidden": p.hidden}

    what = (
        f"preset {p.name}"
        if preset
        else f"preset {p.name} (the paper's full protocol: no --preset given)"
    )
    click.echo(f"Table 1 on {dataset}, {what}: {plan.describe()}, {p.iters} iterations each")
    est = runner.estimate_seconds(
        plan,
        dev,
        jobs=jobs if backend == "joblib" else 1,
        threads=threads,
        flow_config=flow_config,
    )
    click.echo(
        f"estimated time on {dev}: {runner.format_duration(est)}{extra} "
        f"(from {_estimate_basis(plan, cfg, source)})"
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
    with lock_reports(out):
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


def _estimate_basis(plan, cfg: dict, source: str) -> str:
    """What the estimate timed, in words: the flow that will run (`source` names it, with
    '{flow}' where its width and architecture go), and each method without a flow on one
    image."""
    from bench import methods as M
    from bench import runner

    used = {c.method for c in plan.grid_cells + plan.fixed_cells}
    used |= {m for m, _ in plan.to_select}
    parts = []
    if any(M.get_method(m).needs_flow for m in used):
        flow = f"width-{cfg['hidden']} {cfg['arch']} flow"
        parts.append(
            f"{runner.ESTIMATE_ITERS} timed solver iterations of {source.replace('{flow}', flow)}"
        )
    flowless = [M.get_method(m) for m in plan.methods if m in used]
    flowless = [m.label or m.name for m in flowless if not m.needs_flow]
    if flowless:
        parts.append(f"{', '.join(flowless)} timed on one image")
    return " and ".join(parts)
