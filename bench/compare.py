"""Two stored Table 1 runs held against each other, image by image (`bench compare`).

When two runs restored the same test images from the same measurements (same test images,
same seed: PROTOCOL §4 seeds every draw per image), the per-image difference of a method's PSNR
and SSIM between the runs isolates what changed between them (a retrained flow, another
preset, a code change) from the image-to-image spread. For each (method, task) reported in
both runs: the mean difference new − baseline with its Student-t and BCa bootstrap 95%
intervals (`bench.findings.paired`), the share of images that improved, and the weights each
run selected. Exact restorations (PSNR +inf) are handled as in claims.md.
"""

from __future__ import annotations

import math
from pathlib import Path

from bench.atomic import atomic_write_text
from bench.errors import BenchError


def comparison_file(new_id: str, base_id: str) -> str:
    """The report's file name: both run ids, so no comparison replaces another."""
    return f"compare-{base_id}-to-{new_id}.md"


def _check_pairable(new_man: dict, base_man: dict) -> None:
    """Paired differences need the same images and the same measurements of them."""
    nk, bk = new_man.get("key", {}), base_man.get("key", {})
    for field, what in (("test_images", "test images"), ("seed", "seed"), ("dataset", "dataset")):
        if nk.get(field) != bk.get(field):
            raise BenchError(
                f"runs {base_man['run_id']} and {new_man['run_id']} differ in their {what} "
                f"({bk.get(field)!r} vs {nk.get(field)!r}): per-image differences need the "
                "same images and measurements; compare runs of the same test set and --seed"
            )


def compare_runs(new_dir: str | Path, base_dir: str | Path) -> list[dict]:
    """Per (method, task) reported in both runs, in the new run's order: paired PSNR and
    SSIM differences new − baseline over the images both restored, and the selected weights.

    Returns dicts with keys method, task, label, weight_new, weight_base, psnr, ssim (the
    `findings.paired` results; PSNR in dB, SSIM unitless), psnr_new, psnr_base (means).
    Raises BenchError when the runs did not restore the same images from the same
    measurements."""
    from bench.findings import paired, test_cells
    from bench.report import load_run, summary_frame

    new, base = load_run(new_dir), load_run(base_dir)
    _check_pairable(new.manifest, base.manifest)
    new_cells, base_cells = test_cells(new), test_cells(base)
    weights = {
        run: {(r.method, r.task): r.weight for r in summary_frame(d).itertuples()}
        for run, d in (("new", new), ("base", base))
    }
    labels = {**base.manifest.get("method_labels", {}), **new.manifest.get("method_labels", {})}
    out = []
    for (method, task), x in new_cells.items():
        y = base_cells.get((method, task))
        if y is None:
            continue
        common = x.index.intersection(y.index)
        if len(common) < 2:
            continue
        x, y = x.loc[common], y.loc[common]
        out.append(
            {
                "method": method,
                "task": task,
                "label": labels.get(method, method),
                "weight_new": weights["new"].get((method, task)),
                "weight_base": weights["base"].get((method, task)),
                "psnr_new": float(x["psnr"].mean()),
                "psnr_base": float(y["psnr"].mean()),
                "psnr": paired(x["psnr"].to_numpy(), y["psnr"].to_numpy()),
                "ssim": paired(x["ssim"].to_numpy(), y["ssim"].to_numpy()),
            }
        )
    return out


def _mean(v: float) -> str:
    return "+inf" if v == math.inf else f"{v:.2f}"


def render_comparison(new_dir: str | Path, base_dir: str | Path, command: str = "") -> str:
    """The Markdown report of `compare_runs`, with both runs' model, preset, images and
    commands in its header."""
    from bench.findings import ci_text, share_text
    from bench.report import images_line, md_table, model_line, preset_line, read_manifest
    from bench.report.text import format_weight

    new_man, base_man = read_manifest(new_dir), read_manifest(base_dir)
    rows = compare_runs(new_dir, base_dir)
    if not rows:
        raise BenchError(
            f"runs {base_man['run_id']} and {new_man['run_id']} share no reported (method, "
            "task) cell: run the same methods and tasks in both"
        )

    def run_lines(name: str, man: dict) -> list[str]:
        cmds = man.get("commands") or [man.get("command") or "(run from Python)"]
        return [
            f"- **{name}** `{man['run_id']}`: model {model_line(man.get('model') or {})}",
            f"  - preset {preset_line(man['preset'])}",
            f"  - commands: {'; '.join(f'`{c}`' for c in cmds)}",
        ]

    body = [
        [
            r["label"], r["task"],
            f"{format_weight(r['weight_base'])} → {format_weight(r['weight_new'])}",
            f"{_mean(r['psnr_base'])} → {_mean(r['psnr_new'])}", ci_text(r["psnr"], 2),
            ci_text(r["ssim"], 4),
            f"{share_text(r['psnr']['wins'])} / {share_text(r['ssim']['wins'])}",
            str(r["psnr"]["n"]),
        ]
        for r in rows
    ]  # fmt: skip
    lines = [
        f"# Run comparison: `{new_man['run_id']}` against the baseline `{base_man['run_id']}`",
        "",
        *run_lines("new", new_man),
        *run_lines("baseline", base_man),
        f"- **Test images** (the same in both, same seed {new_man.get('seed')}, so the same "
        f"measurements): {images_line(new_man.get('test_images'))}",
        f"- **Made by**: `{command or 'bench compare'}`",
        "",
        "Each row pairs a method's reported cell in both runs image by image (each run's own "
        "selected weight): mean difference new − baseline with its 95% Student-t interval; "
        "'improved' is the share of images where the new run is better (PSNR / SSIM).",
        "",
        md_table(
            [
                "method",
                "task",
                "weight (baseline → new)",
                "mean PSNR dB (baseline → new)",
                "Δ PSNR dB [95% CI]",
                "Δ SSIM [95% CI]",
                "improved (PSNR / SSIM)",
                "images",
            ],
            body,
        ),  # fmt: skip
        "",
    ]
    return "\n".join(lines)


def write_comparison(
    new_dir: str | Path, base_dir: str | Path, out_dir: str | Path, command: str = ""
) -> Path:
    """Write `render_comparison` to OUT/compare-<baseline>-to-<new>.md (atomically)."""
    text = render_comparison(new_dir, base_dir, command)
    name = comparison_file(Path(new_dir).name, Path(base_dir).name)
    return atomic_write_text(Path(out_dir) / name, text)
