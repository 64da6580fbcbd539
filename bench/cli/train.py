"""`bench train` and `bench sample` (Figure 1)."""

from __future__ import annotations

import math
from pathlib import Path

import click

from bench import config
from bench.cli import main
from bench.cli.errors import handle_errors
from bench.cli.options import (
    arch_option,
    data_options,
    dataset_option,
    device_option,
    preset_option,
    progress_option,
    replace_option,
    resolve_device,
    results_option,
    seed_option,
)
from bench.cli.output import command_line
from bench.cli.stores import lock_reports
from bench.cli.threads import set_threads, threads_option
from bench.provenance import DEFAULT_OUT

FIGURE1_FILE = "fig1_samples.png"


@main.command()
@preset_option()
@data_options
@arch_option
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="override the preset's number of epochs",
)
@click.option(
    "--width",
    type=click.IntRange(min=1),
    default=None,
    help="override the preset's hidden width (the default checkpoint is then "
    "DATASET-PRESET-ARCH-wWIDTH.pt)",
)
@click.option(
    "--keep-epochs",
    default=None,
    metavar="N,N,...",
    help="also keep the checkpoint after each of these epochs, as NAME.epochNN.pt beside the "
    "checkpoint (a finished training of that many epochs)",
)
@click.option(
    "--max-minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="time budget: stop after the last epoch that leaves room for another as long; the "
    "checkpoint is then a finished training of the epochs done",
)
@click.option(
    "--checkpoint",
    default=None,
    help="checkpoint file (default results/checkpoints/DATASET-PRESET-ARCH.pt)",
)
@results_option("results folder (checkpoints/)")
@seed_option("seed of the weights' initialisation, batch order and dequantization noise")
@click.option("--force", is_flag=True, help="retrain from scratch even if a checkpoint exists")
@click.option(
    "--batches-per-epoch",
    type=click.IntRange(min=1),
    default=None,
    help="stop every epoch after N batches; 1 reproduces the released code's training defect "
    "(PROTOCOL §8) [default: all batches]",
)
@device_option
@threads_option()
@progress_option
@replace_option
@handle_errors
def train(
    preset,
    dataset,
    data_root,
    arch,
    epochs,
    width,
    keep_epochs,
    max_minutes,
    checkpoint,
    results_dir,
    seed,
    force,
    batches_per_epoch,
    device,
    threads,
    progress,
    replace,
) -> None:
    """Train the paper's flow (Adam 1e-4, betas (0.5, 0.999), batch 32; the gpu preset's
    batch is 512) with a preset's sizes; resumes from its checkpoint when rerun."""
    from bench.config import get_preset
    from bench.train import train as run_train

    p = get_preset(preset)
    if epochs is not None:
        p = p.with_(epochs=epochs)
    if width is not None and width != p.hidden:
        p = p.with_(hidden=width)
        if checkpoint is None:
            checkpoint = str(width_checkpoint_path(dataset, preset, arch, width, results_dir))
    kept = parse_epochs(keep_epochs, p.epochs)
    if max_minutes is not None and not math.isfinite(max_minutes):
        from bench.errors import BenchError

        raise BenchError(f"--max-minutes {max_minutes} is not a number of minutes: use e.g. 45")
    if threads is not None:
        set_threads(threads)
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
        progress=progress,
        replace=replace,
        # auto: read just before the first batch, after any refusal (which stays one line)
        before_training=None if threads is not None else lambda: set_threads(None),
        keep_epochs=kept,
        max_minutes=max_minutes,
    )
    m = result.meta
    click.echo(
        f"checkpoint: {m['path']} ({m['num_params']:,} parameters, {m['epochs']} "
        f"epochs, valid {m['val_bpd']:.3f} bits/dim, fingerprint {m['fingerprint']})"
    )


def width_checkpoint_path(dataset: str, preset: str, arch: str, width: int, results_dir) -> Path:
    """The default checkpoint of `bench train --width W` when W is not the preset's width:
    results/checkpoints/DATASET-PRESET-ARCH-wW.pt."""
    from bench.train import default_checkpoint_path

    path = default_checkpoint_path(dataset, preset, arch, results_dir)
    return path.with_name(f"{path.stem}-w{width}{path.suffix}")


def parse_epochs(value: str | None, epochs: int) -> list[int]:
    """--keep-epochs as a sorted list of epochs; BenchError (one line) for anything but
    comma-separated integers in 1..`epochs`."""
    from bench.errors import BenchError

    if value is None:
        return []
    try:
        kept = sorted({int(v) for v in value.split(",") if v.strip()})
    except ValueError:
        raise BenchError(
            f"--keep-epochs {value!r} is not a list of epochs: use e.g. 1,3,6,12,24"
        ) from None
    if not kept or kept[0] < 1 or kept[-1] > epochs:
        raise BenchError(
            f"--keep-epochs {value!r}: give epochs between 1 and the {epochs} trained, e.g. 1,3,6"
        )
    return kept


@main.command()
@click.option(
    "--checkpoint",
    default=None,
    help="trained flow (default results/checkpoints/DATASET-PRESET-coupling.pt)",
)
@preset_option()
@dataset_option
@click.option(
    "--stds",
    default=",".join(f"{s:g}" for s in config.SAMPLE_STDS),
    show_default=True,
    help="comma-separated latent standard deviations, one row each",
)
@click.option(
    "--per-row", type=click.IntRange(min=1), default=config.SAMPLES_PER_ROW, show_default=True
)
@seed_option("seed of the latent draws (the same draws for every σ)")
@click.option(
    "--out",
    default=DEFAULT_OUT,
    show_default=True,
    help=f"reports folder (writes {FIGURE1_FILE} there), or the path of a .png file (no "
    "other file type)",
)
@results_option("results folder (checkpoints/)")
@device_option
@threads_option()
@replace_option
@handle_errors
def sample(
    checkpoint, preset, dataset, stds, per_row, seed, out, results_dir, device, threads, replace
) -> None:
    """Write Figure 1: a PNG grid of samples, one row per latent σ (the reports folder is
    locked while it is written: a second live writer is refused)."""
    from bench import provenance as P
    from bench.errors import BenchError
    from bench.samples import sample_grid, write_figure1
    from bench.train import default_checkpoint_path, load_checkpoint

    try:
        std_list = [float(s) for s in stds.split(",") if s.strip()]
    except ValueError:
        raise BenchError(f"--stds {stds!r} is not a list of numbers: use e.g. 0,0.5,1") from None
    if not std_list or any(not math.isfinite(s) or s < 0 for s in std_list):
        raise BenchError("--stds needs finite non-negative numbers, e.g. 0,0.5,1")
    target = figure1_target(out)
    path = checkpoint or default_checkpoint_path(dataset, preset, "coupling", results_dir)
    dev = resolve_device(device)
    with lock_reports(target.parent):
        flow, meta = load_checkpoint(path, dev)
        source = P.Source(
            f"Figure 1 of the {meta['arch']} flow `{meta['fingerprint']}` ({meta['dataset']}, "
            f"preset {meta['preset']}, {meta['epochs']} epochs)",
            {"flow": meta["fingerprint"], "stds": std_list, "per_row": per_row, "seed": seed},
        )
        P.check([target], source, replace)
        set_threads(threads)  # after every refusal, before the work
        grid = sample_grid(flow, std_list, per_row, seed)
        title = (
            f"Figure 1: {meta['arch']} flow, width {meta['hidden']}, {meta['num_params']:,} "
            f"params, {meta['epochs']} epochs on {meta['dataset_label']} (valid "
            f"{_bpd(meta['val_bpd'])} bits/dim), seed {seed}\n{command_line()}"
        )
        written = write_figure1(grid, std_list, target, title)
        P.record([written], source)
    click.echo(f"wrote {written}")


def figure1_target(out: str) -> Path:
    """Where `bench sample --out OUT` writes Figure 1: OUT itself when it ends in .png, else
    OUT/fig1_samples.png (OUT a folder). A name with another file suffix (fig.jpg) is refused
    rather than made a folder, and so is an existing folder named *.png."""
    from bench.errors import BenchError

    path = Path(out)
    suffix = path.suffix
    if suffix.lower() == ".png":
        if path.is_dir():
            raise BenchError(
                f"--out {out} is a folder, not a .png file: pass the path of a .png file "
                f"(e.g. {path / FIGURE1_FILE} to write into that folder)"
            )
        return path
    if suffix and not path.is_dir():
        raise BenchError(
            f"--out {out} ends in {suffix}, but Figure 1 is written as PNG only: pass a path "
            f"ending in .png (e.g. {path.with_suffix('.png')}), or a reports folder (a folder "
            f"named {path.name} must exist already)"
        )
    return path / FIGURE1_FILE


def _bpd(v) -> str:
    return "?" if v is None else f"{v:.3f}"
