"""GlowIP (Asim et al. 2020) as the paper runs it (PROTOCOL §5): CSGM's objective
min ‖A G(z) − y‖₂² + γ‖z‖₂² started from z0 = 0; γ from the preset's gamma grid."""

from __future__ import annotations

from bench import config
from bench.methods import register
from bench_baselines.csgm import CSGM


class GlowIP(CSGM):
    """CSGM's objective from z0 = 0."""

    name = "glowip"
    label = "GlowIP"
    paper_weights = config.PAPER_WEIGHTS["glowip"]
    init_std = 0.0


register(GlowIP())
