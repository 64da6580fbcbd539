"""What the released code's PSNR convention does to the numbers (PROTOCOL §6 and §8): the gaps
between Ours and each method in both conventions."""

from __future__ import annotations

import math

from bench import config
from bench.findings.text import signed
from bench.report import md_table


def _gap(x: float, y: float) -> float:
    """x − y of two means; NaN (undefined) when both are +inf (exact restorations)."""
    if math.isinf(x) and math.isinf(y):
        return math.nan
    return x - y


def _gap_text(v: float) -> str:
    return "undefined (both means +inf)" if math.isnan(v) else signed(v, 2)


def convention_section(data, summary, labels: dict) -> list[str]:
    """What the released PSNR convention does to the numbers: +~24 dB and differences halved."""
    body = []
    for t in data.manifest["tasks"]:
        ours = summary[(summary.method == "ours") & (summary.task == t)]
        if ours.empty or ours.iloc[0].status != "ok":
            continue
        o = ours.iloc[0]
        for rec in summary[(summary.task == t) & (summary.status == "ok")].itertuples():
            if rec.method == "ours" or rec.method not in config.PUBLISHED_TABLE1:
                continue
            std_gap, paper_gap = _gap(o.psnr, rec.psnr), _gap(o.paper_psnr, rec.paper_psnr)
            ratio_ok = all(map(math.isfinite, (std_gap, paper_gap))) and abs(std_gap) > 1e-9
            body.append(
                [t, f"Ours − {labels.get(rec.method, rec.method)}", _gap_text(std_gap),
                 _gap_text(paper_gap), f"{paper_gap / std_gap:.2f}" if ratio_ok else "—"]
            )  # fmt: skip
    if not body:
        return ["No comparable cells."]
    return [
        "The released code's PSNR, 20·log10(255 / MSE^¼) with the MSE pooled over 32 images, "
        "equals (PSNR_std + 48.13) / 2 on a batch: it adds about 24 dB and halves every "
        "difference between methods (pooling the MSE also weights the worst images more). "
        "Reading its MSE on the 0..31 values of the 5-bit images instead of their 8-bit "
        "display (x5 · 8) would add 5·log10(64) = 9.03 dB to every entry. "
        "Gaps between Ours and each method, in both conventions:",
        "",
        md_table(
            [
                "task",
                "gap",
                "standard PSNR dB (mean of images)",
                "paper convention",
                "paper / standard",
            ],
            body,
        ),  # fmt: skip
    ]
