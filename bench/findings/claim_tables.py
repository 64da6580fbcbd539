"""The rows of claims.md's comparison tables: a paired difference per task with its
intervals, share of wins, p-values, evidence and verdict, and the notes beside them."""

from __future__ import annotations

from bench.findings.evidence import flow_words
from bench.findings.text import boot_text, ci_text, exact_counts, p_text, share_text, signed

CMP_HEADER = [
    "claim",
    "task",
    "difference",
    "Δ PSNR dB [t 95%]",
    "PSNR bootstrap 95%",
    "Δ SSIM [t 95%]",
    "SSIM bootstrap 95%",
    "images a > b (PSNR / SSIM)",
    "paired t-test p (PSNR / SSIM)",
    "evidence",
    "verdict",
]


def key_numbers(comps: list[dict]) -> str:
    """'denoising +1.23 / +0.012; ...': each task's mean PSNR and SSIM differences."""
    parts = [
        f"{r['task']} {signed(r['psnr']['mean'], 2)}{exact_counts(r['psnr'])} / "
        f"{signed(r['ssim']['mean'], 3)}"
        for r in comps
        if "psnr" in r
    ]
    return "; ".join(parts) or "—"


def exact_note(comps: list[dict]) -> str:
    """A paragraph on exact restorations (PSNR +inf) among the comparisons, or ''."""
    hit = [r for r in comps if "psnr" in r and (r["psnr"]["n_exact_a"] or r["psnr"]["n_exact_b"])]
    if not hit:
        return ""
    return (
        "Exact restorations (PSNR +inf, a valid value and the best one, not a divergence): "
        "an image exact on both sides differs by 0 dB, one exact on one side only by ±inf, "
        "which makes the mean PSNR difference infinite and its intervals undefined; the "
        "verdict then rests on the SSIM interval and the sign, or is undetermined. Exact "
        "images per comparison (a, b): "
        + "; ".join(
            f"{r['task']} {r['a']} − {r['b']}: {r['psnr']['n_exact_a']}/{r['psnr']['n']}, "
            f"{r['psnr']['n_exact_b']}/{r['psnr']['n']}"
            for r in hit
        )
        + "."
    )


def comparison_rows(comps: list[dict], labels: dict, claim: str = "") -> list[list[str]]:
    """One row of CMP_HEADER's columns per comparison (dashes for one that did not run)."""
    body = []
    for r in comps:
        name = f"{labels.get(r['a'], r['a'])} − {labels.get(r['b'], r['b'])}"
        if "psnr" not in r:
            body.append([claim, r["task"], name, "—", "—", "—", "—", "—", "—", "—", r["verdict"]])
            continue
        p, s = r["psnr"], r["ssim"]
        body.append(
            [claim, r["task"], name, ci_text(p, 2), boot_text(p, 2), ci_text(s, 4),
             boot_text(s, 4), f"{share_text(p['wins'])} / {share_text(s['wins'])}",
             f"{p_text(p['p'])} / {p_text(s['p'])}", f"n = {p['n']} images",
             r.get("verdict", "")]
        )  # fmt: skip
    return body


def claim_evidence(claim: dict, model: dict | None) -> str:
    """'n = 192 images per task; flow of 24 epoch(s) at width 128'."""
    ns = sorted({r["psnr"]["n"] for r in claim["comparisons"] if "psnr" in r})
    if not ns:
        return "—"
    n = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
    return f"n = {n} images per task; {flow_words(model)}"
