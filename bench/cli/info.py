"""`bench info`: parameter count, latent shapes and steps of an architecture; `--list`: every
registered method, task, dataset and flow architecture (plugins included)."""

from __future__ import annotations

import click

from bench import config
from bench.cli import main
from bench.cli.errors import handle_errors
from bench.cli.options import arch_option


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
@click.option(
    "--list",
    "list_items",
    is_flag=True,
    help="list every registered method, task, dataset and flow (with --plugin: theirs too)",
)
@handle_errors
def info(arch: str, hidden: int, checkpoint: str | None, list_items: bool) -> None:
    """Print a flow's parameter count, latent shapes and number of flow steps; or, with
    --list, what can be named in --methods, --tasks, --dataset and --arch."""
    if list_items:
        click.echo(registered_items())
        return
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


def registered_items() -> str:
    """One line per registered item, grouped by kind, in registry order, with what it
    declares (`bench.Method`, `bench.Task`, `bench.Dataset`, `bench.FlowArchitecture`)."""
    from bench.plugins import registries

    regs = registries()
    lines = ["methods (--methods; * runs by default):"]
    for name, m in regs["methods"].items():
        weight = f"{m.symbol()} ({m.weight_name})" if m.weight_name else "no weight"
        supported = [t for t in regs["tasks"] if m.supports(t) is None]
        tasks = "every task" if len(supported) == len(regs["tasks"]) else ", ".join(supported)
        note = m.defect or (f"ablation: {m.ablation}" if m.ablation else "")
        note = note or (f"variant of {m.variant_of}" if m.variant_of else "")
        flow = "" if m.needs_flow else ", no flow"
        lines.append(
            f"  {'*' if m.default else ' '} {name}: {m.label}; {weight}; {tasks}{flow}"
            + (f"; {note}" if note else "")
            + _origin(regs["methods"], name)
        )
    lines.append("tasks (--tasks; * runs by default):")
    for name, t in regs["tasks"].items():
        figure = f"Figure {t.figure}" if t.figure is not None else "no paper figure"
        lines.append(
            f"  {'*' if t.default else ' '} {name}: {t.label}; {figure}"
            + ("" if t.linear else "; nonlinear")
            + _origin(regs["tasks"], name)
        )
    fams = ", ".join(f"{p}…" for p in regs["tasks"].families())
    if fams:
        lines.append(f"    other levels built from their names: {fams} (e.g. sr-8, cs-0.5)")
    lines.append("datasets (--dataset):")
    lines += [
        f"    {n}: {d.label}{_origin(regs['datasets'], n)}" for n, d in regs["datasets"].items()
    ]
    lines.append("flow architectures (--arch):")
    lines += [f"    {n}: {a.label}{_origin(regs['flows'], n)}" for n, a in regs["flows"].items()]
    return "\n".join(lines)


def _origin(registry, name: str) -> str:
    origin = registry.origin(name)
    return f" [{origin}]" if origin.startswith(("plugin", "entry point")) else ""
