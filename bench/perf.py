"""`bench perf`: how close solving, generating and training come to what the hardware allows.

One run measures, on one device:

- the float32 matrix-multiply rate (``torch.mm`` of two n×n matrices, 2n³ FLOP), the
  reference ceiling every other figure is held against;
- one iteration of the paper's solver (generation with its log-determinant, L1 data term and
  α·L(z), backward to z, Adam step) through the production loop `bench.solve.solve_latent`,
  at each batch size asked (ms per image, achieved GFLOP/s, % of the matmul rate);
- generation alone (z → x, under `torch.inference_mode`) for both architectures;
- one training step (forward x → z, mean NLL, backward, Adam) of the coupling flow;
- the peak memory of each measurement (CPU: the process's resident-set high-water mark, reset
  before each measurement; CUDA: the allocator's peak).

Times are medians over `reps` timed repetitions after `warmup` untimed ones.

FLOPs: convolutions and matrix products only, one multiply-add = 2 FLOP, counted by
`torch.utils.flop_counter.FlopCounterMode` on the very operations one repetition executes (so a
backward pass counts what autograd runs: gradients with respect to inputs only for the frozen
flow of a solve, inputs and weights in training). Elementwise work (activations, ActNorm,
couplings, Adam) is not counted: it is cheap in FLOPs but not in time, which is why the
achieved rate is below the matmul rate. `analytic_flops` counts the same convolutions from the
architecture alone as a cross-check.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import platform
import resource
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from time import perf_counter

import numpy as np
import torch

from bench import config, machine
from bench.atomic import all_or_nothing, atomic_write, atomic_write_text
from bench.timing import random_latent, sync, timed_loop

PERF_CSV = "perf.csv"
PERF_MD = "perf.md"
# targets (% of the measured matmul rate, float32) and the memory bound of the issue
TARGET_PCT = {"solver": 50.0, "generation": 50.0, "training": 40.0}
TARGET_BATCH = {"solver": 32, "generation": None, "training": config.TRAIN_BATCH}
MEMORY_LIMIT_GIB = 8.0
MEMORY_BATCH = config.EVAL_IMAGES  # 192 images solved in one batch
# other work may keep at most (CPUs - our threads + this) CPUs busy, else the figures are
# marked unreliable: OpenMP threads that wait for a descheduled sibling stall every operation
IDLE_BUSY_CPUS = 0.5


def _busy_limit(threads: int | None) -> float:
    return (os.cpu_count() or 1) - (threads or torch.get_num_threads()) + IDLE_BUSY_CPUS


GIB = 1024**3


@dataclass(frozen=True)
class PerfPreset:
    """Size knobs of `bench perf`."""

    name: str
    width: int
    batches: tuple[int, ...]  # solver (and generation) batch sizes
    train_batch: int
    reps: int
    warmup: int
    matmul_n: int
    bf16_images: int  # images restored for the bf16 accuracy check
    bf16_iters: int  # solver iterations of that check


PERF_PRESETS: dict[str, PerfPreset] = {
    "default": PerfPreset(
        "default", config.HIDDEN, (32, MEMORY_BATCH), config.TRAIN_BATCH, 7, 2, 2048, 4, 20
    ),
    "smoke": PerfPreset("smoke", 16, (4, 8), 4, 3, 1, 256, 2, 5),
}


# ---- machine --------------------------------------------------------------------------------
def physical_cores() -> int:
    """CPUs this process may run on (one thread per core on the machines we use)."""
    return machine.available_cpus()


def configure_threads(threads: int | None = None, interop: int | None = 1) -> dict:
    """Intra-op threads (default: one per available CPU) and inter-op threads (default 1: the
    flows are sequential, a second inter-op pool only competes for the cores). Setting the
    inter-op pool fails once torch has used it; that is reported, not raised."""
    torch.set_num_threads(threads or physical_cores())
    note = ""
    if interop is not None and torch.get_num_interop_threads() != interop:
        try:
            torch.set_num_interop_threads(interop)
        except RuntimeError:
            note = "inter-op threads already fixed by earlier torch work"
    return {
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "threads_note": note,
    }


def cpu_description() -> dict:
    """CPU model, logical CPUs and the vector/matrix extensions torch can use."""
    name, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    ext = [f for f in wanted if f in flags]
    return {"cpu": name, "cpus": os.cpu_count(), "cpu_ext": " ".join(ext) or "unknown"}


def machine_info(device) -> dict:
    dev = str(device)
    info = {
        **cpu_description(),
        "device": dev,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available(),
    }
    if dev.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(dev))
    return info


def load_average() -> tuple[float, float, float] | None:
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def busy_cpus(seconds: float = 1.0) -> float | None:
    """How many CPUs other processes kept busy over `seconds` (`bench.machine.busy_cpus`:
    /proc/stat, this process's own CPU time left out): a direct check that the machine is idle
    before measuring."""
    return machine.busy_cpus(seconds)


# ---- memory ---------------------------------------------------------------------------------
def _vm_hwm() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def _release_free_memory() -> None:
    """Hand memory that malloc keeps for reuse (see `bench.solve.keep_freed_memory`) back to
    the kernel, so that a peak measured next is that of the next block alone."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak memory of a block, in bytes (`.peak`). CPU: the resident-set high-water mark of the
    process, reset on entry through /proc/self/clear_refs (Linux); where that is impossible, the
    lifetime maximum (`.exact` False). CUDA: `torch.cuda.max_memory_allocated`."""

    def __init__(self, device):
        self.device = str(device)
        self.peak: int | None = None
        self.exact = True

    def __enter__(self):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        _release_free_memory()
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.exact = False
        return self

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
            self.peak = int(torch.cuda.max_memory_allocated(self.device))
            return False
        hwm = _vm_hwm()
        if hwm is None:
            self.exact = False
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.peak = hwm
        return False


# ---- FLOPs ----------------------------------------------------------------------------------
def conv2d_flops(batch: int, cin: int, cout: int, kernel, out_hw, groups: int = 1) -> int:
    """Hand count of one forward 2-D convolution: 2 · B · Cout · Hout · Wout · (Cin/g) · kh · kw
    (bias additions not counted, as `FlopCounterMode` does)."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    oh, ow = (out_hw, out_hw) if isinstance(out_hw, int) else out_hw
    return 2 * batch * cout * oh * ow * (cin // groups) * kh * kw


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the convolutions and matrix products `fn` runs (forward and any backward it
    calls), counted by `torch.utils.flop_counter.FlopCounterMode`."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def batch_flops(make: Callable[[int], Callable[[], object]], batch: int) -> float:
    """FLOPs of one repetition at `batch`, counted at batches 1 and 2 and extrapolated (every
    count here is affine in the batch), so counting costs two tiny passes."""
    f1, f2 = count_flops(make(1)), count_flops(make(2))
    return float(f1 + (f2 - f1) * (batch - 1))


def analytic_flops(flow) -> dict:
    """Convolution FLOPs per image of one generation (z → x) read off the architecture alone:
    each coupling network's two convolutions and, for glow, each 1×1 convolution. A solver
    iteration adds the input-gradient convolutions of the backward pass (×2 in all); a training
    step adds input and weight gradients (×3)."""
    from bench.flows.layers import AffineCoupling, InvConv1x1

    total = 0
    s = flow.input_shape[1]
    for scale in flow.scales:
        s //= 2  # every scale starts with a squeeze
        for layer in scale.layers:
            if isinstance(layer, AffineCoupling):
                net = layer.net
                for conv, insize in ((net.conv1, s), (net.conv2, s)):
                    k, p = conv.kernel_size[0], conv.padding[0]
                    out = insize + 2 * p - k + 1
                    total += conv2d_flops(1, conv.in_channels, conv.out_channels, k, out)
            elif isinstance(layer, InvConv1x1):
                total += conv2d_flops(1, layer.channels, layer.channels, 1, s)
    return {"generation": total, "solver": 2 * total, "training": 3 * total}


# ---- helpers --------------------------------------------------------------------------------
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


# ---- measurements ---------------------------------------------------------------------------
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
    """Restore the same denoising measurements with the paper's solver in float32 and under
    bfloat16 autocast, from the same z0; PSNR of each against the clean 5-bit target and of one
    against the other (on builtin test images: cost and rounding do not depend on the data)."""
    from bench import data, metrics
    from bench.methods import Ours
    from bench.solve import solve_latent
    from bench.tasks import get_task, image_seeds

    imgs = data.load_images("builtin", "test", limit=images, progress=False)
    task, method = get_task("denoising"), Ours()
    y = task.measure(imgs.images, imgs.names).to(device)
    seeds = image_seeds(imgs.names)
    z0 = method.initial_latent(seeds, flow.dim, device=device)
    objective = method.objective(flow, task, y, method.paper_weight(task))
    out = {}
    for name, ac in (("fp32", None), ("bf16", torch.bfloat16)):
        kw = {} if ac is None else {"autocast": ac}
        res = solve_latent(flow, objective, z0, iters, method.lr, method.betas, **kw)
        out[name] = data.to_pixels(res.x.cpu())
    ref = imgs.images
    p32 = metrics.psnr(out["fp32"], ref)
    p16 = metrics.psnr(out["bf16"], ref)
    between = metrics.psnr(out["bf16"], out["fp32"])
    return {
        "figure": "bf16_accuracy",
        "arch": flow.arch,
        "mode": "bf16 autocast vs fp32",
        "batch": images,
        "reps": iters,
        "psnr_fp32": float(np.mean(p32)),
        "psnr_bf16": float(np.mean(p16)),
        "psnr_delta": float(np.mean(p16 - p32)),
        "psnr_bf16_vs_fp32": float(np.mean(between[np.isfinite(between)]))
        if np.isfinite(between).any()
        else float("inf"),
        "max_pixel_diff": int((out["bf16"].int() - out["fp32"].int()).abs().max()),
    }


# ---- the run --------------------------------------------------------------------------------
@dataclass
class PerfResult:
    rows: list[dict]
    info: dict


def run_perf(
    preset: PerfPreset,
    device="cpu",
    threads: int | None = None,
    bf16: bool = False,
    reference: bool = False,
    checkpoint: str | None = None,
    log: Callable[[str], None] = print,
    wait_idle: float = 0.0,
) -> PerfResult:
    """Every measurement of `bench perf` in one run (see the module docstring). `threads`:
    intra-op threads for the run (default one per CPU; torch's setting is restored after);
    `wait_idle`: seconds to wait, at most, for other processes to leave the CPUs."""
    previous = torch.get_num_threads()
    try:
        return _run_perf(preset, device, threads, bf16, reference, checkpoint, log, wait_idle)
    finally:
        torch.set_num_threads(previous)


def _run_perf(preset, device, threads, bf16, reference, checkpoint, log, wait_idle):
    thread_info = configure_threads(threads) if not str(device).startswith("cuda") else {}
    busy = busy_cpus()
    deadline = perf_counter() + wait_idle
    limit = _busy_limit(threads)
    while busy is not None and busy > limit and perf_counter() < deadline:
        log(f"{busy:.2f} CPUs busy with other work: waiting for an idle machine ...")
        busy = busy_cpus(min(10.0, max(deadline - perf_counter(), 0.1)))
    load_start = load_average()
    started = datetime.now().astimezone()
    ctx = contextlib.nullcontext()
    if reference:
        from bench.flows.layers import reference_path

        ctx = reference_path()
    rows: list[dict] = []
    with ctx:
        log(f"matmul {preset.matmul_n}x{preset.matmul_n} ...")
        mm = measure_matmul(preset.matmul_n, preset.reps, preset.warmup, device)
        rows.append(mm)
        mm_rate = mm["gflop_s"]
        log(f"  {mm_rate:.1f} GFLOP/s")
        if checkpoint:
            from bench.train import load_checkpoint

            coupling, _ = load_checkpoint(checkpoint, device, arch="coupling")
            coupling.requires_grad_(False)
            preset = replace(preset, width=coupling.arch_config["hidden"])
        else:
            coupling = perf_flow("coupling", preset.width, device)
        for b in preset.batches:
            log(f"solver iteration, batch {b} ...")
            rows.append(measure_solver(coupling, b, preset.reps, preset.warmup, device, mm_rate))
            log(f"  {rows[-1]['ms_per_image']:.3f} ms/image, {rows[-1]['pct_matmul']:.0f}% of mm")
        if bf16:
            b = preset.batches[0]
            log(f"solver iteration, batch {b}, bf16 autocast ...")
            rows.append(
                measure_solver(
                    coupling,
                    b,
                    min(preset.reps, 3),  # slow where the CPU has no bf16 instructions
                    preset.warmup,
                    device,
                    mm_rate,
                    autocast=torch.bfloat16,
                    mode="bf16 autocast",
                )
            )
            log(f"bf16 accuracy: {preset.bf16_images} images, {preset.bf16_iters} iterations ...")
            rows.append(bf16_accuracy(coupling, preset.bf16_images, preset.bf16_iters, device))
        glow = perf_flow("glow", preset.width, device)
        for flow in (coupling, glow):
            for b in preset.batches:
                log(f"generation, {flow.arch}, batch {b} ...")
                rows.append(
                    measure_generation(flow, b, preset.reps, preset.warmup, device, mm_rate)
                )
                log(
                    f"  {rows[-1]['ms_per_image']:.3f} ms/image, "
                    f"{rows[-1]['pct_matmul']:.0f}% of mm"
                )
        del glow
        for fused in (False, True):
            log(f"training step, batch {preset.train_batch}{', fused Adam' if fused else ''} ...")
            rows.append(
                measure_training(
                    coupling,
                    preset.train_batch,
                    preset.reps,
                    preset.warmup,
                    device,
                    mm_rate,
                    fused=fused,
                )
            )
            log(f"  {rows[-1]['images_per_s']:.1f} images/s, {rows[-1]['pct_matmul']:.0f}% of mm")
        log("matmul again (the ceiling is the better of the two) ...")
        mm_end = measure_matmul(preset.matmul_n, preset.reps, preset.warmup, device)
    mm["gflop_s_start"], mm["gflop_s_end"] = mm["gflop_s"], mm_end["gflop_s"]
    if mm_end["gflop_s"] > mm["gflop_s"]:
        mm.update({k: mm_end[k] for k in ("median_ms", "min_ms", "max_ms", "gflop_s")})
    log(f"  {mm_end['gflop_s']:.1f} GFLOP/s; ceiling {mm['gflop_s']:.1f} GFLOP/s")
    an = analytic_flops(coupling)
    for r in rows:
        r["width"] = preset.width
        if r["figure"] not in ("matmul", "bf16_accuracy"):
            r["pct_matmul"] = 100 * r["gflop_s"] / mm["gflop_s"]
        target = TARGET_PCT.get(r["figure"])
        tb = TARGET_BATCH.get(r["figure"])
        if target is not None and r["mode"] == "fp32" and (tb is None or tb == r["batch"]):
            r["target_pct"] = target
            r["meets_target"] = bool(r["pct_matmul"] >= target)
        if r["figure"] in an and r["arch"] == "coupling":
            r["analytic_gflop_per_image"] = an[r["figure"]] / 1e9
    info = {
        **machine_info(device),
        **thread_info,
        "preset": preset.name,
        "width": preset.width,
        "reps": preset.reps,
        "warmup": preset.warmup,
        "matmul_n": preset.matmul_n,
        "weights": checkpoint or "untrained, ActNorm initialised, parameters perturbed by 0.01",
        "path": "straightforward (reference_path)" if reference else "optimised (default)",
        "busy_cpus": busy,
        "load_start": load_start,
        "load_end": load_average(),
        "date": started.isoformat(timespec="seconds"),
        "params": coupling.num_params(),
    }
    return PerfResult(rows, info)


# ---- files ----------------------------------------------------------------------------------
def _fmt(v, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.{digits}f}"


def _load(t) -> str:
    return "—" if not t else "/".join(f"{v:.2f}" for v in t)


def _busy(info: dict) -> str:
    """A warning when other work was competing for the CPUs: with several threads, OpenMP
    waits for descheduled threads at every operation and the figures become meaningless."""
    busy = info.get("busy_cpus")
    text = "" if busy is None else f"; {busy:.2f} CPUs busy with other work just before"
    if str(info.get("device", "")).startswith("cuda"):
        return text
    end = info.get("load_end")
    # this run itself adds up to `threads` to the load average at the end
    if (busy is not None and busy > _busy_limit(info.get("threads"))) or (
        end and end[0] > (info.get("cpus") or 1) + 0.5
    ):
        return text + (
            " — **WARNING: other processes were using the CPUs; these figures are not "
            "reliable (rerun on an idle machine, or with fewer --threads)**"
        )
    return text


def _mode(r: dict) -> str:
    note = r.get("note")
    return r["mode"] if not isinstance(note, str) or not note else f"{r['mode']}; {note}"


def _bf16_speed(rows: list[dict], info: dict) -> str:
    bf = [r for r in rows if r["figure"] == "solver" and r["mode"] == "bf16 autocast"]
    if not bf:
        return ""
    fp = [
        r
        for r in rows
        if r["figure"] == "solver" and r["mode"] == "fp32" and r["batch"] == bf[0]["batch"]
    ]
    if not fp:
        return ""
    ratio = bf[0]["median_ms"] / fp[0]["median_ms"]
    speed = f"{ratio:.2f}× the float32 time" if ratio >= 1 else f"{1 / ratio:.2f}× faster"
    native = any(f in info.get("cpu_ext", "") for f in ("avx512_bf16", "amx_bf16"))
    why = (
        ""
        if native or str(info.get("device", "")).startswith("cuda")
        else (" (this CPU has no bfloat16 instructions: oneDNN falls back to slow kernels)")
    )
    return f" A bf16 solver iteration at batch {bf[0]['batch']} takes {speed}{why}."


def perf_markdown(result: PerfResult, command: str = "bench perf") -> str:
    info, rows = result.info, result.rows
    mm = next(r for r in rows if r["figure"] == "matmul")
    lines = [
        "# Performance: solving, generating, training against the matmul rate",
        "",
        f"- command: `{command}`",
        f"- date: {info['date']}; preset: {info['preset']}; path: {info['path']}",
        f"- machine: {info['cpu']} ({info['cpus']} CPUs; extensions: {info['cpu_ext']}; torch "
        f"CPU capability {info['cpu_capability']})"
        + (f"; GPU {info['gpu']}" if "gpu" in info else ""),
        f"- device: {info['device']}; threads: {info['threads']} intra-op, "
        f"{info['interop_threads']} inter-op"
        + (f" ({info['threads_note']})" if info.get("threads_note") else ""),
        f"- torch {info['torch']}, Python {info['python']}, oneDNN available: {info['mkldnn']}",
        f"- load average (1/5/15 min): {_load(info['load_start'])} at start, "
        f"{_load(info['load_end'])} at end" + _busy(info),
        f"- flow: width {info['width']}, {info['params']:,} parameters (coupling); weights: "
        f"{info['weights']}",
        f"- each figure: median of {info['reps']} repetitions after {info['warmup']} warm-up",
        "",
        f"Reference ceiling: float32 matmul {mm['size']}×{mm['size']}: "
        f"**{mm['gflop_s']:.1f} GFLOP/s** (the better of the medians measured at the start, "
        f"{mm['gflop_s_start']:.1f}, and at the end, {mm['gflop_s_end']:.1f}; a large gap "
        "means something else was using the CPU).",
        "",
        "| figure | arch | mode | batch | median ms | ms / image | images / s | GFLOP / image "
        "| GFLOP/s | % of matmul | target | peak memory GiB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        if r["figure"] in ("matmul", "bf16_accuracy"):
            continue
        target = "—"
        if "target_pct" in r and not (
            isinstance(r.get("target_pct"), float) and math.isnan(r["target_pct"])
        ):
            target = f"≥ {r['target_pct']:.0f}%: {'met' if r['meets_target'] else 'NOT met'}"
        lines.append(
            f"| {r['figure']} | {r['arch']} | {_mode(r)} | {r['batch']} "
            f"| {_fmt(r['median_ms'], 2)} "
            f"| {_fmt(r['ms_per_image'], 3)} | {_fmt(r['images_per_s'], 1)} "
            f"| {_fmt(r['gflop_per_image'], 3)} | {_fmt(r['gflop_s'], 1)} "
            f"| {_fmt(r['pct_matmul'], 0)}% | {target} | {_fmt(r.get('peak_mem_gib'), 2)} |"
        )
    mem = [
        r
        for r in rows
        if r["figure"] == "solver" and r["batch"] == MEMORY_BATCH and r["mode"] == "fp32"
    ]
    lines.append("")
    if mem:
        m = mem[0]["peak_mem_gib"]
        verdict = "within" if m < MEMORY_LIMIT_GIB else "OVER"
        lines.append(
            f"Memory: solving {MEMORY_BATCH} images in one batch peaks at {m:.2f} GiB "
            f"({verdict} the {MEMORY_LIMIT_GIB:.0f} GiB bound; CPU figures are the process's "
            "resident set, weights and interpreter included)."
        )
        lines.append("")
    acc = [r for r in rows if r["figure"] == "bf16_accuracy"]
    if acc:
        a = acc[0]
        lines += [
            f"bfloat16 autocast (opt-in) on {a['batch']} denoising images, {a['reps']} solver "
            f"iterations from the same z0: PSNR {a['psnr_fp32']:.2f} dB (float32) vs "
            f"{a['psnr_bf16']:.2f} dB (bf16), difference {a['psnr_delta']:+.3f} dB; the two "
            f"restorations differ by up to {a['max_pixel_diff']} (8-bit) and agree to "
            f"{a['psnr_bf16_vs_fp32']:.1f} dB PSNR." + _bf16_speed(rows, info),
            "",
        ]
    lines += [
        "How FLOPs are counted: convolutions and matrix products only (a multiply-add is 2 "
        "FLOP), by `torch.utils.flop_counter.FlopCounterMode` on the operations one repetition "
        "runs (counted at batches 1 and 2, extrapolated linearly). A solver iteration counts "
        "the generative pass and the input-gradient convolutions of its backward pass (the flow "
        "is frozen: no weight gradients), i.e. about 2× a generation; a training step counts "
        "forward, input and weight gradients (about 3×). Elementwise work (ActNorm, ReLU, the "
        "couplings, log-determinants, Adam) is not counted. `analytic_gflop_per_image` in "
        "perf.csv is the same count read off the architecture.",
        "",
    ]
    return "\n".join(lines)


def write_perf(
    result: PerfResult, out_dir="reports", results_dir="results", command: str = "bench perf"
) -> tuple[Path, Path]:
    """results/perf.csv (one row per figure, machine columns repeated) and reports/perf.md."""
    import pandas as pd

    out_dir, results_dir = Path(out_dir), Path(results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    info = {k: v for k, v in result.info.items() if k not in ("load_start", "load_end")}
    info["load_start"] = _load(result.info["load_start"])
    info["load_end"] = _load(result.info["load_end"])
    df = pd.DataFrame(result.rows)
    for k, v in info.items():
        if k not in df:
            df[k] = v
    with all_or_nothing():
        csv = atomic_write(results_dir / PERF_CSV, lambda f: df.to_csv(f, index=False), mode="w")
        md = atomic_write_text(out_dir / PERF_MD, perf_markdown(result, command))
    return csv, md


__all__ = [
    "PERF_PRESETS",
    "PerfPreset",
    "PerfResult",
    "PeakMemory",
    "analytic_flops",
    "batch_flops",
    "configure_threads",
    "conv2d_flops",
    "count_flops",
    "measure_generation",
    "measure_matmul",
    "measure_solver",
    "measure_training",
    "perf_flow",
    "run_perf",
    "write_perf",
]
