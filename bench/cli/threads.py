"""--threads: the option, the count it resolves to (auto: the CPUs other processes leave free,
`bench.machine`), the warning for more threads than CPUs, and torch's count restored after a
command run in this process."""

from __future__ import annotations

import contextlib
import sys
import warnings

import click

from bench.errors import BenchWarning


class ThreadsType(click.ParamType):
    """A positive integer, or 'auto' (the parameter is then None)."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
            return None
        try:
            n = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a positive integer nor 'auto'", param, ctx)
        if n < 1:
            self.fail(f"{value!r} is not a positive integer (or 'auto')", param, ctx)
        return n


def threads_option(default_help: str = "the CPUs other processes leave free (bench.machine)"):
    """--threads N|auto: torch's intra-op CPU threads for the work; auto (the default, the
    parameter None) is resolved by `resolve_threads`/`set_threads` (`default_help` says how)."""

    def deco(fn):
        return click.option(
            "--threads",
            type=ThreadsType(),
            default="auto",
            show_default=True,
            help=f"CPU threads for torch; auto: {default_help}",
        )(fn)

    return deco


def resolve_threads(threads: int | None, jobs: int = 1, busy: float | None = None) -> int:
    """--threads as a count: N itself, or for auto (None) the CPUs other processes leave free
    shared among `jobs` workers (`bench.machine.choose_threads`; `busy`: a reading already
    taken), announced in one line on stderr (`threads: 1 of 2 CPUs (…)`). Call it before the
    work starts: the reading must not see this command's own work. More threads in all
    (`jobs` × the count) than the CPUs available is one warning line (`warn_oversubscribed`)."""
    from bench import machine

    if threads is not None:
        warn_oversubscribed(threads, jobs, machine.available_cpus())
        return threads
    n, line = machine.choose_threads(jobs, busy=busy)
    click.echo(line, err=True)
    warn_oversubscribed(n, jobs, machine.available_cpus())
    return n


def warn_oversubscribed(threads: int, jobs: int, cpus: int) -> None:
    """One warning line (BenchWarning) when `jobs` workers of `threads` torch threads each
    ask for more CPUs than the `cpus` available: they then share CPUs and run no faster than
    the workers those CPUs hold (what `runner.estimate_seconds` counts)."""
    if threads * jobs <= cpus:
        return
    if jobs == 1:
        msg = (
            f"--threads {threads} is more than the {cpus} CPUs available: the extra threads "
            f"share CPUs and slow the work down; use --threads {cpus} or fewer"
        )
    else:
        fits = max(1, cpus // threads)
        per = f"{threads} thread{'s' if threads > 1 else ''}"
        msg = (
            f"--jobs {jobs} × {per} per job = {threads * jobs} threads on {cpus} CPUs "
            f"available: the jobs share CPUs and run no faster than {fits} job"
            f"{'s' if fits > 1 else ''} (the estimate counts {fits}); use --jobs {fits}"
        )
        if threads > 1:
            msg += f", or --threads {max(1, cpus // jobs)} with --jobs {jobs}"
    warnings.warn(msg, BenchWarning, stacklevel=2)


def set_threads(threads: int | None, busy: float | None = None) -> int:
    """Apply --threads to torch in this process (auto: `resolve_threads`); returns the count."""
    import torch

    n = resolve_threads(threads, busy=busy)
    torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def keep_torch_threads():
    """Restore torch's thread count after a command run in this process (tests, scripts):
    --threads applies to one command only."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        if before is not None and torch.get_num_threads() != before:
            torch.set_num_threads(before)
