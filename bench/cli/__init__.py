"""The `bench` command line: a thin click group; each command lives in its own module here
(`bench/cli/<command>.py`) and is registered on import. Commands parse, call, print."""

from __future__ import annotations

import importlib
import pkgutil

import click

from bench import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bench")
def main() -> None:
    """Benchmark harness for 'Generative Flows as a General Purpose Solution for Inverse
    Problems': train the paper's flows, run Table 1 and Table 2, write reports."""


# the modules of bench/cli that hold what the commands share (`common` gathers their names);
# every other module is a command
SHARED_MODULES = frozenset({"errors", "options", "output", "run_checks", "stores", "threads"})

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _mod not in SHARED_MODULES:
        importlib.import_module(f"{__name__}.{_mod}")

from bench.cli.options import plugin_option  # noqa: E402

for _command in main.commands.values():
    plugin_option(_command)
