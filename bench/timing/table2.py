"""Table 2's markdown: the header facts (`timing_meta`), the generation and solver tables, and
the reading computed from the numbers (`format_table2`)."""

from __future__ import annotations

import math
import os
from datetime import datetime

import numpy as np
import pandas as pd
import torch

from bench import config
from bench.machine import describe_device
from bench.timing.ablation import add_ratios
from bench.timing.settings import GTX750TI_PEAK_TFLOPS, MEASUREMENTS, MODE_LABELS, SOLVER_ALPHA


def timing_meta(
    device,
    width: int,
    batch: int,
    iters: int,
    warmup: int,
    command: str,
    preset: str | None = None,
    checkpoint=None,
    load_start: tuple | None = None,
    rounds: int | None = None,
) -> dict:
    """Everything the report header states about where and how the times were taken."""
    dev_desc = describe_device(device, style="timing")
    if checkpoint:
        paths = [checkpoint] if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
        weights = ", ".join(str(p) for p in paths) + " (other architecture untrained)"
    else:
        weights = (
            "untrained, ActNorm initialised on a random batch (cost does not depend on values)"
        )
    load = None
    if hasattr(os, "getloadavg"):
        fmt = "/".join(f"{v:.2f}" for v in os.getloadavg())
        load = (
            f"{'/'.join(f'{v:.2f}' for v in load_start)} at start, " if load_start else ""
        ) + f"{fmt} at end (1/5/15-min averages; {os.cpu_count()} CPUs)"
    return {
        "device": dev_desc,
        "load": load,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "preset": preset,
        "batch": batch,
        "width": width,
        "iters": iters,
        "warmup": warmup,
        "rounds": rounds,
        "weights": weights,
        "command": command,
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _pm(mean: float, std: float) -> str:
    digits = 2 if mean >= 1 else 3
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _ratio_words(r: float) -> str:
    if r >= 1:
        return f"{r:.2f}× slower than"
    return f"{1 / r:.2f}× faster than"


def _resolved(a: pd.Series, b: pd.Series) -> bool:
    """Whether two mean times differ by more than two standard errors of their difference."""
    se = math.sqrt(a["std_ms"] ** 2 / a["iters"] + b["std_ms"] ** 2 / b["iters"])
    return abs(a["mean_ms"] - b["mean_ms"]) > 2 * se


def _fmt_params(n) -> str:
    return "—" if pd.isna(n) else f"{int(n):,}"


def _published(row) -> str:
    if pd.isna(row.get("published_ms", np.nan)):
        return "—"
    return (
        f"{row['published_ms']:.2f} ± {row['published_std']:.2f} "
        f"({row['published_params'] / 1e6:.1f}M)"
    )


def generation_table(df: pd.DataFrame) -> str:
    g = df[df["section"] == "generation"]
    lines = [
        "| architecture | mode | params | GFLOP / batch | generation ms / batch (mean ± std) "
        "| median ms | ms / image | ratio vs coupling | published ms (params) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for _, r in g.iterrows():
        gf = "—" if pd.isna(r["gflop"]) else f"{r['gflop']:.3g}"
        lines.append(
            f"| {r['arch']} | {MODE_LABELS[r['mode']]} | {_fmt_params(r['params'])} | {gf} "
            f"| {_pm(r['mean_ms'], r['std_ms'])} | {r['median_ms']:.2f} "
            f"| {r['ms_per_image']:.3f} | {r['ratio']:.2f}× | {_published(r)} |"
        )
    return "\n".join(lines)


def solver_table(df: pd.DataFrame) -> str:
    s = df[df["section"] == "solver"]
    lines = [
        "| architecture / mode | ms / iteration (mean ± std) | median ms | ratio vs coupling "
        f"| s per {config.SOLVER_ITERS}-iteration solve |",
        "|---|---:|---:|---:|---:|",
    ]
    for _, r in s.iterrows():
        lines.append(
            f"| {r['label']} | {_pm(r['mean_ms'], r['std_ms'])} | {r['median_ms']:.2f} "
            f"| {r['ratio']:.2f}× | {r['mean_ms'] * config.SOLVER_ITERS / 1e3:.1f} |"
        )
    return "\n".join(lines)


def _pick(df: pd.DataFrame, section: str, arch: str, mode: str = ""):
    """The row of one configuration (a Series), None when it was not measured."""
    sel = df[(df["section"] == section) & (df["arch"] == arch) & (df["mode"] == mode)]
    return None if sel.empty else sel.iloc[0]


def reading(df: pd.DataFrame) -> str:
    """The paragraph that says what the numbers mean, computed from them."""
    df = add_ratios(df)
    cpl, rec, cac, lu = (_pick(df, "generation", *m) for m in MEASUREMENTS)
    if cpl is None or rec is None:
        return "Not enough measurements to compare the architectures."
    out = [_generation_words(cpl, rec)]
    share = None  # fraction of the glow-coupling gap that caching (then the inverses) explains
    if cac is not None and lu is not None:
        text, share = _caching_words(cpl, rec, cac, lu)
        out.append(text)
    inv = _pick(df, "inverses", "glow", "recompute")
    if inv is not None:
        text, share = _inverse_words(inv, cpl, rec, share)
        out.append(text)
    if not (pd.isna(rec["gflop"]) or pd.isna(cpl["gflop"])) and cpl["gflop"] > 0:
        out += _flop_words(cpl, rec, share)
    if cac is not None and lu is not None:
        dx = max(float(cac["max_abs_dx"]), float(rec["max_abs_dx"]), float(lu["max_abs_dx"]))
        out.append(f" The three glow modes generate the same images (max |Δx| = {dx:.1e}).")
    scpl, srec, scac, slu = (_pick(df, "solver", *m) for m in MEASUREMENTS)
    if scpl is not None and srec is not None:
        out.append(_solver_words(scpl, srec, scac, slu))
    return "".join(out)


def _generation_words(cpl, rec) -> str:
    """glow (recompute) against coupling, and the paper's figures."""
    pub = config.PUBLISHED_TABLE2
    pub_ratio = pub["glow"]["ms"] / pub["coupling"]["ms"]
    return (
        f"**Generation.** glow with its 1×1-convolution inverses recomputed at every call (the "
        f"paper's setting) takes {rec['mean_ms']:.2f} ms per batch of {int(rec['batch'])}: "
        f"{_ratio_words(rec['ratio'])} coupling ({cpl['mean_ms']:.2f} ms; the paper: "
        f"{pub['glow']['ms']:.2f} vs {pub['coupling']['ms']:.2f} ms, {pub_ratio:.2f}×)."
    )


def _caching_words(cpl, rec, cac, lu) -> tuple[str, float | None]:
    """What caching the inverses and the LU mode change; with the share of the glow–coupling
    gap that caching removes (None when it resolves none)."""
    share = None
    gap = rec["mean_ms"] - cpl["mean_ms"]
    s = (
        f" With the inverses cached once the ratio is {cac['ratio']:.2f}×; with the "
        f"LU parameterisation it is {lu['ratio']:.2f}×."
    )
    diff = rec["mean_ms"] - cac["mean_ms"]
    if not _resolved(rec, cac):
        s += (
            f" Caching makes no difference this run resolves (recompute − cached = "
            f"{diff:+.2f} ms, within two standard errors)."
        )
    elif diff > 0 and gap > 0:
        share = diff / gap
        s += f" Caching removes {100 * share:.0f}% of the glow–coupling gap of {gap:.2f} ms."
    else:
        s += f" Caching changes the time by {-diff:+.2f} ms."
    if _resolved(lu, rec) or _resolved(lu, cac):
        closer = (
            "recompute"
            if abs(lu["mean_ms"] - rec["mean_ms"]) < abs(lu["mean_ms"] - cac["mean_ms"])
            else "cached"
        )
        s += (
            " The LU mode forms W⁻¹ from its triangular factors at every call; its time is "
            f"closer to the {closer} mode's."
        )
    return s, share


def _inverse_words(inv, cpl, rec, share: float | None) -> tuple[str, float | None]:
    """What the inverses alone cost; with the share of the glow–coupling gap they account for
    (`share` unchanged when there is no gap)."""
    n = "the" if pd.isna(inv.get("n_convs", np.nan)) else int(inv["n_convs"])
    gap = rec["mean_ms"] - cpl["mean_ms"]
    s = (
        f" Computing {n} inverses and log-determinants alone takes "
        f"{inv['mean_ms']:.3f} ms ({100 * inv['mean_ms'] / rec['mean_ms']:.1f}% of a "
        f"glow generation"
    )
    if gap > 0:
        share = inv["mean_ms"] / gap  # the direct measurement beats a difference of means
        s += f", {100 * share:.0f}% of the glow–coupling gap"
    return s + ").", share


def _flop_words(cpl, rec, share: float | None) -> list[str]:
    """The convolution FLOPs of both flows and, at the paper's width, whether the published
    times are possible on the paper's GPU."""
    out = []
    fr = rec["gflop"] / cpl["gflop"]
    s = (
        f" Glow does {fr:.2f}× the convolution FLOPs of coupling ({rec['gflop']:.3g} vs "
        f"{cpl['gflop']:.3g} GFLOP per batch)"
    )
    if fr > 1.2:
        s += ": its three scales without splits keep all its steps on larger maps"
        s += (
            "; most of the time difference is this extra work, not the inverses."
            if share is not None and share < 0.5
            else "."
        )
    else:
        s += "."
    out.append(s)
    if int(cpl["width"]) == config.HIDDEN:
        pub = config.PUBLISHED_TABLE2
        per_img = cpl["gflop"] / cpl["batch"]
        implied = per_img * config.TIMING_BATCH / pub["coupling"]["ms"]  # GFLOP/ms = TFLOP/s
        out.append(
            f" At width {config.HIDDEN} a batch of {config.TIMING_BATCH} costs "
            f"{per_img * config.TIMING_BATCH:.1f} GFLOP for coupling, so the published "
            f"{pub['coupling']['ms']:.2f} ms per batch would mean {implied:.1f} TFLOP/s "
            f"on a GTX 750 Ti (nominal fp32 peak about {GTX750TI_PEAK_TFLOPS} TFLOP/s)"
            + (
                ": the published times cannot be synchronised times for a batch of "
                f"{config.TIMING_BATCH} at this width (per image? unsynchronised launches?)."
                if implied > GTX750TI_PEAK_TFLOPS
                else "."
            )
        )
    return out


def _solver_words(scpl, srec, scac, slu) -> str:
    """One solver iteration of each flow, and what a whole solve takes."""
    s = (
        f"\n\n**Solver iteration.** One iteration of the paper's solver (generation, "
        f"backward to z, Adam step) costs {scpl['mean_ms']:.2f} ms for coupling and "
        f"{srec['mean_ms']:.2f} ms for glow with the inverses recomputed "
        f"({srec['ratio']:.2f}×)"
    )
    if scac is not None and slu is not None:
        s += f"; cached: {scac['ratio']:.2f}×, LU: {slu['ratio']:.2f}×"
    s += (
        f". A {config.SOLVER_ITERS}-iteration solve of one batch takes "
        f"{scpl['mean_ms'] * config.SOLVER_ITERS / 1e3:.0f} s vs "
        f"{srec['mean_ms'] * config.SOLVER_ITERS / 1e3:.0f} s on this device."
    )
    return s


def _busy_lines(meta: dict) -> list[str]:
    """Header lines on other processes' CPU use (`bench.machine`), when it was measured."""
    start, during = meta.get("busy_start"), meta.get("busy_during")
    lines = []
    if start is not None or during is not None:
        words = [
            f"{v:.1f} CPUs busy {when}"
            for v, when in ((start, "at start"), (during, "on average during the timing"))
            if isinstance(v, (int, float))
        ]
        lines += [f"- other processes: {', '.join(words)}"] if words else []
    if meta.get("busy_note"):
        lines.append(f"- **timed on a busy machine**: {meta['busy_note']}")
    return lines


def format_table2(df: pd.DataFrame, meta: dict) -> str:
    df = add_ratios(df)
    params = {
        a: int(df[df["arch"] == a]["params"].iloc[0])
        for a in ("coupling", "glow")
        if (df["arch"] == a).any()
    }
    if int(meta.get("width") or 0) == config.HIDDEN:
        spec = {"coupling": config.COUPLING_PARAMS_AT_512, "glow": config.GLOW_PARAMS_AT_512}
        ok = all(params.get(a) == n for a, n in spec.items())
        pnote = (
            "match PROTOCOL §2–3 (coupling 32,736,864; glow 33,780,096)"
            if ok
            else "DIFFER from PROTOCOL §2–3 (coupling 32,736,864; glow 33,780,096)"
        )
    else:
        pnote = f"at width {meta.get('width')} (PROTOCOL §2–3 counts are for width {config.HIDDEN})"
    header = [
        "# Table 2: generation time, 1×1 coupling functions vs invertible 1×1 convolutions",
        "",
        f"- device: {meta['device']}",
        f"- threads: {meta['threads']}",
        *([f"- system load: {meta['load']}"] if meta.get("load") else []),
        *_busy_lines(meta),
        f"- torch: {meta['torch']}",
        f"- preset: {meta.get('preset') or '—'}",
        f"- batch: {meta['batch']}; width: {meta['width']}; timed iterations: {meta['iters']}; "
        f"warm-up: {meta['warmup']}"
        + (f"; interleaved rounds: {meta['rounds']}" if meta.get("rounds") else ""),
        f"- weights: {meta['weights']}",
        f"- parameter counts: coupling {_fmt_params(params.get('coupling'))}, glow "
        f"{_fmt_params(params.get('glow'))}; {pnote}",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']}",
        "",
        "Times are wall-clock milliseconds per call (time.perf_counter; CUDA synchronised), "
        "mean ± std over the timed iterations after warm-up; the configurations are timed in "
        "interleaved rounds (a block of each per round, order rotated). Generation runs under "
        "torch.no_grad. The three glow rows are one flow whose 1×1 convolutions are switched "
        "between modes on the same matrices W. Published: GTX 750 Ti, 1500 iterations, 128 "
        "samples. GFLOP: convolutions and matrix products counted by torch.utils.flop_counter.",
        "",
        "## Generation (z → x)",
        "",
        generation_table(df),
        "",
        f"## One solver iteration (L1 + α·(−log N(z) + logdet_G), α = {SOLVER_ALPHA}, "
        "backward to z, Adam)",
        "",
        solver_table(df),
        "",
        "## Reading",
        "",
        reading(df),
        "",
    ]
    return "\n".join(header)
