"""MAP with a flow prior (Whang et al. 2021), PROTOCOL §5:
min 1/(2σ²)‖A G(z) − y‖₂² − β log p_G(G(z)), where log p_G is evaluated by pushing G(z) back
through the flow (a second pass x → z, ``flow.log_prob``); β = 0.5 fixed (one cell, no grid),
Adam lr 1.5e-3, z0 ~ N(0, 0.1² I), σ = 0.2 (the noise std in model space).

Registered names:
- ``map``: denoising only, as in the paper;
- ``map-all``: every task. The noiseless tasks have no noise std, so σ = config.MAP_SIGMA
  (0.2, the denoising value) is used for them: an arbitrary but stated choice (it sets the
  balance between data fit and prior);
- ``map-released``: reproduces a DEFECT of the released code (PROTOCOL §8): the loss subtracts the
  negative log-likelihood, i.e. 1/(2σ²)‖G(z) − y‖² + β log p(G(z)), rewarding unlikely images.
  Not part of Table 1's default methods.
"""

from __future__ import annotations

from bench import config
from bench.methods import FlowMethod, l2_fit, register
from bench.tasks import get_task


class MAP(FlowMethod):
    """1/(2σ²)‖A G(z) − y‖² − β log p(G(z)); see the module docstring for the variants."""

    name = "map"
    label = "MAP"
    weight_name = "beta"
    weight_symbol = "β"
    default_grid = (config.MAP_BETA,)
    default = True
    cost = 2.0  # the prior's second pass x → z through the flow
    init_std = config.LATENT_INIT_STD
    lr = config.MAP_LR
    tasks = ("denoising",)
    skip_reason = (
        "MAP is evaluated on denoising only in the paper (use 'map-all' for the other tasks)"
    )

    def __init__(self, all_tasks: bool = False, released_sign: bool = False):
        self.all_tasks = all_tasks
        self.released_sign = released_sign
        self.default = not (all_tasks or released_sign)
        self.variant_of = None if self.default else "map"
        if all_tasks:
            self.name, self.label, self.tasks = "map-all", "MAP (all tasks)", None
        if released_sign:
            self.name = self.name + "-released"
            self.label = self.label + " (released sign)"
            self.defect = "released code subtracts the NLL: the loss rewards unlikely images"

    def paper_weight(self, task) -> float | None:
        """β = 0.5 on every task it handles (the paper fixes it, PROTOCOL §5)."""
        return config.MAP_BETA if self.supports(task) is None else None

    @staticmethod
    def sigma(task) -> float:
        """σ in model space: the task's noise std, or config.MAP_SIGMA for noiseless tasks."""
        task = get_task(task)
        return task.noise_std if task.noise_std > 0 else config.MAP_SIGMA

    def objective(self, flow, task, y, weight):
        beta = float(weight)
        scale = 1.0 / (2.0 * self.sigma(task) ** 2)
        sign = 1.0 if self.released_sign else -1.0

        def f(z, x, logdet_g):
            return scale * l2_fit(task, x, y) + sign * beta * flow.log_prob(x)

        return f


register(MAP())
register(MAP(all_tasks=True))
register(MAP(released_sign=True))
