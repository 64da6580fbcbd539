"""The settings of the claims' statistics: confidence, bootstrap resamples, the equivalence
margins of a tie, the realism proxy's sizes and files, and the least evidence a verdict needs."""

from __future__ import annotations

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
TIE_PSNR_DB = 0.5  # equivalence margins for "ties": half a dB of standard PSNR ...
TIE_SSIM = 0.01  # ... and a hundredth of SSIM
REALISTIC_STDS = (0.8, 1.2)  # the paper's range of most realistic latent σ (Figure 1)
REALISM_SAMPLES = 500  # samples per σ, and real images per set (two disjoint sets)
REALISM_COMPONENTS = 32  # PCA components of the pixel space for the Fréchet distance
REALISM_REPEATS = 20  # independent draws of samples and of the real split
REALISM_FILE = "realism.csv"
REALISM_META = "realism_meta.json"
CLAIMS_FILE = "claims.md"

# The least evidence a verdict needs; below it the verdict reads NOT_MEANINGFUL and says why.
# 30 paired images: below about 30 the Student-t interval leans on the normality of a handful
# of per-image differences and the BCa bootstrap has few distinct resamples (the smoke preset
# pairs 4 images; the cpu and paper presets 192).
MIN_PAIRED_IMAGES = 30
# A flow trained for a pipeline check cannot stand for the paper's prior: the `smoke` preset
# (1 epoch, width 16), or any flow trained for fewer than MIN_FLOW_EPOCHS epochs or narrower
# than MIN_FLOW_WIDTH channels (the cpu preset trains 24 epochs at width 128, the paper 100 at
# 512). A flow whose epochs or width the run did not record cannot be told apart from one.
SMOKE_PRESET = "smoke"
MIN_FLOW_EPOCHS = 10
MIN_FLOW_WIDTH = 64
# The realism proxy fits a 32-dimensional Gaussian: at least 4 samples per PCA component
MIN_REALISM_SAMPLES = 4 * REALISM_COMPONENTS
# Figure 1's σ claim is about realistic samples: the best σ inside the paper's range must come
# within this factor of the real-vs-real floor (the upper end of its 95% interval at most
# 2× the floor's mean), not only have the lowest distance of the grid
REALISM_FLOOR_FACTOR = 2.0
NOT_MEANINGFUL = "not meaningful at this size"
