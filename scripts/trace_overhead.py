"""The cost of convergence traces (bench.traces): one latent solve of ROWS images with the
`cpu` preset's flow width, traced and not, in alternating rounds in one process; prints each
round's seconds, the median ratio traced / plain, and the share of the traced solves' time spent
inside the trace hook itself (robust to a busy machine, which slows both alike).

    python scripts/trace_overhead.py [--rows 256] [--iters 300] [--rounds 5] [--width 128]

An untrained flow (ActNorm initialised on random images) costs what a trained one does."""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.flows import build_flow
from bench.methods import get_method
from bench.solve import solve_latents
from bench.tasks import get_task, image_seeds
from bench.traces import TraceRecorder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--width", type=int, default=128)
    args = ap.parse_args()
    torch.manual_seed(0)
    flow = build_flow("coupling", hidden=args.width)
    flow.initialize(torch.rand(64, 3, 32, 32) * 2 - 1)
    flow.eval()
    names = [f"img{i}" for i in range(args.rows)]
    x255 = torch.randint(0, 256, (args.rows, 3, 32, 32), dtype=torch.uint8)
    y = get_task("deblurring").measure(x255, names)
    method = get_method("ours")

    in_hook = [0.0]

    def timed(recorder):
        def hook(*a):
            t0 = time.perf_counter()
            recorder(*a)
            in_hook[0] += time.perf_counter() - t0

        return hook

    def solve(traced: bool) -> float:
        problem = method.problem(flow, "deblurring", y, 0.02, image_seeds(names), "cpu")
        trace = timed(TraceRecorder(x255)) if traced else None
        t0 = time.perf_counter()
        solve_latents(flow, [problem], args.iters, trace=trace)
        return time.perf_counter() - t0

    solve(False)  # warm-up
    ratios, traced_total = [], 0.0
    for k in range(args.rounds):
        order = (False, True) if k % 2 == 0 else (True, False)
        times = {traced: solve(traced) for traced in order}
        ratios.append(times[True] / times[False])
        traced_total += times[True]
        print(f"round {k + 1}: plain {times[False]:.2f} s, traced {times[True]:.2f} s")
    print(
        f"traced / plain, median of {args.rounds} rounds: {statistics.median(ratios):.4f} "
        f"({args.rows} rows, {args.iters} iterations, width {args.width}, "
        f"{torch.get_num_threads()} threads)"
    )
    share = 100 * in_hook[0] / traced_total
    print(f"time inside the trace hook: {share:.2f}% of the traced solves")


if __name__ == "__main__":
    main()
