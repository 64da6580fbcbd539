"""Options, locks and error handling shared by the commands.

Every command declares the options it shares with others here, so that they are spelled,
defaulted and described the same everywhere:

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

Writers of shared state hold a lock (`bench.locks`) around their whole read-compute-write
section: the reports folder (`lock_reports`), and the timing, perf and realism results
(`lock_results`). A second live writer is refused with a one-line error naming its pid.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shlex
import sys
import warnings
from pathlib import Path

import click

from bench.errors import BenchError, BenchWarning
from bench.provenance import DEFAULT_OUT, DEFAULT_RESULTS

WRITER = "bench command"  # who holds a lock, as the refusal names it (any bench command)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Our warnings as one line each (`warning: ...`); others as Python prints them."""
    if issubclass(category, BenchWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        click.echo(warnings.formatwarning(message, category, filename, lineno, line), err=True)


class _DropAfterClose(io.RawIOBase):
    """Writes to the file descriptor `fd` (stdout) until its reader has gone (a closed pipe,
    `bench ... | head -1`); then points `fd` at os.devnull, so that this write, every later
    one (ours, and the interpreter's final flush of the original sys.stdout) and the work
    itself go on as if nothing happened."""

    def __init__(self, fd: int):
        super().__init__()
        self._fd = fd
        self.discard = False  # set: drop every write (what is left once the command ended)

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, b) -> int:
        if self.discard:
            return memoryview(b).nbytes
        try:
            return os.write(self._fd, b)
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._fd)
            finally:
                os.close(devnull)
            return memoryview(b).nbytes


@contextlib.contextmanager
def stdout_survives_its_reader():
    """For the duration of a command, a closed stdout (its reader gone) never stops or fails
    the work: output after that is dropped silently. sys.stdout is replaced by a text stream
    of the same encoding over `_DropAfterClose`, so that every writer (click.echo, which
    wraps `sys.stdout` or its `.buffer` as it finds them at each call, and print) goes through
    it. Only the process's real stdout is guarded (not a test runner's capture)."""
    real = sys.stdout
    try:
        fd = real.fileno() if real is not None and real is sys.__stdout__ else None
    except (OSError, ValueError):
        fd = None
    if fd is None:
        yield
        return
    with contextlib.suppress(BrokenPipeError):
        real.flush()
    raw = _DropAfterClose(fd)
    guarded = io.TextIOWrapper(
        io.BufferedWriter(raw),
        encoding=real.encoding,
        errors=real.errors,
        line_buffering=real.line_buffering,
        write_through=getattr(real, "write_through", False),
    )
    sys.stdout = guarded
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError, ValueError):  # the error in flight is the one to say
            guarded.flush()
        raise
    else:
        guarded.flush()  # another failure than a closed pipe (a full disk) is an error
    finally:
        if sys.stdout is guarded:
            sys.stdout = real
        # what a failed write left buffered is dropped, never retried when the interpreter
        # collects the stream (a second error, after the one already said)
        raw.discard = True


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


def load_plugins(specs) -> None:
    """Load --plugin specs (and BENCH_PLUGINS) before the command runs, and pass them on to
    the processes it starts (joblib and Dask workers read BENCH_PLUGINS). PluginError (one
    line, exit 2) for a broken plugin."""
    from bench import plugins

    specs = [*plugins.env_specs(), *specs]
    if specs:
        plugins.export_to_environment(plugins.load(specs))


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


def command_line() -> str:
    """The exact command that is running, for report headers; --replace, which only
    authorises the write and changes nothing in it, is left out (so that the line remakes
    the same file once it is there)."""
    args = [a for a in sys.argv[1:] if a != "--replace"]
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


def progress_option(fn):
    """--progress/--no-progress (default: bars on stderr); the parameter is `progress`."""
    return click.option(
        "--progress/--no-progress",
        default=True,
        show_default=True,
        help="progress bars on stderr",
    )(fn)


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


def lock_reports(out: str | Path):
    """`with lock_reports(out):` — this command is the only writer of the reports folder
    `out` (its `.lock`); the folder is created first, so that every writer locks the same
    file whether or not the folder existed."""
    from bench import locks

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    return locks.holding(folder, WRITER)


def lock_results(path: str | Path):
    """`with lock_results(results / 'timing.csv'):` — this command is the only writer of a
    results file and its companions (the lock is `<file>.lock` beside it)."""
    from bench import locks

    return locks.holding(Path(path), WRITER)


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
        "were made from, else the latest run]",
    )(fn)
    fn = out_option()(fn)
    return results_option("results store written by `bench run` and `bench ablation --timing`")(fn)


def report_run(results_dir, out, run_id, report_file: str):
    """The stored run a report command uses: `run_id` when given, else the run that
    OUT/`report_file` was made from (so a plain `bench report` rebuilds what is there), else
    the latest run."""
    from bench import provenance as P
    from bench.runner import find_run, runs_root

    if run_id is None:
        made_from = P.recorded_run(Path(out) / report_file)
        if made_from and (runs_root(results_dir) / made_from).is_dir():
            run_id = made_from
    return find_run(results_dir, run_id)


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
