"""The options the commands share, so that they are spelled, defaulted and described the
same everywhere:

| option | commands |
|---|---|
| `--device` | every command that computes (all but `info`, `report` and `compare`) |
| `--progress/--no-progress` | those with progress bars: train, run, findings, ablation
  (drawn only when stderr is a terminal: `bench.progress`) |
| `--threads` | those that compute: train, sample, run, findings, ablation, perf (default auto:
  the CPUs other processes leave free, `bench.machine`, announced in one line on stderr) |
| `--results`, `--out` | those that write results / reports (`--out`: the reports folder) |
| `--seed` | those that draw random numbers: train, sample, run, findings, ablation |
| `--preset` | train, sample, run, ablation: default `bench.config.DEFAULT_PRESET` (cpu);
  perf has presets of its own |
| `--dataset`, `--data-root` | those that read images (findings: `--data-root` only; sample:
  `--dataset` only, which names its default checkpoint) |
| `--plugin` | every command (`plugin_option`, added by `bench.cli` to each) |

`--threads` lives in `bench.cli.threads`, with what it resolves to.
"""

from __future__ import annotations

import click

from bench.errors import BenchError
from bench.provenance import DEFAULT_OUT, DEFAULT_RESULTS


def plugin_option(command: click.Command) -> None:
    """Give a command the repeatable ``--plugin FILE_OR_MODULE`` (every command has it; the
    command's `handle_errors` loads the plugins before anything else runs)."""
    command.params.append(
        click.Option(
            ["--plugin"],
            multiple=True,
            metavar="FILE_OR_MODULE",
            help="load a plugin: a .py file or a module registering a method, task, dataset or "
            "flow (repeatable; also BENCH_PLUGINS)",
        )
    )


def resolve_device(device: str) -> str:
    """'auto' picks cuda when available; an unavailable cuda is a one-line error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(
            "--device cuda asked for but no CUDA device is available: use --device cpu"
        )
    if not (device == "cpu" or device.startswith("cuda")):
        raise BenchError(f"unknown device {device!r}: use cpu, cuda or cuda:N")
    return device


def device_option(fn):
    return click.option(
        "--device",
        default="auto",
        show_default=True,
        help="cpu, cuda, cuda:N or auto (cuda when available)",
    )(fn)


def progress_option(fn):
    """--progress/--no-progress (default: bars on stderr); the parameter is `progress`."""
    return click.option(
        "--progress/--no-progress",
        default=True,
        show_default=True,
        help="progress bars on stderr",
    )(fn)


def seed_option(help_text: str = "base seed of every random draw"):
    def deco(fn):
        return click.option("--seed", type=int, default=0, show_default=True, help=help_text)(fn)

    return deco


def results_option(help_text: str = "results folder"):
    """--results DIR (default `results`); the parameter is `results_dir`."""

    def deco(fn):
        return click.option(
            "--results",
            "results_dir",
            default=DEFAULT_RESULTS,
            show_default=True,
            help=help_text,
        )(fn)

    return deco


def out_option(help_text: str = "reports folder"):
    """--out DIR: the reports folder (default `reports`); the parameter is `out`."""

    def deco(fn):
        return click.option("--out", default=DEFAULT_OUT, show_default=True, help=help_text)(fn)

    return deco


def data_root_option(fn):
    return click.option(
        "--data-root",
        default=None,
        help="CelebA folder holding img_align_celeba/ (else $BENCH_CELEBA, else data/celeba)",
    )(fn)


def preset_option(default: str | None = None):
    """--preset NAME (default: `bench.config.DEFAULT_PRESET`, the same for every command)."""
    from bench.config import DEFAULT_PRESET, PRESETS

    default = default or DEFAULT_PRESET

    def deco(fn):
        return click.option(
            "--preset",
            type=click.Choice(list(PRESETS)),
            default=default,
            show_default=True,
            help="size knobs (width, epochs, images, iterations, grid); the protocol is fixed",
        )(fn)

    return deco


def dataset_option(fn):
    return click.option(
        "--dataset",
        default="builtin",
        show_default=True,
        metavar="NAME",
        help="celeba, builtin (scikit-image photographs bundled offline, not CelebA), or a "
        "plugin's dataset",
    )(fn)


def arch_option(fn):
    """--arch: a registered flow architecture (coupling, glow, or a plugin's)."""
    return click.option(
        "--arch",
        default="coupling",
        show_default=True,
        metavar="NAME",
        help="flow architecture: coupling (the paper's), glow, or a plugin's",
    )(fn)


def data_options(fn):
    """--dataset and --data-root: the commands that read images."""
    return dataset_option(data_root_option(fn))


def stored_run_options(fn):
    """--results, --out and --run: the commands that read a stored Table 1 run and write
    reports from it (`bench report`, `bench findings`)."""
    fn = click.option(
        "--run",
        "run_id",
        default=None,
        metavar="RUN_ID",
        help="run id (or a unique prefix) under RESULTS/runs [default: the run OUT's reports "
        "were made from, else the latest Table 1 run]",
    )(fn)
    fn = out_option()(fn)
    return results_option("results store written by `bench run` and `bench ablation --timing`")(fn)


def max_hours_option(default: float, help_text: str):
    """--max-hours HOURS (the parameter `max_hours`): a command estimated to run longer is
    refused before it starts (`bench run`, `bench ablation --timing`)."""

    def deco(fn):
        return click.option(
            "--max-hours",
            type=click.FloatRange(min=0, min_open=True),
            metavar="HOURS",
            default=default,
            show_default=True,
            help=help_text,
        )(fn)

    return deco


def replace_option(fn):
    """--replace: overwrite reports or results made from another run, preset or dataset
    (`bench.provenance`); without it such a file is refused with one line."""
    return click.option(
        "--replace",
        is_flag=True,
        help="overwrite reports/results made from another run, preset or dataset "
        "[default: refuse, naming both sources]",
    )(fn)
