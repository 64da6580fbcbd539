"""The paper's claims held against a stored run: `bench findings` writes reports/claims.md.

- Table 1 claims: paired per-image differences (same test image, same measurement) of PSNR
  and SSIM between two methods' reported cells, with a Student-t and a BCa bootstrap 95%
  interval. A claim "A beats B" is supported when both metrics' t-intervals lie above 0; a tie
  when both lie inside the equivalence margins below.
- Figure 1's σ claim: a realism proxy computed from a checkpoint and stored in
  results/realism.csv (`bench findings --realism`): the Fréchet distance between samples and
  held-out real images in a PCA space of pixels, and the ratio of high-frequency energy.
- Table 2's claim: the ratio of mean generation times, with a bootstrap interval over the
  timed iterations of results/timing.csv.
- The released code's defects (PROTOCOL §8) that a run measured: 'map-released' against 'map',
  'ours-released' (α = 0) against 'ours', and the PSNR convention.

Everything but the realism proxy is computed from committed CSVs, so the same command
reproduces claims.md exactly.

The modules: `constants` (confidence, margins, the least evidence a verdict needs),
`verdicts` (paired differences and what they say of a claim), `evidence` (when a verdict is
withheld), `comparisons` (the claims, defects and ablation steps on a run), `seeds` (unseeded
noise), `realism_proxy` (Figure 1's proxy and its files), `realism_verdict` (its claims.md
section), `timing_verdicts` (Table 2's speed ratio and section), `psnr_convention`, `text`
(numbers and intervals), `claim_tables` (the comparison rows) and `claims_md` (claims.md).
The claims themselves (CLAIMS, DEFECTS, ABLATION, TABLE1_TASKS) live in
`bench.report.keyed_tables`, beside the report's other tables keyed by method and task names.
"""

from bench.findings.claim_tables import CMP_HEADER, claim_evidence, comparison_rows
from bench.findings.claims_md import claims_source_of, render_claims, sources_line, write_claims
from bench.findings.comparisons import (
    ablation_results,
    claim_results,
    compare,
    defect_results,
    pair_results,
    test_cells,
)
from bench.findings.constants import (
    BOOTSTRAP_RESAMPLES,
    CLAIMS_FILE,
    CONFIDENCE,
    MIN_FLOW_EPOCHS,
    MIN_FLOW_WIDTH,
    MIN_PAIRED_IMAGES,
    MIN_REALISM_SAMPLES,
    NOT_MEANINGFUL,
    REALISM_COMPONENTS,
    REALISM_FILE,
    REALISM_FLOOR_FACTOR,
    REALISM_META,
    REALISM_REPEATS,
    REALISM_SAMPLES,
    REALISTIC_STDS,
    SMOKE_PRESET,
    TIE_PSNR_DB,
    TIE_SSIM,
)
from bench.findings.evidence import flow_shortfalls, flow_words, withheld
from bench.findings.realism_proxy import (
    REALISM_NUMBERS,
    REALISM_SETS,
    frechet,
    hf_energy,
    hf_ratio,
    load_realism,
    realism,
    realism_paths,
    write_realism,
)
from bench.findings.realism_verdict import realism_flow, realism_section
from bench.findings.seeds import mean_defined, seed_results, seed_section, spread
from bench.findings.text import ci_text, share_text
from bench.findings.timing_verdicts import (
    speed_ratio,
    timing_evidence,
    timing_fix,
    timing_results,
    timing_section,
)
from bench.findings.verdicts import paired, verdict_better, verdict_tie
from bench.report.keyed_tables import ABLATION, CLAIMS, DEFECTS, TABLE1_TASKS, Claim

__all__ = [
    "ABLATION",
    "BOOTSTRAP_RESAMPLES",
    "CLAIMS",
    "CLAIMS_FILE",
    "CMP_HEADER",
    "CONFIDENCE",
    "DEFECTS",
    "MIN_FLOW_EPOCHS",
    "MIN_FLOW_WIDTH",
    "MIN_PAIRED_IMAGES",
    "MIN_REALISM_SAMPLES",
    "NOT_MEANINGFUL",
    "REALISM_COMPONENTS",
    "REALISM_FILE",
    "REALISM_FLOOR_FACTOR",
    "REALISM_META",
    "REALISM_NUMBERS",
    "REALISM_REPEATS",
    "REALISM_SAMPLES",
    "REALISM_SETS",
    "REALISTIC_STDS",
    "SMOKE_PRESET",
    "TABLE1_TASKS",
    "TIE_PSNR_DB",
    "TIE_SSIM",
    "Claim",
    "ablation_results",
    "ci_text",
    "claim_evidence",
    "claim_results",
    "claims_source_of",
    "compare",
    "comparison_rows",
    "defect_results",
    "flow_shortfalls",
    "flow_words",
    "frechet",
    "hf_energy",
    "hf_ratio",
    "load_realism",
    "mean_defined",
    "pair_results",
    "paired",
    "realism",
    "realism_flow",
    "realism_paths",
    "realism_section",
    "render_claims",
    "seed_results",
    "seed_section",
    "share_text",
    "sources_line",
    "speed_ratio",
    "spread",
    "test_cells",
    "timing_evidence",
    "timing_fix",
    "timing_results",
    "timing_section",
    "verdict_better",
    "verdict_tie",
    "withheld",
    "write_claims",
    "write_realism",
]
