"""The prior-strength part of reports/scale.md (`bench scale --part sweep`): per flow, the
solver's paired margins over the L1 fits without its prior term, GlowIP and BM3D, at the
baseline's α and at the paper's α; a figure of each margin against the flow's validation
bits/dim, and a least-squares trend through the flows (docs/PROTOCOL.md §10)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bench.findings import compare
from bench.report.scale_common import (
    FIGURES_DIR,
    bpd_key,
    cells_of,
    colors_of,
    diff_text,
    finish_row,
    panel_row,
)
from bench.report.text import md_table, num

PRIOR_PNG = "prior_strength.png"

# the solver against: the L1 fits without its prior term, GlowIP, BM3D (sweep comparisons)
SWEEP_PAIRS = (
    ("ours", "l1-z0", "the likelihood term (vs the L1 fit from z₀ = 0, no prior)"),
    ("ours", "ours-released", "the likelihood term (vs α = 0, same z₀)"),
    ("ours", "glowip", "the margin over GlowIP"),
    ("ours", "bm3d", "the margin over BM3D"),
)


def sweep_section(flows: dict, base, results_dir, out_dir) -> dict:
    lines = ["## The prior's strength", ""]
    out = {"lines": lines, "points": []}
    if not flows:
        lines += ["No flow has been swept yet.", ""]
        return out
    points = []
    for fp, flow in sorted(flows.items(), key=lambda kv: bpd_key(kv[1])):
        cells = cells_of(results_dir, flow.get("selected"))
        names = sorted({n for frame in cells.values() for n in frame.index})
        cells.update(cells_of(results_dir, flow.get("paper"), {"ours": "ours@paper"}))
        for (m, t), frame in cells_of(results_dir, base.manifest["run_id"], images=names).items():
            if m == "bm3d":
                cells[(m, t)] = frame
        for a, b, what in SWEEP_PAIRS:
            for alpha, name in (("selected", a), ("paper", f"{a}@paper")):
                for t in base.manifest["tasks"]:
                    r = compare(cells, name, b, t)
                    if r is not None:
                        points.append({"flow": fp, **_flow_info(flow), "what": what, "b": b,
                                       "alpha": alpha, "task": t, "r": r})  # fmt: skip
    out["points"] = points
    lines += _sweep_tables(points)
    if not points:  # flows recorded, but no pair of their cells to compare
        return out
    png = Path(out_dir) / FIGURES_DIR / PRIOR_PNG
    _draw_sweep(points, png)
    lines += [f"![The solver's margins against validation bits/dim]({FIGURES_DIR}/{PRIOR_PNG})", ""]
    lines += _trend_lines(points)
    return out


def _flow_info(flow: dict) -> dict:
    return {"width": flow.get("width"), "epochs": flow.get("epochs"), "bpd": flow.get("val_bpd")}


def _sweep_tables(points: list[dict]) -> list[str]:
    lines = []
    for alpha in ("selected", "paper"):
        sub = [p for p in points if p["alpha"] == alpha]
        if not sub:
            continue
        which = "the baseline's selected α" if alpha == "selected" else "the paper's α"
        lines += [f"The solver at {which} minus the other method, PSNR dB [95%] (n images):", ""]
        body = []
        for p in sorted(sub, key=lambda p: (p["b"], p["task"], -(p["bpd"] or 0))):
            body.append([p["what"], p["task"], str(p["width"]), str(p["epochs"]),
                         num(p["bpd"], 3), diff_text(p["r"]), diff_text(p["r"], "ssim", 4),
                         str(p["r"]["psnr"]["n"])])  # fmt: skip
        header = ["comparison", "task", "width", "epochs", "valid bits/dim", "Δ PSNR dB [95%]",
                  "Δ SSIM [95%]", "n"]  # fmt: skip
        lines += [md_table(header, body), ""]
    return lines


def _draw_sweep(points: list[dict], png: Path) -> None:
    pairs = list(dict.fromkeys((p["b"], p["what"]) for p in points))
    color = colors_of(p["task"] for p in points)
    fig, axes = panel_row(len(pairs), 4.4, 3.8)
    for ax, (b, what) in zip(axes, pairs, strict=True):
        for (task, alpha), group in _groups(points, b):
            group = sorted(group, key=lambda p: p["bpd"])
            x = [p["bpd"] for p in group]
            y = [p["r"]["psnr"]["mean"] for p in group]
            err = [[p["r"]["psnr"]["mean"] - p["r"]["psnr"]["lo"] for p in group],
                   [p["r"]["psnr"]["hi"] - p["r"]["psnr"]["mean"] for p in group]]  # fmt: skip
            ax.errorbar(x, y, yerr=err, marker="o" if alpha == "selected" else "s", ms=3,
                        capsize=2, ls="-" if alpha == "selected" else ":", color=color[task],
                        label=f"{task}, {alpha} α")  # fmt: skip
        ax.axhline(0, color="k", lw=0.8)
        ax.invert_xaxis()  # a stronger prior (fewer bits/dim) to the right
        ax.set_title(what, fontsize=9)
        ax.set_xlabel("validation bits/dim (stronger prior →)")
        ax.grid(alpha=0.3)
    title = "The solver's margins as the prior gets stronger (bench scale --part sweep)"
    finish_row(fig, axes, "Δ PSNR dB (solver − other), 95% interval", 6, title, png)


def _groups(points: list[dict], b: str):
    keyed: dict = {}
    for p in points:
        if p["b"] == b and p["bpd"] is not None:
            keyed.setdefault((p["task"], p["alpha"]), []).append(p)
    return sorted(keyed.items())


def trend(points: list[dict]) -> dict | None:
    """Least-squares line of the mean Δ PSNR on validation bits/dim (scipy.stats.linregress)
    over the flows of one comparison: slope (dB per bit/dim) with its 95% interval; None with
    fewer than 3 flows."""
    from scipy import stats

    pts = [(p["bpd"], p["r"]["psnr"]["mean"]) for p in points if p["bpd"] is not None]
    pts = [(x, y) for x, y in pts if math.isfinite(y)]
    if len(pts) < 3 or len({x for x, _ in pts}) < 2:
        return None
    x, y = np.array(pts).T
    fit = stats.linregress(x, y)
    half = stats.t.ppf(0.975, len(x) - 2) * fit.stderr
    return {"slope": fit.slope, "lo": fit.slope - half, "hi": fit.slope + half,
            "intercept": fit.intercept, "n": len(x), "best_bpd": float(x.min()),
            "at_best": float(fit.intercept + fit.slope * x.min())}  # fmt: skip


def _trend_lines(points: list[dict]) -> list[str]:
    body = []
    for b in dict.fromkeys(p["b"] for p in points):
        for (task, alpha), group in _groups(points, b):
            f = trend(group)
            if f is None:
                continue
            toward = direction(f)
            body.append([group[0]["what"], task, f"{alpha} α", str(f["n"]),
                         f"{num(-f['slope'], 2)} [{num(-f['hi'], 2)}, {num(-f['lo'], 2)}]",
                         toward])  # fmt: skip
    if not body:
        return ["Fewer than 3 flows per comparison: no trend is fitted yet.", ""]
    header = ["comparison", "task", "α", "flows", "dB gained per bit/dim less [95%]", "trend"]
    return [
        "A line through the flows' mean differences against validation bits/dim (least "
        "squares; the interval treats the flows as independent points). The paper reports no "
        "bits/dim for its flow, so where the line points at the paper's prior cannot be read "
        "off: the sign of the slope is the finding.",
        "",
        md_table(header, body),
        "",
    ]


def direction(f: dict) -> str:
    if f["hi"] < 0:
        return "grows as the prior improves"
    if f["lo"] > 0:
        return "shrinks as the prior improves"
    return "no trend resolved"
