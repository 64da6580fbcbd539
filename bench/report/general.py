"""general.md and its figures (PROTOCOL §9): every task × every method, on the flow's own test
images and on images it never saw, from the stored runs of `bench run --table general`.

For each test set: PSNR and SSIM (mean ± 95% t-interval over the test images) per task and
method with the best mean per task in bold; the paired per-image difference between the
paper's solver and the best method without a flow, with its 95% interval; the selected
weights; what the run cost; and one figure per task (rows target, measurement, each method).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.atomic import all_or_nothing, atomic_write_text
from bench.report.declared import method_info, plugins_line, split_methods, task_title
from bench.report.frames import RunData, cell_rows, load_run, summary_frame
from bench.report.header import (
    images_line,
    model_line,
    preset_line,
    run_commands_line,
    selection_line,
)
from bench.report.task_figures import FIGURE_IMAGES, write_figure
from bench.report.text import md_table, num, pm, psnr_text, weight_text

GENERAL_FILE = "general.md"
GENERAL_FIGURES = "general"  # the folder of its figures, beside general.md
SOLVER = "ours"  # the paper's solver: the paired differences are taken against it
OOD_CAVEAT = (
    "- **Caveat**: these images are crops of a few photographs (see above); crops of one "
    "photograph are not independent, so the intervals describe these crops, not photographs "
    "in general"
)
PART_TITLES = {
    "in": "In distribution: the flow's own kind of images",
    "ood": "Out of distribution: images the flow never saw",
}


def part_of(man: dict) -> str:
    """'ood' for a run whose images are not from the flow's training dataset, else 'in'."""
    return "ood" if man.get("flow_dataset", man["dataset"]) != man["dataset"] else "in"


def figure_path(part: str, task: str) -> str:
    """A figure's path relative to general.md: 'general/cs-0.1.png', 'general/ood_cs-0.1.png'."""
    return f"{GENERAL_FIGURES}/{'' if part == 'in' else 'ood_'}{task}.png"


def general_paths(out_dir: str | Path, mans: list[dict] | None = None) -> list[Path]:
    """Every file `write_general` writes under `out_dir`: general.md and the figure of each
    task of each run (`mans`: the runs' manifests; none: general.md only)."""
    out = Path(out_dir)
    figs = [out / figure_path(part_of(m), t) for m in mans or [] for t in m["tasks"]]
    return [out / GENERAL_FILE, *figs]


def _best(values: dict[str, float]) -> str | None:
    finite = {m: v for m, v in values.items() if np.isfinite(v) or v == np.inf}
    return max(finite, key=finite.get) if finite else None


def _metric_table(summary, methods, tasks, labels, man, metric: str) -> str:
    """Rows tasks, columns methods: `metric` ('psnr' or 'ssim') mean ± 95% interval, the best
    mean per task in bold, 'n/a' where a method does not apply."""
    body = []
    for t in tasks:
        recs = {m: _rec(summary, m, t) for m in methods}
        best = _best({m: r[metric] for m, r in recs.items() if r.status == "ok"})
        row = [task_title(man, t)]
        for m in methods:
            r = recs[m]
            if r.status != "ok":
                row.append({"skipped": "n/a"}.get(r.status, r.status))
                continue
            text = psnr_text(r) if metric == "psnr" else pm(r.ssim, r.ssim_ci, 3)
            row.append(f"**{text}**" if m == best else text)
        body.append(row)
    return md_table(["task"] + [labels.get(m, m) for m in methods], body)


def _rec(summary, m: str, t: str):
    return summary[(summary.method == m) & (summary.task == t)].iloc[0]


def paired_rows(data: RunData, methods: list[str], tasks: list[str]) -> list[dict]:
    """Per task: the best method without a flow (by mean test PSNR) and the paired per-image
    difference of the paper's solver minus it, in PSNR and SSIM (`findings.verdicts.paired`:
    mean, 95% t-interval, share of images where the solver wins)."""
    from bench.findings.verdicts import paired

    man, summary = data.manifest, summary_frame(data)
    out = []
    for t in tasks:
        ok = {m: _rec(summary, m, t) for m in methods if _rec(summary, m, t).status == "ok"}
        flowless = {
            m: r.psnr for m, r in ok.items() if method_info(man, m).get("needs_flow") is False
        }
        rival = _best(flowless)
        if SOLVER not in ok or rival is None:
            continue
        a = cell_rows(data.rows, "test", SOLVER, t, _weight(ok[SOLVER]))
        b = cell_rows(data.rows, "test", rival, t, _weight(ok[rival]))
        b = b.set_index("image").loc[a["image"]]
        out.append(
            {
                "task": t,
                "rival": rival,
                "best": _best({m: r.psnr for m, r in ok.items()}),
                "psnr": paired(a["psnr"].to_numpy(float), b["psnr"].to_numpy(float)),
                "ssim": paired(a["ssim"].to_numpy(float), b["ssim"].to_numpy(float)),
            }
        )
    return out


def _weight(rec):
    return None if np.isnan(rec.weight) else float(rec.weight)


def _diff_text(r: dict, digits: int) -> str:
    if not np.isfinite(r["lo"]):
        return num(r["mean"], digits)
    return f"{r['mean']:+.{digits}f} [{r['lo']:+.{digits}f}, {r['hi']:+.{digits}f}]"


def _paired_table(data: RunData, methods, tasks, labels) -> list[str]:
    rows = paired_rows(data, methods, tasks)
    if not rows:
        return ["No paired comparison: the paper's solver or every method without a flow is "
                "missing from this run."]  # fmt: skip
    man = data.manifest
    body = [
        [
            task_title(man, r["task"]),
            labels.get(r["best"], r["best"]),
            labels.get(r["rival"], r["rival"]),
            _diff_text(r["psnr"], 2),
            _diff_text(r["ssim"], 3),
            f"{r['psnr']['wins']:.0%}" if np.isfinite(r["psnr"]["wins"]) else "—",
        ]
        for r in rows
    ]
    head = ["task", "best method", "best without a flow", "Ours − it: PSNR (dB) [95%]",
            "SSIM [95%]", "images Ours wins (PSNR)"]  # fmt: skip
    return [
        "Paired per-image differences, the paper's solver minus the best method that needs no "
        "flow on that task (by mean test PSNR); an interval that excludes 0 is a difference "
        "these images establish.",
        "",
        md_table(head, body),
    ]


def _weights_table(summary, methods, tasks, labels, man) -> str:
    body = []
    for t in tasks:
        row = [task_title(man, t)]
        for m in methods:
            r = _rec(summary, m, t)
            if r.status == "skipped":
                row.append("n/a")
            elif not r.weight_name:
                row.append("—")
            else:
                row.append(weight_text(r.weight_symbol, _weight(r)))
        body.append(row)
    return md_table(["task"] + [labels.get(m, m) for m in methods], body)


def cost_line(data: RunData) -> str:
    """Compute time the run's cells took (the sum of each cell's own time) and the wall time
    of its last call."""
    rows = data.rows
    if not len(rows):
        return "nothing computed yet"
    cells = rows.groupby(["stage", "method", "task", "weight"], dropna=False)["seconds"].first()
    total = float(cells.sum())
    by = cells.groupby(level="method").sum().sort_values(ascending=False)
    top = ", ".join(f"{m} {s / 60:.1f}" for m, s in by.items())
    wall = data.manifest.get("last_seconds")
    walls = f"; wall time of its last call {wall / 60:.1f} min" if wall else ""
    return (
        f"{total / 60:.1f} min of cell time in {len(cells)} cells (per method, min: {top}){walls}"
    )


def _part_lines(data: RunData, part: str, out_dir: str | Path | None) -> list[str]:
    from bench.provenance import as_given

    man = data.manifest
    summary = summary_frame(data)
    methods, _ = split_methods(man["methods"], man)
    tasks, labels = man["tasks"], man.get("method_labels", {})
    test = man.get("test_images") or {}
    lines = [
        f"## {PART_TITLES[part]}",
        "",
        f"- **Test images**: {images_line(test)}",
        f"- **Flow trained on**: {man.get('flow_dataset', man['dataset'])}",
        *([OOD_CAVEAT] if part == "ood" else []),
        f"- **Weight selection images**: {images_line(man.get('select_images'))}",
        f"- **Run**: `{man['run_id']}` (`{as_given(data.run_dir)}`)"
        + ("" if man.get("complete") else " — **incomplete: rerun the command to finish**"),
        f"- **Cost**: {cost_line(data)}",
        "",
        f"### PSNR (dB), mean ± 95% interval over {test.get('count', 0)} images; best per task "
        "in bold",
        "",
        _metric_table(summary, methods, tasks, labels, man, "psnr"),
        "",
        "### SSIM, mean ± 95% interval; best per task in bold",
        "",
        _metric_table(summary, methods, tasks, labels, man, "ssim"),
        "",
        "### The paper's solver against the best method without a flow",
        "",
        *_paired_table(data, methods, tasks, labels),
        "",
        "### Selected weights",
        "",
        _weights_table(summary, methods, tasks, labels, man),
        "",
        "### Figures",
        "",
        f"Rows: target (5-bit), what the measurement shows, each method; the first "
        f"{min(FIGURE_IMAGES, test.get('count', 0))} test images.",
    ]
    for t in tasks:
        lines += ["", f"![{task_title(man, t)}]({figure_path(part, t)})"]
    return lines + [""]


def _budget_lines(man: dict, methods: list[str]) -> list[str]:
    """The iterations of each method: the run's for the latent solves, each other method's own
    (its declared `budget`)."""
    own = [(m, method_info(man, m).get("budget")) for m in methods]
    labels = man.get("method_labels", {})
    solves = [labels.get(m, m) for m, b in own if not b]
    lines = []
    if solves:
        lines.append(
            f"- **Iterations**: {man['iters']} Adam iterations per solve for {', '.join(solves)}"
        )
    lines += [f"  - {labels.get(m, m)}: {b}" for m, b in own if b]
    return lines


def render_general(runs: list[RunData], out_dir: str | Path | None = None) -> str:
    """The Markdown of general.md from its runs (the in-distribution run first)."""
    first = runs[0].manifest
    p = first["preset"]
    methods, _ = split_methods(first["methods"], first)
    flows = [m for m in methods if method_info(first, m).get("needs_flow") is not False]
    tasks = ", ".join(task_title(first, t) for t in first["tasks"])
    lines = [
        f"# General table: {len(first['tasks'])} inverse problems × {len(methods)} methods "
        f"(preset `{p['name']}`)",
        "",
        f'Beyond the paper (PROTOCOL §9, README "The general table"): {tasks}; '
        f"{len(flows)} method(s) with the flow prior and {len(methods) - len(flows)} without.",
        "",
        f"- **Flow**: {model_line(first.get('model', {}))}",
        f"- **Preset**: {preset_line(p)}",
        *_budget_lines(first, methods),
        f"- **Weight selection**: {selection_line(first)}, on each test set's own dataset",
        run_commands_line(first),
        f"- **Rebuild**: `{_rebuild(runs, out_dir)}` rewrites this file from the stored "
        "results, identically, without solving",
        f"- **Device**: {first.get('device_description') or first.get('device')}",
        *plugins_line(first),
        "",
    ]
    for data in runs:
        lines += _part_lines(data, part_of(data.manifest), out_dir)
    return "\n".join(lines).rstrip("\n") + "\n"


def _rebuild(runs: list[RunData], out_dir) -> str:
    from bench.provenance import rebuild_options
    from bench.report.paths import results_of

    return "bench report" + rebuild_options(results_of(runs[0].run_dir), out_dir)


def write_general(run_dirs: list[str | Path], out_dir: str | Path = "reports") -> Path:
    """Write general.md and its figures (under OUT/general/) from the stored runs of a general
    table (the in-distribution run first, then the out-of-distribution one, if any); returns
    general.md's path. The table and its figures are replaced together, or none."""
    runs = [load_run(d) for d in run_dirs]
    out = Path(out_dir)
    (out / GENERAL_FIGURES).mkdir(parents=True, exist_ok=True)
    path = out / GENERAL_FILE
    written = set()
    with all_or_nothing():
        for data in runs:
            part = part_of(data.manifest)
            for t in data.manifest["tasks"]:
                written.add(write_figure(data, t, out / figure_path(part, t)))
        atomic_write_text(path, render_general(runs, out_dir))
    for old in (out / GENERAL_FIGURES).glob("*.png"):  # a figure of a task no longer run
        if old not in written:
            old.unlink()
    return path
