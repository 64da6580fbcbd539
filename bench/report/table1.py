"""table1.md and its figures from a stored run: the Markdown, the console's copy of its
tables, and `write_table1` / `rebuild` that write them under a reports folder."""

from __future__ import annotations

import math
from pathlib import Path

from bench import config
from bench.atomic import all_or_nothing, atomic_write_text
from bench.report.declared import (
    defect_text,
    figure_caption,
    figure_file,
    figure_number,
    plugins_line,
    split_methods,
)
from bench.report.frames import (
    RunData,
    as_run_data,
    grid_frame,
    grid_stage,
    load_run,
    summary_frame,
)
from bench.report.grid_figure import write_grid_png
from bench.report.header import (
    images_line,
    model_line,
    preset_line,
    run_commands_line,
    selection_line,
)
from bench.report.paths import GRID_FILE, TABLE1_FILE, rebuild_command, table1_tasks
from bench.report.tables import (
    cell_notes,
    exact_notes,
    grid_tables,
    ours_table,
    paper_table,
    weights_table,
)
from bench.report.task_figures import FIGURE_IMAGES, write_figure
from bench.report.text import STAGE_WORDS
from bench.runner import find_run


def render_table1(
    data: RunData | str | Path,
    figures: dict[str, str] | None = None,
    grid_png: str | None = GRID_FILE,
    out_dir: str | Path | None = None,
) -> str:
    """The Markdown of table1.md (`out_dir`: where it is written, for its rebuild line)."""
    data = as_run_data(data)
    man = data.manifest
    summary = summary_frame(data)
    grid = grid_frame(data)
    methods, tasks = man["methods"], man["tasks"]
    main, variants = split_methods(methods, man)
    labels = man.get("method_labels", {})
    n_images = (man.get("test_images") or {}).get("count", 0)
    lines = _header_lines(data, out_dir)
    lines += [
        f"## Our results: PSNR (dB) / SSIM, mean ± 95% interval over {n_images} test images",
        "",
        "Standard PSNR (10·log10(255²/MSE) per image on 8-bit values) and SSIM (Gaussian "
        "window 11, σ 1.5, data range 255), both against the 5-bit clean target at 8 bits.",
        "",
        ours_table(summary, main, tasks, labels),
        "",
    ]
    if variants:
        lines += _variant_lines(summary, variants, tasks, labels, man)
    lines += _paper_lines(summary, main, tasks, labels, n_images)
    lines += ["", "## Selected weights", "", weights_table(summary, methods, tasks, labels)]
    notes = cell_notes(summary, grid, man, labels)
    if notes:
        lines += ["", "## Skipped and failed cells", ""] + notes
    exact = exact_notes(summary, grid, man, labels)
    if exact:
        lines += ["", "## Exact restorations (PSNR +inf)", ""] + exact
    lines += _grid_lines(man, grid, labels, grid_png)
    if figures:
        lines += _figure_lines(figures, n_images, man)
    return "\n".join(lines) + "\n"


def _header_lines(data: RunData, out_dir: str | Path | None) -> list[str]:
    """The title and the list of what the table rests on, then a blank line."""
    from bench.provenance import as_given

    man = data.manifest
    return [
        f"# Table 1: image restoration on {man['dataset']} (preset `{man['preset']['name']}`)",
        "",
        f"- **Test images**: {images_line(man.get('test_images') or {})}",
        f"- **Weight selection**: {selection_line(man)}; selection images: "
        f"{images_line(man.get('select_images'))}",
        f"- **Preset**: {preset_line(man['preset'])}",
        f"- **Solver**: {man['iters']} Adam iterations per solve (lr {man.get('lr')}; MAP "
        f"{config.MAP_LR}), seed {man['seed']}",
        f"- **Model**: {model_line(man.get('model', {}))}",
        run_commands_line(man),
        f"- **Run**: `{man['run_id']}` (`{as_given(data.run_dir)}`), started {man.get('created')}, "
        f"updated {man.get('updated')}"
        + ("" if man.get("complete") else " — **incomplete: rerun the command to finish**"),
        f"- **Rebuild**: `{rebuild_command(data.run_dir, out_dir)}` rewrites this file from "
        "the stored results, identically, without solving",
        f"- **Device**: {man.get('device_description') or man.get('device')}",
        *plugins_line(man),
        "",
    ]


def _variant_lines(
    summary, variants: list[str], tasks: list[str], labels: dict, man: dict
) -> list[str]:
    """The section on the released-code variants and ablations outside the paper's table."""
    lines = [
        "## Variants outside the paper's table",
        "",
        "Released-code variants reproduce a defect of the paper's code (PROTOCOL §8), "
        "ablations isolate one ingredient of a method; both ran on the same images and "
        "measurements as the rows above.",
        "",
        ours_table(summary, variants, tasks, labels),
        "",
    ]
    lines += [f"- {labels.get(m, m)}: {defect_text(m, man)}" for m in variants]
    lines.append("")
    return lines


def _paper_lines(summary, main: list[str], tasks: list[str], labels: dict, n_images: int):
    """The section on the paper's PSNR convention beside the published Table 1."""
    batches = max(1, math.ceil(n_images / config.EVAL_BATCH)) if n_images else 0
    return [
        "## Paper convention beside the published Table 1",
        "",
        f"PSNR as the released code computed it: 20·log10(255 / MSE^¼), the MSE of the 5-bit "
        f"images at 8 bits pooled over batches of {config.EVAL_BATCH} consecutive test images"
        + (f" ({batches} batch(es) here, averaged)" if batches else "")
        + "; it equals (PSNR_std + 48.13) / 2 for the pooled MSE (PROTOCOL §6). SSIM as above. "
        "Published values (paper's convention, 192 CelebA test images) in parentheses.",
        "",
        paper_table(summary, main, tasks, labels),
    ]


def _grid_lines(man: dict, grid, labels: dict, grid_png: str | None) -> list[str]:
    """The grid search section: its tables and figure, or that the run had none."""
    lines = ["", "## Grid search", ""]
    if not len(grid):
        return lines + ["No grid search in this run."]
    test = man.get("test_images") or {}
    lines += [
        f"Mean PSNR (dB) per weight on the {STAGE_WORDS[grid_stage(man)]} "
        f"({(man.get('select_images') or test).get('count')} images); the selected weight "
        "in bold.",
        "",
        grid_tables(grid, man["methods"], man["tasks"], labels, man),
    ]
    if grid_png:
        lines += ["", f"![grid search]({grid_png})"]
    return lines


def _figure_lines(figures: dict[str, str], n_images: int, man: dict) -> list[str]:
    """The figures section (Figures 3–6 when every task is one of the paper's), one image link
    per task figure."""
    paper = all(figure_number(man, t) is not None for t in figures)
    lines = [
        "",
        "## Figures 3–6" if paper else "## Figures",
        "",
        f"Rows: target (5-bit), measurement, each method; the first "
        f"{min(FIGURE_IMAGES, n_images)} test images.",
    ]
    for t, name in figures.items():
        lines += ["", f"![{figure_caption(man, t)}]({name})"]
    return lines


def console_table(data: RunData | str | Path) -> str:
    """The two result tables, for printing after a run."""
    data = as_run_data(data)
    man = data.manifest
    summary = summary_frame(data)
    labels = man.get("method_labels", {})
    return (
        "Our results: PSNR (dB) / SSIM, mean ± 95% interval\n\n"
        + ours_table(summary, man["methods"], man["tasks"], labels)
        + "\n\nPaper convention (released code's pooled PSNR) beside the published values\n\n"
        + paper_table(summary, man["methods"], man["tasks"], labels)
        + "\n\nSelected weights\n\n"
        + weights_table(summary, man["methods"], man["tasks"], labels)
        + "\n"
    )


def write_table1(run_dir: str | Path, out_dir: str | Path = "reports") -> Path:
    """Write table1.md, grid_search.png and Figures 3–6 of a stored run under `out_dir`;
    returns the path of table1.md."""
    data = load_run(run_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / TABLE1_FILE
    with all_or_nothing():  # the table and its figures are replaced together, or none
        write_grid_png(data, out / GRID_FILE)
        figures = {}
        for t in data.manifest["tasks"]:
            name = figure_file(t, data.manifest)
            if write_figure(data, t, out / name) is not None:
                figures[t] = name
        atomic_write_text(path, render_table1(data, figures, GRID_FILE, out_dir))
    for t in table1_tasks(data.manifest):  # a figure left by a run of other tasks would mislead
        if t not in figures:
            (out / figure_file(t, data.manifest)).unlink(missing_ok=True)
    return path


def rebuild(
    results_dir: str | Path = "results",
    out_dir: str | Path = "reports",
    run_id: str | None = None,
) -> Path:
    """`bench report`: the reports of a stored run (default the latest), without solving."""
    return write_table1(find_run(results_dir, run_id), out_dir)
