"""CSGM (Bora et al. 2017) with a flow generator (PROTOCOL §5):
min ‖A G(z) − y‖₂² + γ‖z‖₂², z0 ~ N(0, I), Adam lr 5e-3; γ from the preset's gamma grid."""

from __future__ import annotations

from bench import config
from bench.methods import FlowMethod, l2_fit, register


class CSGM(FlowMethod):
    """min ‖A G(z) − y‖² + γ‖z‖² (sums over pixels / latent entries per image), z0 ~ N(0, I)."""

    name = "csgm"
    label = "CSGM"
    weight_name = "gamma"
    weight_symbol = "γ"
    grid_field = "gamma_grid"
    default_grid = config.GAMMA_GRID
    paper_weights = config.PAPER_WEIGHTS["csgm"]
    default = True
    init_std = 1.0

    def objective(self, flow, task, y, weight):
        gamma = float(weight)

        def f(z, x, logdet_g):
            fit = l2_fit(task, x, y)
            if gamma == 0.0:
                return fit
            return fit + gamma * z.pow(2).sum(1)

        return f


register(CSGM())
