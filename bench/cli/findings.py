"""`bench findings`: the paper's claims tested on a stored Table 1 run (reports/claims.md)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from bench.cli import main
from bench.cli.errors import handle_errors
from bench.cli.options import (
    data_root_option,
    device_option,
    progress_option,
    replace_option,
    resolve_device,
    seed_option,
    stored_run_options,
)
from bench.cli.output import command_line
from bench.cli.stores import lock_reports, lock_results, report_run
from bench.cli.threads import set_threads, threads_option

MIN_SAMPLES = 10  # --samples: the fewest samples per σ (and real images per set) accepted


@main.command()
@stored_run_options
@click.option(
    "--realism",
    is_flag=True,
    help="also (re)compute Figure 1's realism proxy per latent σ from the run's checkpoint "
    "and store it in RESULTS/realism.csv (needs the checkpoint and the valid images)",
)
@click.option(
    "--checkpoint",
    default=None,
    help="flow for --realism [default: the checkpoint the run used]",
)
@data_root_option
@click.option(
    "--samples",
    type=click.IntRange(min=MIN_SAMPLES),
    default=None,
    help="--realism: samples per σ and real images per set (twice as many valid images are "
    "read) [default: 500]",
)
@seed_option("--realism: seed of the latent draws and of the bootstrap")
@progress_option
@device_option
@threads_option()
@replace_option
@handle_errors
def findings(
    results_dir,
    out,
    run_id,
    realism,
    checkpoint,
    data_root,
    samples,
    seed,
    progress,
    device,
    threads,
    replace,
) -> None:
    """Test each claim of the paper on a stored run (paired per-image differences with 95%
    intervals, Figure 1's σ, Table 2's speed ratio, the released code's defects) and write
    reports/claims.md. Without --realism nothing is computed but statistics of stored results,
    so the command reproduces claims.md exactly. --data-root: the CelebA folder of --realism's
    real images (of the run's dataset). The reports folder, and with --realism
    RESULTS/realism.csv, are locked meanwhile: a second live writer is refused."""
    from bench import findings as F
    from bench import provenance as P

    run_dir = report_run(results_dir, out, run_id, F.CLAIMS_FILE)
    claims = Path(out) / F.CLAIMS_FILE
    with contextlib.ExitStack() as held:
        held.enter_context(lock_reports(out))
        if realism:
            held.enter_context(lock_results(Path(results_dir) / F.REALISM_FILE))
            _realism(
                run_dir, results_dir, checkpoint, data_root, samples, seed, progress, device,
                replace, claims, threads,
            )  # fmt: skip
        claims_src = F.claims_source_of(run_dir)
        P.check([claims], claims_src, replace)
        path = F.write_claims(run_dir, results_dir, out)
        P.record([claims], claims_src)
    click.echo(path.read_text().split("## Table 1 claims")[0].rstrip())
    click.echo(f"\nfindings: {path}")


def _realism(
    run_dir, results_dir, checkpoint, data_root, samples, seed, progress, device, replace, claims,
    threads=None,
):  # fmt: skip
    """Figure 1's realism proxy from the run's flow, stored in RESULTS/realism.csv; refused
    before computing when it would replace a realism result of another flow or setting (or
    claims.md of another source)."""
    from bench import data
    from bench import findings as F
    from bench import provenance as P
    from bench.errors import BenchError
    from bench.report import model_line, read_manifest
    from bench.train import load_checkpoint

    man = read_manifest(run_dir)
    ckpt = checkpoint or (man.get("model") or {}).get("path")
    if not ckpt or not Path(ckpt).is_file():
        raise BenchError(
            f"--realism needs the run's flow, but checkpoint {ckpt!r} is missing: "
            "pass --checkpoint or retrain it with `bench train` (see the run's preset)"
        )
    n = samples or F.REALISM_SAMPLES
    flow, meta = load_checkpoint(ckpt, resolve_device(device))
    flow.requires_grad_(False)
    targets = F.realism_paths(results_dir)
    # refuse a realism result of another flow or setting before reading images or sampling
    known = {"model": model_line(meta), "real": None, "n": n, "seed": seed,
             "repeats": F.REALISM_REPEATS, "components": F.REALISM_COMPONENTS}  # fmt: skip
    where = "a --results folder holding a copy of the run"
    P.check(targets, P.realism_source(known), replace, option=where, partial=True)
    real = data.load_images(man["dataset"], "valid", data_root, limit=2 * n, progress=progress)
    if len(real.images) < 2 * n:
        found, fits = len(real.images), len(real.images) // 2
        raise BenchError(
            f"--realism with --samples {n} needs {2 * n} valid images ({n} per set), "
            f"{man['dataset']} has {found}: "
            + (
                f"pass --samples {fits} or fewer"
                if fits >= MIN_SAMPLES
                else f"too few for the realism proxy (--samples is at least {MIN_SAMPLES}, "
                f"which needs {2 * MIN_SAMPLES}); use a dataset with more valid images"
            )
        )
    facts = {
        "model": model_line(meta),
        "real": f"{real.label}: first {2 * n} valid images, split in two sets of {n}",
        "n": n,
        "seed": seed,
        "repeats": F.REALISM_REPEATS,
        "components": F.REALISM_COMPONENTS,
    }
    source = P.realism_source(facts)
    P.check(targets, source, replace, option="a --results folder holding a copy of the run")
    # the claims this realism result feeds must be writable too: refuse before computing
    P.check([claims], P.claims_source(P.run_source(man)), replace)
    set_threads(threads)  # after every refusal, before the work
    df = F.realism(flow, real.images.numpy(), n=n, seed=seed, progress=progress)
    facts.update(command=command_line(), nonfinite=df.attrs.get("nonfinite", {}))
    # what claims.md needs to tell a smoke flow (findings.flow_shortfalls)
    facts["flow"] = {k: meta.get(k) for k in ("fingerprint", "preset", "epochs", "hidden")}
    F.write_realism(df, facts, results_dir)
    P.record(targets, source)
