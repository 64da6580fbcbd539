"""`bench run --table general` (PROTOCOL §9): every registered task × every method that supports
it, on the flow's own test images and on images it never saw, then reports/general.md.

It is two runs of the same runner (`bench.runner.run_table1`), stored, resumed and reported
like Table 1's: the in-distribution run (images from --dataset, the flow's dataset) and the
out-of-distribution run (images from --ood-dataset, the same flow)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click


@dataclass
class Part:
    """One test set of the general table: 'in' (the flow's dataset) or 'ood'."""

    name: str
    dataset: str


def general_methods() -> list[str]:
    """Every registered method that is not a variant of another (the paper's, the classical
    baselines, plugins), in registry order."""
    from bench.methods import METHODS

    return [m for m, method in METHODS.items() if method.variant_of is None]


def general_tasks() -> list[str]:
    """Every registered task (the paper's four, PROTOCOL §9's seven, plugins), in registry order."""
    from bench.tasks import TASKS

    return list(TASKS)


def parts_of(dataset: str, ood_dataset: str | None) -> list[Part]:
    """The test sets: the flow's dataset, then --ood-dataset unless it is 'none' or the same."""
    parts = [Part("in", dataset)]
    if ood_dataset and ood_dataset != "none" and ood_dataset != dataset:
        parts.append(Part("ood", ood_dataset))
    return parts


def run_general(o: dict) -> None:
    """The general table with the options of `bench run` (`o`, by parameter name)."""
    from bench import config, report, runner
    from bench import provenance as P
    from bench.cli.options import resolve_device
    from bench.cli.output import command_line
    from bench.cli.run_checks import fused_rows, say_estimate
    from bench.cli.threads import resolve_threads

    p = config.general_preset(o["preset"])
    dev = resolve_device(o["device"])
    methods = o["methods"] or general_methods()
    tasks = o["tasks"] or general_tasks()
    plan = runner.plan_table1(p, methods, tasks, o["select_on"], o["weights"])
    parts = parts_of(o["dataset"], o["ood_dataset"])
    ood = parts[1].dataset if len(parts) > 1 else "none"
    targets = report.general_paths(o["out"])
    source = lambda ids: P.general_source(ids, o["dataset"], ood, p.name)  # noqa: E731
    P.check(targets, source(None), o["replace"], partial=True)
    check_flow_dataset(o["checkpoint"], o["dataset"], o["arch"])
    if len(parts) == 1:
        click.echo(f"no out-of-distribution set: --ood-dataset is {o['ood_dataset']!r}")
    checked = [_check_part(plan, part, dev, o) for part in parts]
    if all(i.run_id for i in checked):  # the runs are known: refuse other runs' reports now
        P.check(targets, source([i.run_id for i in checked]), o["replace"])
    threads = resolve_threads(o["threads"], o["jobs"]) if o["backend"] == "joblib" else None
    for part, inputs in zip(parts, checked, strict=True):
        click.echo(f"[{part.name}: images from {part.dataset}, flow trained on {o['dataset']}]")
        fused = fused_rows(o["fuse"], o["max_batch"], dev, inputs)
        title = "General table"
        say_estimate(inputs, part.dataset, dev, o["jobs"], threads, o["max_hours"], title, fused)
    flow, meta = None, {}
    if any(i.needs_flow for i in checked):
        from bench import train

        flow, meta = train.ensure_flow(
            p, o["dataset"], o["data_root"], dev, arch=o["arch"], checkpoint=o["checkpoint"],
            results_dir=o["results_dir"], progress=o["progress"], log=click.echo,
            replace=o["replace"],
        )  # fmt: skip
    results = []
    for part in parts:
        click.echo(f"[{part.name}] restoring {part.dataset} test images")
        results.append(
            runner.run_table1(
                flow,
                meta,
                p,
                part.dataset,
                o["data_root"],
                plan.methods,
                plan.tasks,
                dev,
                o["jobs"],
                o["select_on"],
                o["weights"],
                o["results_dir"],
                o["force"],
                o["seed"],
                o["progress"],
                backend=o["backend"],
                scheduler=o["scheduler"],
                command=command_line(),
                log=click.echo,
                threads=threads,
                flow_dataset=o["dataset"],
                fuse=o["fuse"],
                max_batch=o["max_batch"],
                precision=o["precision"],
            )  # fmt: skip
        )
    write_general_reports([r.run_dir for r in results], o["out"], o["replace"])
    _say_done(results, o["out"])


def _check_part(plan, part: Part, dev: str, o: dict):
    """`check_inputs` for one test set: its images, the flow of --dataset, its stored cells."""
    from bench.cli.run_checks import check_inputs

    return check_inputs(
        plan, part.dataset, o["data_root"], o["checkpoint"], o["results_dir"], o["seed"], dev,
        o["force"], o["progress"], o["replace"], o["arch"], flow_dataset=o["dataset"],
    )  # fmt: skip


def _say_done(results, out) -> None:
    """What each run did, its failed cells, and where the report is."""
    from bench import report, runner

    for r in results:
        n_all = len(r.computed) + len(r.reused)
        click.echo(
            f"run {r.run_id}: {len(r.computed)} of {n_all} cells computed, {len(r.reused)} "
            f"reused, in {runner.format_duration(r.seconds)}"
        )
        for line in r.failed:
            click.echo(f"failed: {line}")
    click.echo(f"report: {Path(out) / report.GENERAL_FILE} (figures in "
               f"{Path(out) / report.GENERAL_FIGURES})")  # fmt: skip


def check_flow_dataset(checkpoint, dataset: str, arch: str) -> None:
    """A --checkpoint must hold a flow trained on --dataset: the general table calls that
    dataset's test images in distribution and every other one out of it (BenchError)."""
    if checkpoint is None:
        return
    from bench import train
    from bench.errors import CheckpointError

    if not Path(checkpoint).is_file():
        raise CheckpointError(f"checkpoint {checkpoint} not found: pass an existing file")
    _, meta = train.load_checkpoint(checkpoint, "cpu", arch=arch)
    trained_on = meta.get("dataset")
    if trained_on is not None and trained_on != dataset:
        raise CheckpointError(
            f"checkpoint {checkpoint} was trained on {trained_on}, not --dataset {dataset}: the "
            f"general table's in-distribution images are the flow's own; pass --dataset "
            f"{trained_on} (and --ood-dataset for other images)"
        )


def general_source_of(mans: list[dict]):
    """The provenance source of general.md made from the stored runs of these manifests."""
    from bench import provenance as P
    from bench import report

    ood = next((m["dataset"] for m in mans if report.part_of(m) == "ood"), "none")
    first = mans[0]
    return P.general_source(
        [m["run_id"] for m in mans], first["dataset"], ood, first["preset"]["name"]
    )


def write_general_reports(run_dirs: list[Path], out, replace: bool) -> Path:
    """Write general.md and its figures under the reports folder's lock, after refusing to
    overwrite ones made from other runs (unless `replace`), and record their source."""
    from bench import provenance as P
    from bench import report
    from bench.cli.stores import lock_reports

    mans = [report.read_manifest(d) for d in run_dirs]
    source = general_source_of(mans)
    targets = report.general_paths(out, mans)
    with lock_reports(out):
        P.check(targets, source, replace)
        path = report.write_general(run_dirs, out)
        P.record(targets, source)
    return path


def recorded_general_runs(results_dir, out) -> list[Path] | None:
    """The stored runs OUT/general.md was made from (its recorded source), if they all still
    exist under `results_dir`; else None (`bench report` then leaves general.md alone)."""
    from bench import provenance as P
    from bench import report
    from bench.runner import runs_root

    rec = P.recorded(Path(out) / report.GENERAL_FILE) or {}
    ids = (rec.get("key") or {}).get("runs")
    if not isinstance(ids, list) or not ids:
        return None
    dirs = [runs_root(results_dir) / str(i) for i in ids]
    return dirs if all(d.is_dir() for d in dirs) else None
