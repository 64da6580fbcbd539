"""`bench findings`: the paper's claims tested on a stored Table 1 run (reports/claims.md)."""

from __future__ import annotations

import click

from bench.cli import main
from bench.cli.common import (
    command_line,
    device_option,
    handle_errors,
    resolve_device,
    stored_run_options,
)


@main.command()
@stored_run_options
@click.option(
    "--realism",
    is_flag=True,
    help="also (re)compute Figure 1's realism proxy per latent σ from the run's checkpoint "
    "and store it in RESULTS/realism.csv (needs the checkpoint and the valid images)",
)
@click.option(
    "--checkpoint",
    default=None,
    help="flow for --realism [default: the checkpoint the run used]",
)
@click.option("--data-root", default=None, help="CelebA folder for --realism's real images")
@click.option(
    "--samples",
    type=click.IntRange(min=10),
    default=None,
    help="--realism: samples per σ and real images per set [default: 500]",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-progress", is_flag=True, help="no progress bars")
@device_option
@handle_errors
def findings(
    results_dir, out, run_id, realism, checkpoint, data_root, samples, seed, no_progress, device
) -> None:
    """Test each claim of the paper on a stored run (paired per-image differences with 95%
    intervals, Figure 1's σ, Table 2's speed ratio, the released code's defects) and write
    reports/claims.md. Without --realism nothing is computed but statistics of stored results,
    so the command reproduces claims.md exactly."""
    from pathlib import Path

    from bench import findings as F
    from bench.report import read_manifest
    from bench.runner import find_run

    run_dir = find_run(results_dir, run_id)
    if realism:
        from bench import data
        from bench.errors import BenchError
        from bench.report import _model_line
        from bench.train import load_checkpoint

        man = read_manifest(run_dir)
        ckpt = checkpoint or (man.get("model") or {}).get("path")
        if not ckpt or not Path(ckpt).is_file():
            raise BenchError(
                f"--realism needs the run's flow, but checkpoint {ckpt!r} is missing: "
                "pass --checkpoint or retrain it with `bench train` (see the run's preset)"
            )
        n = samples or F.REALISM_SAMPLES
        flow, meta = load_checkpoint(ckpt, resolve_device(device))
        flow.requires_grad_(False)
        real = data.load_images(
            man["dataset"], "valid", data_root, limit=2 * n, progress=not no_progress
        )
        df = F.realism(flow, real.images.numpy(), n=n, seed=seed, progress=not no_progress)
        F.write_realism(
            df,
            {
                "model": _model_line(meta),
                "real": f"{real.label}: first {2 * n} valid images, split in two sets of {n}",
                "n": n,
                "seed": seed,
                "repeats": F.REALISM_REPEATS,
                "components": F.REALISM_COMPONENTS,
                "command": command_line(),
            },
            results_dir,
        )
    path = F.write_claims(run_dir, results_dir, out)
    click.echo(path.read_text().split("## Table 1 claims")[0].rstrip())
    click.echo(f"\nfindings: {path}")
