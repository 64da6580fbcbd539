"""claims.md: the paper's claims tested on a stored run, written from its stored results (and
the stored realism proxy and timings), identically each time."""

from __future__ import annotations

import math
from pathlib import Path

from bench import config
from bench.atomic import atomic_write_text
from bench.findings.claim_tables import (
    CMP_HEADER,
    claim_evidence,
    comparison_rows,
    exact_note,
    key_numbers,
)
from bench.findings.comparisons import ablation_results, claim_results, defect_results, test_cells
from bench.findings.constants import (
    BOOTSTRAP_RESAMPLES,
    CLAIMS_FILE,
    MIN_FLOW_EPOCHS,
    MIN_FLOW_WIDTH,
    MIN_PAIRED_IMAGES,
    NOT_MEANINGFUL,
    REALISM_FILE,
    REALISTIC_STDS,
    SMOKE_PRESET,
    TIE_PSNR_DB,
    TIE_SSIM,
)
from bench.findings.psnr_convention import convention_section
from bench.findings.realism_proxy import load_realism
from bench.findings.realism_verdict import realism_flow, realism_section
from bench.findings.seeds import seed_section
from bench.findings.timing_verdicts import timing_results, timing_section
from bench.provenance import as_given, rebuild_options
from bench.report import (
    images_line,
    md_table,
    model_line,
    paper_table,
    preset_line,
    run_commands_line,
    summary_frame,
)


def render_claims(data, results_dir: str | Path, out_dir: str | Path | None = None) -> str:
    """The Markdown of claims.md for a loaded run (report.RunData); `out_dir`: where it is
    written, for its rebuild line."""
    results_dir = Path(results_dir)
    man = data.manifest
    labels = man.get("method_labels", {})
    summary = summary_frame(data)
    cells = test_cells(data)
    claims = claim_results(data, cells)
    realism_lines, realism_verdict, realism_evidence = realism_section(
        results_dir, man.get("model")
    )
    timing_lines, timing_verdict, timing_evidence = timing_section(results_dir)
    lines = _header_lines(man, results_dir, out_dir)
    summary_rows = [
        [c["claim"].text, c["verdict"], claim_evidence(c, man.get("model")),
         key_numbers(c["comparisons"])]
        for c in claims
    ]  # fmt: skip
    summary_rows.append(
        [f"latent σ in [{REALISTIC_STDS[0]:g}, {REALISTIC_STDS[1]:g}] gives the most realistic "
         "samples (Figure 1)", realism_verdict, realism_evidence, "see below"]
    )  # fmt: skip
    summary_rows.append(
        ["coupling permutations generate faster than invertible 1×1 convolutions (Table 2)",
         timing_verdict, timing_evidence, "see below"]
    )  # fmt: skip
    lines += [
        md_table(
            ["claim of the paper", "our run", "evidence", "Δ PSNR dB / Δ SSIM (a − b, mean)"],
            summary_rows,
        ),
        "",
    ]
    lines += _table1_claim_lines(claims, man, summary, labels)
    lines += ["## Figure 1: which latent σ gives the most realistic samples", ""]
    lines += realism_lines + [""]
    lines += ["## Table 2: generation time, coupling permutations against 1×1 convolutions", ""]
    lines += timing_lines + [""]
    lines += _ablation_lines(ablation_results(data, cells), summary, labels)
    lines += _paper_convention_lines(summary, man, labels)
    lines += _defect_lines(defect_results(data, cells), labels)
    lines += ["### The PSNR formula", ""] + convention_section(data, summary, labels)
    lines += ["", "### Unseeded noise", ""] + seed_section(results_dir, man)
    return "\n".join(lines) + "\n"


def _header_lines(man: dict, results_dir: Path, out_dir: str | Path | None) -> list[str]:
    """The title, what the claims rest on, how the verdicts are reached, and the Summary
    heading."""
    return [
        f"# The paper's claims, tested on run `{man['run_id']}`",
        "",
        f"- **Test images**: {images_line(man.get('test_images'))}",
        f"- **Preset**: {preset_line(man['preset'])}",
        f"- **Solver**: {man['iters']} iterations per solve, seed {man['seed']}",
        f"- **Model**: {model_line(man.get('model', {}))}",
        run_commands_line(man),
        f"- **Rebuild**: `bench findings --run {man['run_id']}"
        f"{rebuild_options(results_dir, out_dir)}` rewrites this file from the stored results "
        f"(and {as_given(results_dir / REALISM_FILE)}, {as_given(results_dir / 'timing*.csv')}), "
        "identically, "
        "without solving",
        sources_line(man, results_dir),
        "",
        "Differences are paired per image (same test image, same noisy measurement) between "
        "the two methods' reported cells: mean a − b with the Student-t 95% interval, and the "
        f"BCa bootstrap 95% interval ({BOOTSTRAP_RESAMPLES:,} resamples). A claim that A beats "
        "B is *supported* when both the PSNR and the SSIM t-intervals lie above 0; a tie is "
        f"*supported* when both lie inside ±{TIE_PSNR_DB} dB and ±{TIE_SSIM} SSIM. No "
        "correction for multiple comparisons. A verdict needs at least "
        f"{MIN_PAIRED_IMAGES} paired images (below that the t-interval rests on the normality "
        "of a handful of differences and the bootstrap has few distinct resamples) and a flow "
        f"that is not a smoke flow (not the `{SMOKE_PRESET}` preset, at least "
        f"{MIN_FLOW_EPOCHS} epochs, width at least {MIN_FLOW_WIDTH}); short of either it reads "
        f"*{NOT_MEANINGFUL}* and says why. Each verdict states its evidence.",
        "",
        "## Summary",
        "",
    ]


def _table1_claim_lines(claims: list[dict], man: dict, summary, labels: dict) -> list[str]:
    """The Table 1 claims section: every comparison, the note on exact restorations and the
    weights selected at the edge of their grid."""
    lines = ["## Table 1 claims: paired per-image differences", ""]
    body = []
    for c in claims:
        body += comparison_rows(c["comparisons"], labels, c["claim"].text)
    lines += [md_table(CMP_HEADER, body), ""]
    exact = exact_note([r for c in claims for r in c["comparisons"]])
    if exact:
        lines += [exact, ""]
    edges = _edge_notes(man, summary, labels)
    if edges:
        lines += ["Weights selected at the edge of their grid (reported cells):", ""] + edges
        lines.append("")
    return lines


def _ablation_lines(ablation: list[dict], summary, labels: dict) -> list[str]:
    """The ablation section (GlowIP to the solver one ingredient at a time), when the run
    holds 'l1-z0'; else nothing."""
    if not any(r["a"] == "l1-z0" for r in ablation):
        return []
    gw = summary[(summary.method == "glowip")]
    gammas = ", ".join(f"{r.task} γ = {r.weight:g}" for r in gw.itertuples() if r.status == "ok")
    return [
        "## What makes the solver better than GlowIP (ablation, not in the paper)",
        "",
        "The solver differs from GlowIP in its data term (L1, not squared L2), its initial "
        "latent (z₀ ~ N(0, 0.1² I), not 0) and its prior term (α·L(z), not γ‖z‖²). Each row "
        f"changes one of them (GlowIP at its selected weight: {gammas}):",
        "",
        md_table(
            CMP_HEADER[1:-1] + ["ingredient"],
            [row[1:-1] + [r["what"]] for r, row in
             zip(ablation, comparison_rows(ablation, labels), strict=True)],
        ),
        "",
    ]  # fmt: skip


def _paper_convention_lines(summary, man: dict, labels: dict) -> list[str]:
    """Our numbers in the paper's convention beside the published Table 1, then the heading
    of the defects section."""
    return [
        "## Paper convention beside the published Table 1",
        "",
        "Our PSNR in the released code's convention / our SSIM (published values in parentheses).",
        "",
        paper_table(
            summary,
            [m for m in man["methods"] if m in config.PUBLISHED_TABLE1],
            man["tasks"],
            labels,
        ),
        "",
        "## Defects of the released code (PROTOCOL §8), measured",
        "",
    ]


def _defect_lines(defects: list[dict], labels: dict) -> list[str]:
    """Each released-code variant against the method it corrupts, or how to run them."""
    lines = ["### Released-code variants", ""]
    if defects:
        lines += [
            "Each released-code variant against the method it corrupts, same test images and "
            "measurements (variant − corrected):",
            "",
            md_table(CMP_HEADER[1:-1] + ["defect"],
                   [row[1:-1] + [r["what"]] for r, row in
                    zip(defects, comparison_rows(defects, labels), strict=True)]),
            "",
        ]  # fmt: skip
    else:
        lines += ["No released-code variant in this run (add `--methods map-released,"
                  "ours-released` to the run command).", ""]  # fmt: skip
    return lines


def _edge_notes(man: dict, summary, labels: dict) -> list[str]:
    """Selections at the edge of their grid: the best weight may lie outside it."""
    notes = []
    for rec in summary[summary.status == "ok"].itertuples():
        grid = sorted(w for w in man.get("grids", {}).get(rec.method, []) if w is not None)
        if len(grid) < 2 or math.isnan(rec.weight) or rec.source != "valid grid":
            continue
        name = man.get("weight_names", {}).get(rec.method) or "weight"
        if rec.weight in (grid[0], grid[-1]) and not (rec.weight == 0 == grid[0]):
            side = "smallest" if rec.weight == grid[0] else "largest"
            notes.append(
                f"- {labels.get(rec.method, rec.method)} on {rec.task}: {name} = {rec.weight:g}, "
                f"the {side} value of its grid {grid}: the best weight may lie beyond it"
            )
    return notes


def sources_line(man: dict, results_dir: str | Path) -> str:
    """claims.md's header line naming where each part comes from, so that a report mixing
    sources says so: the Table 1 claims from this run; Figure 1's from the realism results
    (this run's flow, or plainly another); Table 2's from a timing (its preset against the
    run's)."""
    results_dir = Path(results_dir)
    run_model = man.get("model") or {}
    run_preset = (man.get("preset") or {}).get("name")
    parts = [f"Table 1 claims: this run (`{man.get('run_id')}`)"]
    df, meta = load_realism(results_dir)
    if df is not None:
        flow = realism_flow(meta, run_model)
        fp = (flow or {}).get("fingerprint")
        if fp and fp == run_model.get("fingerprint"):
            parts.append(
                f"Figure 1: {as_given(results_dir / REALISM_FILE)}, from this run's flow `{fp}`"
            )
        else:
            parts.append(
                f"Figure 1: {as_given(results_dir / REALISM_FILE)}, from **another flow than this "
                "run's** "
                f"({str(meta.get('model', '?')).split(', trained on')[0]})"
            )
    rows, tmeta = timing_results(results_dir)
    if rows:
        preset = tmeta.get("preset")
        note = "" if preset == run_preset else f", not this run's preset `{run_preset}`"
        parts.append(
            f"Table 2: {as_given(results_dir / 'timing.csv')}, timing preset `{preset}`{note} "
            f"(width {tmeta.get('width')}, batch {tmeta.get('batch')}, {tmeta.get('device')}), "
            "measured apart from this run: generation cost does not depend on its images"
        )
    return "- **Sources**: " + "; ".join(parts)


def write_claims(
    run_dir: str | Path,
    results_dir: str | Path = "results",
    out_dir: str | Path = "reports",
) -> Path:
    from bench.report import load_run

    return atomic_write_text(
        Path(out_dir) / CLAIMS_FILE, render_claims(load_run(run_dir), results_dir, out_dir)
    )


def claims_source_of(run_dir: str | Path):
    """What claims.md of this stored run is made from (`bench.provenance.claims_source`)."""
    from bench import provenance as P
    from bench.report import read_manifest

    return P.claims_source(P.run_source(read_manifest(run_dir)))
