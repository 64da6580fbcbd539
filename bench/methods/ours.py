"""The paper's solver, "ours" (Eq. 7–8, PROTOCOL §5), and the released code's variant
'ours-released' (PROTOCOL §8)."""

from __future__ import annotations

import torch

from bench import config
from bench.flows import standard_normal_logprob
from bench.methods.base import FlowMethod, Objective, l1_fit
from bench.plugins import register
from bench.tasks import Task


class Ours(FlowMethod):
    """The paper's solver (Eq. 7–8): min ‖A G(z) − y‖₁ + α·L(z), with
    L(z) = −log p_Z(z) + log|det J_G(z)| = −log p(G(z)) taken from the same generative pass that
    produces G(z) (no second pass); z0 ~ N(0, 0.1² I), lr 5e-3; α from the preset's alpha grid.

    ``Ours(released_code=True)`` (registered as 'ours-released') reproduces a DEFECT of the
    released code (PROTOCOL §8): the likelihood weight is set to 0 before use, so the fit is pure L1
    and any α passed is ignored. Not part of Table 1's default methods."""

    name = "ours"
    label = "Ours"
    weight_name = "alpha"
    weight_symbol = "α"
    grid_field = "alpha_grid"
    default_grid = config.ALPHA_GRID
    paper_weights = config.PAPER_WEIGHTS["ours"]
    default = True
    init_std = config.LATENT_INIT_STD

    def __init__(self, released_code: bool = False):
        self.released_code = released_code
        if released_code:
            self.default = False
            self.variant_of = "ours"
            self.name = "ours-released"
            self.label = "Ours (released code: α = 0)"
            self.weight_name = None
            self.defect = "released code sets the likelihood weight α to 0 (pure L1 fit)"

    @staticmethod
    def prior_term(z: torch.Tensor, logdet_g: torch.Tensor) -> torch.Tensor:
        """L(z) = −log p_Z(z) + log|det dG/dz| = −log p(G(z)) per image (Eq. 8)."""
        return logdet_g - standard_normal_logprob(z)

    def objective(self, flow, task: Task, y: torch.Tensor, weight) -> Objective:
        alpha = 0.0 if self.released_code else float(weight)

        def f(z, x, logdet_g):
            fit = l1_fit(task, x, y)
            if alpha == 0.0:
                return fit
            return fit + alpha * self.prior_term(z, logdet_g)

        return f


register(Ours())
register(Ours(released_code=True))
