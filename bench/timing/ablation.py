"""The Table 2 ablation: time generation and one solver iteration of the coupling flow and of
the glow flow in its three 1×1-convolution modes, interleaved in rounds, plus the inverses
alone; one row per (section, arch, mode)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from bench import config
from bench.errors import BenchError
from bench.flows import MultiScaleFlow, build_flow
from bench.timing.measure import (
    generation_gflop,
    inv_convs,
    random_latent,
    set_glow_mode,
    time_generation,
    time_inverses,
    time_solver_steps,
)
from bench.timing.settings import DEFAULT_ROUNDS, GLOW_MODES, MEASUREMENTS, SECTIONS

# the ablation's cost in coupling generations: per timed iteration one coupling and three glow
# generations (glow ≈ 2× coupling) and as many solver iterations (≈ 2.4× a generation each);
# measured in the committed table2.md: 1 + 3·2.06 + 2.37·(1 + 3·2.1) ≈ 24
COST_IN_COUPLING_GENERATIONS = 24.0


def estimate_ablation_seconds(width: int, batch: int, iters: int, warmup: int, device) -> float:
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


def prepare_flows(checkpoint, width: int | None, device, seed: int) -> tuple[dict, dict, int]:
    """(flows, checkpoint metas, width): the trained flows of `checkpoint` and, for the
    architecture without one, an untrained flow at the same width (`width` None: from the
    checkpoint, else config.HIDDEN); every flow frozen."""
    flows, metas = _load_flows(checkpoint, width, device)
    if flows:
        width = next(iter(flows.values())).arch_config["hidden"]
    width = config.HIDDEN if width is None else width
    for arch in ("coupling", "glow"):
        if arch not in flows:
            flows[arch] = _init_flow(arch, width, device, seed)
        flows[arch].requires_grad_(False)
    if not inv_convs(flows["glow"]):
        raise BenchError("the glow flow has no invertible 1x1 convolutions")
    return flows, metas, width


@dataclass(frozen=True)
class Schedule:
    """How one ablation lays out its calls: `iters` timed calls per configuration in `rounds`
    interleaved blocks, `warmup` untimed calls before a configuration's first block and
    `rewarm` before each later one."""

    width: int
    batch: int
    iters: int
    warmup: int
    rounds: int
    device: object
    seed: int

    @property
    def blocks(self) -> list[int]:
        """Timed calls per round."""
        return [len(b) for b in np.array_split(np.arange(self.iters), self.rounds)]

    @property
    def rewarm(self) -> int:
        return min(self.warmup, 1)

    @property
    def calls(self) -> int:
        """Every call of the ablation, timed or not (the progress bar's total)."""
        per_config = self.warmup + self.iters + self.rewarm * (self.rounds - 1)
        return per_config * len(MEASUREMENTS) * len(SECTIONS) + self.warmup + self.iters


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

    flows, metas, width = prepare_flows(checkpoint, width, device, seed)
    sched = Schedule(width, batch, iters, warmup, max(1, min(rounds, iters)), device, seed)
    bar = progress_bar(total=sched.calls, progress=progress, desc="table 2", unit="call")
    try:
        rows = _time_configurations(flows, metas, sched, bar)
    finally:
        bar.close()
    return _timing_frame(rows)


def _time_configurations(flows: dict, metas: dict, sched: Schedule, bar) -> list[dict]:
    """The rows of every section and configuration, then of the glow inverses alone."""
    glow = flows["glow"]
    agree = _glow_agreement(glow, sched)
    rows = []
    for section in SECTIONS:
        times = _time_section(section, flows, sched, bar)
        for arch, mode in MEASUREMENTS:
            flow = flows[arch]
            extra = {}
            if section == "generation":
                extra = _generation_extras(flow, arch, mode, agree, sched)
            t = np.concatenate(times[(arch, mode)])
            rows.append(_timing_row(section, arch, mode, flow, metas, sched, t, **extra))
    bar.set_description("1x1 inverses alone")
    set_glow_mode(glow, "recompute")
    t = time_inverses(glow, sched.iters, sched.warmup, sched.device, tick=bar.update)
    n_convs = len(inv_convs(glow))
    rows.append(
        _timing_row("inverses", "glow", "recompute", glow, metas, sched, t, n_convs=n_convs)
    )
    return rows


def _glow_agreement(glow: MultiScaleFlow, sched: Schedule) -> dict[str, tuple[float, float]]:
    """Per glow mode, max |Δx| and max |Δlogdet| against `cached` on one small batch: the three
    modes must compute the same function."""
    z_check = random_latent(glow, min(sched.batch, 4), sched.device, sched.seed + 7)
    ref = {}
    with torch.no_grad():
        for mode in GLOW_MODES:
            ref[mode] = set_glow_mode(glow, mode).inverse(z_check)
    return {
        m: (
            float((ref[m][0] - ref["cached"][0]).abs().max()),
            float((ref[m][1] - ref["cached"][1]).abs().max()),
        )
        for m in GLOW_MODES
    }


def _time_section(section: str, flows: dict, sched: Schedule, bar) -> dict:
    """{(arch, mode): [times of each round]} of one section, the configurations interleaved
    (one block of each per round, in an order rotated from round to round)."""
    fn = time_generation if section == "generation" else time_solver_steps
    times = {m: [] for m in MEASUREMENTS}
    for r, n in enumerate(sched.blocks):
        k = r % len(MEASUREMENTS)
        for arch, mode in MEASUREMENTS[k:] + MEASUREMENTS[:k]:
            flow = flows[arch]
            if mode:
                set_glow_mode(flow, mode)
            bar.set_description(
                f"{section}: {arch}{f' ({mode})' if mode else ''} [round {r + 1}/{sched.rounds}]"
            )
            warm = sched.warmup if r == 0 else sched.rewarm
            t = fn(flow, sched.batch, n, warm, sched.device, seed=sched.seed + r, tick=bar.update)
            times[(arch, mode)].append(t)
    return times


def _generation_extras(flow, arch: str, mode: str, agree: dict, sched: Schedule) -> dict:
    """A generation row's GFLOP, agreement with `cached` (glow) and published figures."""
    extra = {}
    if mode:
        set_glow_mode(flow, mode)
    extra["gflop"] = generation_gflop(flow, sched.batch, sched.device)
    if mode:
        extra["max_abs_dx"], extra["max_abs_dlogdet"] = agree[mode]
    pub = config.PUBLISHED_TABLE2.get(arch)
    if pub and mode in ("", "recompute"):
        extra.update(
            published_ms=pub["ms"],
            published_std=pub["std"],
            published_params=pub["params"],
        )
    return extra


def _timing_row(section, arch, mode, flow, metas: dict, sched: Schedule, times, **extra) -> dict:
    return {
        "section": section,
        "arch": arch,
        "mode": mode,
        "label": arch if not mode else f"{arch} ({mode})",
        "weights": metas[arch]["path"] if arch in metas else "untrained",
        "params": flow.num_params(),
        "width": sched.width,
        "batch": sched.batch,
        "iters": sched.iters,
        "warmup": sched.warmup,
        "rounds": sched.rounds,
        "mean_ms": float(times.mean()),
        "std_ms": float(times.std(ddof=1)) if len(times) > 1 else 0.0,
        "median_ms": float(np.median(times)),
        "times_ms": times,
        **extra,
    }


def _timing_frame(rows: list[dict]) -> pd.DataFrame:
    """The rows as a frame, with every optional column (NaN where not measured) and ratios."""
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
