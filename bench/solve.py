"""The latent-space optimisation loop shared by every flow-based method (PROTOCOL §5).

`solve_latent` runs Adam on the latent z of a whole batch at once (`solve_latents`: of several
batches, each with its own objective and learning rate, in one generator pass per iteration: the
runner's fused solve). The flow is frozen
(`eval()`, no parameter gradients). The objective returns one loss per image and the optimiser
minimises their sum: Adam is elementwise and the flow treats images independently, so each
image's trajectory is the one it would have alone (the batch mean would only rescale the
gradient, which Adam ignores up to its epsilon).

Divergence is handled per image: an image whose loss or G(z) becomes non-finite is flagged,
stops receiving gradient, and keeps its last finite iterate; the others carry on. A solve never
raises because of a diverged image.

Speed: on a CPU, the first solve of a process asks glibc's malloc to keep freed memory for reuse
(`keep_freed_memory`): every iteration frees and reallocates the same large activation buffers,
and by default glibc hands blocks that large back to the kernel, so each iteration paid tens of
thousands of page faults. Set BENCH_MALLOC_TUNING=0 to leave malloc alone.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bench import config

# objective(z, x = G(z), logdet_G = log|det dG/dz|) -> per-image loss (B,)
Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# trace(step, x, loss, diverged): the evaluation after `step` Adam steps, rows stacked
Trace = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None]


def trace_steps(iters: int) -> tuple[int, ...]:
    """The Adam steps at which a solve of `iters` steps is traced: 0 (z0), the log-spaced
    1, 2, 3, 5, 10, 20, 30, 50, ... below `iters` (3 and its decades: the `cpu` preset's 300
    iterations are a traced step of any longer solve), and `iters` itself (the returned
    iterate)."""
    steps = {0, int(iters)}
    decade = 1
    while decade < iters:
        steps.update(m * decade for m in (1, 2, 3, 5) if m * decade < iters)
        decade *= 10
    return tuple(sorted(steps))


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters
_MALLOC_STATE: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc's malloc serve every allocation from its heap and never trim it, so freed
    tensor buffers are reused instead of returned to the kernel and faulted in again (zeroed)
    at the next allocation. Process-wide and once per process; the peak memory is unchanged
    (the resident set stays at its peak instead of shrinking between iterations). A no-op
    elsewhere than Linux/glibc or with BENCH_MALLOC_TUNING=0. Returns whether it is in effect."""
    global _MALLOC_STATE
    if _MALLOC_STATE is None:
        _MALLOC_STATE = False
        if sys.platform.startswith("linux") and os.environ.get("BENCH_MALLOC_TUNING") != "0":
            try:
                import ctypes

                libc = ctypes.CDLL("libc.so.6")
                _MALLOC_STATE = bool(
                    libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
                )
            except (OSError, AttributeError):
                pass
    return _MALLOC_STATE


@dataclass
class SolveResult:
    """The returned iterate and its bookkeeping (tensors detached, on the solve's device).

    `z`, `x = G(z)`: the final iterate (a diverged image: its last finite iterate);
    `loss`: the objective at the returned iterate per image; an image never finite (not even
    at z0) returns z0, x = 0 (mid-gray) and loss inf;
    `diverged`: per image, whether a non-finite loss or image was met; `iters`: Adam steps;
    `seconds`: wall time of the solve."""

    z: torch.Tensor
    x: torch.Tensor
    loss: np.ndarray
    diverged: np.ndarray
    iters: int
    seconds: float


def _finite_rows(loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(loss) & torch.isfinite(x).flatten(1).all(dim=1)


def _keep(z, x, loss, z_keep, x_keep, loss_keep, diverged):
    """Flag the images whose evaluation is non-finite (for good) and remember the evaluation
    of every image still alive: its last finite iterate. No host synchronisation."""
    z, x, loss = z.detach(), x.detach(), loss.detach()
    diverged = diverged | ~_finite_rows(loss, x)
    live = ~diverged
    if x_keep is None:
        x_keep = torch.zeros_like(x)
    z_keep = torch.where(live[:, None], z, z_keep)
    x_keep = torch.where(live.view(-1, *[1] * (x.ndim - 1)), x, x_keep)
    loss_keep = torch.where(live, loss.to(loss_keep.dtype), loss_keep)
    return z_keep, x_keep, loss_keep, diverged


def progress_hook(progress, iters: int):
    """Normalise a progress argument: None, a callable(iteration), an object with update(n)
    (a tqdm bar), or True (a bar of our own, `bench.progress.bar`: drawn only on a terminal).
    Returns (hook(t), close())."""
    if progress is None or progress is False:
        return (lambda t: None), (lambda: None)
    if progress is True:
        from bench.progress import bar as progress_bar

        bar = progress_bar(total=iters, desc="solve", unit="it", leave=False)
        return (lambda t: bar.update(1)), bar.close
    if hasattr(progress, "update"):
        return (lambda t: progress.update(1)), (lambda: None)
    if callable(progress):
        return progress, (lambda: None)
    raise TypeError(f"progress must be None, True, a callable or a tqdm bar, not {progress!r}")


@dataclass
class LatentProblem:
    """One batch of images to restore in latent space: its per-image `objective`, initial
    latent `z0` (B, D), and Adam's learning rate and betas. Several problems share the
    generator passes of one solve (`solve_latents`): a cell of the runner is one problem."""

    objective: Objective
    z0: torch.Tensor
    lr: float
    betas: tuple[float, float] = config.SOLVER_BETAS

    @property
    def rows(self) -> int:
        return int(self.z0.shape[0])


def solve_latent(
    flow: torch.nn.Module,
    objective: Objective,
    z0: torch.Tensor,
    iters: int,
    lr: float,
    betas: tuple[float, float] = config.SOLVER_BETAS,
    progress=None,
    autocast: torch.dtype | None = None,
) -> SolveResult:
    """Minimise ``objective(z, G(z), logdet_G).sum()`` over z with Adam, from z0 (B, D).

    `iters` Adam steps are taken (iters + 1 generative passes: the last evaluates the returned
    iterate, PROTOCOL §5 "return the final iterate x̂ = G(z)"). `progress` is called with the
    iteration number (1..iters) after each step, or updated if it is a tqdm bar (True makes
    one). The flow's parameters get no gradient; its training mode and requires_grad flags are
    restored afterwards.

    `autocast` (e.g. torch.bfloat16; None: that of an enclosing `bench.precision.precision`
    block, else off) runs the flow passes and the objective under
    ``torch.autocast`` (a speed option for perf measurements, not the protocol): G(z) and its
    log-det are cast back to z's dtype before the objective sees them, the loss is taken in z's
    dtype, and z and Adam's state stay in z's dtype.

    It is `solve_latents` with one problem."""
    problem = LatentProblem(objective, z0, lr, tuple(betas))
    return solve_latents(flow, [problem], iters, progress, autocast)[0]


def solve_latents(
    flow: torch.nn.Module,
    problems: Sequence[LatentProblem],
    iters: int,
    progress=None,
    autocast: torch.dtype | None = None,
    trace: Trace | None = None,
) -> list[SolveResult]:
    """Solve several problems at once (the fused solve): each iteration makes one generator
    pass over the rows of every problem stacked, then evaluates each problem's objective on its
    own rows (so a method's extra work, e.g. MAP's second pass through the flow, runs on its rows
    only) and takes one Adam step per problem (its own learning rate and betas, one parameter
    group each). Rows are independent (the flow is frozen and treats images independently, the
    losses are summed, Adam is elementwise), so a problem's rows follow the trajectory they
    would follow solved alone, up to the rounding of batch-size-dependent kernels.

    `autocast` None takes the dtype of an enclosing `bench.precision.precision` block (none:
    float32). Divergence is masked per row, as in `solve_latent`. Returns one SolveResult per
    problem, in order; its `seconds` is the wall time of the whole solve (split it as you see
    fit). Raises ValueError for a z0 that is not (B, D), problems of different latent sizes,
    devices or dtypes, a negative `iters`, or an objective that does not return one loss per
    row.

    `trace(step, x, loss, diverged)` is called at each of `trace_steps(iters)` with that step's
    evaluation, every problem's rows stacked: x = G(z) (B, C, H, W) and the loss (B,) of the
    iterate after `step` Adam steps (a diverged row: its last finite one, flagged in
    `diverged`). The tensors are the ones the iteration computed anyway, detached; the hook only
    reads them, so the solve is the same with or without it."""
    problems = list(problems)
    if not problems:
        return []
    if autocast is None:  # the precision of the block it runs in (`bench.precision`)
        from bench.precision import AUTOCAST

        autocast = AUTOCAST.get()
    for p in problems:
        _check_solve_args(p.z0, iters)
    first = problems[0].z0
    if any(
        (p.z0.shape[1], p.z0.device, p.z0.dtype) != (first.shape[1], first.device, first.dtype)
        for p in problems
    ):
        raise ValueError("problems solved together need z0 of one latent size, device and dtype")
    if first.device.type == "cpu":
        keep_freed_memory()
    with _frozen(flow):
        hook, close = progress_hook(progress, iters)
        start = time.perf_counter()
        try:
            slices = row_slices(problems)
            kept = _descend(flow, problems, slices, iters, hook, autocast, trace)
            return _results(slices, kept, iters, start)
        finally:
            close()


def _descend(
    flow, problems: list[LatentProblem], slices: list[slice], iters: int, hook, autocast, trace=None
):
    """Adam on every problem's latent from its z0; (z_keep, x_keep, loss_keep, diverged) of the
    final evaluation, rows stacked in problem order (`slices`: `row_slices`); `trace` as in
    `solve_latents`."""
    traced = frozenset(trace_steps(iters)) if trace is not None else frozenset()
    zs = [p.z0.detach().clone().requires_grad_(True) for p in problems]
    evaluate = _evaluator(flow, [p.objective for p in problems], slices, autocast)
    opt = torch.optim.Adam(
        [
            {"params": [z], "lr": p.lr, "betas": tuple(p.betas)}
            for z, p in zip(zs, problems, strict=True)
        ]
    )
    z0 = torch.cat([p.z0.detach() for p in problems]) if len(zs) > 1 else problems[0].z0
    z_keep, x_keep, loss_keep, diverged = _nothing_kept(z0)
    for t in range(iters):
        opt.zero_grad(set_to_none=True)
        z, x, logdet, loss = evaluate(zs)
        z_keep, x_keep, loss_keep, diverged = _keep(z, x, loss, z_keep, x_keep, loss_keep, diverged)
        if t in traced:
            trace(t, x_keep, loss_keep, diverged)
        torch.where(diverged, torch.zeros_like(loss), loss).sum().backward()
        # diverged rows get no gradient; a stray non-finite gradient entry of a finite
        # image is dropped rather than poisoning Adam's moments
        for zi, s in zip(zs, slices, strict=True):
            zi.grad.masked_fill_(diverged[s, None] | ~torch.isfinite(zi.grad), 0.0)
        opt.step()
        hook(t + 1)
    with torch.no_grad():  # evaluate the final iterate
        z, x, logdet, loss = evaluate(zs)
        kept = _keep(z, x, loss, z_keep, x_keep, loss_keep, diverged)
    if iters in traced:
        trace(iters, kept[1], kept[2], kept[3])
    return kept


def check_losses(loss, rows: int) -> torch.Tensor:
    """`loss` if it is one loss per row, a tensor of shape (rows,); else ValueError naming
    what the objective returned."""
    if not isinstance(loss, torch.Tensor) or tuple(loss.shape) != (rows,):
        got = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"objective must return one loss per row, shape ({rows},), got {got}")
    return loss


def row_slices(problems: Sequence[LatentProblem]) -> list[slice]:
    """Where each problem's rows sit when the problems are stacked, in order."""
    bounds = np.cumsum([0] + [p.rows for p in problems]).tolist()
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def _check_solve_args(z0: torch.Tensor, iters: int) -> None:
    """ValueError for a z0 that is not (B, D) or a negative number of iterations."""
    if z0.ndim != 2:
        raise ValueError(f"z0 must have shape (B, D), got {tuple(z0.shape)}")
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")


@contextlib.contextmanager
def _frozen(flow: torch.nn.Module):
    """Inside the block the flow is in eval mode with no parameter gradients; its training
    mode and requires_grad flags are restored afterwards."""
    was_training = flow.training
    flags = [(p, p.requires_grad) for p in flow.parameters()]
    flow.eval()
    flow.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        flow.train(was_training)


def _evaluator(flow, objectives: list[Objective], slices: list[slice], autocast):
    """evaluate(zs) -> (z, x = G(z), logdet_G, per-row loss) for the latents `zs` of the
    problems stacked as z: one generator pass, then each objective on its own rows (its latent
    itself, so its gradient reaches it directly). Under ``torch.autocast`` when `autocast` is
    a dtype (G(z), its log-det and the loss are cast back to z's dtype). ValueError for an
    objective that does not return one loss per row."""

    def losses(zs, x, logdet):
        out = [
            check_losses(f(zi, x[s], logdet[s]), zi.shape[0])
            for f, zi, s in zip(objectives, zs, slices, strict=True)
        ]
        return out[0] if len(out) == 1 else torch.cat(out)

    def evaluate(zs):
        z = zs[0] if len(zs) == 1 else torch.cat(zs)
        if autocast is None:
            x, logdet = flow.inverse(z)
            return z, x, logdet, losses(zs, x, logdet)
        with torch.autocast(device_type=z.device.type, dtype=autocast):
            x, logdet = flow.inverse(z)
            x, logdet = x.to(z.dtype), logdet.to(z.dtype)
            return z, x, logdet, losses(zs, x, logdet).to(z.dtype)

    return evaluate


def _nothing_kept(z0: torch.Tensor):
    """What `_keep` starts from: the last finite evaluation of each image is none yet
    (z_keep = z0, x_keep = None: zeros once the shape of x is known, loss inf), and no image
    has diverged."""
    b = z0.shape[0]
    z_keep = z0.detach().clone()
    loss_keep = torch.full((b,), float("inf"), dtype=z0.dtype, device=z0.device)
    diverged = torch.zeros(b, dtype=torch.bool, device=z0.device)
    return z_keep, None, loss_keep, diverged


def _results(slices: list[slice], kept, iters: int, start: float) -> list[SolveResult]:
    """Each problem's result (its `slices` of the stacked `kept`), timed once queued CUDA work
    has finished (every result carries the whole solve's time)."""
    z_keep, x_keep, loss_keep, diverged = kept
    if z_keep.device.type == "cuda":
        torch.cuda.synchronize(z_keep.device)
    seconds = time.perf_counter() - start
    loss, flags = loss_keep.cpu().double().numpy(), diverged.cpu().numpy()
    return [
        SolveResult(
            z=z_keep[s], x=x_keep[s], loss=loss[s], diverged=flags[s], iters=iters, seconds=seconds
        )
        for s in slices
    ]
