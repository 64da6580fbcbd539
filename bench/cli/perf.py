"""`bench perf`: a benchmark (not a test) of solving, generating and training against the
machine's float32 matmul rate; writes results/perf.csv and reports/perf.md."""

from __future__ import annotations

import click

from bench.cli import main
from bench.cli.errors import handle_errors
from bench.cli.options import (
    device_option,
    out_option,
    replace_option,
    resolve_device,
    results_option,
)
from bench.cli.output import command_line
from bench.cli.stores import lock_reports, lock_results
from bench.cli.threads import resolve_threads, threads_option
from bench.errors import BenchError

_PRESETS = ("default", "smoke")  # bench.perf.PERF_PRESETS (kept light to import)


def _batches(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        out = tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise BenchError(
            f"--batches takes comma-separated sizes like 32,192, not {text!r}"
        ) from None
    if not out or min(out) < 1:
        raise BenchError(f"--batches needs positive sizes, got {text!r}")
    return out


@main.command()
@device_option
@click.option(
    "--preset",
    type=click.Choice(_PRESETS),
    default="default",
    show_default=True,
    help="default: width 512, batches 32,192; smoke: width 16, batches 4,8 (seconds)",
)
@click.option("--quick", is_flag=True, help="same as --preset smoke")
@click.option(
    "--width",
    type=click.IntRange(min=1),
    default=None,
    help="hidden width of the coupling networks (overrides the preset)",
)
@click.option(
    "--batches",
    default=None,
    help="solver and generation batch sizes, comma-separated (e.g. 32,192)",
)
@click.option(
    "--train-batch",
    type=click.IntRange(min=1),
    default=None,
    help="training-step batch size (overrides the preset)",
)
@click.option(
    "--reps",
    type=click.IntRange(min=1),
    default=None,
    help="timed repetitions per figure (median reported)",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=None,
    help="untimed repetitions before each figure",
)
@click.option(
    "--matmul-size",
    type=click.IntRange(min=16),
    default=None,
    help="n of the n×n float32 matmul that sets the reference rate",
)
@threads_option("the CPUs other processes leave free (with --wait-idle: one per CPU); inter-op: 1")
@click.option(
    "--bf16",
    is_flag=True,
    help="also time the solver under bfloat16 autocast and compare restored images "
    "with float32 (opt-in; float32 stays the default everywhere)",
)
@click.option(
    "--reference",
    is_flag=True,
    help="time the straightforward (unoptimised) flow code path instead",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    default=None,
    help="a trained coupling checkpoint (default: untrained weights, same cost)",
)
@click.option(
    "--wait-idle",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="wait up to this many seconds for other processes to leave the CPUs before measuring",
)
@out_option("reports folder (perf.md)")
@results_option("results folder (perf.csv)")
@replace_option
@handle_errors
def perf(
    device,
    preset,
    quick,
    width,
    batches,
    train_batch,
    reps,
    warmup,
    matmul_size,
    threads,
    bf16,
    reference,
    checkpoint,
    wait_idle,
    out,
    results_dir,
    replace,
):
    """Measure solver iterations, generation and training steps against the float32 matmul
    rate (median of repetitions after warm-up) and report peak memory. RESULTS/perf.csv and
    OUT/perf.md are locked from the start: a second live writer is refused."""
    from dataclasses import replace as with_
    from pathlib import Path

    from bench.machine import available_cpus
    from bench.perf import PERF_CSV, PERF_PRESETS, run_perf, write_perf

    device = resolve_device(device)
    p = PERF_PRESETS["smoke" if quick else preset]
    over = {
        "width": width,
        "batches": _batches(batches),
        "train_batch": train_batch,
        "reps": reps,
        "warmup": warmup,
        "matmul_n": matmul_size,
    }
    p = with_(p, **{k: v for k, v in over.items() if v is not None})
    if threads is None and wait_idle:
        n = available_cpus()
        click.echo(
            f"threads: {n} of {n} CPUs (--wait-idle: every CPU, once other processes leave; "
            "--threads N to choose)",
            err=True,
        )
    else:
        threads = resolve_threads(threads)
    from bench import provenance as P
    from bench.perf import PERF_MD, cpu_description

    source = P.perf_source(p.name, p.width, device, cpu_description()["cpu"])
    targets = [Path(results_dir) / PERF_CSV, Path(out) / PERF_MD]
    with lock_results(targets[0]), lock_reports(out):
        P.check(targets, source, replace, option="--out DIR and --results DIR")
        result = run_perf(
            p,
            device=device,
            threads=threads,
            bf16=bf16,
            reference=reference,
            checkpoint=checkpoint,
            wait_idle=wait_idle,
            log=lambda m: click.echo(m, err=True),
        )
        csv, md = write_perf(result, out, results_dir, command_line())
        P.record(targets, source)
    click.echo(f"wrote {csv} and {md}")
