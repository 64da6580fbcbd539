"""The method contract (PROTOCOL §5): :class:`Method`, :class:`FlowMethod`, what a restoration
returns, the data-fit norms, and the methods registry.

A method restores model-space images from a task's measurement y. Flow-based methods
(:class:`FlowMethod`) differ only in their initial latent z0, their objective and their learning
rate; they all run the shared loop `bench.solve.solve_latents`. Everything the runner, the
reports, the run-time estimate and the CLI need to know about a method is declared on it (class
attributes below): its weight (name, symbol, default grid, the preset field or override that
replaces the grid, the paper's values), the tasks it handles, its relative cost, and what a
variant shows (`defect`, `ablation`). Each method is one module that registers itself
(``bench.register``); the built-ins live in ``bench/methods/`` and ``baselines/`` (import package
``bench_baselines``), plugins anywhere (README, "Add your own method, task, dataset or flow").

Seeds: ``restore(..., seeds)`` takes one base seed per image, ``data.image_seed(name, seed)``
(:func:`bench.tasks.image_seeds`); z0 is drawn per image from a ``torch.Generator`` seeded with
``seed + tasks.LATENT_STREAM``, so it differs from the noise and dequantization seeds and does not
depend on the batch an image is in.

Norms are sums over the pixels of each image; the solver optimises the sum over the batch, which
keeps the images independent (see `bench.solve`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bench import config, data
from bench.errors import BenchError
from bench.registry import Registry
from bench.solve import LatentProblem, Objective, check_losses, solve_latents
from bench.tasks import LATENT_STREAM, Task, get_task, stream_seeds

# the standard symbols of the weights the built-in methods use (a method may declare another)
WEIGHT_SYMBOLS = {"gamma": "γ", "alpha": "α", "beta": "β", "lambda": "λ", "tau": "τ"}


@dataclass
class Restoration:
    """x: restored images in model space, (B, 3, H, W) on the CPU; loss: the objective at the
    returned iterate per image (nan for methods without one); diverged: per image;
    seconds: wall time of the restoration."""

    x: torch.Tensor
    loss: np.ndarray
    diverged: np.ndarray
    seconds: float

    @classmethod
    def of_images(cls, x: torch.Tensor, started: float, loss=None) -> Restoration:
        """The restoration of a method that produces images directly (no latent solve): x
        (B, 3, H, W) in model space, clamped to [-1, 1], as float32 on the CPU; `loss` per
        image (default nan: no objective), nothing diverged; `seconds` since `started`
        (a `time.perf_counter()` value)."""
        x = x.detach().clamp(-1.0, 1.0).to(device="cpu", dtype=torch.float32).contiguous()
        n = x.shape[0]
        loss = np.full(n, np.nan) if loss is None else np.asarray(loss, dtype=np.float64)
        seconds = time.perf_counter() - started
        return cls(x=x, loss=loss, diverged=np.zeros(n, dtype=bool), seconds=seconds)


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


def preset_of(preset) -> config.Preset:
    """A Preset, from itself or its name."""
    return config.get_preset(preset) if isinstance(preset, str) else preset


class Method:
    """A restoration method. Subclasses set the class attributes and implement `restore`.

    Declarations (class attributes; everything the rest of bench reads about a method):

    - `name`: registry key and run-name prefix; `label`: display name for reports;
    - `weight_name`: 'gamma' | 'alpha' | 'beta' | any identifier | None (no weight);
      `weight_symbol`: how reports write it (default: WEIGHT_SYMBOLS, else the name);
    - `default_grid`: the weight values to search when no preset says otherwise;
      `grid_field`: a Preset field that holds the grid ('gamma_grid', 'alpha_grid'), if any; a
      preset's `grids[name]` overrides both (:meth:`grid`);
    - `paper_weights`: the weight the paper reports per task (PROTOCOL §5), if any;
    - `tasks`: the task names or families (`Task.family`) it supports (None: all),
      `needs_linear`: whether it needs a linear task (an adjoint), `skip_reason`: why others
      are skipped;
    - `needs_flow`: whether `restore` needs a trained flow;
    - `default`: whether it runs without --methods (Table 1's methods);
    - `variant_of`: for a variant of another method (a released-code defect, an ablation, MAP on
      every task), that method's name: reports list variants apart from the methods compared;
    - `cost`: for a method with a flow, its time per image-iteration relative to one generator
      pass with its gradient (the run-time estimate; MAP's second pass through the flow makes
      it 2); a method without a flow is timed on one image instead;
    - `defect`: for variants that reproduce a defect of the released code (PROTOCOL §8), what it
      is (None for the methods of the protocol);
    - `ablation`: for variants that isolate one ingredient of a method, what they test;
    - `budget`: its iterations in words, for the reports, when they are not the run's `iters`
      solver iterations (TV's FISTA count, PnP's schedule, a one-pass method)."""

    name: str = ""
    label: str = ""
    weight_name: str | None = None
    weight_symbol: str | None = None
    default_grid: tuple[float, ...] = ()
    grid_field: str | None = None
    paper_weights: dict[str, float] = {}
    needs_flow: bool = True
    tasks: tuple[str, ...] | None = None
    needs_linear: bool = False
    skip_reason: str = ""
    default: bool = False
    variant_of: str | None = None
    cost: float = 1.0
    lr: float = config.SOLVER_LR
    betas: tuple[float, float] = config.SOLVER_BETAS
    defect: str | None = None
    ablation: str | None = None
    budget: str | None = None
    fusable: bool = False

    # -- declarations ------------------------------------------------------------------------
    def symbol(self) -> str:
        """The weight's symbol for reports ('' for a method without a weight)."""
        if self.weight_name is None:
            return ""
        return self.weight_symbol or WEIGHT_SYMBOLS.get(self.weight_name, self.weight_name)

    def grid(self, preset) -> tuple:
        """The weight values to try (one cell each), from a Preset or preset name: the preset's
        `grids[name]` if it has one, else its `grid_field`, else `default_grid`. ``(None,)`` for a
        method without a weight."""
        if self.weight_name is None:
            return (None,)
        preset = preset_of(preset)
        override = preset.grids.get(self.name)
        if override is not None:
            return tuple(float(v) for v in override)
        if self.grid_field is not None:
            return preset_grid(preset, self.grid_field)
        return tuple(float(v) for v in self.default_grid)

    def paper_weight(self, task) -> float | None:
        """The weight the paper reports for a task (None: no weight, or task unsupported)."""
        if self.weight_name is None or self.supports(task) is not None:
            return None
        w = self.paper_weights.get(get_task(task).name)
        return None if w is None else float(w)

    def supports(self, task) -> str | None:
        """None if the task (name or Task) is supported, else the reason it is skipped."""
        task = get_task(task)
        if self.needs_linear and not task.linear:
            return self.skip_reason or f"{self.name} needs a linear forward operator"
        if self.tasks is None or task.name in self.tasks or task.kind in self.tasks:
            return None
        return self.skip_reason or f"{self.name} does not handle {task.name}"

    def describe(self) -> dict:
        """What a stored run records about the method, so its reports render without the
        module (or plugin) that defined it."""
        return {
            "label": self.label or self.name,
            "weight_name": self.weight_name,
            "weight_symbol": self.symbol(),
            "defect": self.defect,
            "ablation": self.ablation,
            "default": self.default,
            "variant_of": self.variant_of,
            "needs_flow": self.needs_flow,
            "budget": self.budget,
        }

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
            raise BenchError(
                f"{self.name} needs a weight {self.symbol()} ({self.weight_name}) for "
                f"{task.name}: the paper gives none for it; pass one (a grid, or weight=...)"
            )
        return float(weight)

    def check(self, task, y, seeds) -> Task:
        """The Task bound to the batch's images (`Task.for_images`), after checking it is
        supported and that there is one seed per measurement (BenchError, ValueError)."""
        task = get_task(task)
        reason = self.supports(task)
        if reason is not None:
            raise BenchError(f"{self.name} cannot restore {task.name}: {reason}")
        if len(seeds) != y.shape[0]:
            raise ValueError(f"{y.shape[0]} measurements but {len(seeds)} seeds")
        return task.for_images(seeds)

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
        """Restore a batch: y (model space [-1, 1), any device; the task's measurement shape)
        -> Restoration with x (B, 3, H, W) in model space on the CPU. `iters` bounds the
        iterations of an iterative method, `seeds` gives one base seed per image, `progress` a
        callable or tqdm bar ticked per iteration; raises BenchError for an unsupported task."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<Method {self.name}>"


class FlowMethod(Method):
    """A method that optimises the flow's latent with `bench.solve.solve_latents`.

    Subclasses set `init_std` (z0 ~ N(0, init_std² I); 0 gives z0 = 0) and implement
    `objective(flow, task, y, weight) -> objective(z, x, logdet_G) -> (B,)`."""

    init_std: float = config.LATENT_INIT_STD

    def initial_latent(self, seeds: Sequence[int], dim: int, device="cpu", dtype=torch.float32):
        """z0 (B, dim): per image from a generator seeded with seed + LATENT_STREAM (drawn in
        float32 on the CPU, so it is the same whatever device or dtype the solve uses)."""
        if self.init_std == 0:
            return torch.zeros(len(seeds), dim, device=device, dtype=dtype)
        z = data.seeded_normal(stream_seeds(seeds, LATENT_STREAM), dim)
        return (z * self.init_std).to(device=device, dtype=dtype)

    def objective(self, flow, task: Task, y: torch.Tensor, weight) -> Objective:
        raise NotImplementedError

    @property
    def fusable(self) -> bool:
        """Whether the runner may solve its cells together with others' in one latent batch
        (`bench.solve.solve_latents`): a flow method that restores through `problem`, i.e.
        that does not override `restore`, in its class or on the instance."""
        return getattr(self.restore, "__func__", None) is FlowMethod.restore

    def problem(self, flow, task, y, weight, seeds, device, lr: float | None = None):
        """The latent problem of one batch (`bench.solve.LatentProblem`): the task bound to
        the images (`check`), the weight resolved, y (B, ...) cast to the flow's device and
        dtype, z0 (`initial_latent`), the objective, and Adam's learning rate (`lr` overrides
        the method's) and betas. The flow is moved to `device` if it is elsewhere. Raises what
        `check` and `resolve_weight` raise, and BenchError without a flow."""
        y = torch.as_tensor(y)
        task = self.check(task, y, seeds)
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
        return LatentProblem(objective, z0, self.lr if lr is None else lr, tuple(self.betas))

    def restore(self, flow, task, y, weight, iters, seeds, device, progress=None, lr=None):
        problem = self.problem(flow, task, y, weight, seeds, device, lr)
        res = solve_latents(flow, [problem], iters, progress)[0]
        return Restoration(x=res.x.cpu(), loss=res.loss, diverged=res.diverged, seconds=res.seconds)


def l1_fit(task: Task, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """‖A x − y‖₁ per image (sum over pixels)."""
    return (task.A(x) - y).abs().flatten(1).sum(1)


def l2_fit(task: Task, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """‖A x − y‖₂² per image (sum over pixels)."""
    return (task.A(x) - y).pow(2).flatten(1).sum(1)


def plugin_call(method: Method, task_name: str, fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)``, where a method from a plugin that raises (anything but
    BenchError) gives a BenchError naming the method, where it came from and the task; a
    built-in method's own exception propagates (a bug is not a failed cell)."""
    try:
        return fn(*args, **kwargs)
    except BenchError:
        raise
    except Exception as e:
        origin = method_origin(method)
        if not origin.startswith(("plugin", "entry point")):
            raise
        text = str(e).splitlines()[0] if str(e) else ""
        raise BenchError(
            f"method {method.name} ({origin}) failed on {task_name}: "
            f"{type(e).__name__}: {text} (fix the plugin)"
        ) from None


def method_origin(method: Method) -> str:
    """Where a method was registered: its plugin or entry point, else its module."""
    return METHODS.origin(method.name) or type(method).__module__


def guarded_objective(method: Method, task_name: str, objective: Objective) -> Objective:
    """`objective` whose failures, and results that are not one loss per row (a tensor of shape
    (B,)), are reported as `plugin_call` reports them."""

    def checked(z, x, logdet_g):
        return check_losses(objective(z, x, logdet_g), z.shape[0])

    def f(z, x, logdet_g):
        return plugin_call(method, task_name, checked, z, x, logdet_g)

    return f


def restore_checked(
    method: Method, flow, task, y, weight, iters: int, seeds, device, progress=None
) -> Restoration:
    """`method.restore(...)` with its contract checked: a `Restoration` whose x is
    (B, 3, H, W) for B = len(seeds) images of the size of the task's clean images (32×32).
    A method from a plugin that raises (anything but BenchError), or any method that breaks
    the contract, gives a BenchError naming the method, where it came from and the task; a
    built-in method's own exception propagates (a bug is not a failed cell)."""
    task = get_task(task)
    where = f"method {method.name} ({method_origin(method)})"
    res = plugin_call(
        method,
        task.name,
        method.restore,
        flow,
        task,
        y,
        weight,
        iters,
        seeds,
        device,
        progress=progress,
    )
    want = (len(seeds), config.CHANNELS, config.IMAGE_SIZE, config.IMAGE_SIZE)
    x = getattr(res, "x", None)
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != want:
        got = type(res).__name__ if x is None else f"x of shape {tuple(getattr(x, 'shape', ()))}"
        raise BenchError(
            f"{where} returned {got} on {task.name}: restore must return a bench.Restoration "
            f"whose x is {want} in model space"
        )
    return res


# ---- registry ----------------------------------------------------------------------------------
METHODS: Registry[Method] = Registry("method", Method, "--methods")
