"""Ablation 'l1-z0': the solver's L1 data term without its prior term, from GlowIP's z0 = 0."""

from __future__ import annotations

from bench.methods.ours import Ours
from bench.plugins import register


class L1FromZero(Ours):
    """Ablation, not in the paper: the solver's L1 data term alone (α = 0) started from z0 = 0,
    as GlowIP starts. Against 'glowip' (squared L2 from z0 = 0; the grid picks γ = 0 at CPU
    scale) it isolates the data term; against 'ours-released' (L1 from z0 ~ N(0, 0.1² I)) the
    initial latent."""

    init_std = 0.0

    def __init__(self):
        super().__init__(released_code=True)
        self.name = "l1-z0"
        self.label = "L1 fit from z₀ = 0 (ablation)"
        self.defect = None
        self.variant_of = "ours"
        self.ablation = "the solver's L1 fit without its prior term, from GlowIP's z₀ = 0"


register(L1FromZero())
