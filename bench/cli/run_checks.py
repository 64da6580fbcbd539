"""What `bench run` checks and says before it computes: the images, the checkpoint or the
training still to do, the cells already stored, and the estimated time of those left."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import click


def check_inputs(
    plan,
    dataset,
    data_root,
    checkpoint,
    results_dir,
    seed,
    dev,
    force,
    progress,
    replace,
    arch,
    flow_dataset=None,
    test_offset=0,
):
    """Everything the run reads, checked before any estimate is printed: the images each
    stage really loads (a partial CelebA copy may hold fewer than the preset asks: the plan
    counts those), the checkpoint (readable, of this dataset; its width and architecture are
    what the estimate times) or, when the flow must be trained first, the training images; and
    which cells the run's store already holds (`runner.cell_status`). The flow is trained on
    `flow_dataset` (default: the images' `dataset`)."""
    from bench import runner, train

    p = plan.preset
    flow_ds = flow_dataset or dataset
    test, select = runner.stage_images(
        dataset, data_root, p, plan.select_on, plan.weights, progress, test_offset
    )
    loaded = {"test": len(test)} if select is None else {"test": len(test), "select": len(select)}
    plan = plan.with_images(**loaded)
    ckpt = (
        Path(checkpoint)
        if checkpoint
        else train.default_checkpoint_path(flow_ds, p.name, arch, results_dir)
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
            train.check_checkpoint_dataset(ckpt, meta, flow_ds)
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
        train.check_training_data(p, flow_ds, data_root, progress, ckpt, replace)
        out.status = runner.cell_status(plan)
    else:
        run_dir = runner.run_dir_of(
            results_dir, runner.run_key(plan, dataset, test, select, ready, seed, dev, flow_ds)
        )
        out.status = runner.cell_status(plan, run_dir, force)
        out.run_id = run_dir.name
    return out


def sized_preset(preset, test_images: int | None, iters: int | None):
    """The preset with `bench run --test-images` and `--iters` applied (None: the preset's
    own). A changed size is part of the preset stored in the run's key: a run of its own."""
    sizes = {"test_images": test_images, "iters": iters}
    return preset.with_(**{k: v for k, v in sizes.items() if v is not None})


def borrowed_weights(weights_from: str | None, weights: str, results_dir):
    """(chosen, weights mode, run id) for `bench run --weights-from RUN`: the weights the
    stored run RUN reported (`runner.stored_selection`), mode 'run' and its full id; without
    it (None, `weights`, None). BenchError for --weights paper with it, or a run not found or
    not complete."""
    from bench import runner
    from bench.errors import BenchError

    if weights_from is None:
        return None, weights, None
    if not weights_from.strip():
        raise BenchError("--weights-from is empty: give a run id (`ls results/runs`)")
    if weights != "grid":
        raise BenchError(f"--weights-from takes its weights from a run: drop --weights {weights}")
    run_dir = runner.find_run(results_dir, weights_from, option="--weights-from")
    return runner.stored_selection(run_dir), "run", run_dir.name


def check_table1_only(weights_from, test_offset, test_images, iters) -> None:
    """BenchError for the Table 1 options that --table general does not take."""
    from bench.errors import BenchError

    given = {
        "--weights-from": weights_from is not None,
        "--test-offset": bool(test_offset),
        "--test-images": test_images is not None,
        "--iters": iters is not None,
    }
    used = [name for name, on in given.items() if on]
    if used:
        raise BenchError(
            f"{', '.join(used)} only apply to --table 1: the general table has its own sizes"
        )


def needs_flow(plan) -> bool:
    """Whether any method with a cell in the plan restores through a flow."""
    from bench.methods import get_method

    return any(get_method(c.method).needs_flow for c in plan.grid_cells + plan.fixed_cells)


def say_estimate(
    inputs, dataset, dev, jobs, threads, max_hours, title="Table 1", fused_batch=None,
    smaller=True,
) -> None:  # fmt: skip
    """The plan, where its cells stand and the estimated time of those still to compute
    (none: no estimate); an estimate over `max_hours` is refused (BenchError). `fused_batch`:
    the rows of a fused solve (None: one solve per cell), `fused_rows` tells it. `smaller`:
    whether the refusal may suggest a smaller --preset (a command that has one)."""
    from bench import runner
    from bench.errors import BenchError

    plan, status = inputs.plan, inputs.status
    p = plan.preset
    click.echo(
        f"{title} on {dataset}, preset {p.name}: {plan.describe()}, {p.iters} iterations each"
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
        fused_batch=fused_batch,
    )
    took = f"{runner.format_duration(est)} on {dev}"
    if est > max_hours * 3600:
        smaller = smaller_preset(p) if smaller else None
        use = f"a smaller --preset (e.g. {smaller}) or " if smaller else ""
        raise BenchError(
            f"estimated {took} for the {len(status.todo)} cells to compute{inputs.extra}: "
            f"more than --max-hours {max_hours:g}; use {use}a faster --device, or pass "
            f"--max-hours {math.ceil(est / 3600)} to accept it"
        )
    cfg = inputs.flow_config or {"arch": inputs.arch, "hidden": p.hidden}
    basis = estimate_basis(plan, status.todo, cfg, inputs.source)
    click.echo(f"{status.describe()}; estimated time: {took}{inputs.extra} (from {basis})")


def fused_rows(fuse: bool, max_batch, dev, inputs) -> int | None:
    """The rows of one fused solve of this run (None with --no-fuse): --max-batch, else the
    device's default for the flow's width (`bench.runner.fused.default_max_batch`)."""
    if not fuse:
        return None
    from bench.runner.fused import default_max_batch

    width = (inputs.flow_config or {}).get("hidden") or inputs.plan.preset.hidden
    return max_batch or default_max_batch(dev, width)


def smaller_preset(preset) -> str | None:
    """The next preset smaller than `preset` (in width, then iterations), None for the
    smallest (smoke)."""
    from bench.config import PRESETS

    size = lambda q: (q.hidden, q.iters, q.test_images)  # noqa: E731
    smaller = [q for q in PRESETS.values() if size(q) < size(preset)]
    return max(smaller, key=size).name if smaller else None


def estimate_basis(plan, cells, cfg: dict, source: str) -> str:
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
