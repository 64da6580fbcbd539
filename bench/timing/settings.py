"""What Table 2 times and at which sizes: the configurations (coupling, and glow in its three
1×1-convolution modes), the two timed sections, the presets of `bench ablation --timing` and the
options that override them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bench import config
from bench.errors import BenchError
from bench.flows import INV_MODES

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
