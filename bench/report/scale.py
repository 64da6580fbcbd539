"""reports/scale.md (`bench scale`, rebuilt by `bench report`): the scale study's runs
(`bench.scale`, recorded in RESULTS/scale.json) against their baseline Table 1 run — the
convergence traces, the iteration budget, the prior's strength and the replication set — and,
per claim of the paper, which way each moves.

Every number is a paired per-image difference (same image, same measurement), with the
Student-t 95% interval of `bench.findings.paired`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bench.findings import NOT_MEANINGFUL, claim_results, compare, test_cells
from bench.report.frames import load_run
from bench.report.header import images_line, model_line, preset_line
from bench.report.keyed_tables import CLAIMS
from bench.report.scale_common import (
    FIGURES_DIR,
    bpd_key,
    cells_of,
    colors_of,
    diff_text,
    finish_row,
    panel_row,
)
from bench.report.scale_sweep import PRIOR_PNG, direction, sweep_section, trend
from bench.report.text import md_table, num
from bench.runner import find_run

SCALE_MD = "scale.md"
CONVERGENCE_PNG = "convergence.png"


def scale_paths(out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    return [out / SCALE_MD, out / FIGURES_DIR / CONVERGENCE_PNG, out / FIGURES_DIR / PRIOR_PNG]


def scale_source(record: dict):
    """What scale.md is made from: the scale study of one baseline run (a part added to the
    study updates the same report; another baseline's study is another source)."""
    from bench import provenance as P

    return P.Source(f"the scale study of run {record['baseline']}", {"scale": record["baseline"]})


def write_scale_report(results_dir: str | Path, out_dir: str | Path, replace: bool) -> Path:
    """Write OUT/scale.md and its figures from RESULTS/scale.json's runs (BenchError when
    there is no study, or when OUT's scale.md was made from another study and not
    `replace`). The caller holds the reports folder's lock."""
    from bench import provenance as P
    from bench.atomic import atomic_write_text
    from bench.errors import BenchError
    from bench.scale import read_record

    record = read_record(results_dir)
    if not record:
        raise BenchError(f"no scale study in {results_dir}: run `bench scale --part ...` first")
    paths = scale_paths(out_dir)
    source = scale_source(record)
    P.check(paths, source, replace)
    text = render_scale(record, results_dir, out_dir)
    path = atomic_write_text(paths[0], text)
    P.record([p for p in paths if p.exists()], source)
    return path


def render_scale(record: dict, results_dir, out_dir) -> str:
    """The whole of scale.md."""
    parts = record.get("parts", {})
    base_dir = find_run(results_dir, record["baseline"])
    base = load_run(base_dir)
    lines = [
        "# Would the verdicts change at the paper's scale?",
        "",
        f"The scale study of Table 1 run `{record['baseline']}` (the *baseline*). Every part "
        "reuses the weights the baseline selected (`bench run --weights-from`), so a difference "
        "is the iterations', the flow's or the images' alone. Differences are paired per image "
        "(same image, same noisy measurement): mean a − b with its Student-t 95% interval.",
        "",
        f"- **Baseline**: {images_line(base.manifest.get('test_images'))}",
        f"- **Baseline preset**: {preset_line(base.manifest['preset'])}",
        f"- **Baseline model**: {model_line(base.manifest['model'])}",
        f"- **Rebuild**: `bench report` (or `bench scale --part report`) rewrites this file from "
        f"the runs that {Path(results_dir) / 'scale.json'} records, without solving",
        "",
    ]
    lines += _runs_section(record, results_dir)
    lines += _convergence_section(parts.get("budget"), results_dir, out_dir)
    budget = _budget_section(parts.get("budget"), base, results_dir)
    lines += budget["lines"]
    sweep = sweep_section(parts.get("sweep") or {}, base, results_dir, out_dir)
    lines += sweep["lines"]
    replication = _replication_section(parts.get("replication"), base, results_dir)
    lines += replication["lines"]
    lines += _claims_summary(budget, sweep, replication)
    return "\n".join(lines).rstrip() + "\n"


def _runs_section(record: dict, results_dir) -> list[str]:
    from bench.runner import read_manifest

    parts = record.get("parts", {})
    runs = [("replication", parts.get("replication")), ("budget", parts.get("budget"))]
    for fp, flow in sorted((parts.get("sweep") or {}).items(), key=lambda kv: bpd_key(kv[1])):
        runs += [(f"sweep, flow `{fp}` ({role})", flow.get(role)) for role in ("selected", "paper")]
    lines = ["## The runs", ""]
    for what, run_id in runs:
        if not run_id:
            lines.append(f"- **{what}**: not run yet")
            continue
        man = read_manifest(find_run(results_dir, run_id))
        p = man["preset"]
        seconds = man.get("last_seconds")
        cost = f"; {seconds / 60:.1f} min of compute" if seconds else ""
        commands = "; ".join(f"`{c}`" for c in man.get("commands") or [man.get("command")])
        lines.append(
            f"- **{what}**: run `{run_id}`, {p['test_images']} test images "
            f"({images_line(man.get('test_images'))}), {p['iters']} iterations, "
            f"model `{man['model'].get('fingerprint')}`{cost}; command(s): {commands}"
        )
    return [*lines, ""]


def _convergence_section(run_id, results_dir, out_dir) -> list[str]:
    from bench import traces

    lines = ["## Convergence", ""]
    if not run_id:
        return [*lines, "The iteration-budget run has not been made yet.", ""]
    run_dir = find_run(results_dir, run_id)
    frame = traces.read_traces(run_dir)
    if frame.empty:
        return [*lines, f"Run `{run_id}` stored no traces.", ""]
    summary = traces.summarize(frame)
    png = Path(out_dir) / FIGURES_DIR / CONVERGENCE_PNG
    _draw_convergence(summary, png)
    steps = sorted(summary["step"].unique())
    lines += [
        f"![PSNR against iteration]({FIGURES_DIR}/{CONVERGENCE_PNG})",
        "",
        f"Mean PSNR (dB) over the {int(summary['n'].max())} test images of run `{run_id}` after "
        "each traced number of Adam steps (step 0 is G(z₀)); the figure adds the 95% band. The "
        "traces are taken from the G(z) each iteration computes anyway.",
        "",
    ]
    body = []
    for (t, m), g in summary.groupby(["task", "method"], sort=True):
        by_step = dict(zip(g["step"], g["mean"], strict=True))
        body.append([t, m, *[num(by_step.get(s, math.nan), 2) for s in steps]])
    lines += [md_table(["task", "method", *[str(s) for s in steps]], body), ""]
    return lines + _peak_lines(traces.peaks(frame))


def _peak_lines(peaks) -> list[str]:
    """The solves that peak before their last step: at the weights chosen for a shorter
    budget, more iterations make them worse (`bench.traces.peaks`)."""
    from bench.traces import PEAK_MARGIN

    if peaks.empty:
        return [f"No solve's mean PSNR falls by more than {PEAK_MARGIN} dB after its peak.", ""]
    body = [[r.task, r.method, num(r.weight, 4), str(r.peak_step), num(r.peak_mean, 2),
             str(r.last_step), num(r.last_mean, 2),
             f"{num(r.fall, 2)} [{num(r.fall_lo, 2)}, {num(r.fall_hi, 2)}]", str(r.n),
             f"{num(r.objective_peak, 1)} → {num(r.objective_last, 1)}"]
            for r in peaks.itertuples()]  # fmt: skip
    header = ["task", "method", "weight", "peak step", "peak dB", "last step", "last dB",
              "fall dB [95%]", "n", "objective, peak → last"]  # fmt: skip
    falling = int((peaks["objective_last"] < peaks["objective_peak"]).sum())
    return [
        f"These solves peak before their last step and then fall by more than {PEAK_MARGIN} dB "
        "(paired per image, peak minus last step). At these weights the solve moves away from "
        f"the image after its peak; for {falling} of the {len(peaks)} the objective still "
        "falls meanwhile, which is consistent with fitting the noise: the weight regularises "
        "partly by stopping the solve early.",
        "",
        md_table(header, body),
        "",
    ]


def _draw_convergence(summary, png: Path) -> None:
    tasks = list(dict.fromkeys(summary["task"]))
    color = colors_of(summary["method"])
    fig, axes = panel_row(len(tasks), 4.2, 3.6)
    for ax, t in zip(axes, tasks, strict=True):
        for m, g in summary[summary["task"] == t].groupby("method", sort=True):
            g = g.sort_values("step")
            ax.plot(g["step"], g["mean"], marker="o", ms=3, label=m, color=color[m])
            ax.fill_between(g["step"], g["lo"], g["hi"], alpha=0.2, color=color[m])
        ax.set_xscale("symlog", linthresh=1)
        ax.set_title(t)
        ax.set_xlabel("Adam steps")
        ax.grid(alpha=0.3)
    title = "Convergence of each solve (bench scale --part budget)"
    finish_row(fig, axes, "PSNR (dB), mean and 95% band", 8, title, png)


def _claim_rows(results: list[dict]) -> dict:
    """(claim key, task) -> comparison of `claim_results`."""
    return {(c["claim"].key, r["task"]): r for c in results for r in c["comparisons"]}


def _budget_section(run_id, base, results_dir) -> dict:
    lines = ["## The iteration budget", ""]
    out = {"lines": lines, "claims": {}}
    if not run_id:
        lines += ["The iteration-budget run has not been made yet.", ""]
        return out
    run = load_run(find_run(results_dir, run_id))
    long_names = {n for frame in test_cells(run).values() for n in frame.index}
    short_cells = cells_of(results_dir, base.manifest["run_id"], images=long_names)
    names = sorted({n for frame in short_cells.values() for n in frame.index})
    long_cells = cells_of(results_dir, run_id, images=names)  # the images both runs restored
    iters, base_iters = run.manifest["preset"]["iters"], base.manifest["preset"]["iters"]
    body = []
    for m, t in sorted(long_cells):
        both = {("long", t): long_cells[(m, t)], ("short", t): short_cells.get((m, t))}
        if both[("short", t)] is None:
            continue
        r = compare(both, "long", "short", t)
        body.append(
            [t, m, diff_text(r), diff_text(r, "ssim", 4), str(r["psnr"]["n"]) if r else "—"]
        )
    lines += [
        f"Each method at the baseline's weight, {iters} − {base_iters} iterations, on the same "
        f"{len(names)} test images:",
        "",
        md_table(["task", "method", "Δ PSNR dB [95%]", "Δ SSIM [95%]", "n"], body),
        "",
        f"The weights are the ones the baseline selected for {base_iters} iterations, as the "
        "study asks; they are not re-selected for "
        f"{iters}. A verdict that flips below may therefore be the selection's, not the "
        "method's: a weight that relied on stopping early (the solves that peak, above) is too "
        f"weak for {iters} steps. A grid search at {iters} iterations (`bench run --table 1 "
        f"--dataset {run.manifest['dataset']} --data-root DIR --iters {iters} --test-images "
        f"{len(names)}`, with `--tasks` for the tasks in question) separates the two.",
        "",
    ]
    lines += _same_trajectory_lines(run, short_cells, base_iters)
    long_claims = _claim_rows(claim_results(run, long_cells))
    short_claims = _claim_rows(claim_results(base, short_cells))
    lines += _claims_pair_table(short_claims, long_claims, f"{base_iters} it.", f"{iters} it.")
    out["claims"] = {"short": short_claims, "long": long_claims}
    return out


def _same_trajectory_lines(run, short_cells: dict, base_iters: int) -> list[str]:
    """The longer solve passes through the baseline's: its trace after the baseline's number
    of steps against the baseline's stored PSNR of the same images (same z₀, same Adam)."""
    from bench import traces

    frame = traces.read_traces(run.run_dir)
    at = frame[frame["step"] == base_iters]
    gaps = []
    for (m, t), g in at.groupby(["method", "task"]):
        short = short_cells.get((m, t))
        if short is None:
            continue
        both = g.set_index("image")["psnr"].to_frame("trace").join(short["psnr"], how="inner")
        both = both[np.isfinite(both["trace"]) & np.isfinite(both["psnr"])]
        gaps.extend((both["trace"] - both["psnr"]).abs().tolist())
    if not gaps:
        return []
    return [
        f"Check: after {base_iters} steps the longer solves' traces equal the baseline's stored "
        f"PSNR of the same images (same z₀, same Adam): mean |Δ| {np.mean(gaps):.4f} dB, max "
        f"{np.max(gaps):.4f} dB over {len(gaps)} image-cells (rounding of the batch size).",
        "",
    ]


def _claims_pair_table(a: dict, b: dict, a_name: str, b_name: str) -> list[str]:
    body = []
    for c in CLAIMS:
        for t in c.tasks:
            ra, rb = a.get((c.key, t)), b.get((c.key, t))
            if ra is None or rb is None:
                continue
            same = "yes" if ra["verdict"] == rb["verdict"] else "**no**"
            if ra["verdict"].startswith(NOT_MEANINGFUL) or rb["verdict"].startswith(NOT_MEANINGFUL):
                same = "undecided"
            body.append(
                [c.text, t, f"{diff_text(ra)} / {diff_text(ra, 'ssim', 4)}", ra["verdict"],
                 f"{diff_text(rb)} / {diff_text(rb, 'ssim', 4)}", rb["verdict"], same]
            )  # fmt: skip
    header = ["claim", "task", f"Δ {a_name} (PSNR / SSIM)", f"verdict, {a_name}",
              f"Δ {b_name} (PSNR / SSIM)", f"verdict, {b_name}", "same verdict"]  # fmt: skip
    return [md_table(header, body), ""]


def _replication_section(run_id, base, results_dir) -> dict:
    lines = ["## Replication on other test images", ""]
    out = {"lines": lines, "claims": {}}
    if not run_id:
        lines += ["The replication run has not been made yet.", ""]
        return out
    run = load_run(find_run(results_dir, run_id))
    lines[0] = f"## Replication on {run.manifest['test_images']['count']} other test images"
    lines += [
        f"Run `{run_id}`: {images_line(run.manifest.get('test_images'))}; the baseline's "
        "methods, tasks and selected weights.",
        "",
    ]
    a, b = _claim_rows(claim_results(base)), _claim_rows(claim_results(run))
    lines += _claims_pair_table(a, b, "baseline", "replication")
    out["claims"] = {"baseline": a, "replication": b}
    return out


def _claims_summary(budget: dict, sweep: dict, replication: dict) -> list[str]:
    lines = ["## Per claim: robust, or an artefact of scale?", ""]
    body = []
    for c in CLAIMS:
        for t in c.tasks:
            key = (c.key, t)
            body.append([c.text, t, _budget_move(budget, key), _sweep_move(sweep, c, t),
                         _replicates(replication, key)])  # fmt: skip
    header = ["claim", "task", "more iterations, at the baseline's weights (before → after)",
              "as the prior improves (selected α)", "replicates on other images"]  # fmt: skip
    return [*lines, md_table(header, body), ""]


def _budget_move(budget: dict, key) -> str:
    claims = budget.get("claims") or {}
    a, b = (claims.get("short") or {}).get(key), (claims.get("long") or {}).get(key)
    if a is None or b is None:
        return "not run"
    da, db = a["psnr"]["mean"], b["psnr"]["mean"]
    word = "stronger" if abs(db) > abs(da) else "weaker"
    if np.sign(da) != np.sign(db):
        word = "changes sign"
    return f"{num(da, 2)} → {num(db, 2)} dB ({word}); verdict {b['verdict']}"


def _sweep_move(sweep: dict, c, t: str) -> str:
    group = [p for p in sweep.get("points", []) if p["b"] == c.b and p["task"] == t
             and p["alpha"] == "selected"]  # fmt: skip
    if not group:
        return "not swept"
    ends = sorted(group, key=lambda p: -(p["bpd"] or 0))
    weak, strong = ends[0], ends[-1]
    span = (f"{num(weak['r']['psnr']['mean'], 2)} dB at {num(weak['bpd'], 2)} bits/dim → "
            f"{num(strong['r']['psnr']['mean'], 2)} dB at {num(strong['bpd'], 2)}")  # fmt: skip
    f = trend(group)
    if f is None:
        return f"{span}; {len(group)} flow(s): no trend yet"
    return f"{span}; {direction(f)} ({num(-f['slope'], 2)} dB per bit/dim less)"


def _replicates(replication: dict, key) -> str:
    claims = replication.get("claims") or {}
    a, b = (claims.get("baseline") or {}).get(key), (claims.get("replication") or {}).get(key)
    if a is None or b is None:
        return "not run"
    if a["verdict"].startswith(NOT_MEANINGFUL) or b["verdict"].startswith(NOT_MEANINGFUL):
        same = "undecided"
    else:
        same = "yes" if a["verdict"] == b["verdict"] else "no"
    return f"{same}: {diff_text(b)} dB, {b['verdict']}"
