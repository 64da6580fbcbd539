"""Restoration methods: the base class, the registry and the paper's solver ("ours").

A method restores model-space images from a task's measurement y. Flow-based methods
(:class:`FlowMethod`) differ only in their initial latent z0, their objective and their learning
rate; they all run the shared loop `bench.solve.solve_latent`. Every method declares its weight
grid as data (:meth:`Method.grid`): one cell per value, ``(None,)`` for a method without a
weight. The baselines live in ``baselines/`` (import package ``bench_baselines``) and register
themselves like any method; :func:`all_methods` imports them.

Seeds: ``restore(..., seeds)`` takes one base seed per image, ``data.image_seed(name, seed)``
(:func:`bench.tasks.image_seeds`); z0 is drawn per image from a ``torch.Generator`` seeded with
``seed + tasks.LATENT_STREAM``, so it differs from the noise and dequantization seeds and does not
depend on the batch an image is in.

Norms are sums over the pixels of each image; the solver optimises the sum over the batch, which
keeps the images independent (see `bench.solve`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bench import config
from bench.errors import BenchError
from bench.flows import standard_normal_logprob
from bench.solve import Objective, solve_latent
from bench.tasks import LATENT_STREAM, Task, get_task, stream_seed

# Table 1's methods, in its row order. Variants reproducing the released code's defects
# (PROTOCOL §8: 'ours-released', 'map-released') and 'map-all' are registered but not listed here.
DEFAULT_METHODS = ("csgm", "glowip", "map", "bm3d", "ours")


@dataclass
class Restoration:
    """x: restored images in model space, (B, 3, H, W) on the CPU; loss: the objective at the
    returned iterate per image (nan for methods without one); diverged: per image;
    seconds: wall time of the restoration."""

    x: torch.Tensor
    loss: np.ndarray
    diverged: np.ndarray
    seconds: float


def format_weight(weight: float) -> str:
    """Short, exact, deterministic text for a weight: 0.01 -> '0.01', 0.0 -> '0', 1e-05."""
    w = float(weight)
    short = f"{w:g}"
    return short if float(short) == w else repr(w)


def preset_grid(preset, field: str) -> tuple[float, ...]:
    """A weight grid (`gamma_grid`, `alpha_grid`) of a Preset or preset name, as floats."""
    if isinstance(preset, str):
        preset = config.get_preset(preset)
    return tuple(float(v) for v in getattr(preset, field))


class Method:
    """A restoration method. Subclasses set the class attributes and implement `restore`.

    - `name`: registry key and run-name prefix; `label`: display name for reports;
    - `weight_name`: 'gamma' | 'alpha' | 'beta' | None (no weight);
    - `tasks`: the task names it supports (None: all), `skip_reason`: why others are skipped;
    - `needs_flow`: whether `restore` needs a trained flow;
    - `defect`: for variants that reproduce a defect of the released code (PROTOCOL §8), what it is
      (None for the methods of the protocol);
    - `ablation`: for variants that isolate one ingredient of a method, what they test."""

    name: str = ""
    label: str = ""
    weight_name: str | None = None
    needs_flow: bool = True
    tasks: tuple[str, ...] | None = None
    skip_reason: str = ""
    lr: float = config.SOLVER_LR
    betas: tuple[float, float] = config.SOLVER_BETAS
    defect: str | None = None
    ablation: str | None = None

    # -- declarations ------------------------------------------------------------------------
    def grid(self, preset) -> tuple:
        """The weight values to try (one cell each), from a Preset or preset name.
        ``(None,)`` for a method without a weight."""
        return (None,)

    def paper_weight(self, task) -> float | None:
        """The weight the paper reports for a task (None: no weight, or task unsupported)."""
        return None

    def supports(self, task) -> str | None:
        """None if the task (name or Task) is supported, else the reason it is skipped."""
        name = get_task(task).name
        if self.tasks is None or name in self.tasks:
            return None
        return self.skip_reason or f"{self.name} does not handle {name}"

    def run_name(self, weight=None) -> str:
        """'csgm[gamma=0.01]', 'map[beta=0.5]', 'bm3d': deterministic, one per grid cell."""
        if self.weight_name is None or weight is None:
            return self.name
        return f"{self.name}[{self.weight_name}={format_weight(weight)}]"

    def resolve_weight(self, weight, task: Task) -> float | None:
        """The weight to use: the given one, else the paper's for the task."""
        if self.weight_name is None:
            return None
        if weight is None:
            weight = self.paper_weight(task)
        if weight is None:
            raise BenchError(f"{self.name} needs a {self.weight_name} for {task.name}")
        return float(weight)

    def _check(self, task, y, seeds) -> Task:
        task = get_task(task)
        reason = self.supports(task)
        if reason is not None:
            raise BenchError(f"{self.name} cannot restore {task.name}: {reason}")
        if len(seeds) != y.shape[0]:
            raise ValueError(f"{y.shape[0]} measurements but {len(seeds)} seeds")
        return task

    # -- work --------------------------------------------------------------------------------
    def restore(
        self,
        flow,
        task,
        y: torch.Tensor,
        weight,
        iters: int,
        seeds: Sequence[int],
        device,
        progress=None,
        lr: float | None = None,
    ) -> Restoration:
        """Restore a batch: y (model space, any device) -> Restoration (x on the CPU)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<Method {self.name}>"


class FlowMethod(Method):
    """A method that optimises the flow's latent with `solve_latent`.

    Subclasses set `init_std` (z0 ~ N(0, init_std² I); 0 gives z0 = 0) and implement
    `objective(flow, task, y, weight) -> objective(z, x, logdet_G) -> (B,)`."""

    init_std: float = config.LATENT_INIT_STD

    def initial_latent(self, seeds: Sequence[int], dim: int, device="cpu", dtype=torch.float32):
        """z0 (B, dim): per image from a generator seeded with seed + LATENT_STREAM (drawn in
        float32 on the CPU, so it is the same whatever device or dtype the solve uses)."""
        if self.init_std == 0:
            return torch.zeros(len(seeds), dim, device=device, dtype=dtype)
        z = torch.empty(len(seeds), dim, dtype=torch.float32)
        for i, s in enumerate(seeds):
            g = torch.Generator().manual_seed(stream_seed(s, LATENT_STREAM))
            z[i] = torch.randn(dim, generator=g, dtype=torch.float32)
        return (z * self.init_std).to(device=device, dtype=dtype)

    def objective(self, flow, task: Task, y: torch.Tensor, weight) -> Objective:
        raise NotImplementedError

    def restore(self, flow, task, y, weight, iters, seeds, device, progress=None, lr=None):
        y = torch.as_tensor(y)
        task = self._check(task, y, seeds)
        if flow is None:
            raise BenchError(f"{self.name} needs a trained flow")
        weight = self.resolve_weight(weight, task)
        device = torch.device(device)
        param = next(flow.parameters())
        if param.device != device:
            flow.to(device)
        dtype = param.dtype
        y = y.detach().to(device=device, dtype=dtype)
        z0 = self.initial_latent(seeds, flow.dim, device=device, dtype=dtype)
        objective = self.objective(flow, task, y, weight)
        res = solve_latent(
            flow, objective, z0, iters, self.lr if lr is None else lr, self.betas, progress
        )
        return Restoration(x=res.x.cpu(), loss=res.loss, diverged=res.diverged, seconds=res.seconds)


def l1_fit(task: Task, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """‖A x − y‖₁ per image (sum over pixels)."""
    return (task.A(x) - y).abs().flatten(1).sum(1)


def l2_fit(task: Task, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """‖A x − y‖₂² per image (sum over pixels)."""
    return (task.A(x) - y).pow(2).flatten(1).sum(1)


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
    init_std = config.LATENT_INIT_STD

    def __init__(self, released_code: bool = False):
        self.released_code = released_code
        if released_code:
            self.name = "ours-released"
            self.label = "Ours (released code: α = 0)"
            self.weight_name = None
            self.defect = "released code sets the likelihood weight α to 0 (pure L1 fit)"

    def grid(self, preset) -> tuple:
        return (None,) if self.released_code else preset_grid(preset, "alpha_grid")

    def paper_weight(self, task) -> float | None:
        if self.released_code:
            return None
        return config.PAPER_WEIGHTS["ours"].get(get_task(task).name)

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
        self.ablation = "the solver's L1 fit without its prior term, from GlowIP's z₀ = 0"


# ---- registry ----------------------------------------------------------------------------------
METHODS: dict[str, Method] = {}


def register(method: Method | type[Method]) -> Method | type[Method]:
    """Add a method (an instance, or a class instantiated without arguments) to METHODS under
    its name; registering a name again replaces the entry. Returns its argument."""
    inst = method() if isinstance(method, type) else method
    if not inst.name:
        raise ValueError(f"{inst!r} has no name")
    METHODS[inst.name] = inst
    return method


def all_methods() -> dict[str, Method]:
    """Every registered method, DEFAULT_METHODS first (importing `bench_baselines` registers
    csgm, glowip, map, bm3d and their variants)."""
    import bench_baselines  # noqa: F401

    order = [n for n in DEFAULT_METHODS if n in METHODS]
    order += [n for n in METHODS if n not in DEFAULT_METHODS]
    return {n: METHODS[n] for n in order}


def get_method(name: str | Method) -> Method:
    """The method called `name` (a Method is returned as is); BenchError naming the choices."""
    if isinstance(name, Method):
        return name
    methods = all_methods()
    try:
        return methods[name]
    except KeyError:
        raise BenchError(f"unknown method {name!r}: choose one of {', '.join(methods)}") from None


def default_methods() -> list[Method]:
    """The methods of Table 1 (DEFAULT_METHODS), in order."""
    return [get_method(n) for n in DEFAULT_METHODS]


register(Ours())
register(Ours(released_code=True))
register(L1FromZero())

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "FlowMethod",
    "Method",
    "Objective",
    "Ours",
    "Restoration",
    "all_methods",
    "default_methods",
    "format_weight",
    "get_method",
    "l1_fit",
    "l2_fit",
    "register",
]
