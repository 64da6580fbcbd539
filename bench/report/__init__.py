"""Reports built from the results store (never by solving): Table 1 as Markdown, the weight
grid-search curves and Figures 3–6 as PNG.

`write_table1(run_dir, out_dir)` writes, under `out_dir`:

- ``table1.md``: our PSNR / SSIM per method and task (mean with a 95% t-interval over the test
  images), the paper-convention values (PROTOCOL §6) beside the published Table 1, the selected
  weights, skipped and failed cells, and the grid search, under a header that states the data,
  preset, model, command, date and device;
- ``grid_search.png``: mean PSNR against the weight per method, one panel per task (log x axis;
  a weight of 0 is drawn one decade left of the smallest positive weight and labelled 0);
- ``fig3_denoising.png`` … ``fig6_colorization.png``: rows target, measurement and each method,
  on the first 8 test images.

Rows are read with pandas from the CSV files the runner stores (`bench.runner.read_cells`).

The modules: `frames` (the run read into summary and grid frames), `text` (numbers, weights,
Markdown tables), `tables` (table1.md's tables and notes), `header` (the lines on what a report
rests on), `table1` (table1.md and `write_table1`), `grid_figure` (grid_search.png),
`task_figures` (Figures 3–6), `png` (saving a figure), `paths` (file names and the rebuild
command) and `keyed_tables` (the tables keyed by method and task names, the claims' too).
"""

from bench.report.declared import defect_text, figure_file, split_methods
from bench.report.frames import (
    RunData,
    as_run_data,
    cell_rows,
    exact_batches,
    grid_frame,
    grid_stage,
    load_run,
    paper_convention_psnr,
    summary_frame,
)
from bench.report.general import (
    GENERAL_FIGURES,
    GENERAL_FILE,
    general_paths,
    paired_rows,
    part_of,
    render_general,
    write_general,
)
from bench.report.grid_figure import grid_y, write_grid_png
from bench.report.header import (
    images_line,
    model_line,
    preset_line,
    run_commands_line,
    selection_line,
)
from bench.report.paths import (
    GRID_FILE,
    TABLE1_FILE,
    rebuild_command,
    results_of,
    table1_paths,
)
from bench.report.png import DPI, save_png
from bench.report.table1 import console_table, rebuild, render_table1, write_table1
from bench.report.tables import (
    cell_notes,
    exact_notes,
    grid_tables,
    ours_table,
    paper_table,
    weights_table,
)
from bench.report.task_figures import FIGURE_IMAGES, mosaic, write_figure
from bench.report.text import (
    STAGE_WORDS,
    format_weight,
    md_table,
    paper_psnr_text,
    psnr_text,
    weight_text,
)
from bench.runner import read_manifest

__all__ = [
    "DPI",
    "FIGURE_IMAGES",
    "GENERAL_FIGURES",
    "GENERAL_FILE",
    "GRID_FILE",
    "STAGE_WORDS",
    "TABLE1_FILE",
    "RunData",
    "as_run_data",
    "cell_notes",
    "cell_rows",
    "console_table",
    "defect_text",
    "exact_batches",
    "exact_notes",
    "figure_file",
    "format_weight",
    "general_paths",
    "grid_frame",
    "grid_stage",
    "grid_tables",
    "grid_y",
    "images_line",
    "load_run",
    "md_table",
    "model_line",
    "mosaic",
    "ours_table",
    "paper_convention_psnr",
    "paper_psnr_text",
    "paired_rows",
    "paper_table",
    "part_of",
    "preset_line",
    "psnr_text",
    "read_manifest",
    "rebuild",
    "rebuild_command",
    "render_general",
    "render_table1",
    "results_of",
    "run_commands_line",
    "save_png",
    "selection_line",
    "split_methods",
    "summary_frame",
    "table1_paths",
    "weight_text",
    "weights_table",
    "write_general",
    "write_figure",
    "write_grid_png",
    "write_table1",
]
