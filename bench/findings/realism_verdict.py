"""Figure 1's σ claim tested on the stored realism proxy: the claims.md section, its verdict,
and the flow the proxy sampled."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from bench.findings.constants import (
    MIN_REALISM_SAMPLES,
    REALISM_COMPONENTS,
    REALISM_FLOOR_FACTOR,
    REALISTIC_STDS,
)
from bench.findings.evidence import flow_shortfalls, flow_words, withheld
from bench.findings.realism_proxy import load_realism
from bench.findings.text import count, est, num, signed
from bench.report import md_table

DIFF_SET = "best in range − best outside"


def realism_flow(meta: dict, run_model: dict | None) -> dict | None:
    """The flow the realism proxy sampled: as its meta records it, else the run's own flow
    when the meta's model line names the run's fingerprint; None when unknown."""
    if isinstance(meta.get("flow"), dict):
        return meta["flow"]
    fp = (run_model or {}).get("fingerprint")
    line = str(meta.get("model", ""))
    if fp and f"fingerprint `{fp}`" in line:
        return run_model
    # another flow than the run's: what its model line (`bench.report.model_line`) states
    found = {
        key: re.search(pattern, line)
        for key, pattern in (("fingerprint", r"fingerprint `([^`]+)`"),
                             ("hidden", r"width (\d+)"), ("epochs", r"(\d+) epoch\(s\)"))
    }  # fmt: skip
    if not all(found.values()):
        return None
    flow = {k: m.group(1) for k, m in found.items()}
    return {**flow, "hidden": int(flow["hidden"]), "epochs": int(flow["epochs"])}


def realism_section(results_dir: Path, run_model: dict | None = None) -> tuple[list[str], str, str]:
    """The Figure 1 section of claims.md, its verdict and the evidence it rests on.

    The σ claim is about realistic samples: it is supported only when the best σ inside the
    paper's range beats the best outside it (paired interval below 0) and its distance comes
    within REALISM_FLOOR_FACTOR of the real-vs-real floor (the upper end of its interval);
    not supported when the best outside wins or the interval lies wholly above that bound.
    Withheld ('not meaningful at this size') below MIN_REALISM_SAMPLES samples per σ or for
    a smoke flow (`run_model`: the run's flow, taken as the proxy's when the meta names its
    fingerprint)."""
    df, meta = load_realism(results_dir)
    if df is None:
        return (
            ["Not computed: run `bench findings --realism` with the run's checkpoint."],
            "not measured",
            "—",
        )
    lines = _intro_lines(meta) + [_proxy_table(df)]
    samples = df[df.set == "samples"]
    n = count(samples["n"].iloc[0] if "n" in samples else meta.get("n"))
    repeats = count(df["repeats"].iloc[0] if "repeats" in df else meta.get("repeats"))
    flow = realism_flow(meta, run_model)
    short = ["the number of samples per σ is not recorded"] if n is None else []
    if n is not None and n < MIN_REALISM_SAMPLES:
        short.append(f"{n} samples per σ < {MIN_REALISM_SAMPLES}")
    short += ["the flow is not recorded"] if flow is None else flow_shortfalls(flow)
    evidence = (
        f"{'?' if n is None else n} samples per σ × {'?' if repeats is None else repeats} draws; "
        + ("flow not recorded" if flow is None else flow_words(flow))
    )
    if flow is not None and run_model and flow.get("fingerprint") != run_model.get("fingerprint"):
        evidence += f" (flow `{flow.get('fingerprint')}`, not this run's)"
    conclusion, verdict = _conclusion(df, short, evidence)
    return lines + conclusion, verdict, evidence


def _intro_lines(meta: dict) -> list[str]:
    """What the proxy was computed from and how, then a blank line."""
    return [
        f"- **Model**: {meta.get('model', '?')}",
        f"- **Real images**: {meta.get('real', '?')}",
        f"- **Samples**: {meta.get('n', '?')} per σ (the same standard-normal draws scaled by "
        f"σ, as in Figure 1), seed {meta.get('seed', '?')}; {meta.get('repeats', '?')} "
        "independent draws of the samples and of the real split, averaged (intervals: "
        "Student-t 95% of the mean over the draws)",
        f"- **Command**: `{meta.get('command', '?')}`",
        *(
            [
                "- **Samples the flow generated as NaN or inf** (dropped from the proxies, "
                "over all draws): "
                + ", ".join(f"σ = {k}: {v}" for k, v in meta["nonfinite"].items())
            ]
            if meta.get("nonfinite")
            else []
        ),
        "",
        "Realism proxies (no Inception network offline): the Fréchet distance between Gaussian "
        f"fits in the first {meta.get('components', REALISM_COMPONENTS)} principal components "
        "of the pixels of real set A (lower is more like real images), and the ratio of the "
        "mean squared Laplacian (fine detail and noise) to real set A's (1 is real-like; above "
        "1 noisier, below 1 smoother). Real set B, disjoint from A, gives the floor.",
        "",
    ]


def _proxy_table(df) -> str:
    """The Fréchet distance and HF energy ratio of real set B and of each σ."""
    body = []
    for r in df.itertuples():
        if r.set == DIFF_SET:
            continue
        name = "real set B (floor)" if r.set == "real B" else f"σ = {r.std:g}"
        body.append([name, est(r.fd, r.fd_lo, r.fd_hi), est(r.hf_ratio, r.hf_lo, r.hf_hi)])
    return md_table(["samples", "Fréchet distance [95%]", "HF energy ratio [95%]"], body)


def _conclusion(df, short: list[str], evidence: str) -> tuple[list[str], str]:
    """The lines that conclude the section (none without the paired difference) and the
    verdict, withheld when the evidence falls short (`short`)."""
    samples = df[df.set == "samples"]
    finite = samples[np.isfinite(samples.fd.to_numpy(np.float64))]
    diff = df[df.set == DIFF_SET]
    floor = df[df.set == "real B"].fd.to_numpy(np.float64)
    lo, hi = REALISTIC_STDS
    if finite.empty:
        verdict = "undetermined"
        return ["", f"No σ has a finite Fréchet distance: **{verdict}**."], verdict
    if not len(diff):
        return [], "not measured"
    best = finite.loc[finite.fd.idxmin()]
    inside = finite[(finite["std"] >= lo) & (finite["std"] <= hi)]
    d = diff.iloc[0]
    in_range = lo <= best["std"] <= hi
    b = inside.loc[inside.fd.idxmin()] if len(inside) else None
    f = float(floor[0]) if floor.size else math.nan
    verdict = withheld(_sigma_verdict(d, b, f), short)
    line = (
        f"Lowest Fréchet distance at σ = {best['std']:g} ({'inside' if in_range else 'outside'}"
        f" [{lo:g}, {hi:g}]). Best σ inside the range minus best σ outside it: "
        f"{signed(d.fd, 2)} [{signed(d.fd_lo, 2)}, {signed(d.fd_hi, 2)}] (paired over "
        f"the draws).{_near_text(b, f)} Evidence: {evidence}. Verdict: **{verdict}**."
    )
    return ["", line], verdict


def _sigma_verdict(d, b, f: float) -> str:
    """What the intervals say: `d` the paired difference row (best inside − best outside),
    `b` the best σ inside the range (None without one), `f` the real-vs-real floor."""
    bound = REALISM_FLOOR_FACTOR * f
    if not np.isfinite([d.fd, d.fd_lo, d.fd_hi]).all():
        return "undetermined (interval undefined)"
    if b is None or not np.isfinite([b.fd, b.fd_lo, b.fd_hi, f]).all():
        return "undetermined (no finite floor or σ inside the range)"
    if d.fd_lo > 0:
        return "not supported (a σ outside the range comes closer to real images)"
    if b.fd_lo > bound:
        return (
            f"not supported (the best σ inside the range is {num(b.fd / f, 1)}× the "
            f"real-vs-real floor; at most {REALISM_FLOOR_FACTOR:g}× needed)"
        )
    if d.fd_hi < 0 and b.fd_hi <= bound:
        return "supported"
    return "unresolved"


def _near_text(b, f: float) -> str:
    """' The best σ inside the range, σ = 1, lies at …' against the floor, or ''."""
    if b is None or not np.isfinite([b.fd, f]).all():
        return ""
    bound = REALISM_FLOOR_FACTOR * f
    times = f"{b.fd / f:.1f}× " if f > 0 else ""
    return (
        f" The best σ inside the range, σ = {b['std']:g}, lies at "
        f"{est(b.fd, b.fd_lo, b.fd_hi)}, {times}the real-vs-real floor {num(f, 2)}; "
        f"realistic samples need its interval within {REALISM_FLOOR_FACTOR:g}× the "
        f"floor (≤ {num(bound, 2)})."
    )
