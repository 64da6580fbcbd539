"""Table 2's claim tested on the stored timings of `bench ablation --timing`: the ratio of
mean generation times with a bootstrap interval, and the claims.md section with its verdict."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bench import config
from bench.findings.constants import (
    BOOTSTRAP_RESAMPLES,
    CONFIDENCE,
    MIN_FLOW_WIDTH,
    NOT_MEANINGFUL,
    SMOKE_PRESET,
)
from bench.findings.evidence import decides, withheld
from bench.findings.text import count, est, num
from bench.report import md_table


def speed_ratio(times_glow, times_coupling, seed: int = 0) -> dict:
    """Mean glow time / mean coupling time with a percentile bootstrap 95% interval,
    resampling each configuration's timed iterations (ms, 1-D). Undefined (ratio, lo, hi
    NaN) when either side has no times, a non-finite time, or a mean of 0."""
    g, c = np.asarray(times_glow, np.float64), np.asarray(times_coupling, np.float64)
    if not (g.size and c.size and np.isfinite(g).all() and np.isfinite(c).all()) or not (
        c.mean() > 0 and g.mean() > 0
    ):
        return {"ratio": math.nan, "lo": math.nan, "hi": math.nan, "n_glow": g.size,
                "n_coupling": c.size}  # fmt: skip
    rng = np.random.default_rng(seed)
    boot = [
        rng.choice(g, g.size).mean() / rng.choice(c, c.size).mean()
        for _ in range(BOOTSTRAP_RESAMPLES)
    ]
    return {
        "ratio": float(g.mean() / c.mean()),
        "lo": float(np.quantile(boot, (1 - CONFIDENCE) / 2)),
        "hi": float(np.quantile(boot, (1 + CONFIDENCE) / 2)),
        "n_glow": g.size,
        "n_coupling": c.size,
    }


def timing_fix(results_dir: str | Path) -> str:
    """The fix for damaged timing files, naming them where they are."""
    r = Path(results_dir)
    return (
        f"delete {r / 'timing.csv'}, {r / 'timing_summary.csv'} and {r / 'timing_meta.json'} "
        "and rerun `bench ablation --timing`"
    )


def timing_results(results_dir: str | Path) -> tuple[list[dict], dict]:
    """Glow (every mode) against coupling, for generation and for a solver iteration, from
    the raw times of `bench ablation --timing` (results/timing.csv, timing_meta.json)."""
    from bench import stored

    raw_path = Path(results_dir) / "timing.csv"
    meta_path = Path(results_dir) / "timing_meta.json"
    if not raw_path.is_file():
        return [], {}
    fix = timing_fix(results_dir)
    raw = stored.read_csv(
        raw_path, fix, ("section", "arch", "mode", "ms"), keep_default_na=False, na_values=[""]
    )
    raw["mode"] = raw["mode"].fillna("").astype(str)
    raw["ms"] = stored.numeric(raw, "ms", raw_path, fix, allow_nan=False)
    if not (np.isfinite(raw["ms"]) & (raw["ms"] > 0)).all():
        raise stored.malformed(raw_path, "has a time that is not a positive finite number", fix)
    meta = stored.read_json_object(meta_path, fix) if meta_path.is_file() else {}
    out = []
    for section in ("generation", "solver"):
        out += _section_ratios(raw[raw.section == section], section)
    return out, meta


def _section_ratios(sub, section: str) -> list[dict]:
    """Each glow mode's speed ratio against coupling within one timed section."""
    base = sub[sub.arch == "coupling"]["ms"].to_numpy(np.float64)
    if base.size == 0:
        return []
    out = []
    for mode in ("recompute", "cached", "lu"):
        g = sub[(sub.arch == "glow") & (sub["mode"] == mode)]["ms"].to_numpy(np.float64)
        if g.size == 0:
            continue
        r = speed_ratio(g, base)
        r.update(
            section=section, mode=mode, glow_ms=float(g.mean()), coupling_ms=float(base.mean())
        )
        out.append(r)
    return out


def timing_evidence(meta: dict) -> tuple[str, list[str], list[str]]:
    """What a timing measured ('width 512, batch 128, 50 timed iterations per configuration,
    timing preset paper'), why its verdict is withheld (the smoke timing preset, or a width
    below MIN_FLOW_WIDTH) and what qualifies it (a width or batch other than the paper's)."""
    preset, width, batch = meta.get("preset"), count(meta.get("width")), count(meta.get("batch"))
    words = (
        f"width {width or '?'}, batch {batch or '?'}, {meta.get('iters', '?')} timed "
        f"iterations per configuration, timing preset {preset or 'not recorded'}"
    )
    short, other = [], []
    if preset == SMOKE_PRESET:
        short.append(f"smoke timing preset: width {width or '?'}, batch {batch or '?'}")
    elif width is not None and width < MIN_FLOW_WIDTH:
        short.append(f"width {width} < {MIN_FLOW_WIDTH}")
    if width != config.HIDDEN:
        other.append(f"width {width or 'not recorded'}, not the paper's {config.HIDDEN}")
    if batch != config.TIMING_BATCH:
        other.append(f"batch {batch or 'not recorded'}, not the paper's {config.TIMING_BATCH}")
    if meta.get("busy_note"):  # `bench ablation --allow-busy`, or load that came during it
        other.append(f"timed on a busy machine: {meta['busy_note']}")
    return words, short, other


def timing_section(results_dir: Path) -> tuple[list[str], str, str]:
    """The Table 2 section of claims.md, its verdict and what the timing measured."""
    rows, meta = timing_results(results_dir)
    if not rows:
        return ["Not measured: run `bench ablation --timing`."], "not measured", "—"
    evidence, short, other = timing_evidence(meta)
    lines = [
        f"- **Device**: {meta.get('device')}, {meta.get('threads')} thread(s), torch "
        f"{meta.get('torch')}; load {meta.get('load', '?')}",
        f"- **Flows**: width {meta.get('width')}, batch {meta.get('batch')}, "
        f"{meta.get('iters')} timed iterations per configuration "
        f"({meta.get('rounds')} interleaved rounds); {meta.get('weights', '')}",
        f"- **Command**: `{meta.get('command')}`",
        "",
    ]
    body = [
        [r["section"], f"glow ({r['mode']})", f"{r['glow_ms']:.1f}", f"{r['coupling_ms']:.1f}",
         est(r["ratio"], r["lo"], r["hi"])]
        for r in rows
    ]  # fmt: skip
    lines.append(
        md_table(["timed", "glow mode", "glow ms", "coupling ms", "glow / coupling [95%]"], body)
    )
    paper = [r for r in rows if r["section"] == "generation" and r["mode"] == "recompute"]
    if not paper:
        return lines, "not measured", evidence
    r = paper[0]
    verdict = _ratio_verdict(r, short, other)
    lines += [
        "",
        f"Generation with the paper's glow (inverse recomputed every call) takes "
        f"{num(r['ratio'], 2)}× [{num(r['lo'], 2)}, {num(r['hi'], 2)}] the coupling "
        "flow's time "
        f"(published: {config.PUBLISHED_TABLE2['glow']['ms'] / config.PUBLISHED_TABLE2['coupling']['ms']:.2f}×). "  # noqa: E501
        f"Measured at {evidence}: **{verdict}**.",
    ]
    return lines, verdict, evidence


def _ratio_verdict(r: dict, short: list[str], other: list[str]) -> str:
    """The verdict of the paper's glow against coupling: supported when the ratio's interval
    lies above 1; withheld when the timing falls short, qualified when it differs from the
    paper's setting."""
    if not np.isfinite([r["ratio"], r["lo"], r["hi"]]).all():
        verdict = "undetermined (ratio undefined)"
    elif r["lo"] > 1:
        verdict = "supported"
    else:
        verdict = "not supported" if r["hi"] < 1 else "unresolved"
    verdict = withheld(verdict, short)
    if other and decides(verdict) and not verdict.startswith(NOT_MEANINGFUL):
        verdict += f" (qualified: {'; '.join(other)})"
    return verdict
