"""`bench info`: parameter count, latent shapes and steps of an architecture."""

from __future__ import annotations

import click

from bench import config
from bench.cli import main
from bench.cli.common import arch_option, handle_errors


@main.command()
@arch_option
@click.option(
    "--hidden",
    type=click.IntRange(min=1),
    default=config.HIDDEN,
    show_default=True,
    help="hidden width of the coupling networks",
)
@click.option("--checkpoint", default=None, help="describe a trained checkpoint instead")
@handle_errors
def info(arch: str, hidden: int, checkpoint: str | None) -> None:
    """Print a flow's parameter count, latent shapes and number of flow steps."""
    from bench.flows import build_flow

    meta = None
    if checkpoint:
        from bench.train import load_checkpoint

        flow, meta = load_checkpoint(checkpoint)
    else:
        flow = build_flow(arch, hidden=hidden)
    cfg = flow.arch_config
    click.echo(f"architecture: {cfg['arch']}")
    click.echo(f"hidden width: {cfg['hidden']}")
    click.echo(f"parameters: {flow.num_params():,}")
    click.echo(f"flow steps: {flow.num_steps()} (per scale: {cfg['steps']})")
    shapes = " + ".join("x".join(map(str, s)) for s in flow.latent_shapes)
    click.echo(f"latent: {shapes} = {flow.dim} numbers")
    if meta:
        for k in ("dataset_label", "preset", "epochs", "val_bpd", "fingerprint"):
            click.echo(f"{k}: {meta[k]}")
