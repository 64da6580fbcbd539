"""The conformance suite: generic checks run over every registered item — the built-ins and the
example plugins in ``examples/plugins/`` — the way benchopt runs its generic tests over every
solver it discovers. Registering an item adds its cases here; no test code is written for it.

- each task: the adjoint (float64), batch independence of A and of the measurement, and the
  shape of its display;
- each method: at a tiny size, through the runner, on each task it supports (and the skip
  reason on the others);
- each flow architecture: the round trip, and the log-determinant in both directions against
  the autograd Jacobian in float64;
- each dataset: shape, dtype, unique names and determinism.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import celeba_root_or_none, check_flow_inverse_and_logdets, tiny_flow

from bench import config, plugins, runner
from bench.datasets import DATASETS
from bench.flows import FLOWS, MultiScaleFlow
from bench.methods import METHODS
from bench.tasks import TASKS, image_seeds

EXAMPLES = sorted(str(p) for p in (Path(__file__).parents[1] / "examples" / "plugins").glob("*.py"))


def registered_with_examples() -> dict[str, list[str]]:
    """Every registered name per kind, the example plugins' included (loaded for collection,
    then unregistered so the other test modules see the built-ins only)."""
    plugins.load(EXAMPLES)
    try:
        return {
            "tasks": list(TASKS),
            "methods": list(METHODS),
            "flows": list(FLOWS),
            "datasets": list(DATASETS),
        }
    finally:
        plugins.forget(EXAMPLES)


ITEMS = registered_with_examples()
pytestmark = pytest.mark.usefixtures("one_thread", "examples_loaded")


@pytest.fixture(scope="module")
def examples_loaded():
    plugins.load(EXAMPLES)
    yield
    plugins.forget(EXAMPLES)


def test_the_examples_are_covered():
    assert "tikhonov" in ITEMS["methods"] and "downsample2" in ITEMS["tasks"]
    assert {"csgm", "glowip", "map", "bm3d", "ours"} <= set(ITEMS["methods"])


# ---- tasks -------------------------------------------------------------------------------------
def _images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, config.CHANNELS, 32, 32), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("name", ITEMS["tasks"])
def test_task_adjoint(name):
    task = TASKS[name].for_images(image_seeds(["a.jpg", "b.jpg", "c.jpg"], 5))
    if not task.linear:
        pytest.skip(f"{name} is not linear: no adjoint")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, 32, 32, generator=g, dtype=torch.float64)
    ax = task.A(x)
    y = torch.randn(ax.shape, generator=g, dtype=torch.float64)
    aty = task.adjoint(y)
    assert aty.shape == x.shape and ax.dtype == torch.float64
    lhs, rhs = (ax * y).sum(), (x * aty).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ITEMS["tasks"])
def test_task_batch_independence(name):
    task = TASKS[name]
    x255 = _images(3)
    names = ["a.jpg", "b.jpg", "c.jpg"]
    y = task.measure(x255, names, seed=5)
    assert y.shape[0] == 3 and y.dtype == torch.float32
    for i in range(3):
        alone = task.measure(x255[i : i + 1], names[i : i + 1], seed=5)
        torch.testing.assert_close(alone[0], y[i], rtol=0, atol=0)
    # A bound to the batch's images (`Task.for_images`): image i's operator is the same in a
    # batch of one as in the batch of three, and does not depend on the other images
    seeds = image_seeds(names, 5)
    x = torch.rand(3, 3, 32, 32, dtype=torch.float64) * 2 - 1
    ax = task.for_images(seeds).A(x)
    alone = task.for_images(seeds[1:2]).A(x[1:2])
    torch.testing.assert_close(alone[0], ax[1], rtol=1e-12, atol=1e-12)
    other = x.clone()
    other[0] = 0.5
    torch.testing.assert_close(task.for_images(seeds).A(other)[1:], ax[1:], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ITEMS["tasks"])
def test_task_display_is_an_image_per_measurement(name):
    task = TASKS[name]
    y = task.measure(_images(2), ["a.jpg", "b.jpg"])
    shown = task.display(y)
    assert shown.shape == (2, config.CHANNELS, 32, 32) and shown.dtype == torch.uint8
    assert task.label and task.display_label
    assert task.figure_file().endswith(f"_{name}.png")


# ---- methods -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def flow():
    return tiny_flow()


@pytest.mark.parametrize("name", ITEMS["methods"])
def test_method_runs_through_the_runner_on_each_task_it_supports(name, flow, tmp_path):
    method = METHODS[name]
    supported = [t for t in TASKS if method.supports(t) is None]
    assert supported, f"{name} supports no registered task"
    grid = method.grid("smoke")
    assert grid and (method.weight_name is None) == (grid == (None,))
    preset = config.get_preset("smoke").with_(
        test_images=2, iters=2, grids={} if method.weight_name is None else {name: grid[:1]}
    )
    res = runner.run_table1(
        flow,
        {"fingerprint": "conformance", "arch": "coupling", "hidden": 8},
        preset,
        "builtin",
        methods=name,
        tasks=list(TASKS),
        results_dir=tmp_path,
        progress=False,
        threads=1,
        command="pytest conformance",
    )
    rows = runner.read_cells(res.run_dir, "test")
    assert sorted(set(rows.task)) == sorted(supported)
    assert len(rows) == 2 * len(supported) and not rows.diverged.any()
    assert rows.psnr.between(0, 100).all() and rows.ssim.between(-1, 1).all()
    for t in TASKS:
        if t not in supported:
            assert res.plan.skipped[(name, t)] == method.supports(t)
    info = method.describe()
    assert info["label"] and (info["weight_symbol"] != "") == (method.weight_name is not None)


@pytest.mark.parametrize("name", ITEMS["methods"])
def test_method_restores_a_batch_like_its_images_one_by_one(name, flow):
    method = METHODS[name]
    names = ["a.jpg", "b.jpg"]
    weight = method.grid("smoke")[0]
    seeds = image_seeds(names)
    model = flow if method.needs_flow else None
    for task in [TASKS[t] for t in TASKS if method.supports(t) is None]:
        y = task.measure(_images(2), names)
        batch = method.restore(model, task, y, weight, 2, seeds, "cpu")
        one = method.restore(model, task, y[1:], weight, 2, seeds[1:], "cpu")
        assert batch.x.shape == (2, 3, 32, 32) and batch.x.device.type == "cpu", task.name
        torch.testing.assert_close(one.x[0], batch.x[1], rtol=1e-4, atol=1e-4, msg=task.name)


# ---- flow architectures ------------------------------------------------------------------------
def small_flow(name: str) -> MultiScaleFlow:
    """The architecture on 3×8×8 inputs (three scales reach 1×1), width 6, float64, with its
    ActNorms initialised and every weight nudged away from the identity."""
    flow = MultiScaleFlow(name, 6, steps=(1, 2, 1), splits=(True, True, False), size=8)
    flow = flow.to(torch.float64)
    flow.initialize(torch.rand(16, 3, 8, 8, dtype=torch.float64) * 2 - 1)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow


@pytest.mark.parametrize("name", ITEMS["flows"])
def test_flow_round_trip_and_logdet_against_autograd(name):
    flow = small_flow(name)
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64) * 2 - 1
    z, ld = flow(x)
    assert z.shape == (2, flow.dim) and ld.shape == (2,)
    check_flow_inverse_and_logdets(flow, x, z, ld)


@pytest.mark.parametrize("name", ITEMS["flows"])
def test_flow_builds_at_the_paper_size(name):
    arch = FLOWS[name]
    assert arch.label and len(arch.steps) == len(arch.splits) == arch.levels
    flow = MultiScaleFlow(name, 4, arch.steps, arch.splits)
    z, _ = flow(torch.rand(1, 3, 32, 32) * 2 - 1)
    assert z.shape == (1, config.DIM)


# ---- datasets ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ITEMS["datasets"])
def test_dataset_shape_dtype_and_determinism(name, tmp_cache):
    from bench import data

    dataset = DATASETS[name]
    root = None
    if dataset.needs_root:
        root = celeba_root_or_none() if name == "celeba" else None
        if root is None:
            pytest.skip(f"{name} needs a data folder (BENCH_TEST_CELEBA)")
    first = data.load_images(name, "test", root, limit=4, progress=False)
    again = data.load_images(name, "test", root, limit=4, progress=False)
    assert first.images.shape == (4, 3, 32, 32) and first.images.dtype == torch.uint8
    assert len(set(first.names)) == 4 and first.dataset == name and first.label
    assert torch.equal(first.images, again.images) and first.names == again.names
    assert first.fingerprint == again.fingerprint
    valid = data.load_images(name, "valid", root, limit=4, progress=False)
    assert not set(valid.names) & set(first.names)
    # the same in another process (its own hash seed: a dataset seeded by hash() differs)
    code = (
        "from bench import data; import sys; "
        "print(data.load_images(sys.argv[1], 'test', sys.argv[2] or None, limit=4, "
        "progress=False).fingerprint)"
    )
    specs = [*plugins.env_specs(), *plugins.loaded_specs()]
    env = {**os.environ, plugins.PLUGINS_ENV: os.pathsep.join(dict.fromkeys(specs))}
    out = subprocess.run(
        [sys.executable, "-c", code, name, str(root or "")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert out.stdout.strip() == first.fingerprint
