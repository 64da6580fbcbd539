"""`handle_errors`, around every command: user-fixable errors as one line on stderr (exit 2),
Ctrl-C as exit 130, our warnings as one line each, and the plugins loaded and the registered
names checked before the command runs."""

from __future__ import annotations

import functools
import sys
import warnings

import click

from bench.cli.output import stdout_survives_its_reader
from bench.cli.threads import keep_torch_threads
from bench.errors import BenchError, BenchWarning


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Our warnings as one line each (`warning: ...`); others as Python prints them."""
    if issubclass(category, BenchWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        click.echo(warnings.formatwarning(message, category, filename, lineno, line), err=True)


def handle_errors(fn):
    """Turn a user-fixable error into one line on stderr and exit code 2 (no traceback);
    Ctrl-C exits 130 with a note that finished work was kept. A closed stdout (`| head -1`)
    neither stops nor fails the command (`stdout_survives_its_reader`)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with (
                stdout_survives_its_reader(),
                warnings.catch_warnings(),
                keep_torch_threads(),
            ):
                warnings.simplefilter("once", BenchWarning)
                warnings.showwarning = _show_warning
                load_plugins(kwargs.pop("plugin", ()))
                check_registered(kwargs)
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


def load_plugins(specs) -> None:
    """Load BENCH_PLUGINS and the --plugin specs before the command runs (the runner hands
    them to its joblib and Dask workers, `bench.plugins.loaded_specs`). PluginError (one line,
    exit 2) for a broken plugin."""
    from bench import plugins

    specs = [*plugins.env_specs(), *specs]
    if specs:
        plugins.load(specs)


# options naming a registered item, checked once the plugins are loaded (so a plugin's
# dataset or architecture is a valid choice): option -> registry kind in bench.plugins
REGISTERED_OPTIONS = {"dataset": "datasets", "arch": "flows"}


def check_registered(kwargs: dict) -> None:
    """A one-line error (exit 2) for --dataset or --arch naming nothing registered."""
    wanted = {k: kwargs[k] for k in REGISTERED_OPTIONS if kwargs.get(k) is not None}
    if not wanted:
        return
    from bench import plugins

    registries = plugins.registries()
    for option, name in wanted.items():
        registries[REGISTERED_OPTIONS[option]].get(name)
