"""`bench ablation --timing`: Table 2 (§5.6), generation time of the coupling flow against the
glow flow in its three 1×1-convolution modes, plus one solver iteration."""

from __future__ import annotations

from pathlib import Path

import click

from bench import config
from bench.cli import main
from bench.cli.errors import handle_errors
from bench.cli.options import (
    device_option,
    max_hours_option,
    out_option,
    progress_option,
    replace_option,
    resolve_device,
    results_option,
    seed_option,
)
from bench.cli.output import command_line
from bench.cli.stores import lock_reports, lock_results
from bench.cli.threads import set_threads, threads_option
from bench.errors import BenchError

_PRESETS = ("paper", "cpu", "smoke")  # bench.timing.TIMING_PRESETS (kept light to import)
_ITERS = {"paper": config.TIMING_ITERS, "cpu": 50, "smoke": 3}  # their timed iterations
_ROUNDS = 5  # bench.timing.DEFAULT_ROUNDS; a run has at most one round per timed iteration
_ROUNDS_HELP = ", ".join(f"{k} {min(_ROUNDS, n)}" for k, n in _ITERS.items())


@main.command()
@click.option(
    "--timing", is_flag=True, help="run the Table 2 timing ablation (the only ablation; required)"
)
@click.option(
    "--preset",
    type=click.Choice(_PRESETS),
    default=config.DEFAULT_PRESET,
    show_default=True,
    help=f"paper: width {config.HIDDEN}, {_ITERS['paper']} iterations, batch "
    f"{config.TIMING_BATCH}; cpu: width 128, {_ITERS['cpu']} iterations, batch 32; "
    f"smoke: width 8, {_ITERS['smoke']} iterations, batch 4",
)
@click.option(
    "--width",
    type=click.IntRange(min=1),
    default=None,
    help="hidden width of both flows' coupling networks (overrides the preset)",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=None,
    help="samples per generated batch (overrides the preset)",
)
@click.option(
    "--iters",
    type=click.IntRange(min=1),
    default=None,
    help="timed iterations per measurement (overrides the preset)",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=None,
    help="untimed calls before each measurement (overrides the preset)",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=_ROUNDS,
    help="interleave the configurations in this many rounds (drifting load biases none), at "
    f"most one per timed iteration (--iters) [default: {_ROUNDS}, so with the presets' "
    f"iterations: {_ROUNDS_HELP}]",
)
@threads_option()
@device_option
@max_hours_option(
    1.0,
    "refuse, before it starts, a timing estimated to run longer than this many hours "
    "(the paper preset's 1500 iterations take hours on a CPU: pass --iters 50, or more hours)",
)
@click.option(
    "--allow-busy",
    is_flag=True,
    help="time even when other processes keep the CPUs busy (table2.md then says so); "
    "without it a busy machine is refused",
)
@click.option(
    "--checkpoint",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="a trained flow's checkpoint (repeat: at most one per architecture); "
    "default: untrained weights, which cost the same",
)
@out_option("reports folder (table2.md)")
@results_option("results folder (timing.csv: raw per-iteration times; timing_summary.csv)")
@seed_option("seed of the untrained flows' weights and of the latents")
@progress_option
@replace_option
@handle_errors
def ablation(
    timing,
    threads,
    rounds,
    preset,
    width,
    batch,
    iters,
    warmup,
    device,
    checkpoint,
    out,
    results_dir,
    seed,
    progress,
    allow_busy,
    replace,
    max_hours,
):
    """Table 2: time generation (z → x) and one solver iteration of the coupling and glow
    flows at the same width; glow with its 1×1 convolutions' inverse recomputed at every call
    (the paper), cached once, and LU-parameterised. Writes OUT/table2.md and RESULTS/timing*,
    both locked from the start (a second live writer is refused). Needs no data."""
    if not timing:
        raise BenchError("nothing to do: pass --timing (`bench ablation --timing`)")
    from bench import provenance as P
    from bench import timing as tm

    dev = resolve_device(device)
    opts = tm.resolve_timing_options(
        preset, width, batch, iters, warmup, from_checkpoint=bool(checkpoint)
    )
    # refuse, before timing anything, results or a Table 2 of another setting or device
    targets = [Path(out) / tm.TABLE2_FILE, *tm.timing_paths(results_dir)]
    facts = tm.timing_meta(
        dev, opts.width, opts.batch, opts.iters, opts.warmup, "", preset=preset,
        checkpoint=list(checkpoint) or None,
    )  # fmt: skip
    P.check(targets, P.timing_source(facts), replace, "--out DIR and --results DIR", partial=True)
    with lock_results(Path(results_dir) / "timing.csv"), lock_reports(out):
        busy = _busy_before(allow_busy)  # (a live writer's refusal first: it is the cause)
        threads = set_threads(threads, busy=busy["busy"])  # the estimate's count is the run's
        _check_duration(tm, opts, dev, max_hours)
        text, written = _time_and_write(
            tm, opts, dev, threads, checkpoint, progress, rounds, seed, preset, out, results_dir,
            busy, replace, targets,
        )  # fmt: skip
    click.echo(text)
    path, *files = written
    click.echo(f"wrote {path} and {', '.join(str(f) for f in files)}")


def _check_duration(tm, opts, dev, max_hours) -> None:
    """Say how long the timing will take (`bench.timing.estimate_ablation_seconds`) and refuse one
    beyond --max-hours before it starts."""
    import math

    from bench.runner import format_duration

    if opts.width is None:  # the width comes from a checkpoint: no estimate
        return
    est = tm.estimate_ablation_seconds(opts.width, opts.batch, opts.iters, opts.warmup, dev)
    if est > max_hours * 3600:
        raise BenchError(
            f"estimated {format_duration(est)} on {dev} for {opts.iters} timed iterations per "
            f"configuration at width {opts.width}, batch {opts.batch}: more than --max-hours "
            f"{max_hours:g}; pass fewer --iters (the committed Table 2 used --iters 50), or "
            f"--max-hours {math.ceil(est / 3600)} to accept it"
        )
    click.echo(f"estimated time on {dev}: {format_duration(est)}", err=True)


def _busy_before(allow_busy: bool) -> dict:
    """Other processes' CPUs before timing (`bench.machine.busy_cpus`): above
    TIMING_BUSY_LIMIT a one-line refusal, unless --allow-busy (then noted for table2.md)."""
    from bench import machine

    busy = machine.busy_cpus()
    over = busy is not None and busy > machine.TIMING_BUSY_LIMIT
    if over and not allow_busy:
        raise BenchError(
            f"the machine is busy ({machine.describe_busy(busy)}): Table 2 times are only "
            "comparable on a quiet machine; stop the other work and rerun, or pass --allow-busy "
            "to time anyway (table2.md then says so)"
        )
    note = f"{machine.describe_busy(busy)} at start (--allow-busy)" if over else None
    return {"busy": busy, "note": note}


def _busy_after(mark, busy: dict) -> tuple[float | None, str | None]:
    """Other processes' CPUs on average during the timing; a warning (and a note for
    table2.md) when they went above TIMING_BUSY_LIMIT."""
    import warnings

    from bench import machine
    from bench.errors import BenchWarning

    during = machine.busy_since(mark)
    if during is None or during <= machine.TIMING_BUSY_LIMIT:
        return during, busy["note"]
    what = (
        f"other processes kept {during:.1f} of {machine.available_cpus()} CPUs busy on average "
        "during the timing"
    )
    warnings.warn(
        f"{what} ({machine.describe_busy(machine.busy_cpus())} at end): the times may be "
        "inflated; rerun on a quiet machine",
        BenchWarning,
        stacklevel=2,
    )
    return during, "; ".join(n for n in (busy["note"], what) if n)


def _time_and_write(
    tm, opts, dev, threads, checkpoint, progress, rounds, seed, preset, out, results_dir, busy,
    replace, targets,
):  # fmt: skip
    import os

    from bench import machine

    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    set_threads(threads, busy=busy["busy"])
    mark = machine.busy_mark()
    df = tm.run_timing_ablation(
        opts.width,
        opts.batch,
        opts.iters,
        opts.warmup,
        dev,
        checkpoint=list(checkpoint) or None,
        progress=progress,
        seed=seed,
        rounds=rounds,
    )
    during, note = _busy_after(mark, busy)
    meta = tm.timing_meta(
        dev,
        int(df["width"].iloc[0]),
        opts.batch,
        opts.iters,
        opts.warmup,
        command_line(),
        preset=preset,
        checkpoint=list(checkpoint) or None,
        load_start=load_start,
        rounds=int(df["rounds"].iloc[0]),
    )
    meta.update(busy_start=busy["busy"], busy_during=during, busy_note=note)
    text = tm.format_table2(df, meta)
    from bench import provenance as P
    from bench.atomic import all_or_nothing

    source = P.timing_source(meta)
    P.check(targets, source, replace, "--out DIR and --results DIR")
    with all_or_nothing():  # raw times, summary, header and table2.md together, or none
        files = tm.write_timings(df, meta, results_dir)
        path = tm.write_table2(df, meta, out)
    P.record(targets, source)
    return text, [path, *files]
