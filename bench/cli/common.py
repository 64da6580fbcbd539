"""Options and error handling shared by the commands."""

from __future__ import annotations

import functools
import shlex
import sys

import click

from bench.errors import BenchError


def handle_errors(fn):
    """Turn a user-fixable error into one line on stderr and exit code 2 (no traceback);
    Ctrl-C exits 130 with a note that finished work was kept."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BenchError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except OSError as e:
            # a file operation outside the atomic writers (a folder created, a file read):
            # still one line naming the path and the problem, never a traceback
            from bench.errors import WriteError

            click.echo(f"error: {WriteError.from_os_error(e, verb='use')}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo(
                "interrupted: finished work is saved; rerun the same command to resume", err=True
            )
            sys.exit(130)

    return wrapper


def command_line() -> str:
    """The exact command that is running, for report headers."""
    args = [a for a in sys.argv[1:]]
    return "bench " + " ".join(shlex.quote(a) for a in args)


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


def preset_option(default: str | None = "cpu"):
    from bench.config import PRESETS

    def deco(fn):
        return click.option(
            "--preset",
            type=click.Choice(list(PRESETS)),
            default=default,
            show_default=True,
            help="size knobs (width, epochs, images, iterations, grid); the protocol is fixed",
        )(fn)

    return deco


def data_options(fn):
    from bench.data import DATASETS

    fn = click.option(
        "--data-root",
        default=None,
        help="CelebA folder holding img_align_celeba/ (else $BENCH_CELEBA, else data/celeba)",
    )(fn)
    fn = click.option(
        "--dataset",
        type=click.Choice(list(DATASETS)),
        default="builtin",
        show_default=True,
        help="celeba, or builtin: scikit-image photographs bundled offline (not CelebA)",
    )(fn)
    return fn


def stored_run_options(fn):
    """--results, --out and --run: the commands that read a stored Table 1 run and write
    reports from it (`bench report`, `bench findings`)."""
    fn = click.option(
        "--run",
        "run_id",
        default=None,
        metavar="RUN_ID",
        help="run id (or a unique prefix) under RESULTS/runs [default: the latest run]",
    )(fn)
    fn = click.option("--out", default="reports", show_default=True, help="reports folder")(fn)
    return click.option(
        "--results",
        "results_dir",
        default="results",
        show_default=True,
        help="results store written by `bench run` and `bench ablation --timing`",
    )(fn)
