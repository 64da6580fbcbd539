"""The files of `bench perf`: reports/perf.md (`perf_markdown`) and results/perf.csv, written
together (`write_perf`)."""

from __future__ import annotations

import math
from pathlib import Path

from bench.atomic import all_or_nothing, atomic_write, atomic_write_text
from bench.perf.run import PerfResult
from bench.perf.settings import MEMORY_BATCH, MEMORY_LIMIT_GIB, PERF_CSV, PERF_MD, busy_limit

FLOPS_NOTE = (
    "How FLOPs are counted: convolutions and matrix products only (a multiply-add is 2 "
    "FLOP), by `torch.utils.flop_counter.FlopCounterMode` on the operations one repetition "
    "runs (counted at batches 1 and 2, extrapolated linearly). A solver iteration counts "
    "the generative pass and the input-gradient convolutions of its backward pass (the flow "
    "is frozen: no weight gradients), i.e. about 2× a generation; a training step counts "
    "forward, input and weight gradients (about 3×). Elementwise work (ActNorm, ReLU, the "
    "couplings, log-determinants, Adam) is not counted. `analytic_gflop_per_image` in "
    "perf.csv is the same count read off the architecture."
)


def _fmt(v, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.{digits}f}"


def _load(t) -> str:
    return "—" if not t else "/".join(f"{v:.2f}" for v in t)


def _busy(info: dict) -> str:
    """A warning when other work was competing for the CPUs: with several threads, OpenMP
    waits for descheduled threads at every operation and the figures become meaningless."""
    busy = info.get("busy_cpus")
    text = "" if busy is None else f"; {busy:.2f} CPUs busy with other work just before"
    if str(info.get("device", "")).startswith("cuda"):
        return text
    end = info.get("load_end")
    # this run itself adds up to `threads` to the load average at the end
    if (busy is not None and busy > busy_limit(info.get("threads"))) or (
        end and end[0] > (info.get("cpus") or 1) + 0.5
    ):
        return text + (
            " — **WARNING: other processes were using the CPUs; these figures are not "
            "reliable (rerun on an idle machine, or with fewer --threads)**"
        )
    return text


def _mode(r: dict) -> str:
    note = r.get("note")
    return r["mode"] if not isinstance(note, str) or not note else f"{r['mode']}; {note}"


def _bf16_speed(rows: list[dict], info: dict) -> str:
    bf = [r for r in rows if r["figure"] == "solver" and r["mode"] == "bf16 autocast"]
    if not bf:
        return ""
    fp = [
        r
        for r in rows
        if r["figure"] == "solver" and r["mode"] == "fp32" and r["batch"] == bf[0]["batch"]
    ]
    if not fp:
        return ""
    ratio = bf[0]["median_ms"] / fp[0]["median_ms"]
    speed = f"{ratio:.2f}× the float32 time" if ratio >= 1 else f"{1 / ratio:.2f}× faster"
    native = any(f in info.get("cpu_ext", "") for f in ("avx512_bf16", "amx_bf16"))
    why = (
        ""
        if native or str(info.get("device", "")).startswith("cuda")
        else (" (this CPU has no bfloat16 instructions: oneDNN falls back to slow kernels)")
    )
    return f" A bf16 solver iteration at batch {bf[0]['batch']} takes {speed}{why}."


def perf_markdown(result: PerfResult, command: str = "bench perf") -> str:
    info, rows = result.info, result.rows
    lines = [
        *_header_lines(info, rows, command),
        *_figure_table(rows),
        "",
        *_memory_lines(rows),
        *_bf16_lines(rows, info),
        *_tf32_lines(rows),
        *_throughput_lines(rows, info.get("threads")),
        FLOPS_NOTE,
        "",
    ]
    return "\n".join(lines)


def _header_lines(info: dict, rows: list[dict], command: str) -> list[str]:
    """Title, the run's facts and the matmul ceiling."""
    mm = next(r for r in rows if r["figure"] == "matmul")
    return [
        "# Performance: solving, generating, training against the matmul rate",
        "",
        f"- command: `{command}`",
        f"- date: {info['date']}; preset: {info['preset']}; path: {info['path']}",
        f"- machine: {info['cpu']} ({info['cpus']} CPUs; extensions: {info['cpu_ext']}; torch "
        f"CPU capability {info['cpu_capability']})"
        + (f"; GPU {info['gpu']}" if "gpu" in info else ""),
        f"- device: {info['device']}; threads: {info['threads']} intra-op, "
        f"{info['interop_threads']} inter-op"
        + (f" ({info['threads_note']})" if info.get("threads_note") else ""),
        f"- torch {info['torch']}, Python {info['python']}, oneDNN available: {info['mkldnn']}",
        f"- load average (1/5/15 min): {_load(info['load_start'])} at start, "
        f"{_load(info['load_end'])} at end" + _busy(info),
        f"- flow: width {info['width']}, {info['params']:,} parameters (coupling); weights: "
        f"{info['weights']}",
        f"- each figure: median of {info['reps']} repetitions after {info['warmup']} warm-up",
        "",
        f"Reference ceiling: float32 matmul {mm['size']}×{mm['size']}: "
        f"**{mm['gflop_s']:.1f} GFLOP/s** (the better of the medians measured at the start, "
        f"{mm['gflop_s_start']:.1f}, and at the end, {mm['gflop_s_end']:.1f}; a large gap "
        "means something else was using the CPU).",
        "",
    ]


def _figure_table(rows: list[dict]) -> list[str]:
    """One table row per figure (not the matmul nor the bf16 accuracy check)."""
    lines = [
        "| figure | arch | mode | batch | median ms | ms / image | images / s | GFLOP / image "
        "| GFLOP/s | % of matmul | target | peak memory GiB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        if r["figure"] in ("matmul", "bf16_accuracy", "tf32_accuracy", "table1_throughput"):
            continue
        target = "—"
        if "target_pct" in r and not (
            isinstance(r.get("target_pct"), float) and math.isnan(r["target_pct"])
        ):
            target = f"≥ {r['target_pct']:.0f}%: {'met' if r['meets_target'] else 'NOT met'}"
        lines.append(
            f"| {r['figure']} | {r['arch']} | {_mode(r)} | {r['batch']} "
            f"| {_fmt(r['median_ms'], 2)} "
            f"| {_fmt(r['ms_per_image'], 3)} | {_fmt(r['images_per_s'], 1)} "
            f"| {_fmt(r['gflop_per_image'], 3)} | {_fmt(r['gflop_s'], 1)} "
            f"| {_fmt(r['pct_matmul'], 0)}% | {target} | {_fmt(r.get('peak_mem_gib'), 2)} |"
        )
    return lines


def _memory_lines(rows: list[dict]) -> list[str]:
    """The peak memory of solving MEMORY_BATCH images in one batch against the bound, when
    it was measured."""
    mem = [
        r
        for r in rows
        if r["figure"] == "solver" and r["batch"] == MEMORY_BATCH and r["mode"] == "fp32"
    ]
    if not mem:
        return []
    m = mem[0]["peak_mem_gib"]
    verdict = "within" if m < MEMORY_LIMIT_GIB else "OVER"
    return [
        f"Memory: solving {MEMORY_BATCH} images in one batch peaks at {m:.2f} GiB "
        f"({verdict} the {MEMORY_LIMIT_GIB:.0f} GiB bound; CPU figures are the process's "
        "resident set, weights and interpreter included).",
        "",
    ]


def _bf16_lines(rows: list[dict], info: dict) -> list[str]:
    """The bf16 accuracy check and speed, when it ran."""
    acc = [r for r in rows if r["figure"] == "bf16_accuracy"]
    if not acc:
        return []
    a = acc[0]
    return [
        f"bfloat16 autocast (opt-in) on {a['batch']} denoising images, {a['reps']} solver "
        f"iterations from the same z0: PSNR {a['psnr_fp32']:.2f} dB (float32) vs "
        f"{a['psnr_bf16']:.2f} dB (bf16), difference {a['psnr_delta']:+.3f} dB; the two "
        f"restorations differ by up to {a['max_pixel_diff']} (8-bit) and agree to "
        f"{a['psnr_bf16_vs_fp32']:.1f} dB PSNR." + _bf16_speed(rows, info),
        "",
    ]


def _tf32_lines(rows: list[dict]) -> list[str]:
    """The TF32 accuracy check (CUDA only), when it ran."""
    acc = [r for r in rows if r["figure"] == "tf32_accuracy"]
    if not acc:
        return []
    a = acc[0]
    return [
        f"TF32 (opt-in, `bench run --precision tf32`) on {a['batch']} denoising images, "
        f"{a['reps']} solver iterations from the same z0: PSNR {a['psnr_fp32']:.2f} dB "
        f"(float32) vs {a['psnr_tf32']:.2f} dB (TF32), difference {a['psnr_delta']:+.3f} dB; "
        f"the restorations differ by up to {a['max_pixel_diff']} (8-bit).",
        "",
    ]


def _throughput_lines(rows: list[dict], threads: int | None = None) -> list[str]:
    """Table 1 throughput, per cell against fused, when it was measured: in one process (on
    its `threads`), and on single-thread worker processes when those were measured too."""
    import pandas as pd

    def workers(r: dict) -> int:  # 1 where a CSV from before the column holds none (NaN)
        return 1 if pd.isna(r.get("workers")) else int(r["workers"])

    tp = [r for r in rows if r["figure"] == "table1_throughput"]
    pairs = {}
    for w in sorted({workers(r) for r in tp}):
        by_mode = {r["mode"]: r for r in tp if workers(r) == w}
        if set(by_mode) == {"per cell", "fused"}:
            pairs[w] = by_mode
    if 1 not in pairs:
        return []
    a = pairs[1]["per cell"]
    one = "1" if threads is None else f"1 × {threads}"
    lines = [
        f"Table 1 throughput: the latent solves of the `{a['run_preset']}` preset's Table 1 "
        f"({a['cells']} cells of flow methods, {a['rows']} rows; grid cells and one test cell "
        f"per method and task; BM3D left out) with a width-{a['width']} flow, {a['iters']} "
        f"iterations, median of {a['reps']} alternating rounds:",
        "",
        "| path | processes × threads | solves | rows per solve | seconds "
        "| image-iterations / s | fused ÷ per cell |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for w, pair in pairs.items():
        how = one if w == 1 else f"{w} × 1"
        flag = "" if w == 1 else f" --jobs {w} --threads 1"
        for mode, r in pair.items():
            cmd = f"bench run --no-fuse{flag}" if mode == "per cell" else f"bench run{flag}"
            size = f"{r['batch']} (mean)" if mode == "per cell" else f"≤ {r['batch']}"
            ratio = f"**{r['fused_ratio']:.2f}×**" if mode == "fused" else ""
            lines.append(
                f"| {mode} (`{cmd}`) | {how} | {r['solves']} | {size} "
                f"| {r['median_ms'] / 1e3:.1f} | {r['images_per_s']:.0f} | {ratio} |"
            )
    lines += [
        "",
        "Image-iterations = rows × iterations (MAP's rows count once though they take two "
        "passes). The runner's whole Table 1 adds BM3D, which the fused path runs beside the "
        "solve on a spare thread.",
    ]
    if len(pairs) > 1:
        w = max(pairs)
        gain = {m: pairs[w][m]["images_per_s"] / pairs[1][m]["images_per_s"] for m in pairs[1]}
        best = {m: max(p[m]["images_per_s"] for p in pairs.values()) for m in gain}
        lines.append(
            f"Fastest against fastest: fused {best['fused'] / best['per cell']:.2f}× per cell. "
            f"{w} single-thread workers instead of one process: per-cell path "
            f"{gain['per cell']:.2f}×, fused path {gain['fused']:.2f}× (image-iterations per "
            "second, each against itself)."
        )
    return [*lines, ""]


def write_perf(
    result: PerfResult, out_dir="reports", results_dir="results", command: str = "bench perf"
) -> tuple[Path, Path]:
    """results/perf.csv (one row per figure, machine columns repeated) and reports/perf.md."""
    import pandas as pd

    out_dir, results_dir = Path(out_dir), Path(results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    info = {k: v for k, v in result.info.items() if k not in ("load_start", "load_end")}
    info["load_start"] = _load(result.info["load_start"])
    info["load_end"] = _load(result.info["load_end"])
    df = pd.DataFrame(result.rows)
    for k, v in info.items():
        if k not in df:
            df[k] = v
    with all_or_nothing():
        csv = atomic_write(results_dir / PERF_CSV, lambda f: df.to_csv(f, index=False), mode="w")
        md = atomic_write_text(out_dir / PERF_MD, perf_markdown(result, command))
    return csv, md
