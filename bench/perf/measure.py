"""The measurements of `bench perf`, one row each: the float32 matmul rate, one solver
iteration (through `bench.solve.solve_latent`), generation, one training step, and the bf16
accuracy check."""

from __future__ import annotations

import copy
from time import perf_counter

import numpy as np
import torch

from bench import config
from bench.machine import sync
from bench.perf.flops import batch_flops
from bench.perf.host import PeakMemory
from bench.perf.settings import GIB
from bench.timing import random_latent, timed_loop


def perf_flow(arch: str, width: int, device, seed: int = 0):
    """A flow for timing: built with `seed`, ActNorm initialised on a random batch, then every
    parameter moved slightly off its initialisation (the last convolutions start at zero, which
    would make every coupling an identity and the numerics trivial). Eval mode, frozen."""
    from bench.flows import build_flow

    torch.manual_seed(seed)
    flow = build_flow(arch, hidden=width)
    g = torch.Generator().manual_seed(seed)
    flow.initialize(torch.rand(16, *flow.input_shape, generator=g) * 2 - 1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    flow.requires_grad_(False)
    return flow.to(device).eval()


def _row(figure: str, arch: str, batch: int, times: np.ndarray, flops: float, mm_gflops, **kw):
    med = float(np.median(times))
    gflops = flops / (med / 1e3) / 1e9 if med > 0 else float("nan")
    row = {
        "figure": figure,
        "arch": arch,
        "mode": kw.pop("mode", "fp32"),
        "batch": batch,
        "reps": len(times),
        "median_ms": med,
        "min_ms": float(times.min()),
        "max_ms": float(times.max()),
        "ms_per_image": med / batch,
        "images_per_s": batch / (med / 1e3),
        "gflop_per_image": flops / batch / 1e9,
        "gflop_s": gflops,
        "pct_matmul": 100 * gflops / mm_gflops if mm_gflops else float("nan"),
    }
    row.update(kw)
    return row


def measure_matmul(n: int, reps: int, warmup: int, device) -> dict:
    """float32 `torch.mm` of two n×n matrices: 2n³ FLOP per call."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    out = torch.empty(n, n, device=device)
    with torch.inference_mode():
        times = timed_loop(lambda: torch.mm(a, b, out=out), max(reps, 5), max(warmup, 2), device)
    row = _row("matmul", "-", 1, times, 2.0 * n**3, None, size=n)
    row["pct_matmul"] = 100.0
    row["ms_per_image"] = row["images_per_s"] = row["gflop_per_image"] = float("nan")
    return row


def _solver_parts(flow, batch: int, device, seed: int = 0):
    """y, z0, objective of the paper's solver on denoising (A = identity), as `Ours` builds
    them (the cost does not depend on the task's weight or values)."""
    from bench.methods import Ours
    from bench.tasks import get_task

    method = Ours()
    task = get_task("denoising")
    g = torch.Generator().manual_seed(seed + 1)
    y = (torch.rand(batch, *flow.input_shape, generator=g) * 2 - 1).to(device)
    z0 = method.initial_latent([seed + i for i in range(batch)], flow.dim, device=device)
    alpha = method.paper_weight(task)
    return y, z0, method.objective(flow, task, y, alpha), method


def solver_iteration_flops(flow, batch: int, device) -> float:
    """FLOPs of one solver iteration: generation with log-det, loss, backward to z."""

    def make(b):
        _, z0, objective, _ = _solver_parts(flow, b, device)

        def run():
            z = z0.clone().requires_grad_(True)
            x, logdet = flow.inverse(z)
            objective(z, x, logdet).sum().backward()

        return run

    return batch_flops(make, batch)


def measure_solver(
    flow,
    batch: int,
    reps: int,
    warmup: int,
    device,
    mm_gflops: float,
    autocast=None,
    mode: str = "fp32",
) -> dict:
    """ms per iteration of the paper's solver: `solve_latent` runs warmup + reps Adam steps and
    its progress hook stamps the end of each; the first `warmup` are dropped."""
    from bench.solve import solve_latent

    y, z0, objective, method = _solver_parts(flow, batch, device)
    stamps: list[float] = []

    def hook(t):
        sync(device)
        stamps.append(perf_counter())

    kwargs = {} if autocast is None else {"autocast": autocast}
    warmup = max(warmup, 1)  # the first iteration also sets the solve up
    with PeakMemory(device) as mem:
        t0 = perf_counter()
        solve_latent(flow, objective, z0, warmup + reps, method.lr, method.betas, hook, **kwargs)
    times = np.diff([t0, *stamps])[warmup:] * 1e3
    flops = solver_iteration_flops(flow, batch, device)
    return _row(
        "solver", flow.arch, batch, times, flops, mm_gflops, mode=mode, peak_mem_gib=mem.peak / GIB
    )


def measure_generation(flow, batch: int, reps: int, warmup: int, device, mm_gflops) -> dict:
    """ms per batch of `flow.inverse(z)` (image and log-det) under `torch.inference_mode`."""
    z = random_latent(flow, batch, device, 0)

    def make(b):
        zb = random_latent(flow, b, device, 0)
        return lambda: flow.inverse(zb)

    with torch.inference_mode():
        with PeakMemory(device) as mem:
            times = timed_loop(lambda: flow.inverse(z), reps, warmup, device)
        flops = batch_flops(make, batch)
    note = "" if flow.arch == "coupling" else "1×1-convolution inverses cached (default mode)"
    return _row(
        "generation",
        flow.arch,
        batch,
        times,
        flops,
        mm_gflops,
        note=note,
        peak_mem_gib=mem.peak / GIB,
    )


def measure_training(
    flow, batch: int, reps: int, warmup: int, device, mm_gflops, fused: bool = False
) -> dict:
    """One training step as `bench.train` takes it: mean NLL of a batch, backward, Adam
    (lr 1e-4, betas (0.5, 0.999)), on a trainable copy of `flow`. `fused`: torch's fused Adam
    kernel instead of the default per-parameter one (not what `bench train` uses)."""
    net = copy.deepcopy(flow).train()
    net.requires_grad_(True)
    opt = torch.optim.Adam(
        net.parameters(), lr=config.TRAIN_LR, betas=config.TRAIN_BETAS, fused=fused or None
    )
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(batch, *net.input_shape, generator=g) * 2 - 1).to(device)

    def step():
        loss = -net.log_prob(x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def make(b):
        xb = x[:1].expand(b, -1, -1, -1).contiguous()

        def run():
            net.zero_grad(set_to_none=True)
            (-net.log_prob(xb).mean()).backward()

        return run

    with PeakMemory(device) as mem:
        times = timed_loop(step, reps, warmup, device)
    flops = batch_flops(make, batch)
    mode = "fp32, fused Adam" if fused else "fp32"
    return _row(
        "training",
        flow.arch,
        batch,
        times,
        flops,
        mm_gflops,
        mode=mode,
        peak_mem_gib=mem.peak / GIB,
    )


def bf16_accuracy(flow, images: int, iters: int, device) -> dict:
    """`precision_accuracy` of bfloat16 autocast."""
    return precision_accuracy(flow, images, iters, device, "bf16")


def precision_accuracy(flow, images: int, iters: int, device, precision: str = "bf16") -> dict:
    """Restore the same denoising measurements with the paper's solver in float32 and in
    `precision` (`bench.precision`: 'bf16' autocast, 'tf32' on CUDA), from the same z0; PSNR of
    each against the clean 5-bit target and of one against the other (on builtin test images:
    cost and rounding do not depend on the data). Row figure '<precision>_accuracy'."""
    from bench import data, metrics
    from bench.methods import Ours
    from bench.precision import precision as precision_block
    from bench.solve import solve_latent
    from bench.tasks import get_task, image_seeds

    imgs = data.load_images("builtin", "test", limit=images, progress=False)
    task, method = get_task("denoising"), Ours()
    y = task.measure(imgs.images, imgs.names).to(device)
    seeds = image_seeds(imgs.names)
    z0 = method.initial_latent(seeds, flow.dim, device=device)
    objective = method.objective(flow, task, y, method.paper_weight(task))
    out = {}
    for name in ("fp32", precision):
        with precision_block(name, device):
            res = solve_latent(flow, objective, z0, iters, method.lr, method.betas)
        out[name] = data.to_pixels(res.x.cpu())
    ref = imgs.images
    p32 = metrics.psnr(out["fp32"], ref)
    p16 = metrics.psnr(out[precision], ref)
    between = metrics.psnr(out[precision], out["fp32"])
    label = "bf16 autocast" if precision == "bf16" else precision
    return {
        "figure": f"{precision}_accuracy",
        "arch": flow.arch,
        "mode": f"{label} vs fp32",
        "batch": images,
        "reps": iters,
        "psnr_fp32": float(np.mean(p32)),
        "psnr_bf16" if precision == "bf16" else f"psnr_{precision}": float(np.mean(p16)),
        "psnr_delta": float(np.mean(p16 - p32)),
        f"psnr_{precision}_vs_fp32": float(np.mean(between[np.isfinite(between)]))
        if np.isfinite(between).any()
        else float("inf"),
        "max_pixel_diff": int((out[precision].int() - out["fp32"].int()).abs().max()),
    }
