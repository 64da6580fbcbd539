"""`bench train` and `bench sample` (Figure 1)."""

from __future__ import annotations

import click

from bench import config
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
@preset_option("cpu")
@data_options
@click.option(
    "--arch", type=click.Choice(["coupling", "glow"]), default="coupling", show_default=True
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="override the preset's number of epochs",
)
@click.option(
    "--checkpoint",
    default=None,
    help="checkpoint file (default results/checkpoints/DATASET-PRESET-ARCH.pt)",
)
@click.option("--results", "results_dir", default="results", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="retrain from scratch even if a checkpoint exists")
@click.option(
    "--batches-per-epoch",
    type=click.IntRange(min=1),
    default=None,
    help="stop every epoch after N batches; 1 reproduces the released code's training defect "
    "(SPEC §8) [default: all batches]",
)
@device_option
@handle_errors
def train(
    preset,
    dataset,
    data_root,
    arch,
    epochs,
    checkpoint,
    results_dir,
    seed,
    force,
    batches_per_epoch,
    device,
) -> None:
    """Train the paper's flow (Adam 1e-4, betas (0.5, 0.999), batch 32) with a preset's
    sizes; resumes from its checkpoint when rerun."""
    from bench.config import get_preset
    from bench.train import train as run_train

    p = get_preset(preset)
    if epochs is not None:
        p = p.with_(epochs=epochs)
    result = run_train(
        p,
        dataset,
        data_root,
        resolve_device(device),
        arch,
        checkpoint,
        results_dir,
        seed=seed,
        force=force,
        log=click.echo,
        batches_per_epoch=batches_per_epoch,
    )
    m = result.meta
    click.echo(
        f"checkpoint: {m['path']} ({m['num_params']:,} parameters, {m['epochs']} "
        f"epochs, valid {m['val_bpd']:.3f} bits/dim, fingerprint {m['fingerprint']})"
    )


@main.command()
@click.option(
    "--checkpoint",
    default=None,
    help="trained flow (default results/checkpoints/DATASET-PRESET-coupling.pt)",
)
@preset_option("cpu")
@data_options
@click.option(
    "--stds",
    default=",".join(f"{s:g}" for s in config.SAMPLE_STDS),
    show_default=True,
    help="comma-separated latent standard deviations, one row each",
)
@click.option(
    "--per-row", type=click.IntRange(min=1), default=config.SAMPLES_PER_ROW, show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", default="reports/fig1_samples.png", show_default=True)
@click.option("--results", "results_dir", default="results", show_default=True)
@device_option
@handle_errors
def sample(
    checkpoint, preset, dataset, data_root, stds, per_row, seed, out, results_dir, device
) -> None:
    """Write Figure 1: a PNG grid of samples, one row per latent σ."""
    from bench.errors import BenchError
    from bench.samples import sample_grid, write_figure1
    from bench.train import default_checkpoint_path, load_checkpoint

    try:
        std_list = [float(s) for s in stds.split(",") if s.strip()]
    except ValueError:
        raise BenchError(f"--stds {stds!r} is not a list of numbers: use e.g. 0,0.5,1") from None
    if not std_list or any(s < 0 for s in std_list):
        raise BenchError("--stds needs at least one non-negative number, e.g. 0,0.5,1")
    path = checkpoint or default_checkpoint_path(dataset, preset, "coupling", results_dir)
    flow, meta = load_checkpoint(path, resolve_device(device))
    grid = sample_grid(flow, std_list, per_row, seed)
    title = (
        f"Figure 1: {meta['arch']} flow, width {meta['hidden']}, {meta['num_params']:,} "
        f"params, {meta['epochs']} epochs on {meta['dataset_label']} (valid "
        f"{meta['val_bpd']:.3f} bits/dim), seed {seed}\n{command_line()}"
    )
    written = write_figure1(grid, std_list, out, title)
    click.echo(f"wrote {written}")
