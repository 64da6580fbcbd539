"""`bench perf` and the flows' fast path: the benchmark writes its files, the FLOP counter
agrees with a hand count, and the optimised code restores the same images as the
straightforward one on the same seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from bench import perf
from bench.cli import main
from bench.flows import AffineCoupling, build_flow
from bench.flows.layers import fast_path_enabled, reference_path
from bench.methods import get_method
from bench.solve import solve_latent
from bench.tasks import get_task

# float64: the two paths compute the same function, so solves agree to rounding
F64_ATOL = 1e-10
# float32: the paper's solver (L1 data term, Adam) amplifies rounding differences: where
# A G(z) ≈ y the L1 gradient flips sign, and Adam turns a sign flip into a full step. The
# straightforward path disagrees with itself by as much when z0 is moved by 1e-7 (relative);
# the optimised path must stay within ROUNDING_FACTOR times that, plus F32_ATOL
ROUNDING_FACTOR = 3.0
F32_ATOL = 1e-5


def small_flow(dtype=torch.float32, seed: int = 0):
    """A narrow flow on the full 32×32 images (so every coupling-net variant runs: 3×3 padded,
    4×4, 2×2, 1×1), ActNorm initialised, every parameter moved off its initialisation."""
    torch.manual_seed(seed)
    flow = build_flow("coupling", hidden=8).to(dtype)
    g = torch.Generator().manual_seed(seed)
    flow.initialize((torch.rand(8, 3, 32, 32, generator=g) * 2 - 1).to(dtype))
    with torch.no_grad():
        for p in flow.parameters():
            # 0.02: with every ActNorm data-initialised (the nets' too), 0.05 makes an untrained
            # flow's generation overflow to NaN on both paths, which compares nothing
            p.add_(0.02 * torch.randn(p.shape, generator=g).to(dtype))
    return flow.eval()


# ---- FLOP counting ----------------------------------------------------------------------------
def test_flop_counter_matches_hand_count_on_a_tiny_conv():
    x, w = torch.randn(2, 3, 5, 5), torch.randn(4, 3, 3, 3)
    # 2 · B · Cout · Hout · Wout · Cin · kh · kw = 2 · 2 · 4 · 5 · 5 · 3 · 3 · 3
    assert perf.conv2d_flops(2, 3, 4, 3, 5) == 10800
    assert perf.count_flops(lambda: F.conv2d(x, w, padding=1)) == 10800
    # unpadded: 3×3 output; the backward of a frozen conv counts the input gradient only
    assert perf.count_flops(lambda: F.conv2d(x, w)) == perf.conv2d_flops(2, 3, 4, 3, 3)
    xg = x.clone().requires_grad_(True)
    n = perf.count_flops(lambda: F.conv2d(xg, w, padding=1).sum().backward())
    assert n == 2 * 10800
    assert perf.count_flops(lambda: torch.mm(torch.randn(3, 4), torch.randn(4, 5))) == 2 * 60


def test_counted_flops_match_the_architecture():
    flow = small_flow()
    flow.requires_grad_(False)
    an = perf.analytic_flops(flow)
    gen = perf.batch_flops(lambda b: lambda: flow.inverse(torch.randn(b, flow.dim)), 3)
    assert gen == 3 * an["generation"]
    assert perf.solver_iteration_flops(flow, 3, "cpu") == 3 * an["solver"]
    with reference_path():  # the straightforward convolutions count the same
        assert perf.count_flops(lambda: flow.inverse(torch.randn(1, flow.dim))) == an["generation"]


# ---- the fast path keeps the numerics ------------------------------------------------------
def _measurement(task, seed: int, dtype):
    g = torch.Generator().manual_seed(seed)
    return task.A(torch.rand(3, 3, 32, 32, generator=g) * 2 - 1).to(dtype)


@pytest.mark.parametrize("task_name", ["deblurring", "denoising"])
def test_optimised_and_straightforward_solves_agree_float64(task_name):
    """The paper's solver, whole batch, same seed: the same restored images and losses."""
    assert fast_path_enabled()
    flow = small_flow(torch.float64)
    task, method = get_task(task_name), get_method("ours")
    y = _measurement(task, 5, torch.float64)
    out = {}
    for ref in (True, False):
        with reference_path(ref):
            out[ref] = method.restore(flow, task, y, 0.02, iters=15, seeds=[1, 2, 3], device="cpu")
    assert fast_path_enabled()
    assert out[True].x.abs().max() > 0.1
    torch.testing.assert_close(out[False].x, out[True].x, atol=F64_ATOL, rtol=0)
    np.testing.assert_allclose(out[False].loss, out[True].loss, rtol=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_optimised_float32_solve_differs_only_by_rounding(seed):
    flow = small_flow(torch.float32, seed)
    task, method = get_task("deblurring"), get_method("ours")
    y = _measurement(task, 5 + seed, torch.float32)
    z0 = method.initial_latent([1, 2, 3], flow.dim)
    objective = method.objective(flow, task, y, 0.02)

    def solve(z):
        return solve_latent(flow, objective, z, 40, method.lr, method.betas).x

    with reference_path():
        ref = solve(z0)
        # the rounding baseline: how far the reference path itself moves under tiny nudges of
        # z0 (an L1 solve can flip a sign at a threshold, and which nudge trips it depends on
        # the thread count, so the largest of three is the baseline)
        noise = max((solve(z0 * (1 + e)) - ref).abs().mean() for e in (1e-7, 1e-6, 1e-5))
    fast = solve(z0)
    assert (fast - ref).abs().mean() <= ROUNDING_FACTOR * noise + F32_ATOL
    # one generative pass (no optimiser in the loop) agrees to float32 rounding
    with torch.no_grad():
        x_fast, ld_fast = flow.inverse(z0)
        with reference_path():
            x_ref, ld_ref = flow.inverse(z0)
    torch.testing.assert_close(x_fast, x_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ld_fast, ld_ref, atol=1e-3, rtol=1e-5)


def test_optimised_generation_and_training_gradients_agree():
    flow = small_flow(torch.float64)
    z = torch.randn(4, flow.dim, dtype=torch.float64)
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64) * 2 - 1
    res = {}
    for ref in (True, False):
        with reference_path(ref):
            with torch.inference_mode():
                gen = flow.inverse(z)
            flow.zero_grad(set_to_none=True)
            nll = -flow.log_prob(x).mean()
            nll.backward()
            grads = [p.grad.clone() for p in flow.parameters()]
            res[ref] = (*gen, nll.detach(), *grads)
    for a, b in zip(res[False], res[True], strict=True):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


def test_cached_weights_follow_parameter_updates_and_inference_mode():
    layer = AffineCoupling(8, 6, 4).double()
    x = torch.randn(2, 8, 4, 4, dtype=torch.float64)
    layer(x)
    layer.requires_grad_(False)
    with torch.inference_mode():  # the cache is made here ...
        layer.inverse(x)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1)
    xg = x.clone().requires_grad_(True)
    z, ld = layer(xg)  # ... and refreshed (new values) for a pass that saves it for backward
    (z.sum() + ld.sum()).backward()
    with reference_path():
        z_ref, ld_ref = layer(x)
    torch.testing.assert_close(z.detach(), z_ref)
    torch.testing.assert_close(ld, ld_ref)


# ---- the benchmark ---------------------------------------------------------------------------
TINY = perf.PerfPreset("tiny", 4, (2, 3), 2, 2, 1, 32, 2, 2, "smoke", 1, 1)


def test_perf_run_writes_csv_and_markdown(tmp_path):
    res = perf.run_perf(TINY, device="cpu", threads=1, bf16=True, log=lambda m: None)
    csv, md = perf.write_perf(res, tmp_path / "reports", tmp_path / "results", "bench perf -x")
    df = pd.read_csv(csv)
    figures = set(df["figure"])
    assert {"matmul", "solver", "generation", "training", "bf16_accuracy"} <= figures
    tp = df[df["figure"] == "table1_throughput"].set_index("mode")
    assert list(tp.index) == ["per cell", "fused"]
    # the same work both ways: every latent row of the smoke preset's Table 1, one iteration
    assert tp["rows"].nunique() == 1 and tp["iters"].tolist() == [1, 1]
    assert tp.loc["per cell", "solves"] > tp.loc["fused", "solves"] >= 1
    ratio = tp.loc["fused", "images_per_s"] / tp.loc["per cell", "images_per_s"]
    assert tp.loc["fused", "fused_ratio"] == pytest.approx(ratio)
    assert set(df.loc[df["figure"] == "generation", "arch"]) == {"coupling", "glow"}
    assert sorted(df.loc[(df["figure"] == "solver") & (df["mode"] == "fp32"), "batch"]) == [2, 3]
    timed = df[df["figure"].isin(["solver", "generation", "training"])]
    assert (timed["median_ms"] > 0).all() and (timed["gflop_s"] > 0).all()
    assert (timed["peak_mem_gib"] > 0).all()
    c = timed[timed["arch"] == "coupling"]
    assert (c["gflop_per_image"] - c["analytic_gflop_per_image"]).abs().max() < 1e-12
    assert {"torch", "threads", "cpu"} <= set(df.columns)
    text = md.read_text()
    for words in (
        "GFLOP/s",
        "% of matmul",
        "threads",
        "torch",
        "How FLOPs are counted",
        "bench perf -x",
        "bfloat16",
        "Table 1 throughput",
        "fused ÷ per cell",
    ):
        assert words in text


def test_perf_cli_quick(tmp_path):
    args = [
        "perf",
        "--quick",
        "--device",
        "cpu",
        "--width",
        "4",
        "--batches",
        "2",
        "--train-batch",
        "2",
        "--reps",
        "1",
        "--warmup",
        "1",
        "--matmul-size",
        "32",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "r"),
        "--results",
        str(tmp_path / "s"),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "perf.md").is_file() and (tmp_path / "s" / "perf.csv").is_file()
    bad = CliRunner().invoke(main, ["perf", "--batches", "a,b"])
    assert bad.exit_code == 2 and "error:" in bad.output


def test_table1_workers_solve_every_row_both_ways():
    from bench.perf.run import perf_flow

    flow = perf_flow("coupling", 4, "cpu")
    rows = perf.measure_table1_workers(flow, "smoke", 1, 1, 2)
    per_cell, fused = rows
    assert (per_cell["mode"], fused["mode"]) == ("per cell", "fused")
    assert per_cell["workers"] == fused["workers"] == 2
    # the same rows both ways, all of the smoke preset's Table 1 latent cells
    cells, preset = perf.table1_cells("smoke")
    assert (
        per_cell["rows"]
        == fused["rows"]
        == preset.select_images * sum(c.stage == "select" for c in cells)
        + preset.test_images * sum(c.stage == "test" for c in cells)
    )
    assert per_cell["solves"] == len(cells) > fused["solves"]
    assert fused["fused_ratio"] == pytest.approx(fused["images_per_s"] / per_cell["images_per_s"])
    with pytest.raises(ValueError, match="at least 2"):
        perf.measure_table1_workers(flow, "smoke", 1, 1, 1)


def test_throughput_report_states_both_configurations():
    from bench.perf.report import _throughput_lines

    base = dict(
        figure="table1_throughput",
        arch="coupling",
        batch=59,
        reps=2,
        run_preset="cpu",
        cells=77,
        rows=4544,
        iters=10,
        solves=77,
        width=128,
        median_ms=1.0,
    )
    rows = [
        dict(base, mode="per cell", images_per_s=700.0),
        dict(base, mode="fused", images_per_s=840.0, fused_ratio=1.2),
        dict(base, mode="per cell", workers=2, images_per_s=800.0),
        dict(base, mode="fused", workers=2, images_per_s=880.0, fused_ratio=1.1),
    ]
    text = "\n".join(_throughput_lines(rows, 2))
    assert "| 1 × 2 |" in text and "| 2 × 1 |" in text
    assert "**1.20×**" in text and "**1.10×**" in text
    # fastest fused (880) against fastest per cell (800), and each path's gain from workers
    assert "fused 1.10× per cell" in text
    assert "per-cell path 1.14×, fused path 1.05×" in text
    # a CSV without the workers column (older runs) is one configuration
    old = [{k: v for k, v in r.items() if k != "workers"} for r in rows[:2]]
    assert "2 × 1" not in "\n".join(_throughput_lines(old, 2))
