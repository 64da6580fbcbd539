"""The latent solver, the methods of PROTOCOL §5 and the registry, on a tiny flow."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import config, data
from bench.errors import BenchError
from bench.flows import build_flow
from bench.methods import (
    DEFAULT_METHODS,
    METHODS,
    Ours,
    all_methods,
    format_weight,
    get_method,
    l1_fit,
    register,
)
from bench.metrics import psnr
from bench.solve import solve_latent
from bench.tasks import TASKS, image_seeds

NAMES = ["182638.jpg", "182639.jpg"]
ITERS = 5


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def flow():
    """A tiny coupling flow, initialised on data; the zero-initialised last convolutions of the
    coupling networks are perturbed so that the couplings are not the identity."""
    torch.manual_seed(0)
    f = build_flow("coupling", hidden=8)
    f.initialize(torch.rand(16, 3, 32, 32) * 2 - 1)
    with torch.no_grad():
        for name, p in f.named_parameters():
            if "conv2" in name:
                p.add_(0.02 * torch.randn_like(p))
    return f.eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(5)
    return torch.randint(0, 256, (2, 3, 32, 32), generator=g, dtype=torch.uint8)


def _restore(method, flow, task, x255, iters=ITERS, weight=None, names=NAMES):
    y = TASKS[task].measure(x255, names)
    return method.restore(flow, task, y, weight, iters, image_seeds(names), "cpu")


# ---- registry ----------------------------------------------------------------------------------
def test_registry():
    methods = all_methods()
    assert tuple(methods)[:5] == DEFAULT_METHODS == ("csgm", "glowip", "map", "bm3d", "ours")
    for variant in ("ours-released", "map-released", "map-all"):
        assert variant in methods and variant not in DEFAULT_METHODS
        assert methods[variant].name == variant
    assert methods["ours-released"].defect and methods["map-released"].defect
    assert all(methods[n].defect is None for n in DEFAULT_METHODS)
    with pytest.raises(BenchError, match="csgm, glowip, map, bm3d, ours"):
        get_method("dip")
    assert get_method("csgm") is METHODS["csgm"]


def test_baselines_package_is_ours():
    import bench_baselines

    here = Path(__file__).resolve().parents[1] / "baselines"
    assert Path(bench_baselines.__file__).resolve().parent == here


def test_register_replaces_by_name():
    class Dummy(Ours):
        name = "dummy-test"

    try:
        assert register(Dummy) is Dummy and isinstance(METHODS["dummy-test"], Dummy)
    finally:
        METHODS.pop("dummy-test", None)


def test_grids_weights_and_run_names():
    smoke, paper = config.get_preset("smoke"), config.get_preset("paper")
    m = all_methods()
    assert (
        m["csgm"].grid(smoke) == smoke.gamma_grid and m["glowip"].grid("paper") == paper.gamma_grid
    )
    assert m["ours"].grid(paper) == paper.alpha_grid
    assert m["map"].grid(paper) == (0.5,) and m["bm3d"].grid(paper) == (None,)
    assert m["ours-released"].grid(paper) == (None,)
    assert m["csgm"].run_name(0.01) == "csgm[gamma=0.01]"
    assert m["glowip"].run_name(0.0) == "glowip[gamma=0]"
    assert m["ours"].run_name(0.0005) == "ours[alpha=0.0005]"
    assert m["map"].run_name(0.5) == "map[beta=0.5]"
    assert m["bm3d"].run_name(None) == "bm3d"
    assert format_weight(1e-5) == "1e-05" and format_weight(0.123456789) == "0.123456789"
    assert m["ours"].paper_weight("inpainting") == 0.002
    assert (
        m["csgm"].paper_weight("denoising") == 0.1 and m["glowip"].paper_weight("deblurring") == 0
    )
    assert m["map"].paper_weight("denoising") == 0.5 and m["map"].paper_weight("deblurring") is None
    assert m["bm3d"].paper_weight("denoising") is None
    assert m["map"].lr == config.MAP_LR and m["ours"].lr == config.SOLVER_LR
    assert not m["bm3d"].needs_flow and m["ours"].needs_flow


def test_unsupported_tasks_give_reasons(flow, images):
    m = all_methods()
    for name in ("map", "map-released", "bm3d"):
        for task in ("deblurring", "inpainting", "colorization"):
            reason = m[name].supports(task)
            assert isinstance(reason, str) and reason
        assert m[name].supports("denoising") is None
    assert m["map-all"].supports("colorization") is None
    with pytest.raises(BenchError, match="denoising only"):
        _restore(m["map"], flow, "inpainting", images)
    with pytest.raises(BenchError):
        m["ours"].supports("nonsense")


# ---- every method on every supported task -------------------------------------------------------
CELLS = [
    (m, t)
    for m in ("csgm", "glowip", "map", "map-all", "map-released", "ours", "ours-released")
    for t in TASKS
    if TASKS[t].default and get_method(m).supports(t) is None  # the paper's weights; the
]  # conformance suite runs every method on every task at grid weights


@pytest.mark.parametrize("method,task", CELLS)
def test_every_method_runs(flow, images, method, task):
    m = get_method(method)
    res = _restore(m, flow, task, images)
    assert res.x.shape == (2, 3, 32, 32) and res.x.device.type == "cpu"
    assert torch.isfinite(res.x).all()
    assert res.loss.shape == (2,) and np.isfinite(res.loss).all()
    assert res.diverged.shape == (2,) and not res.diverged.any()
    assert res.seconds > 0


def test_bm3d_denoises_in_range():
    # a smooth image: BM3D must beat the noisy measurement
    ramp = torch.linspace(40, 200, 32)
    x = (ramp[None, :] * 0.5 + ramp[:, None] * 0.5).expand(1, 3, 32, 32).round().to(torch.uint8)
    names = NAMES[:1]
    y = TASKS["denoising"].measure(x, names)
    calls = []
    res = get_method("bm3d").restore(
        None, "denoising", y, None, 0, image_seeds(names), "cpu", progress=calls.append
    )
    assert calls == [1]
    assert res.x.shape == (1, 3, 32, 32) and res.x.dtype == torch.float32
    assert float(res.x.min()) >= -1 and float(res.x.max()) <= 1
    assert np.isnan(res.loss).all() and not res.diverged.any()
    ref = data.to_5bit(x) * 8
    assert psnr(data.to_pixels(res.x), ref)[0] > psnr(data.to_pixels(y), ref)[0] + 3


# ---- the objectives -----------------------------------------------------------------------------
def test_ours_prior_term_is_negative_log_prob(flow):
    f64 = copy.deepcopy(flow).double()
    z = 0.7 * torch.randn(3, f64.dim, dtype=torch.float64)
    with torch.no_grad():
        x, logdet_g = f64.inverse(z)
        single = Ours.prior_term(z, logdet_g)
        second = -f64.log_prob(x)  # a second pass x -> z
    assert torch.allclose(single, second, rtol=1e-9, atol=1e-7)
    y = TASKS["inpainting"].A(torch.zeros_like(x))
    obj = get_method("ours").objective(f64, TASKS["inpainting"], y, 0.02)(z, x, logdet_g)
    fit = l1_fit(TASKS["inpainting"], x, y)
    assert torch.allclose(obj, fit + 0.02 * second, rtol=1e-9)
    released = get_method("ours-released").objective(f64, TASKS["inpainting"], y, 0.02)
    assert torch.equal(released(z, x, logdet_g), fit)  # α forced to 0


def test_map_objective_and_released_sign(flow):
    z = 0.1 * torch.randn(2, flow.dim)
    with torch.no_grad():
        x, ld = flow.inverse(z)
        y = x + 0.1
        task = TASKS["denoising"]
        good = get_method("map").objective(flow, task, y, 0.5)(z, x, ld)
        bad = get_method("map-released").objective(flow, task, y, 0.5)(z, x, ld)
        logp = flow.log_prob(x)
        fit = ((x - y) ** 2).flatten(1).sum(1) / (2 * 0.2**2)
    assert torch.allclose(good, fit - 0.5 * logp, rtol=1e-5)
    assert torch.allclose(bad, fit + 0.5 * logp, rtol=1e-5)
    mapall = get_method("map-all")
    assert mapall.sigma("deblurring") == config.MAP_SIGMA == mapall.sigma("denoising")


def test_csgm_objective(flow):
    z = torch.randn(2, flow.dim)
    x, ld = flow.inverse(z)
    y = torch.zeros(2, 1, 32, 32)
    task = TASKS["colorization"]
    got = get_method("csgm").objective(flow, task, y, 0.1)(z, x, ld)
    expect = (x.mean(1, keepdim=True) ** 2).flatten(1).sum(1) + 0.1 * (z**2).sum(1)
    assert torch.allclose(got, expect)


def test_initial_latents():
    seeds = image_seeds(NAMES + ["x.jpg"] * 0 + [f"{i}.jpg" for i in range(30)])
    z_glow = get_method("glowip").initial_latent(seeds, 3072)
    assert z_glow.shape == (32, 3072) and bool((z_glow == 0).all())
    z_csgm = get_method("csgm").initial_latent(seeds, 3072)
    z_ours = get_method("ours").initial_latent(seeds, 3072)
    assert abs(float(z_csgm.std()) - 1.0) < 0.02 and abs(float(z_ours.std()) - 0.1) < 0.002
    assert abs(float(get_method("map").initial_latent(seeds, 3072).std()) - 0.1) < 0.002
    # per image: batch order does not matter; images differ
    rev = get_method("ours").initial_latent(seeds[::-1], 3072)
    assert torch.equal(rev.flip(0), z_ours) and not torch.equal(z_ours[0], z_ours[1])


# ---- the solver ---------------------------------------------------------------------------------
def test_restore_deterministic_and_batch_independent(flow, images):
    ours = get_method("ours")
    a = _restore(ours, flow, "deblurring", images, weight=0.02)
    b = _restore(ours, flow, "deblurring", images, weight=0.02)
    assert torch.equal(a.x, b.x) and np.array_equal(a.loss, b.loss)
    alone = _restore(ours, flow, "deblurring", images[1:], weight=0.02, names=NAMES[1:])
    assert torch.allclose(a.x[1:], alone.x, atol=1e-5)
    assert np.allclose(a.loss[1:], alone.loss, rtol=1e-5)


def test_flow_frozen_during_solve(flow):
    before = {k: v.clone() for k, v in flow.state_dict().items()}
    flow.train()
    seen = []

    def objective(z, x, logdet):
        seen.append((flow.training, any(p.requires_grad for p in flow.parameters())))
        return (x**2).flatten(1).sum(1)

    res = solve_latent(flow, objective, torch.randn(2, flow.dim) * 0.1, 4, 0.01)
    assert all(s == (False, False) for s in seen)
    assert all(p.grad is None for p in flow.parameters())
    assert flow.training and all(p.requires_grad for p in flow.parameters())  # restored
    flow.eval()
    for k, v in flow.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert res.iters == 4 and res.loss.shape == (2,)
    # the returned iterate is G(z) at the returned z
    with torch.no_grad():
        assert torch.allclose(flow.inverse(res.z)[0], res.x)


def test_solve_flags_diverging_image(flow):
    calls = {"n": 0}

    def objective(z, x, logdet):
        calls["n"] += 1
        loss = (x**2).flatten(1).sum(1)
        if calls["n"] >= 3:  # image 1 blows up from the third evaluation on
            loss = torch.where(torch.arange(3) == 1, torch.full_like(loss, float("inf")), loss)
        return loss

    ticks = []
    z0 = torch.randn(3, flow.dim) * 0.1
    res = solve_latent(flow, objective, z0, 6, 0.01, progress=ticks.append)
    assert ticks == list(range(1, 7))
    assert res.diverged.tolist() == [False, True, False]
    assert torch.isfinite(res.x).all() and np.isfinite(res.loss[[0, 2]]).all()
    # image 1 kept its last finite iterate (the second evaluation = after one step)
    ref = solve_latent(flow, lambda z, x, ld: (x**2).flatten(1).sum(1), z0, 1, 0.01)
    assert torch.allclose(res.z[1], ref.z[1]) and torch.allclose(res.x[1], ref.x[1])
    # the other images are untouched by image 1's divergence
    full = solve_latent(flow, lambda z, x, ld: (x**2).flatten(1).sum(1), z0, 6, 0.01)
    assert torch.allclose(res.x[[0, 2]], full.x[[0, 2]])


def test_solve_never_finite_image(flow):
    def objective(z, x, logdet):
        loss = (x**2).flatten(1).sum(1)
        return torch.where(torch.arange(2) == 0, torch.full_like(loss, float("nan")), loss)

    res = solve_latent(flow, objective, torch.randn(2, flow.dim) * 0.1, 3, 0.01)
    assert res.diverged.tolist() == [True, False]
    assert torch.isfinite(res.x).all() and res.loss[0] == np.inf and np.isfinite(res.loss[1])


def test_solve_autocast_option(flow):
    y = torch.rand(2, 3, 32, 32) * 2 - 1

    def objective(z, x, logdet):
        return (x - y).abs().flatten(1).sum(1)

    z0 = torch.randn(2, flow.dim) * 0.1
    res = solve_latent(flow, objective, z0, 3, 0.005, autocast=torch.bfloat16)
    ref = solve_latent(flow, objective, z0, 3, 0.005)
    assert res.x.dtype == torch.float32 and res.z.dtype == torch.float32
    assert torch.isfinite(res.x).all() and not res.diverged.any()
    assert torch.allclose(res.x, ref.x, atol=0.05)
