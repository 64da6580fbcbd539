"""The timed calls of Table 2: a timing loop (CUDA synchronised around every call), generation,
one iteration of the paper's solver, the 1×1 convolutions' inverses alone, and the convolution
FLOPs of one generation."""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter

import numpy as np
import torch

from bench import config
from bench.flows import InvConv1x1, MultiScaleFlow
from bench.machine import sync
from bench.methods import Ours
from bench.tasks import get_task
from bench.timing.settings import SOLVER_ALPHA


def timed_loop(
    step: Callable[[], object], iters: int, warmup: int, device, tick: Callable | None = None
) -> np.ndarray:
    """Run `step` `warmup` times untimed, then `iters` times, each timed alone; ms per call."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"need iters >= 1 and warmup >= 0, got {iters}, {warmup}")
    for _ in range(warmup):
        step()
        if tick:
            tick()
    times = np.empty(iters)
    for i in range(iters):
        sync(device)
        t0 = perf_counter()
        step()
        sync(device)
        times[i] = (perf_counter() - t0) * 1e3
        if tick:
            tick()
    return times


def random_latent(flow: MultiScaleFlow, batch: int, device, seed: int, std: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, flow.dim, generator=g) * std).to(device)


def time_generation(
    flow: MultiScaleFlow,
    batch: int,
    iters: int,
    warmup: int,
    device,
    seed: int = 0,
    tick: Callable | None = None,
) -> np.ndarray:
    """Milliseconds per generated batch (`flow.inverse(z)`, z ~ N(0, I), inference under
    `torch.no_grad`), one entry per timed iteration after `warmup` untimed ones."""
    flow.eval()
    z = random_latent(flow, batch, device, seed)
    with torch.no_grad():
        return timed_loop(lambda: flow.inverse(z), iters, warmup, device, tick)


def time_solver_steps(
    flow: MultiScaleFlow,
    batch: int,
    iters: int,
    warmup: int,
    device,
    alpha: float = SOLVER_ALPHA,
    lr: float = config.SOLVER_LR,
    seed: int = 0,
    tick: Callable | None = None,
) -> np.ndarray:
    """Milliseconds per iteration of the paper's solver (Eq. 7–8) on one batch, with the loss
    `Ours.objective` builds on denoising (A = identity):
    `x, logdet_G = G(z)`; loss = ‖x − y‖₁ + α(−log N(z) + logdet_G) per image, summed; backward
    to z; Adam step. The flow is frozen here (`requires_grad_(False)`): z is the only leaf."""
    flow.eval()
    flow.requires_grad_(False)
    g = torch.Generator().manual_seed(seed + 1)
    y = (torch.rand(batch, *flow.input_shape, generator=g) * 2 - 1).to(device)
    z = random_latent(flow, batch, device, seed, config.LATENT_INIT_STD).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr, betas=config.SOLVER_BETAS)
    objective = Ours().objective(flow, get_task("denoising"), y, alpha)  # the solver's own loss

    def step():
        opt.zero_grad(set_to_none=True)
        x, logdet = flow.inverse(z)
        objective(z, x, logdet).sum().backward()
        opt.step()

    return timed_loop(step, iters, warmup, device, tick)


def inv_convs(flow: torch.nn.Module) -> list[InvConv1x1]:
    return [m for m in flow.modules() if isinstance(m, InvConv1x1)]


def set_glow_mode(flow: MultiScaleFlow, mode: str) -> MultiScaleFlow:
    """Switch every 1×1 convolution of `flow` to `mode` (same matrices W) and make sure the
    flow is frozen (a cached inverse is only reused for a frozen weight when autograd is on)."""
    flow.set_inv_mode(mode)
    flow.requires_grad_(False)
    return flow


def time_inverses(
    flow: MultiScaleFlow, iters: int, warmup: int, device, tick: Callable | None = None
) -> np.ndarray:
    """Milliseconds to compute every 1×1 convolution's inverse and log|det| once (what the
    `recompute` mode adds to each generation; `cached` pays it once per solve)."""
    ws = [m.matrix().detach() for m in inv_convs(flow)]

    def step():
        for w in ws:
            torch.linalg.inv(w)
            torch.linalg.slogdet(w)

    with torch.no_grad():
        return timed_loop(step, iters, warmup, device, tick)


def generation_gflop(flow: MultiScaleFlow, batch: int, device) -> float:
    """GFLOP of convolutions and matrix products in one generated batch, counted by
    `torch.utils.flop_counter` on batches of 1 and 2 and extrapolated (the count is affine in
    the batch: per-image convolutions plus per-call matrix work such as the LU products);
    matrix inverses and triangular solves are not counted. NaN when counting fails."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        counts = []
        for b in (1, 2):
            z = random_latent(flow, b, device, 0)
            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                flow.inverse(z)
            counts.append(counter.get_total_flops())
        return (counts[0] + (counts[1] - counts[0]) * (batch - 1)) / 1e9
    except Exception:  # noqa: BLE001 - an optional diagnostic
        return float("nan")
