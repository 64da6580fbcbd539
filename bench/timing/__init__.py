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

The package: `settings` (configurations, presets, options), `measure` (the timed calls),
`ablation` (the interleaved rounds, one row per configuration), `table2` (the markdown:
header, tables, reading) and `files` (table2.md and the stored times, written and read back).
Every name is re-exported here: `bench.timing.run_timing_ablation` and the like (the CLI calls
them through this package, so tests may replace them here).
"""

from __future__ import annotations

from bench.machine import sync
from bench.timing.ablation import (
    COST_IN_COUPLING_GENERATIONS,
    Schedule,
    add_ratios,
    estimate_ablation_seconds,
    prepare_flows,
    run_timing_ablation,
)
from bench.timing.files import (
    TABLE2_FILE,
    TIMING_FILES,
    TIMING_META_KEYS,
    TIMING_OPTIONAL_NUMBERS,
    TIMING_SUMMARY_COLUMNS,
    load_timings,
    timing_paths,
    write_table2,
    write_timings,
)
from bench.timing.measure import (
    generation_gflop,
    inv_convs,
    random_latent,
    set_glow_mode,
    time_generation,
    time_inverses,
    time_solver_steps,
    timed_loop,
)
from bench.timing.settings import (
    DEFAULT_ROUNDS,
    GLOW_MODES,
    GTX750TI_PEAK_TFLOPS,
    MEASUREMENTS,
    MODE_LABELS,
    SECTIONS,
    SOLVER_ALPHA,
    TIMING_PRESETS,
    TimingPreset,
    resolve_timing_options,
)
from bench.timing.table2 import (
    format_table2,
    generation_table,
    reading,
    solver_table,
    timing_meta,
)

__all__ = [
    "COST_IN_COUPLING_GENERATIONS",
    "DEFAULT_ROUNDS",
    "GLOW_MODES",
    "GTX750TI_PEAK_TFLOPS",
    "MEASUREMENTS",
    "MODE_LABELS",
    "SECTIONS",
    "SOLVER_ALPHA",
    "TABLE2_FILE",
    "TIMING_FILES",
    "TIMING_META_KEYS",
    "TIMING_OPTIONAL_NUMBERS",
    "TIMING_PRESETS",
    "TIMING_SUMMARY_COLUMNS",
    "Schedule",
    "TimingPreset",
    "add_ratios",
    "estimate_ablation_seconds",
    "format_table2",
    "generation_gflop",
    "generation_table",
    "inv_convs",
    "load_timings",
    "prepare_flows",
    "random_latent",
    "reading",
    "resolve_timing_options",
    "run_timing_ablation",
    "set_glow_mode",
    "solver_table",
    "sync",
    "time_generation",
    "time_inverses",
    "time_solver_steps",
    "timed_loop",
    "timing_meta",
    "timing_paths",
    "write_table2",
    "write_timings",
]
