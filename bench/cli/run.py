"""`bench run --table 1`: Table 1 and Figures 3–6 (the runner, then the reports)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

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
    metavar="1",
    help="the table to run: 1 (Table 1 and Figures 3–6); required",
)
@preset_option()
@data_options
@click.option(
    "--methods",
    default=None,
    help="comma-separated methods [default: those declaring default = True, Table 1's: "
    "csgm,glowip,map,bm3d,ours]; `bench info --list` lists every one, plugins included",
)
@click.option(
    "--tasks",
    default=None,
    help="comma-separated tasks [default: Table 1's, denoising,deblurring,inpainting,"
    "colorization]; `bench info --list` lists every one, plugins included",
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
    --max-hours is refused before anything runs. Rerunning resumes: finished cells are kept."""
    from bench import provenance as P
    from bench import report, runner
    from bench.config import get_preset

    _check_table(table)
    p = get_preset(preset)
    dev = resolve_device(device)
    plan = runner.plan_table1(p, methods, tasks, select_on, weights)
    # refuse now, before training or solving, a reports folder made from another dataset or
    # preset; the run's own id is checked as soon as it is known (check_run below)
    targets = report.table1_paths(out)
    source = lambda run_id: P.table1_source(run_id, dataset, p.name)  # noqa: E731
    P.check(targets, source(None), replace, partial=True)
    _check_execution(checkpoint, backend, scheduler)

    inputs = _check_inputs(
        plan, dataset, data_root, checkpoint, results_dir, seed, dev, force, progress, replace, arch
    )
    if inputs.run_id is not None:  # the run is known (its flow is trained): refuse it now
        P.check(targets, source(inputs.run_id), replace)
    threads = _threads_and_estimate(inputs, dataset, dev, backend, jobs, threads, max_hours)

    flow, meta = (None, {})  # no chosen method needs a flow: none is trained or loaded
    if inputs.needs_flow:
        flow, meta = _ready_flow(
            p, dataset, data_root, dev, checkpoint, results_dir, progress, replace, arch
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
        check_run=lambda run_id: P.check(targets, source(run_id), replace),
    )
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


def _threads_and_estimate(inputs, dataset, dev, backend, jobs, threads, max_hours):
    """--threads as a count for local workers (auto resolved now: after every refusal, before
    the work, so that the estimate and the workers use the same count; None on Dask), then
    the estimate (`_say_estimate`, which refuses one over `max_hours`); returns the count."""
    if backend == "joblib":
        threads = resolve_threads(threads, jobs)
    _say_estimate(inputs, dataset, dev, jobs if backend == "joblib" else 1, threads, max_hours)
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


def _check_table(table) -> None:
    from bench.errors import BenchError

    if table is None:
        raise BenchError(
            "bench run needs --table 1 (Table 1 and Figures 3–6); Table 2 is `bench ablation`"
        )
    if str(table).strip() != "1":
        raise BenchError(
            f"--table {table} is not run by `bench run`: use --table 1 "
            "(Table 2 is `bench ablation`)"
        )


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


def _check_inputs(
    plan, dataset, data_root, checkpoint, results_dir, seed, dev, force, progress, replace, arch
):
    """Everything the run reads, checked before any estimate is printed: the images each
    stage really loads (a partial CelebA copy may hold fewer than the preset asks: the plan
    counts those), the checkpoint (readable, of this dataset; its width and architecture are
    what the estimate times) or, when the flow must be trained first, the training images; and
    which cells the run's store already holds (`runner.cell_status`)."""
    from bench import runner, train

    p = plan.preset
    test, select = runner.stage_images(
        dataset, data_root, p, plan.select_on, plan.weights, progress
    )
    loaded = {"test": len(test)} if select is None else {"test": len(test), "select": len(select)}
    plan = plan.with_images(**loaded)
    ckpt = (
        Path(checkpoint)
        if checkpoint
        else train.default_checkpoint_path(dataset, p.name, arch, results_dir)
    )
    out = SimpleNamespace(plan=plan, flow_config=None, extra="", run_id=None, arch=arch)
    out.source = "the preset's {flow}, to be trained"
    out.needs_flow = needs_flow(plan)
    ready = None  # the fingerprint of a flow that needs no training
    if not out.needs_flow:
        ready = runner.NO_FLOW
    elif ckpt.is_file():
        peek, meta = train.load_checkpoint(ckpt, "cpu", arch=arch)
        out.flow_config, out.source = dict(peek.arch_config), f"checkpoint {ckpt}'s {{flow}}"
        if not checkpoint:
            train.check_checkpoint_dataset(ckpt, meta, dataset)
        if checkpoint or (meta["complete"] and meta["epochs"] >= p.epochs):
            ready = meta["fingerprint"]
        else:
            out.extra = (
                f", plus finishing the flow's training first ({ckpt} holds "
                f"{meta['epochs']} of {p.epochs} epochs)"
            )
    else:
        out.extra = f", plus training the flow first (no checkpoint {ckpt})"
    if ready is None:  # a flow still to train: its images are checked now, its run is new
        train.check_training_data(p, dataset, data_root, progress, ckpt, replace)
        out.status = runner.cell_status(plan)
    else:
        run_dir = runner.run_dir_of(
            results_dir, runner.run_key(plan, dataset, test, select, ready, seed, dev)
        )
        out.status = runner.cell_status(plan, run_dir, force)
        out.run_id = run_dir.name
    return out


def needs_flow(plan) -> bool:
    """Whether any method with a cell in the plan restores through a flow."""
    from bench.methods import get_method

    return any(get_method(c.method).needs_flow for c in plan.grid_cells + plan.fixed_cells)


def _say_estimate(inputs, dataset, dev, jobs, threads, max_hours) -> None:
    """The plan, where its cells stand and the estimated time of those still to compute
    (none: no estimate); an estimate over `max_hours` is refused (BenchError)."""
    from bench import runner
    from bench.errors import BenchError

    plan, status = inputs.plan, inputs.status
    p = plan.preset
    click.echo(
        f"Table 1 on {dataset}, preset {p.name}: {plan.describe()}, {p.iters} iterations each"
    )
    if not status.todo:
        click.echo(
            f"{len(status.finished)} of {status.total} cells finished: nothing to compute "
            "(the reports are rebuilt from the stored cells)"
        )
        return
    est = runner.estimate_seconds(
        plan,
        dev,
        arch=inputs.arch,
        jobs=jobs,
        threads=threads,
        flow_config=inputs.flow_config,
        cells=status.todo,
    )
    took = f"{runner.format_duration(est)} on {dev}"
    if est > max_hours * 3600:
        smaller = _smaller_preset(p)
        use = f"a smaller --preset (e.g. {smaller}) or " if smaller else ""
        raise BenchError(
            f"estimated {took} for the {len(status.todo)} cells to compute{inputs.extra}: "
            f"more than --max-hours {max_hours:g}; use {use}a faster --device, or pass "
            f"--max-hours {math.ceil(est / 3600)} to accept it"
        )
    cfg = inputs.flow_config or {"arch": inputs.arch, "hidden": p.hidden}
    basis = _estimate_basis(plan, status.todo, cfg, inputs.source)
    click.echo(f"{status.describe()}; estimated time: {took}{inputs.extra} (from {basis})")


def _smaller_preset(preset) -> str | None:
    """The next preset smaller than `preset` (in width, then iterations), None for the
    smallest (smoke)."""
    from bench.config import PRESETS

    size = lambda q: (q.hidden, q.iters, q.test_images)  # noqa: E731
    smaller = [q for q in PRESETS.values() if size(q) < size(preset)]
    return max(smaller, key=size).name if smaller else None


def _estimate_basis(plan, cells, cfg: dict, source: str) -> str:
    """What the estimate timed, in words: the flow that will run (`source` names it, with
    '{flow}' where its width and architecture go), and each method without a flow on one
    image (of the methods of `cells`, those still to compute)."""
    from bench import methods as M
    from bench import runner

    used = {c.method for c in cells}
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
