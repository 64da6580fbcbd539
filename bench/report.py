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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import config
from bench.atomic import all_or_nothing, atomic_write, atomic_write_text
from bench.runner import (
    find_run,
    read_cells,
    read_inputs,
    read_manifest,
    run_commands,
    weight_key,
)

FIGURES = {"denoising": 3, "deblurring": 4, "inpainting": 5, "colorization": 6}
FIGURE_IMAGES = 8  # columns of Figures 3–6: the first test images
TABLE1_FILE = "table1.md"
GRID_FILE = "grid_search.png"
WEIGHT_SYMBOLS = {"gamma": "γ", "alpha": "α", "beta": "β"}
STAGE_WORDS = {"select": "selection (valid) images", "test": "test images"}
DPI = 120


def figure_file(task: str) -> str:
    return f"fig{FIGURES[task]}_{task}.png" if task in FIGURES else f"fig_{task}.png"


# ---- reading -----------------------------------------------------------------------------------
@dataclass
class RunData:
    run_dir: Path
    manifest: dict
    rows: object  # pandas DataFrame, one row per image and cell
    cache: dict = field(default_factory=dict)  # summary and grid frames, computed once


def load_run(run_dir: str | Path) -> RunData:
    run_dir = Path(run_dir)
    return RunData(run_dir, read_manifest(run_dir), read_cells(run_dir))


def cell_rows(rows, stage: str, method: str, task: str, weight):
    if len(rows) == 0:
        return rows
    sel = rows[(rows["stage"] == stage) & (rows["method"] == method) & (rows["task"] == task)]
    w = sel["weight"].astype(float)
    if weight is None:
        sel = sel[w.isna()]
    else:
        sel = sel[np.isclose(w, float(weight), rtol=1e-9, atol=0)]
    return sel.sort_values("index")


def paper_convention_psnr(mse5_in_order, batch: int = config.EVAL_BATCH) -> tuple[float, int]:
    """The released code's PSNR (PROTOCOL §6, dB), MSE pooled over consecutive batches of `batch`
    images (a last partial batch included), averaged over batches: (value, batches).

    A batch whose pooled MSE is 0 (every image exact) has a PSNR of +inf, and so has the
    average (see `exact_batches`); no values or a non-finite MSE: (nan, 0)."""
    from bench import metrics

    v = np.asarray(mse5_in_order, dtype=np.float64)
    if v.size == 0 or not np.isfinite(v).all():
        return math.nan, 0
    groups = [v[i : i + batch] for i in range(0, v.size, batch)]
    values = [metrics.paper_psnr(g) for g in groups]
    if any(math.isinf(x) for x in values):
        return math.inf, len(groups)
    return float(np.mean(values)), len(groups)


def exact_batches(mse5_in_order, batch: int = config.EVAL_BATCH) -> int:
    """How many of `paper_convention_psnr`'s batches have a pooled MSE of 0 (PSNR +inf)."""
    v = np.asarray(mse5_in_order, dtype=np.float64)
    return sum(int(np.all(v[i : i + batch] == 0)) for i in range(0, v.size, batch))


def summary_frame(data: RunData | str | Path):
    """One row per (method, task) of the run, in table order: status ('ok', 'failed',
    'skipped', 'not run'), the reported weight and its source, image count, PSNR and SSIM mean
    and 95% half-width, paper-convention PSNR, published values."""
    import pandas as pd

    from bench import metrics

    data = data if isinstance(data, RunData) else load_run(data)
    if "summary" in data.cache:
        return data.cache["summary"]
    man, rows = data.manifest, data.rows
    out = []
    for m in man["methods"]:
        for t in man["tasks"]:
            rec = {
                "method": m,
                "label": man.get("method_labels", {}).get(m, m),
                "task": t,
                "status": "not run",
                "reason": "",
                "weight_name": man.get("weight_names", {}).get(m) or "",
                "weight": math.nan,
                "source": "",
                "cell": "",
                "n": 0,
                "n_diverged": 0,
                "n_exact": 0,  # images restored exactly: PSNR +inf
                "psnr": math.nan,
                "psnr_ci": math.nan,
                "ssim": math.nan,
                "ssim_ci": math.nan,
                "paper_psnr": math.nan,
                "paper_batches": 0,
                "paper_exact": 0,  # batches whose pooled MSE is 0: paper PSNR +inf
                "psnr_finite": math.nan,  # mean PSNR of the images not restored exactly
                "published_psnr": math.nan,
                "published_ssim": math.nan,
            }
            pub = config.PUBLISHED_TABLE1.get(m, {}).get(t)
            if pub:
                rec["published_psnr"], rec["published_ssim"] = pub
            reason = man.get("skipped", {}).get(m, {}).get(t)
            sel = man.get("selection", {}).get(m, {}).get(t)
            if reason and not sel:
                rec.update(status="skipped", reason=reason)
                out.append(rec)
                continue
            if not sel:
                out.append(rec)
                continue
            rec["source"] = sel.get("source", "")
            w = sel.get("weight")
            if w is None and sel.get("failed"):
                stale = _stale_failure(data, m, t)
                if stale:
                    rec.update(reason=stale)  # status stays 'not run'
                else:
                    rec.update(status="failed", reason="every weight of the grid diverged")
                out.append(rec)
                continue
            rec["weight"] = math.nan if w is None else float(w)
            rec["cell"] = man.get("labels", {}).get(m, {}).get(weight_key(w), m)
            cell = cell_rows(rows, "test", m, t, w)
            if len(cell) == 0:
                out.append(rec)
                continue
            diverged = cell["diverged"].astype(bool)
            rec["n"], rec["n_diverged"] = len(cell), int(diverged.sum())
            if diverged.any():
                rec.update(
                    status="failed",
                    reason=f"{int(diverged.sum())}/{len(cell)} images diverged (NaN or inf)",
                )
                out.append(rec)
                continue
            rec["status"] = "ok"
            psnr = cell["psnr"].to_numpy(float)
            exact = np.isposinf(psnr)
            rec["n_exact"] = int(exact.sum())
            if exact.any():
                # the mean of values that include +inf is +inf; no interval can be formed
                rec["psnr"], rec["psnr_ci"] = math.inf, math.nan
                if not exact.all():
                    rec["psnr_finite"] = float(psnr[~exact].mean())
            else:
                rec["psnr"], rec["psnr_ci"] = metrics.mean_ci(psnr)
                rec["psnr_finite"] = rec["psnr"]
            rec["ssim"], rec["ssim_ci"] = metrics.mean_ci(cell["ssim"].to_numpy(float))
            mse = cell["mse5"].to_numpy(float)
            rec["paper_psnr"], rec["paper_batches"] = paper_convention_psnr(mse)
            rec["paper_exact"] = exact_batches(mse)
            out.append(rec)
    data.cache["summary"] = pd.DataFrame(out)
    return data.cache["summary"]


def _stale_failure(data: RunData, method: str, task: str) -> str:
    """For a selection stored as failed (every weight diverged): '' when the stored grid rows
    agree, else why they do not (a selection made before exact restorations, PSNR +inf,
    counted as valid means) and the fix."""
    from bench.runner import best_weight, cell_mean_psnr

    man = data.manifest
    stage = "select" if man.get("select_on") == "valid" else "test"
    means = []
    for w in man.get("grids", {}).get(method, []):
        cell = cell_rows(data.rows, stage, method, task, w) if w is not None else []
        means.append((w, cell_mean_psnr(cell) if len(cell) else math.nan))
    best, best_psnr = best_weight(means)
    if best is None:
        return ""
    return (
        "the stored selection says every weight diverged, but "
        f"{_weight_text(man.get('weight_names', {}).get(method), best)} has a mean PSNR of "
        f"{_num(best_psnr, 2)} dB: rerun the run's command to select and run it"
    )


def grid_frame(data: RunData | str | Path):
    """Mean PSNR (dB; +inf when an image was restored exactly, NaN when one diverged) and SSIM
    per (method, task, weight) on the grid stage's images (the selection images, or the test
    images with select_on='test'), with the image counts n, n_diverged and n_exact (PSNR
    +inf); empty without a grid."""
    import pandas as pd

    from bench.runner import cell_mean_psnr

    data = data if isinstance(data, RunData) else load_run(data)
    if "grid" in data.cache:
        return data.cache["grid"]
    man, rows = data.manifest, data.rows
    stage = "select" if man.get("select_on") == "valid" else "test"
    cols = ["method", "task", "weight", "n", "n_diverged", "n_exact", "psnr", "ssim", "selected"]
    if man.get("weights") != "grid" or len(rows) == 0:
        data.cache["grid"] = pd.DataFrame(columns=cols)
        return data.cache["grid"]
    out = []
    for m in man["methods"]:
        grid = [w for w in man.get("grids", {}).get(m, []) if w is not None]
        if len(grid) < 2:
            continue
        for t in man["tasks"]:
            sel = man.get("selection", {}).get(m, {}).get(t) or {}
            if sel.get("source") not in ("valid grid", "test grid"):
                continue
            for w in grid:
                cell = cell_rows(rows, stage, m, t, w)
                if len(cell) == 0:
                    continue
                div = cell["diverged"].astype(bool)
                ok = not div.any()
                chosen = sel.get("weight")
                out.append(
                    {
                        "method": m,
                        "task": t,
                        "weight": float(w),
                        "n": len(cell),
                        "n_diverged": int(div.sum()),
                        "n_exact": int(np.isposinf(cell["psnr"].to_numpy(float)).sum()),
                        # +inf when an image is exact, NaN when one diverged
                        "psnr": cell_mean_psnr(cell),
                        "ssim": float(cell["ssim"].mean()) if ok else math.nan,
                        "selected": chosen is not None and math.isclose(float(chosen), float(w)),
                    }
                )
    data.cache["grid"] = pd.DataFrame(out, columns=cols)
    return data.cache["grid"]


# ---- formatting --------------------------------------------------------------------------------
def _num(v: float, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if math.isinf(v):
        return "+inf" if v > 0 else "-inf"
    return f"{v:.{digits}f}"


def _exact_text(k: int, n: int) -> str:
    """'all 4 images exact' or '3/4 images exact'."""
    return f"all {n} images exact" if k == n else f"{k}/{n} images exact"


def psnr_text(rec) -> str:
    """A summary row's mean PSNR with its 95% interval; a mean that includes exact images
    (PSNR +inf) is '+inf (3/4 images exact, interval undefined)'."""
    if rec.n_exact:
        return f"+inf ({_exact_text(int(rec.n_exact), int(rec.n))}, interval undefined)"
    return _pm(rec.psnr, rec.psnr_ci, 2)


def paper_psnr_text(rec) -> str:
    """A summary row's paper-convention PSNR; +inf names the batches whose pooled MSE is 0."""
    if rec.paper_exact:
        return f"+inf (pooled MSE 0 in {int(rec.paper_exact)}/{int(rec.paper_batches)} batches)"
    return _num(rec.paper_psnr, 2)


def _pm(mean: float, half: float, digits: int) -> str:
    if math.isnan(half) or math.isinf(mean):
        return _num(mean, digits)
    return f"{_num(mean, digits)} ± {_num(half, digits)}"


def format_weight(w) -> str:
    if w is None or (isinstance(w, float) and math.isnan(w)):
        return "—"
    short = f"{float(w):g}"
    return short if float(short) == float(w) else repr(float(w))


def _weight_text(name: str | None, w) -> str:
    if not name:
        return "no weight"
    return f"{WEIGHT_SYMBOLS.get(name, name)} = {format_weight(w)}"


def _status_text(rec) -> str:
    if rec["status"] == "skipped":
        return "n/a"
    if rec["status"] == "failed":
        return f"**failed** ({rec['reason']})"
    if rec["status"] == "not run":
        return "not run"
    return ""


def md_table(header: list[str], body: list[list[str]]) -> str:
    """A Markdown table (header row, separator, one row per list of cell texts)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _task_title(t: str) -> str:
    return t.capitalize()


def ours_table(summary, methods: list[str], tasks: list[str], labels: dict) -> str:
    body = []
    for m in methods:
        row = [labels.get(m, m)]
        for t in tasks:
            rec = summary[(summary.method == m) & (summary.task == t)].iloc[0]
            row.append(_status_text(rec) or (f"{psnr_text(rec)} / {_pm(rec.ssim, rec.ssim_ci, 3)}"))
        body.append(row)
    return md_table(["method"] + [_task_title(t) for t in tasks], body)


def paper_table(summary, methods: list[str], tasks: list[str], labels: dict) -> str:
    body = []
    for m in methods:
        row = [labels.get(m, m)]
        for t in tasks:
            rec = summary[(summary.method == m) & (summary.task == t)].iloc[0]
            pub = (
                f"{_num(rec.published_psnr, 2)} / {_num(rec.published_ssim, 3)}"
                if not math.isnan(rec.published_psnr)
                else "—"
            )
            ours = _status_text(rec) or f"{paper_psnr_text(rec)} / {_num(rec.ssim, 3)}"
            row.append(f"{ours} (paper: {pub})")
        body.append(row)
    return md_table(["method"] + [_task_title(t) for t in tasks], body)


def weights_table(summary, methods: list[str], tasks: list[str], labels: dict) -> str:
    body = []
    for m in methods:
        row = [labels.get(m, m)]
        for t in tasks:
            rec = summary[(summary.method == m) & (summary.task == t)].iloc[0]
            if rec.status == "skipped":
                row.append("n/a")
            elif not rec.source:
                row.append("not run")
            elif rec.status == "failed" and not rec.cell:
                row.append(f"none ({rec.reason})")
            elif rec.status == "not run" and not rec.cell:
                row.append("none yet (rerun the command)")
            elif not rec.weight_name:
                row.append("no weight")
            else:
                w = None if math.isnan(rec.weight) else rec.weight
                row.append(f"{_weight_text(rec.weight_name, w)} ({rec.source})")
        body.append(row)
    return md_table(["method"] + [_task_title(t) for t in tasks], body)


def grid_tables(
    grid, methods: list[str], tasks: list[str], labels: dict, weight_names: dict
) -> str:
    parts = []
    for t in tasks:
        sub = grid[grid.task == t]
        if len(sub) == 0:
            continue
        weights = sorted(set(sub.weight))
        body = []
        for m in methods:
            ms = sub[sub.method == m]
            if len(ms) == 0:
                continue
            row = [f"{labels.get(m, m)} ({WEIGHT_SYMBOLS.get(weight_names.get(m), '')})"]
            for w in weights:
                c = ms[np.isclose(ms.weight, w)]
                if len(c) == 0:
                    row.append("")
                    continue
                c = c.iloc[0]
                if c.n_diverged:
                    text = f"failed ({c.n_diverged}/{c.n})"
                elif c.n_exact:
                    text = f"+inf ({c.n_exact}/{c.n} exact)"
                else:
                    text = _num(c.psnr, 2)
                row.append(f"**{text}**" if c.selected else text)
            body.append(row)
        parts.append(
            f"**{_task_title(t)}**\n\n"
            + md_table(["method"] + [format_weight(w) for w in weights], body)
        )
    return "\n\n".join(parts)


def exact_notes(summary, grid, man: dict, labels: dict) -> list[str]:
    """One line per reported cell and grid cell with images restored exactly (PSNR +inf: a
    valid value, the best one, and not a divergence): how many, and what that does to the
    mean and its interval."""
    notes = []
    for rec in summary[(summary.status == "ok") & (summary.n_exact > 0)].itertuples():
        k, n = int(rec.n_exact), int(rec.n)
        rest = (
            "" if k == n else f"; the other {n - k} image(s) average {_num(rec.psnr_finite, 2)} dB"
        )
        notes.append(
            f"- {rec.label} on {rec.task}: {k}/{n} test images restored exactly (PSNR +inf), so "
            f"the mean PSNR is +inf and its 95% interval is undefined{rest}; SSIM "
            f"{_pm(rec.ssim, rec.ssim_ci, 3)}"
        )
    exact_grid = grid[grid.n_exact > 0] if len(grid) else grid
    for rec in exact_grid.itertuples():
        notes.append(
            f"- {labels.get(rec.method, rec.method)} on {rec.task}, "
            f"{_weight_text(man.get('weight_names', {}).get(rec.method), rec.weight)} (grid): "
            f"{rec.n_exact}/{rec.n} images exact, mean PSNR +inf"
            + (" (selected: ties go to the earlier grid value)" if rec.selected else "")
        )
    return notes


def images_line(info: dict | None) -> str:
    if not info:
        return "none"
    span = f"{info['first']} … {info['last']}" if info.get("first") else "no files"
    files = "" if span in info["label"] else f", files {span}"
    extra = f"; {len(info['skipped'])} unreadable skipped" if info.get("skipped") else ""
    return f"{info['label']} — {info['count']} images{files}{extra}"


def model_line(model: dict) -> str:
    parts = [f"{model.get('arch', '?')} flow", f"width {model.get('hidden', '?')}"]
    if model.get("num_params") is not None:
        parts.append(f"{int(model['num_params']):,} parameters")
    parts.append(f"fingerprint `{model.get('fingerprint', '?')}`")
    bpd = model.get("val_bpd")
    parts.append(
        f"validation {bpd:.3f} bits/dim"
        if isinstance(bpd, (int, float))
        else "validation bits/dim unknown"
    )
    if model.get("epochs") is not None:
        planned = model.get("epochs_planned")
        parts.append(f"{model['epochs']} epoch(s)" + (f" of {planned}" if planned else ""))
    if model.get("dataset_label") or model.get("dataset"):
        parts.append(f"trained on {model.get('dataset_label') or model.get('dataset')}")
    if model.get("path"):
        parts.append(f"checkpoint `{model['path']}`")
    return ", ".join(parts)


def preset_line(p: dict) -> str:
    grids = f"γ grid {list(p.get('gamma_grid', []))}, α grid {list(p.get('alpha_grid', []))}"
    return (
        f"`{p['name']}` (width {p['hidden']}, {p['epochs']} epoch(s), {p['test_images']} "
        f"test images, {p['select_images']} selection images, {p['iters']} iterations, "
        f"{grids}); the protocol is the same for every preset"
    )


def _selection_line(man: dict) -> str:
    if man.get("weights") == "paper":
        return "the paper's chosen weights (`--weights paper`), no grid search"
    if man.get("select_on") == "test":
        return (
            "grid search directly on the test images, best mean PSNR reported "
            "(`--select-on test`: the paper's practice, optimistic)"
        )
    return (
        "grid search on the selection images (valid partition), the best weight per method "
        "and task by mean PSNR then run on the test images"
    )


def split_methods(methods: list[str]) -> tuple[list[str], list[str]]:
    """(Table 1's methods, the other registered variants such as the released-code ones)."""
    from bench.methods import DEFAULT_METHODS

    return [m for m in methods if m in DEFAULT_METHODS], [
        m for m in methods if m not in DEFAULT_METHODS
    ]


def defect_text(method: str) -> str:
    from bench.runner import _registry

    m = _registry().get_method(method)
    return (
        getattr(m, "defect", None)
        or (f"ablation: {m.ablation}" if getattr(m, "ablation", None) else None)
        or "a variant, not in the paper's table"
    )


def run_commands_line(man: dict) -> str:
    cmds = run_commands(man) or ["(run from Python)"]
    if len(cmds) == 1:
        return f"- **Run command**: `{cmds[0]}`"
    return "- **Run commands** (each added cells to this run): " + "; ".join(f"`{c}`" for c in cmds)


def render_table1(
    data: RunData | str | Path,
    figures: dict[str, str] | None = None,
    grid_png: str | None = GRID_FILE,
    out_dir: str | Path | None = None,
) -> str:
    """The Markdown of table1.md (`out_dir`: where it is written, for its rebuild line)."""
    from bench.provenance import as_given

    data = data if isinstance(data, RunData) else load_run(data)
    man = data.manifest
    summary = summary_frame(data)
    grid = grid_frame(data)
    methods, tasks = man["methods"], man["tasks"]
    main, variants = split_methods(methods)
    labels = man.get("method_labels", {})
    test = man.get("test_images") or {}
    n_images = test.get("count", 0)
    batches = max(1, math.ceil(n_images / config.EVAL_BATCH)) if n_images else 0
    lines = [
        f"# Table 1: image restoration on {man['dataset']} (preset `{man['preset']['name']}`)",
        "",
        f"- **Test images**: {images_line(test)}",
        f"- **Weight selection**: {_selection_line(man)}; selection images: "
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
        "",
        f"## Our results: PSNR (dB) / SSIM, mean ± 95% interval over {n_images} test images",
        "",
        "Standard PSNR (10·log10(255²/MSE) per image on 8-bit values) and SSIM (Gaussian "
        "window 11, σ 1.5, data range 255), both against the 5-bit clean target at 8 bits.",
        "",
        ours_table(summary, main, tasks, labels),
        "",
    ]
    if variants:
        lines += [
            "## Variants outside the paper's table",
            "",
            "Released-code variants reproduce a defect of the paper's code (PROTOCOL §8), "
            "ablations isolate one ingredient of a method; both ran on the same images and "
            "measurements as the rows above.",
            "",
            ours_table(summary, variants, tasks, labels),
            "",
        ]
        lines += [f"- {labels.get(m, m)}: {defect_text(m)}" for m in variants]
        lines.append("")
    lines += [
        "## Paper convention beside the published Table 1",
        "",
        f"PSNR as the released code computed it: 20·log10(255 / MSE^¼), the MSE of the 5-bit "
        f"images at 8 bits pooled over batches of {config.EVAL_BATCH} consecutive test images"
        + (f" ({batches} batch(es) here, averaged)" if batches else "")
        + "; it equals (PSNR_std + 48.13) / 2 for the pooled MSE (PROTOCOL §6). SSIM as above. "
        "Published values (paper's convention, 192 CelebA test images) in parentheses.",
        "",
        paper_table(summary, main, tasks, labels),
        "",
        "## Selected weights",
        "",
        weights_table(summary, methods, tasks, labels),
    ]
    notes = []
    for rec in summary.itertuples():
        if rec.status == "skipped":
            notes.append(f"- {rec.label} on {rec.task}: skipped — {rec.reason}")
        elif rec.status == "failed":
            notes.append(f"- {rec.label} on {rec.task}: **failed** — {rec.reason}")
        elif rec.status == "not run":
            notes.append(
                f"- {rec.label} on {rec.task}: not run yet"
                + (f" — {rec.reason}" if rec.reason else "")
            )
    failed_grid = grid[grid.n_diverged > 0] if len(grid) else grid
    for rec in failed_grid.itertuples():
        notes.append(
            f"- {labels.get(rec.method, rec.method)} on {rec.task}, "
            f"{_weight_text(man['weight_names'].get(rec.method), rec.weight)} (grid): "
            f"**failed** — {rec.n_diverged}/{rec.n} images diverged"
        )
    if notes:
        lines += ["", "## Skipped and failed cells", ""] + notes
    exact = exact_notes(summary, grid, man, labels)
    if exact:
        lines += ["", "## Exact restorations (PSNR +inf)", ""] + exact
    stage = "select" if man.get("select_on") == "valid" else "test"
    lines += ["", "## Grid search", ""]
    if len(grid):
        lines += [
            f"Mean PSNR (dB) per weight on the {STAGE_WORDS[stage]} "
            f"({(man.get('select_images') or test).get('count')} images); the selected weight "
            "in bold.",
            "",
            grid_tables(grid, methods, tasks, labels, man.get("weight_names", {})),
        ]
        if grid_png:
            lines += ["", f"![grid search]({grid_png})"]
    else:
        lines.append("No grid search in this run.")
    if figures:
        lines += [
            "",
            "## Figures 3–6",
            "",
            f"Rows: target (5-bit), measurement, each method; the first "
            f"{min(FIGURE_IMAGES, n_images)} test images.",
        ]
        for t, name in figures.items():
            lines += ["", f"![Figure {FIGURES.get(t, '')}: {t}]({name})"]
    return "\n".join(lines) + "\n"


def console_table(data: RunData | str | Path) -> str:
    """The two result tables, for printing after a run."""
    data = data if isinstance(data, RunData) else load_run(data)
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


# ---- plots -------------------------------------------------------------------------------------
def _save(fig, path: Path) -> Path:
    atomic_write(
        path, lambda f: fig.savefig(f, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.08)
    )
    return path


def write_grid_png(data: RunData | str | Path, path: str | Path) -> Path:
    """PSNR against the weight per method, one panel per task; 0 drawn one decade left of the
    smallest positive weight on the log axis and labelled 0."""
    from matplotlib.figure import Figure

    data = data if isinstance(data, RunData) else load_run(data)
    man = data.manifest
    grid = grid_frame(data)
    tasks = [t for t in man["tasks"] if len(grid) and (grid.task == t).any()]
    if not tasks:
        fig = Figure(figsize=(5, 1.5))
        fig.text(0.5, 0.5, "no grid search in this run", ha="center", va="center")
        return _save(fig, Path(path))
    positive = [w for w in grid.weight if w > 0]
    zero_at = (min(positive) / 10) if positive else 1e-3
    any_inf = bool(np.isposinf(grid.psnr.to_numpy(float)).any())
    fig = Figure(figsize=(4.2 * len(tasks), 3.4), layout="constrained")
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    labels = man.get("method_labels", {})
    stage = "select" if man.get("select_on") == "valid" else "test"
    for ax, t in zip(axes, tasks, strict=True):
        sub = grid[grid.task == t]
        ticks = sorted(set(sub.weight))
        _, top = grid_y(sub.psnr)
        finite = sub.psnr[np.isfinite(sub.psnr.to_numpy(float))]
        for m in man["methods"]:
            ms = sub[sub.method == m].sort_values("weight")
            if len(ms) == 0:
                continue
            xs = np.array([w if w > 0 else zero_at for w in ms.weight])
            ys, _ = grid_y(ms.psnr, top)
            sym = WEIGHT_SYMBOLS.get(man.get("weight_names", {}).get(m), "")
            line = ax.plot(xs, ys, marker="o", label=f"{labels.get(m, m)} ({sym})")[0]
            inf = np.isposinf(ms.psnr.to_numpy(float))
            if inf.any():  # exact restorations: drawn on the +inf line, not dropped
                ax.plot(
                    xs[inf],
                    ys[inf],
                    marker="^",
                    markersize=9,
                    color=line.get_color(),
                    linestyle="none",
                )
            chosen = ms.selected.to_numpy(bool)
            if chosen.any():
                ax.plot(
                    xs[chosen],
                    ys[chosen],
                    marker="*",
                    markersize=14,
                    color=line.get_color(),
                    linestyle="none",
                )
            bad = ms[ms.n_diverged > 0]
            if len(bad):
                bx = [w if w > 0 else zero_at for w in bad.weight]
                ymin = float(finite.min()) if len(finite) else (top if top is not None else 0.0)
                ax.plot(bx, [ymin] * len(bx), marker="x", color=line.get_color(), linestyle="none")
        if top is not None:
            ax.axhline(top, color="0.5", linestyle=":", linewidth=1)
        if top is not None and not len(finite):  # every mean +inf: the height means only that
            ax.set_yticks([top], ["+inf"])
        elif top is not None:  # finite ticks below the +inf line, which is labelled +inf
            y0, y1 = ax.get_ylim()
            gap = top - float(finite.max())
            yticks = [float(y) for y in ax.get_yticks() if y0 <= y <= top - gap / 2]
            ax.set_yticks(yticks + [top], [f"{y:g}" for y in yticks] + ["+inf"])
            ax.set_ylim(y0, max(y1, top + gap / 4))
        ax.set_xscale("log")
        ax.set_xticks([w if w > 0 else zero_at for w in ticks])
        ax.set_xticklabels([format_weight(w) for w in ticks], rotation=45, fontsize=8)
        ax.minorticks_off()
        ax.set_title(t)
        ax.set_xlabel(
            "weight (log scale; 0 drawn one decade left)" if 0.0 in ticks else "weight (log scale)"
        )
        ax.set_ylabel("mean PSNR (dB)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    _fitted_suptitle(
        fig,
        f"Grid search on the {STAGE_WORDS[stage]} (★ selected, × diverged"
        + (", ▲ +inf: an image restored exactly" if any_inf else "")
        + ") — "
        f"{man['dataset']}, preset {man['preset']['name']}",
    )
    return _save(fig, Path(path))


def _fitted_suptitle(fig, title: str, fontsize: float = 10) -> None:
    """`fig`'s title wrapped to its width (`bench.plots`), the figure made taller by the
    lines it added (its constrained layout keeps the title clear of the axes)."""
    from bench.plots import text_height_in, wrap_title

    wrapped = wrap_title(fig, title, fontsize)
    extra = text_height_in(fig, wrapped, fontsize) - text_height_in(fig, "Hg", fontsize)
    if wrapped != title and extra > 0:
        fig.set_size_inches(fig.get_figwidth(), fig.get_figheight() + extra)
    fig.suptitle(wrapped, fontsize=fontsize)


def grid_y(psnr, top: float | None = None) -> tuple[np.ndarray, float | None]:
    """Plot heights for mean PSNRs (dB) on a linear axis: finite values as they are, NaN (a
    diverged cell) as a gap, +inf (an exact restoration) on a line `top` above the finite
    values (matplotlib would silently drop it). Returns (heights, top); `top` is computed
    when not given (None when there is no +inf)."""
    v = np.asarray(psnr, dtype=np.float64)
    inf = np.isposinf(v)
    if top is None and inf.any():
        fin = v[np.isfinite(v)]
        if fin.size:
            lo, hi = float(fin.min()), float(fin.max())
            top = hi + max(1.0, 0.15 * (hi - lo))
        else:
            top = 0.0
    ys = v.copy()
    ys[~np.isfinite(v)] = np.nan
    if inf.any():
        ys[inf] = top
    return ys, top


def _hwc(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(1, 2, 0))


def write_figure(
    data: RunData | str | Path, task: str, path: str | Path, n_images: int = FIGURE_IMAGES
) -> Path | None:
    """One of Figures 3–6: rows target, measurement and each method that ran on the task
    (its reported cell), columns the first `n_images` test images. None without inputs."""

    from bench.runner import read_restored

    data = data if isinstance(data, RunData) else load_run(data)
    man = data.manifest
    inputs = read_inputs(data.run_dir, task)
    if inputs is None:
        return None
    n = min(n_images, len(inputs["names"]))
    summary = summary_frame(data)
    rows: list[tuple[str, np.ndarray | None]] = [
        ("target", inputs["target"][:n]),
        ("measurement", inputs["measurement"][:n]),
    ]
    main, _ = split_methods(man["methods"])
    for rec in summary[summary.task == task].itertuples():
        if rec.method not in main or rec.status not in ("ok", "failed") or not rec.cell:
            continue
        imgs = read_restored(data.run_dir, rec.cell, task)
        w = None if math.isnan(rec.weight) else rec.weight
        name = rec.label + ("" if not rec.weight_name else f"\n{_weight_text(rec.weight_name, w)}")
        if rec.status == "failed":
            name += "\n(failed)"
        rows.append((name, None if imgs is None else imgs[:n]))
    return _save(
        _mosaic(
            rows,
            n,
            f"Figure {FIGURES.get(task, '')}: {task} — "
            f"{man['dataset']}, preset {man['preset']['name']}",
        ),
        Path(path),
    )


def _mosaic(rows: list[tuple[str, np.ndarray | None]], n: int, title: str):
    """One image of rows × n tiles (white gaps; a missing row stays gray) with row labels:
    a single Axes, so that even a 7 × 8 figure draws in a fraction of a second."""
    from matplotlib.figure import Figure

    size, gap = config.IMAGE_SIZE, 2
    step = size + gap
    canvas = np.full((len(rows) * step + gap, n * step + gap, 3), 255, dtype=np.uint8)
    for r, (_, imgs) in enumerate(rows):
        for c in range(n):
            y, x = gap + r * step, gap + c * step
            if imgs is not None and c < len(imgs):
                canvas[y : y + size, x : x + size] = _hwc(imgs[c])
            else:
                canvas[y : y + size, x : x + size] = 200
    from bench.plots import text_height_in, wrap_title

    tile_in = 0.85
    label_in = 1.3
    width = label_in + n * tile_in
    fig = Figure(figsize=(width, len(rows) * tile_in))
    title = wrap_title(fig, title, 10)  # fits the width; its lines get the room they need
    height = len(rows) * tile_in + max(0.45, 0.12 + text_height_in(fig, title, 10) + 0.1)
    fig.set_size_inches(width, height)
    ax = fig.add_axes((label_in / width, 0.0, n * tile_in / width, len(rows) * tile_in / height))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    for r, (name, _) in enumerate(rows):
        ax.text(-gap * 2, gap + r * step + size / 2, name, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10, y=1 - 0.12 / height, va="top")
    return fig


# ---- entry points ------------------------------------------------------------------------------
def results_of(run_dir: str | Path) -> Path:
    """The results folder (as given) that holds the stored run `run_dir` (RESULTS/runs/ID)."""
    return Path(run_dir).parent.parent


def rebuild_command(run_dir: str | Path, out_dir: str | Path | None = None) -> str:
    """`bench report` for this run, with the --results and --out that make it work exactly
    as printed from the folder the report was written from."""
    from bench.provenance import rebuild_options

    run_dir = Path(run_dir)
    return f"bench report --run {run_dir.name}{rebuild_options(results_of(run_dir), out_dir)}"


def table1_paths(out_dir: str | Path) -> list[Path]:
    """Every file `write_table1` writes or removes under `out_dir` (the table, the grid
    figure, Figures 3–6 of every task)."""
    out = Path(out_dir)
    return [out / TABLE1_FILE, out / GRID_FILE] + [out / figure_file(t) for t in FIGURES]


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
            name = figure_file(t)
            if write_figure(data, t, out / name) is not None:
                figures[t] = name
        atomic_write_text(path, render_table1(data, figures, GRID_FILE, out_dir))
    for t in FIGURES:  # a figure left by an earlier run of other tasks would be mistaken
        if t not in figures:
            (out / figure_file(t)).unlink(missing_ok=True)
    return path


def rebuild(
    results_dir: str | Path = "results",
    out_dir: str | Path = "reports",
    run_id: str | None = None,
) -> Path:
    """`bench report`: the reports of a stored run (default the latest), without solving."""
    return write_table1(find_run(results_dir, run_id), out_dir)
