"""The fused solve (`bench.solve.solve_latents`, `bench.runner.fused`): many cells' rows in one
latent batch give each row the restoration the per-cell path gives.

Tolerances, and why:
- float64: 1e-9 in model space. Rows are independent, so the only difference is the order of
  summation inside kernels whose blocking depends on the batch size (float64 rounding, about
  1e-16 relative per operation, amplified over a few iterations).
- float32: the same rounding, at float32's precision, grows with the iterations. The bound is
  stated against that growth itself: the fused rows may differ from the per-cell rows by at most
  FLOAT32_FACTOR times the per-cell path's own float32 rounding error (its distance to the
  float64 solve of the same problem, same iterations), plus 1e-6. A fused row solved with the
  wrong weight, learning rate, data or latent differs by orders of magnitude more.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import tiny_flow

from bench import config, runner
from bench.errors import BenchError
from bench.methods import get_method
from bench.runner.fused import plan_chunks
from bench.runner.plan import Cell
from bench.solve import LatentProblem, solve_latent, solve_latents
from bench.tasks import get_task, image_seeds

pytestmark = pytest.mark.usefixtures("one_thread")

FLOAT64_TOL = 1e-9
FLOAT32_FACTOR = 4.0
ITERS = 8
NAMES = [f"img{i}.png" for i in range(5)]
# (method, task, weight): every flow method of Table 1, two learning rates (MAP's 1.5e-3),
# per-image operators (random inpainting), a matrix operator (compressed sensing)
MIX = [
    ("ours", "inpainting", 0.02),
    ("csgm", "deblurring", 0.01),
    ("glowip", "colorization", 0.1),
    ("map", "denoising", 0.5),
    ("l1-z0", "inpainting-random", None),
    ("ours", "cs-0.1", 0.002),
]


@pytest.fixture(scope="module")
def flow():
    f = tiny_flow()
    with torch.no_grad():  # couplings off the identity
        g = torch.Generator().manual_seed(1)
        for name, p in f.named_parameters():
            if "conv2" in name:
                p.add_(0.02 * torch.randn(p.shape, generator=g))
    return f.eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(7)
    return torch.randint(0, 256, (len(NAMES), 3, 32, 32), generator=g, dtype=torch.uint8)


def _problems(flow, images, rows_per_cell):
    """One problem per entry of MIX, on images rows_per_cell[k] of it, as the runner builds
    them (`FlowMethod.problem`)."""
    out = []
    for (m, t, w), rows in zip(MIX, rows_per_cell, strict=True):
        names = [NAMES[i] for i in rows]
        y = get_task(t).measure(images[list(rows)], names)
        out.append(get_method(m).problem(flow, t, y, w, image_seeds(names), "cpu"))
    return out


def _solo(flow, problems, iters=ITERS):
    return [solve_latent(flow, p.objective, p.z0, iters, p.lr, p.betas) for p in problems]


ROWS = [(0, 1, 2), (3,), (0, 4), (1, 2, 3, 4), (2,), (0, 1)]


def test_fused_equals_per_cell_in_float64(flow, images):
    f64 = tiny_flow().double()
    f64.load_state_dict({k: v.double() for k, v in flow.state_dict().items()})
    problems = _problems(f64, images, ROWS)
    fused = solve_latents(f64, problems, ITERS)
    solo = _solo(f64, problems)
    for a, b in zip(fused, solo, strict=True):
        assert a.x.dtype == torch.float64
        assert (a.x - b.x).abs().max().item() <= FLOAT64_TOL
        assert (a.z - b.z).abs().max().item() <= FLOAT64_TOL
        assert np.allclose(a.loss, b.loss, rtol=FLOAT64_TOL, atol=0)
        assert np.array_equal(a.diverged, b.diverged)
    # the latents moved far more than the tolerance: the comparison is not between z0s
    assert all((a.z - p.z0).abs().max() > 1e-3 for a, p in zip(fused, problems, strict=True))


def test_fused_float32_within_its_own_rounding(flow, images):
    problems = _problems(flow, images, ROWS)
    fused = solve_latents(flow, problems, ITERS)
    solo = _solo(flow, problems)
    f64 = tiny_flow().double()
    f64.load_state_dict({k: v.double() for k, v in flow.state_dict().items()})
    ref = _solo(f64, _problems(f64, images, ROWS))
    for a, b, r in zip(fused, solo, ref, strict=True):
        rounding = (b.x.double() - r.x).abs().max().item()
        assert (a.x - b.x).abs().max().item() <= FLOAT32_FACTOR * rounding + 1e-6


def test_wrong_learning_rate_is_caught_by_the_bound(flow, images):
    """The float32 bound separates a correct fused solve from one row solved with another
    learning rate (what a fused solve that mixed up its rows would give)."""
    problems = _problems(flow, images, ROWS)
    wrong = [LatentProblem(p.objective, p.z0, p.lr * 1.1, p.betas) for p in problems]
    fused = solve_latents(flow, wrong, ITERS)
    solo = _solo(flow, problems)
    assert any((a.x - b.x).abs().max().item() > 1e-4 for a, b in zip(fused, solo, strict=True))


def test_divergence_is_masked_per_row_across_problems(flow):
    z0 = torch.randn(3, flow.dim, generator=torch.Generator().manual_seed(3)) * 0.1
    calls = {"n": 0}

    def exploding(z, x, logdet):
        calls["n"] += 1
        loss = (x**2).flatten(1).sum(1)
        if calls["n"] >= 3:  # its row 1 blows up from the third evaluation on
            loss = torch.where(torch.arange(2) == 1, torch.full_like(loss, float("inf")), loss)
        return loss

    def square(z, x, logdet):
        return (x**2).flatten(1).sum(1)

    a, b = solve_latents(
        flow, [LatentProblem(exploding, z0[:2], 0.01), LatentProblem(square, z0[2:], 0.02)], 6
    )
    assert a.diverged.tolist() == [False, True] and b.diverged.tolist() == [False]
    alone = solve_latent(flow, square, z0[2:], 6, 0.02)
    assert torch.allclose(b.x, alone.x, atol=1e-6)


def test_map_second_pass_runs_on_map_rows_only(flow, images, monkeypatch):
    seen = []
    original = type(flow).log_prob

    def log_prob(self, x):
        seen.append(x.shape[0])
        return original(self, x)

    monkeypatch.setattr(type(flow), "log_prob", log_prob)
    problems = _problems(flow, images, ROWS)
    solve_latents(flow, problems, 2)
    assert seen and set(seen) == {len(ROWS[3])}  # MAP's 4 rows, never the 13 others


def test_problems_must_share_latent_size():
    flow = tiny_flow()
    with pytest.raises(ValueError, match="one latent size"):
        a, b = torch.zeros(1, 3072), torch.zeros(1, 8)
        solve_latents(flow, [LatentProblem(None, a, 0.1), LatentProblem(None, b, 0.1)], 1)
    with pytest.raises(ValueError, match="one loss per row|shape"):
        solve_latents(
            flow, [LatentProblem(lambda z, x, ld: x.sum(), torch.zeros(2, flow.dim), 0.1)], 1
        )


# ---- packing ------------------------------------------------------------------------------------
def _cells(spec):
    return [Cell(s, m, t, w, f"{m}[{w}]") for s, m, t, w in spec]


@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("max_batch", [1, 3, 5, 8, 100])
def test_plan_chunks_covers_every_row_once(split, max_batch):
    cells = _cells(
        [
            ("test", "ours", "inpainting", 0.1),
            ("select", "csgm", "deblurring", 0.0),
            ("select", "map", "denoising", 0.5),
            ("select", "ours", "deblurring", 0.02),
            ("test", "glowip", "colorization", 1.0),
        ]
    )
    rows, costs = [4, 3, 2, 5, 1], [1.0, 1.0, 2.0, 1.0, 1.0]
    chunks = plan_chunks(cells, rows, costs, max_batch, split)
    seen = {i: [] for i in range(len(cells))}
    for chunk in chunks:
        passes = sum(s.rows * costs[s.index] for s in chunk)
        whole_alone = len(chunk) == 1 and chunk[0].rows == rows[chunk[0].index]
        small = all(s.rows == 1 for s in chunk) and len(chunk) == 1
        assert passes <= max_batch or whole_alone or small
        for s in chunk:
            seen[s.index] += list(range(s.start, s.stop))
    assert all(sorted(v) == list(range(rows[i])) for i, v in seen.items())
    if not split:
        assert all(s.start == 0 and s.stop == rows[s.index] for chunk in chunks for s in chunk)
    # rows of a task sit together: select/deblurring's two cells are neighbours
    order = [s.index for chunk in chunks for s in chunk]
    first = [i for k, i in enumerate(order) if k == 0 or order[k - 1] != i]
    assert first.index(1) + 1 == first.index(3) or first.index(3) + 1 == first.index(1)
    with pytest.raises(ValueError):
        plan_chunks(cells, rows, costs, 0)


# ---- the runner ---------------------------------------------------------------------------------
PRESET = config.get_preset("smoke").with_(
    test_images=3, select_images=2, iters=4, gamma_grid=(0.0, 0.1), alpha_grid=(0.002, 0.02)
)


def _run(flow, results, **kw):
    args = dict(preset=PRESET, dataset="builtin", device="cpu", progress=False, threads=1)
    args.update(kw)
    # its own fingerprint: worker processes cache flows by fingerprint, and this flow is perturbed
    meta = {"fingerprint": "tiny-test-flow-perturbed"}
    return runner.run_table1(flow, meta, results_dir=results, **args)


def _rows(result):
    rows = runner.read_cells(result.run_dir)
    keys = ["stage", "method", "task", "weight", "image"]
    return rows.sort_values(keys).reset_index(drop=True)


def test_runner_fused_and_per_cell_store_the_same_rows(flow, tmp_path):
    kw = dict(methods="ours,csgm,map,bm3d", tasks="denoising,inpainting")
    fused = _run(flow, tmp_path / "f", max_batch=5, **kw)  # cells split over chunks
    cells = _run(flow, tmp_path / "c", fuse=False, **kw)
    assert fused.run_id == cells.run_id
    assert sorted(fused.computed) == sorted(cells.computed)
    a, b = _rows(fused), _rows(cells)
    assert len(a) == len(b) > 0
    for col in ("stage", "method", "task", "image", "diverged", "iters"):
        assert a[col].tolist() == b[col].tolist()
    assert np.allclose(a["psnr"], b["psnr"], atol=0.05, equal_nan=True)
    assert np.allclose(a["loss"], b["loss"], rtol=1e-3, equal_nan=True)
    assert fused.selection == cells.selection
    assert fused.manifest["execution"]["fuse"] is True
    assert cells.manifest["execution"]["fuse"] is False


def test_runner_fused_interrupt_keeps_finished_cells(flow, tmp_path, monkeypatch):
    import bench.solve as S

    kw = dict(methods="ours,glowip", tasks="denoising,inpainting", max_batch=2)
    clean = _run(flow, tmp_path / "clean", **kw)
    calls = {"n": 0}
    original = S.solve_latents

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(S, "solve_latents", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(flow, tmp_path / "r", **kw)
    monkeypatch.setattr(S, "solve_latents", original)
    run_dir = runner.runs_root(tmp_path / "r") / clean.run_id
    stored = list(run_dir.glob("cells/*/*.csv"))
    assert len(stored) == 5  # max_batch 2 = one 2-image grid cell per chunk: 5 chunks, 5 cells
    assert not list(run_dir.glob("cells/*/.*.tmp"))
    resumed = _run(flow, tmp_path / "r", **kw)
    assert len(resumed.reused) == 5 and len(resumed.computed) == len(clean.computed) - 5
    assert _rows(resumed)[["psnr", "ssim"]].equals(_rows(clean)[["psnr", "ssim"]])


def test_runner_background_and_jobs(flow, tmp_path):
    kw = dict(methods="ours,bm3d", tasks="denoising", weights="paper")
    background = _run(flow, tmp_path / "b", threads=2, **kw)  # bm3d in a one-thread worker
    jobs = _run(flow, tmp_path / "j", jobs=2, **kw)  # units on two loky workers
    alone = _run(flow, tmp_path / "a", fuse=False, **kw)
    for res in (background, jobs):
        assert sorted(res.computed) == sorted(alone.computed)
        assert np.allclose(_rows(res)["psnr"], _rows(alone)["psnr"], atol=0.05)


def test_cli_max_batch_must_be_positive(tmp_path):
    from bench.cli import main

    out = CliRunner().invoke(main, ["run", "--max-batch", "0", "--results", str(tmp_path)])
    assert out.exit_code == 2 and "--max-batch" in out.output
    with pytest.raises(BenchError, match="--max-batch"):
        _run(tiny_flow(), tmp_path, max_batch=0)


# ---- precision ----------------------------------------------------------------------------------
def test_precision_block_sets_and_restores_the_solves_arithmetic():
    from bench.precision import AUTOCAST, check_precision, precision

    with pytest.raises(BenchError, match="--precision"):
        check_precision("fp16")
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with precision("bf16", "cpu"):
        assert AUTOCAST.get() is torch.bfloat16
    with precision("tf32", "cuda"):  # the switches only; nothing runs on CUDA here
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    with precision("fp32", "cuda"):
        assert not torch.backends.cudnn.allow_tf32
    assert AUTOCAST.get() is None
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_precision_other_than_fp32_is_a_run_of_its_own(flow, tmp_path):
    from bench.perf import precision_accuracy

    kw = dict(methods="ours", tasks="denoising", weights="paper")
    fp32 = _run(flow, tmp_path, **kw)
    bf16 = _run(flow, tmp_path, precision="bf16", **kw)
    assert fp32.run_id != bf16.run_id
    with pytest.raises(BenchError, match="tf32 is a CUDA mode"):
        _run(flow, tmp_path, precision="tf32", **kw)
    assert "precision" not in fp32.manifest["key"] and bf16.manifest["key"]["precision"] == "bf16"
    # TF32 is float32 on a CPU: the accuracy check finds no difference
    acc = precision_accuracy(flow, 2, 2, "cpu", "tf32")
    assert acc["figure"] == "tf32_accuracy" and acc["max_pixel_diff"] == 0
