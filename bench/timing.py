"""Table 2 (§5.6): the generation-time ablation, coupling flow against the glow flow.

The paper times generation (z → x) of its coupling flow and of a Glow-style flow with
invertible 1×1 convolutions at the same width and credits the difference to the inverse of the
1×1 convolutions' weights (PROTOCOL §3). We time:

- generation of one batch, under `torch.no_grad`, for `coupling` and for one `glow` flow in its
  three 1×1-convolution modes (`InvConv1x1.set_mode` on the same matrices W, so the three
  modes compute the same function): inverse recomputed at every call (the paper's setting),
  inverse cached once, and Glow's LU parameterisation;
- one iteration of the paper's solver (generation, loss L1(G(z) − y) + α(−log N(z) + logdet_G),
  backward to z, Adam step), flow frozen, z the only leaf: what an inverse-problem solve pays;
- the 1×1 convolutions' inverses and log-determinants alone, and the convolution FLOPs of one
  generation (so a reader can tell architecture cost from inverse cost).

Every time is the wall-clock time of one call (`time.perf_counter`, CUDA synchronised around
it) after warm-up calls, in milliseconds, mean ± std over the timed iterations.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from time import perf_counter

import numpy as np
import pandas as pd
import torch

from bench import config
from bench.atomic import atomic_write_text
from bench.errors import BenchError
from bench.flows import (
    INV_MODES,
    InvConv1x1,
    MultiScaleFlow,
    build_flow,
)
from bench.methods import Ours
from bench.tasks import get_task

GLOW_MODES = ("recompute", "cached", "lu")  # the paper's setting first
assert set(GLOW_MODES) == set(INV_MODES)
MEASUREMENTS: tuple[tuple[str, str], ...] = (
    ("coupling", ""),
    *(("glow", m) for m in GLOW_MODES),
)
SECTIONS = ("generation", "solver")
DEFAULT_ROUNDS = 5  # interleaved blocks per configuration (see run_timing_ablation)
MODE_LABELS = {
    "": "—",
    "recompute": "inverse recomputed every call (paper)",
    "cached": "inverse cached once",
    "lu": "LU-parameterised (Glow)",
}
# the paper's solver weight on denoising; the cost does not depend on its value
SOLVER_ALPHA = config.PAPER_WEIGHTS["ours"]["denoising"]
# nominal fp32 peak of the paper's GPU (GTX 750 Ti: 640 CUDA cores at 1020–1085 MHz, 2 FLOP
# per core per cycle); used only to say whether the published times are plausible
GTX750TI_PEAK_TFLOPS = 1.4


@dataclass(frozen=True)
class TimingPreset:
    """Size knobs of the timing ablation (the protocol is the same for all)."""

    name: str
    width: int
    iters: int
    batch: int
    warmup: int


TIMING_PRESETS: dict[str, TimingPreset] = {
    "paper": TimingPreset("paper", config.HIDDEN, config.TIMING_ITERS, config.TIMING_BATCH, 5),
    "cpu": TimingPreset("cpu", 128, 50, 32, 3),
    "smoke": TimingPreset("smoke", 8, 3, 4, 1),
}


# ---- measurement ---------------------------------------------------------------------------
def sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def timed_loop(
    step: Callable[[], object], iters: int, warmup: int, device, tick: Callable | None = None
) -> np.ndarray:
    """Run `step` `warmup` times untimed, then `iters` times, each timed alone; ms per call."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"need iters >= 1 and warmup >= 0, got {iters}, {warmup}")
    for _ in range(warmup):
        step()
        if tick:
            tick()
    times = np.empty(iters)
    for i in range(iters):
        sync(device)
        t0 = perf_counter()
        step()
        sync(device)
        times[i] = (perf_counter() - t0) * 1e3
        if tick:
            tick()
    return times


def random_latent(flow: MultiScaleFlow, batch: int, device, seed: int, std: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, flow.dim, generator=g) * std).to(device)


def time_generation(
    flow: MultiScaleFlow,
    batch: int,
    iters: int,
    warmup: int,
    device,
    seed: int = 0,
    tick: Callable | None = None,
) -> np.ndarray:
    """Milliseconds per generated batch (`flow.inverse(z)`, z ~ N(0, I), inference under
    `torch.no_grad`), one entry per timed iteration after `warmup` untimed ones."""
    flow.eval()
    z = random_latent(flow, batch, device, seed)
    with torch.no_grad():
        return timed_loop(lambda: flow.inverse(z), iters, warmup, device, tick)


def time_solver_iteration(
    flow: MultiScaleFlow,
    batch: int,
    iters: int,
    warmup: int,
    device,
    alpha: float = SOLVER_ALPHA,
    lr: float = config.SOLVER_LR,
    seed: int = 0,
    tick: Callable | None = None,
) -> np.ndarray:
    """Milliseconds per iteration of the paper's solver (Eq. 7–8) on one batch, with the loss
    `Ours.objective` builds on denoising (A = identity):
    `x, logdet_G = G(z)`; loss = ‖x − y‖₁ + α(−log N(z) + logdet_G) per image, summed; backward
    to z; Adam step. The flow is frozen here (`requires_grad_(False)`): z is the only leaf."""
    flow.eval()
    flow.requires_grad_(False)
    g = torch.Generator().manual_seed(seed + 1)
    y = (torch.rand(batch, *flow.input_shape, generator=g) * 2 - 1).to(device)
    z = random_latent(flow, batch, device, seed, config.LATENT_INIT_STD).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr, betas=config.SOLVER_BETAS)
    objective = Ours().objective(flow, get_task("denoising"), y, alpha)  # the solver's own loss

    def step():
        opt.zero_grad(set_to_none=True)
        x, logdet = flow.inverse(z)
        objective(z, x, logdet).sum().backward()
        opt.step()

    return timed_loop(step, iters, warmup, device, tick)


def inv_convs(flow: torch.nn.Module) -> list[InvConv1x1]:
    return [m for m in flow.modules() if isinstance(m, InvConv1x1)]


def set_glow_mode(flow: MultiScaleFlow, mode: str) -> MultiScaleFlow:
    """Switch every 1×1 convolution of `flow` to `mode` (same matrices W) and make sure the
    flow is frozen (a cached inverse is only reused for a frozen weight when autograd is on)."""
    flow.set_inv_mode(mode)
    flow.requires_grad_(False)
    return flow


def time_inverses(
    flow: MultiScaleFlow, iters: int, warmup: int, device, tick: Callable | None = None
) -> np.ndarray:
    """Milliseconds to compute every 1×1 convolution's inverse and log|det| once (what the
    `recompute` mode adds to each generation; `cached` pays it once per solve)."""
    ws = [m.matrix().detach() for m in inv_convs(flow)]

    def step():
        for w in ws:
            torch.linalg.inv(w)
            torch.linalg.slogdet(w)

    with torch.no_grad():
        return timed_loop(step, iters, warmup, device, tick)


def generation_gflop(flow: MultiScaleFlow, batch: int, device) -> float:
    """GFLOP of convolutions and matrix products in one generated batch, counted by
    `torch.utils.flop_counter` on batches of 1 and 2 and extrapolated (the count is affine in
    the batch: per-image convolutions plus per-call matrix work such as the LU products);
    matrix inverses and triangular solves are not counted. NaN when counting fails."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        counts = []
        for b in (1, 2):
            z = random_latent(flow, b, device, 0)
            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                flow.inverse(z)
            counts.append(counter.get_total_flops())
        return (counts[0] + (counts[1] - counts[0]) * (batch - 1)) / 1e9
    except Exception:  # noqa: BLE001 - an optional diagnostic
        return float("nan")


# ---- the ablation --------------------------------------------------------------------------
# the ablation's cost in coupling generations: per timed iteration one coupling and three glow
# generations (glow ≈ 2× coupling) and as many solver iterations (≈ 2.4× a generation each);
# measured in the committed table2.md: 1 + 3·2.06 + 2.37·(1 + 3·2.1) ≈ 24
COST_IN_COUPLING_GENERATIONS = 24.0


def estimate_seconds(width: int, batch: int, iters: int, warmup: int, device) -> float:
    """Rough wall time (s) of `run_timing_ablation` at these settings: one coupling
    generation timed here (after one untimed call) × COST_IN_COUPLING_GENERATIONS × the
    timed and warm-up calls. Used to refuse, before it starts, a timing that would run for
    hours (`bench ablation --max-hours`)."""
    flow = _init_flow("coupling", width, device, seed=0)
    (ms,) = time_generation(flow, batch, iters=1, warmup=1, device=device)
    return float(ms) / 1000 * COST_IN_COUPLING_GENERATIONS * (iters + warmup)


def _init_flow(arch: str, width: int, device, seed: int) -> MultiScaleFlow:
    with torch.random.fork_rng(devices=[]):  # reproducible weights, caller's RNG untouched
        torch.manual_seed(seed)
        flow = build_flow(arch, hidden=width)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(16, *flow.input_shape, generator=g) * 2 - 1  # a random model-space batch
    flow.initialize(x)  # ActNorm data init; the cost does not depend on the values
    return flow.to(device).eval()


def _load_flows(checkpoint, width: int | None, device) -> tuple[dict, dict]:
    paths = (
        []
        if checkpoint is None
        else ([checkpoint] if isinstance(checkpoint, (str, os.PathLike)) else list(checkpoint))
    )
    if not paths:
        return {}, {}
    try:
        from bench.train import load_checkpoint
    except ImportError as e:
        raise BenchError(f"--checkpoint needs bench.train, which failed to import ({e})") from None
    flows, metas = {}, {}
    for p in paths:
        flow, meta = load_checkpoint(p, device)
        if flow.arch in flows:
            raise BenchError(
                f"two checkpoints of the {flow.arch} flow ({metas[flow.arch]['path']}, {p}): "
                "pass at most one per architecture"
            )
        flows[flow.arch], metas[flow.arch] = flow, meta
    widths = {f.arch_config["hidden"] for f in flows.values()}
    if len(widths) > 1:
        raise BenchError(
            f"the checkpoints have different widths {sorted(widths)}: "
            "Table 2 compares the architectures at the same width"
        )
    (w,) = widths
    if width is not None and width != w:
        raise BenchError(
            f"the checkpoint has width {w} but --width {width} was asked: "
            f"pass --width {w} or leave --width out"
        )
    return flows, metas


def run_timing_ablation(
    width: int | None,
    batch: int,
    iters: int,
    warmup: int,
    device,
    checkpoint=None,
    progress: bool = True,
    seed: int = 0,
    rounds: int = DEFAULT_ROUNDS,
) -> pd.DataFrame:
    """Time generation and one solver iteration for `coupling` and `glow` (three 1×1
    convolution modes) at the same width; one row per (section, arch, mode).

    The four configurations are interleaved: the timed iterations are split into `rounds`
    blocks, and each round times one block of every configuration (in an order rotated from
    round to round), so that a machine whose load drifts during the run (a shared CPU, a GPU
    warming up) biases no configuration against another. Each configuration gets `warmup`
    untimed calls in its first round and one untimed call (cache rebuilt after the mode
    switch, allocator warm) at the start of every later round.

    `checkpoint`: a path, or a list of at most one per architecture, of trained flows; the
    architecture without one is built untrained at the checkpoint's width (`width` None: from
    the checkpoint, else config.HIDDEN). Untrained flows get their ActNorm initialised on a
    random batch. Columns: section ('generation', 'solver', 'inverses'), arch, mode, label,
    weights, params, width, batch, iters, warmup, mean_ms, std_ms, median_ms, ms_per_image,
    ratio (to coupling, same section), gflop, max_abs_dx, max_abs_dlogdet (glow modes against
    `cached` on the same z), published_ms, published_std, published_params, times_ms (array)."""
    from bench.progress import bar as progress_bar

    flows, metas = _load_flows(checkpoint, width, device)
    if flows:
        width = next(iter(flows.values())).arch_config["hidden"]
    width = config.HIDDEN if width is None else width
    for arch in ("coupling", "glow"):
        if arch not in flows:
            flows[arch] = _init_flow(arch, width, device, seed)
        flows[arch].requires_grad_(False)
    glow = flows["glow"]
    if not inv_convs(glow):
        raise BenchError("the glow flow has no invertible 1x1 convolutions")

    rounds = max(1, min(rounds, iters))
    blocks = [len(b) for b in np.array_split(np.arange(iters), rounds)]
    rewarm = min(warmup, 1)
    per_config = warmup + iters + rewarm * (rounds - 1)
    n_calls = per_config * len(MEASUREMENTS) * len(SECTIONS) + warmup + iters
    bar = progress_bar(total=n_calls, progress=progress, desc="table 2", unit="call")
    rows = []

    def record(section, arch, mode, times, **extra):
        flow = flows[arch]
        rows.append(
            {
                "section": section,
                "arch": arch,
                "mode": mode,
                "label": arch if not mode else f"{arch} ({mode})",
                "weights": metas[arch]["path"] if arch in metas else "untrained",
                "params": flow.num_params(),
                "width": width,
                "batch": batch,
                "iters": iters,
                "warmup": warmup,
                "rounds": rounds,
                "mean_ms": float(times.mean()),
                "std_ms": float(times.std(ddof=1)) if len(times) > 1 else 0.0,
                "median_ms": float(np.median(times)),
                "times_ms": times,
                **extra,
            }
        )

    try:
        # the three modes must compute the same function: compare them on one small batch
        z_check = random_latent(glow, min(batch, 4), device, seed + 7)
        ref = {}
        with torch.no_grad():
            for mode in GLOW_MODES:
                ref[mode] = set_glow_mode(glow, mode).inverse(z_check)
        agree = {
            m: (
                float((ref[m][0] - ref["cached"][0]).abs().max()),
                float((ref[m][1] - ref["cached"][1]).abs().max()),
            )
            for m in GLOW_MODES
        }
        for section in SECTIONS:
            fn = time_generation if section == "generation" else time_solver_iteration
            times = {m: [] for m in MEASUREMENTS}
            for r, n in enumerate(blocks):
                k = r % len(MEASUREMENTS)
                for arch, mode in MEASUREMENTS[k:] + MEASUREMENTS[:k]:
                    flow = flows[arch]
                    if mode:
                        set_glow_mode(flow, mode)
                    bar.set_description(
                        f"{section}: {arch}{f' ({mode})' if mode else ''} [round {r + 1}/{rounds}]"
                    )
                    warm = warmup if r == 0 else rewarm
                    t = fn(flow, batch, n, warm, device, seed=seed + r, tick=bar.update)
                    times[(arch, mode)].append(t)
            for arch, mode in MEASUREMENTS:
                flow = flows[arch]
                extra = {}
                if section == "generation":
                    if mode:
                        set_glow_mode(flow, mode)
                    extra["gflop"] = generation_gflop(flow, batch, device)
                    if mode:
                        extra["max_abs_dx"], extra["max_abs_dlogdet"] = agree[mode]
                    pub = config.PUBLISHED_TABLE2.get(arch)
                    if pub and mode in ("", "recompute"):
                        extra.update(
                            published_ms=pub["ms"],
                            published_std=pub["std"],
                            published_params=pub["params"],
                        )
                record(section, arch, mode, np.concatenate(times[(arch, mode)]), **extra)
        bar.set_description("1x1 inverses alone")
        set_glow_mode(glow, "recompute")
        record(
            "inverses",
            "glow",
            "recompute",
            time_inverses(glow, iters, warmup, device, tick=bar.update),
            n_convs=len(inv_convs(glow)),
        )
    finally:
        bar.close()
    df = pd.DataFrame(rows)
    for col in (
        "gflop",
        "n_convs",
        "max_abs_dx",
        "max_abs_dlogdet",
        "published_ms",
        "published_std",
        "published_params",
    ):
        if col not in df:
            df[col] = np.nan
    df["ms_per_image"] = df["mean_ms"] / df["batch"]
    return add_ratios(df)


def add_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """`ratio`: mean time over coupling's mean time in the same section (idempotent)."""
    df = df.copy()
    base = df[df["arch"] == "coupling"].set_index("section")["mean_ms"]
    df["ratio"] = df["mean_ms"] / df["section"].map(base)
    df["ms_per_image"] = df["mean_ms"] / df["batch"]
    return df


# ---- header, tables and files ----------------------------------------------------------------
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    dev = str(device)
    if dev.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(dev))
        tf32 = f"cuDNN TF32 {'on' if torch.backends.cudnn.allow_tf32 else 'off'}"
        dev_desc = f"{dev} ({name}, {tf32})"
    else:
        dev_desc = f"cpu ({_cpu_name()})"
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


def reading(df: pd.DataFrame) -> str:
    """The paragraph that says what the numbers mean, computed from them."""
    df = add_ratios(df)

    def row(section, arch, mode=""):
        sel = df[(df["section"] == section) & (df["arch"] == arch) & (df["mode"] == mode)]
        return None if sel.empty else sel.iloc[0]

    cpl, rec, cac, lu = (row("generation", *m) for m in MEASUREMENTS)
    if cpl is None or rec is None:
        return "Not enough measurements to compare the architectures."
    pub = config.PUBLISHED_TABLE2
    pub_ratio = pub["glow"]["ms"] / pub["coupling"]["ms"]
    out = [
        f"**Generation.** glow with its 1×1-convolution inverses recomputed at every call (the "
        f"paper's setting) takes {rec['mean_ms']:.2f} ms per batch of {int(rec['batch'])}: "
        f"{_ratio_words(rec['ratio'])} coupling ({cpl['mean_ms']:.2f} ms; the paper: "
        f"{pub['glow']['ms']:.2f} vs {pub['coupling']['ms']:.2f} ms, {pub_ratio:.2f}×)."
    ]
    share = None  # fraction of the glow-coupling gap that caching the inverses removes
    if cac is not None and lu is not None:
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
        out.append(s)
    inv = row("inverses", "glow", "recompute")
    if inv is not None:
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
        out.append(s + ").")
    if not (pd.isna(rec["gflop"]) or pd.isna(cpl["gflop"])) and cpl["gflop"] > 0:
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
    if cac is not None and lu is not None:
        dx = max(float(cac["max_abs_dx"]), float(rec["max_abs_dx"]), float(lu["max_abs_dx"]))
        out.append(f" The three glow modes generate the same images (max |Δx| = {dx:.1e}).")
    scpl, srec, scac, slu = (row("solver", *m) for m in MEASUREMENTS)
    if scpl is not None and srec is not None:
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
        out.append(s)
    return "".join(out)


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


TIMING_FILES = ("timing.csv", "timing_summary.csv", "timing_meta.json")
TABLE2_FILE = "table2.md"


def timing_paths(results_dir) -> list[Path]:
    """The files `write_timings` writes under `results_dir`."""
    return [Path(results_dir) / n for n in TIMING_FILES]


def write_table2(df: pd.DataFrame, meta: dict, out_dir) -> Path:
    """Write `out_dir/table2.md` atomically; returns its path."""
    path = Path(out_dir) / "table2.md"
    atomic_write_text(path, format_table2(df, meta))
    return path


def write_timings(df: pd.DataFrame, meta: dict, results_dir) -> list[Path]:
    """Raw per-iteration times (`timing.csv`: section, arch, mode, iteration, ms), the summary
    (`timing_summary.csv`) and the header facts (`timing_meta.json`), each written atomically."""
    results_dir = Path(results_dir)
    raw = pd.DataFrame(
        [
            {
                "section": r["section"],
                "arch": r["arch"],
                "mode": r["mode"],
                "iteration": i,
                "ms": float(t),
            }
            for _, r in df.iterrows()
            for i, t in enumerate(r["times_ms"])
        ]
    )
    out = []
    for name, frame in (
        ("timing.csv", raw),
        ("timing_summary.csv", add_ratios(df).drop(columns=["times_ms"])),
    ):
        path = results_dir / name
        atomic_write_text(path, frame.to_csv(index=False))
        out.append(path)
    path = results_dir / "timing_meta.json"
    atomic_write_text(path, json.dumps(meta, indent=2, default=str) + "\n")
    out.append(path)
    return out


TIMING_META_KEYS = (
    "device", "threads", "torch", "batch", "width", "iters", "warmup", "weights", "command", "date",
)  # fmt: skip
TIMING_SUMMARY_COLUMNS = (
    "section", "arch", "mode", "label", "params", "width", "batch", "iters", "mean_ms", "std_ms",
    "median_ms",
)  # fmt: skip
TIMING_OPTIONAL_NUMBERS = (
    "gflop", "max_abs_dx", "max_abs_dlogdet", "n_convs", "published_ms", "published_std",
    "published_params", "warmup", "rounds",
)  # fmt: skip


def load_timings(results_dir) -> tuple[pd.DataFrame, dict]:
    """Read back what `write_timings` wrote (summary with its raw times, and the header
    facts), so that table2.md can be rebuilt without timing again.

    Returns (summary, meta): one summary row per (section, arch, mode) with its raw times
    (`times_ms`, ms) and `ratio` to coupling; meta the header facts. Raises BenchError when a
    file is missing (run `bench ablation --timing`), or one line naming the file and the fix
    (delete the timing files and rerun) when one is unreadable, not UTF-8, not a JSON object,
    lacks a column or key, holds a non-number, a time that is not positive and finite, an
    unknown mode, a configuration twice, no coupling row to compare with, or a mean, count of
    iterations or set of configurations that the raw times do not bear out."""
    from bench import stored

    results_dir = Path(results_dir)
    paths = [results_dir / n for n in ("timing_summary.csv", "timing.csv", "timing_meta.json")]
    for path in paths:
        if not path.is_file():
            raise BenchError(
                f"no timing results in {results_dir} ({path} missing): "
                "run `bench ablation --timing` first"
            )
    spath, rpath, mpath = paths
    fix = (
        f"delete {results_dir}/timing.csv, timing_summary.csv and timing_meta.json and rerun "
        "`bench ablation --timing`"
    )
    na = {"keep_default_na": False, "na_values": [""]}
    summary = stored.read_csv(spath, fix, TIMING_SUMMARY_COLUMNS, **na)
    raw = stored.read_csv(rpath, fix, ("section", "arch", "mode", "iteration", "ms"), **na)
    meta = stored.read_json_object(mpath, fix, TIMING_META_KEYS)
    if not (meta["width"] is None or (isinstance(meta["width"], int) and meta["width"] > 0)):
        raise stored.malformed(mpath, "has a width that is not a positive integer", fix)
    for frame in (summary, raw):
        frame["mode"] = frame["mode"].fillna("").astype(str)
    if len(summary) == 0:
        raise stored.malformed(spath, "has no rows", fix)
    for path, frame in ((spath, summary), (rpath, raw)):
        for col in ("section", "arch"):
            if frame[col].isna().any():
                raise stored.malformed(path, f"has an empty value in column {col}", fix)
        bad = ~frame["mode"].isin(list(MODE_LABELS))
        if bad.any():
            raise stored.malformed(path, f"has an unknown mode {frame['mode'][bad].iloc[0]!r}", fix)
    checked = {}
    for col in ("params", "width", "batch", "iters", "mean_ms", "std_ms", "median_ms"):
        checked[col] = v = stored.numeric(summary, col, spath, fix, allow_nan=False)
        if not np.isfinite(v).all() or (v < 0).any():
            raise stored.malformed(spath, f"has a {col} that is not a finite number >= 0", fix)
    if ((checked["batch"] < 1) | (checked["iters"] < 1) | (checked["mean_ms"] <= 0)).any():
        raise stored.malformed(spath, "has a batch, iters or mean_ms that is not positive", fix)
    for col in TIMING_OPTIONAL_NUMBERS:
        if col in summary:
            stored.numeric(summary, col, spath, fix)  # NaN (not measured) allowed
        else:
            summary[col] = np.nan
    ms = stored.numeric(raw, "ms", rpath, fix, allow_nan=False)
    stored.numeric(raw, "iteration", rpath, fix, allow_nan=False)
    if not (np.isfinite(ms) & (ms > 0)).all():
        raise stored.malformed(rpath, "has a time that is not a positive finite number", fix)
    raw["ms"] = ms
    keys = ["section", "arch", "mode"]
    if summary.duplicated(keys).any():
        raise stored.malformed(spath, "lists a configuration twice", fix)
    for section in set(summary["section"]) & set(SECTIONS):
        if not ((summary["section"] == section) & (summary["arch"] == "coupling")).any():
            raise stored.malformed(spath, f"has no coupling row for {section!r} to compare", fix)
    times = {k: g.sort_values("iteration")["ms"].to_numpy(np.float64) for k, g in raw.groupby(keys)}
    for r in summary.itertuples():
        t = times.get((r.section, r.arch, r.mode))
        what = f"{r.section}/{r.arch}{f' ({r.mode})' if r.mode else ''}"
        if t is None or t.size != int(r.iters):
            got = 0 if t is None else t.size
            raise stored.malformed(
                rpath, f"holds {got} times of {what}, where timing_summary.csv says {r.iters}", fix
            )
        if not math.isclose(float(t.mean()), float(r.mean_ms), rel_tol=1e-9):
            raise stored.malformed(
                spath, f"has a mean of {what} that its times in timing.csv do not give", fix
            )
    summary["times_ms"] = [times[(r.section, r.arch, r.mode)] for r in summary.itertuples()]
    return add_ratios(summary), meta


def resolve_timing_options(
    preset: str,
    width: int | None,
    batch: int | None,
    iters: int | None,
    warmup: int | None,
    from_checkpoint: bool = False,
) -> TimingPreset:
    """The preset with explicit options overriding it; width None stays None when a
    checkpoint supplies it."""
    try:
        p = TIMING_PRESETS[preset]
    except KeyError:
        raise BenchError(
            f"unknown preset {preset!r}: choose one of {', '.join(TIMING_PRESETS)}"
        ) from None
    d = asdict(p)
    for k, v in (("width", width), ("batch", batch), ("iters", iters), ("warmup", warmup)):
        if v is not None:
            d[k] = v
    if from_checkpoint and width is None:
        d["width"] = None
    return TimingPreset(**d)


__all__ = [
    "GLOW_MODES",
    "TIMING_PRESETS",
    "TimingPreset",
    "add_ratios",
    "format_table2",
    "generation_gflop",
    "load_timings",
    "resolve_timing_options",
    "run_timing_ablation",
    "set_glow_mode",
    "time_generation",
    "time_inverses",
    "time_solver_iteration",
    "timing_meta",
    "write_table2",
    "write_timings",
]
