"""What the console says is what runs: the plan counts the images actually loaded, the run-time
estimate times the flow that will run (its width and architecture) and every method (BM3D
too), and the commands share their common options (same spelling, same defaults)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import one_line_error, tiny_flow
from PIL import Image

from bench import config, runner

pytestmark = pytest.mark.usefixtures("one_thread")

SMOKE = config.get_preset("smoke")  # width 16, 4 test and 4 select images, 10 iterations
TEST_FILES = ["182638.jpg"]  # one CelebA test image
VALID_FILES = ["162771.jpg", "162772.jpg"]  # two valid images


def invoke(args):
    from bench.cli import main

    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.fixture
def small_celeba(tmp_path):
    """A CelebA-style folder holding 1 test and 2 valid images (synthetic JPEGs), fewer than
    the smoke preset's 4 and 4."""
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in TEST_FILES + VALID_FILES:
        pixels = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "img_align_celeba" / name)
    return root


# ---- the plan line --------------------------------------------------------------------------
def test_plan_counts_the_images_actually_loaded():
    plan = runner.plan_table1(SMOKE, "ours", "denoising")
    # before loading: the preset's numbers
    assert (
        plan.describe() == "3 cells (2 grid cells on 4 valid images, 1 test cell on 4 test images)"
    )
    loaded = plan.with_images(test=1, select=2)
    assert (loaded.images("test"), loaded.images("select")) == (1, 2)
    assert loaded.describe() == (
        "3 cells (2 grid cells on 2 valid images, 1 test cell on 1 test image)"
    )
    assert plan.images("test") == 4  # with_images returns a new plan
    on_test = runner.plan_table1(SMOKE, "ours", "denoising", select_on="test")
    assert on_test.with_images(test=1).describe() == "2 cells (2 grid cells on 1 test image)"
    with pytest.raises(ValueError, match="unknown stage"):
        plan.with_images(train=3)


def test_run_prints_the_images_loaded_and_times_the_checkpoints_flow(
    small_celeba, width8_checkpoint, tmp_path, tmp_cache, monkeypatch
):
    timed = []
    real = runner.time_solver_iteration

    def spy(*args, **kw):
        timed.append((args, kw))
        return real(*args, **kw)

    monkeypatch.setattr(runner.estimate, "time_solver_iteration", spy)
    args = ["run", "--table", "1", "--preset", "smoke", "--dataset", "celeba"]
    args += ["--data-root", str(small_celeba), "--checkpoint", str(width8_checkpoint)]
    args += ["--methods", "ours", "--tasks", "denoising", "--device", "cpu", "--threads", "1"]
    args += ["--no-progress", "--results", str(tmp_path / "res"), "--out", str(tmp_path / "rep")]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert "3 cells (2 grid cells on 2 valid images, 1 test cell on 1 test image)" in result.output
    # the estimate timed the checkpoint's width-8 flow, not the preset's width 16
    assert len(timed) == 1
    (args_, kw) = timed[0]
    assert kw["flow_config"]["hidden"] == 8 and kw["flow_config"]["arch"] == "coupling"
    assert f"checkpoint {width8_checkpoint}'s width-8 coupling flow" in result.output
    assert "3 of 3 cells computed" in result.output
    rows = runner.read_cells(next((tmp_path / "res" / "runs").iterdir()))
    assert sorted(rows.groupby("stage").size().items()) == [("select", 4), ("test", 1)]


# ---- the estimate -----------------------------------------------------------------------------
def test_estimate_counts_loaded_images_the_real_flow_and_bm3d(monkeypatch):
    calls = {}

    def fake_solver(hidden=None, device="cpu", batch=1, arch="coupling", flow_config=None):
        calls["solver"] = (hidden, batch, arch, flow_config)
        return 1.0  # seconds per image per iteration

    def fake_method(method, task, weight=None, iters=1, device="cpu"):
        calls.setdefault("method", []).append((method, task))
        return 2.0  # seconds per image

    monkeypatch.setattr(runner.estimate, "time_solver_iteration", fake_solver)
    monkeypatch.setattr(runner.estimate, "time_method_image", fake_method)
    plan = runner.plan_table1(SMOKE, "ours,bm3d", "denoising").with_images(test=1, select=2)
    cfg = tiny_flow().arch_config
    est = runner.estimate_seconds(plan, "cpu", flow_config=cfg)
    # ours: 2 grid cells on 2 valid images + 1 test cell on 1 image, 10 iterations each;
    # bm3d: 1 test cell on 1 image
    assert est == pytest.approx((2 * 2 + 1 * 1) * 10 * 1.0 + 1 * 2.0)
    assert calls["solver"][3] == cfg and calls["solver"][1] == 2  # batch: the largest stage
    assert calls["method"] == [("bm3d", "denoising")]
    assert runner.estimate_seconds(plan, "cpu", jobs=2, flow_config=cfg) == pytest.approx(est / 2)


def test_estimate_times_bm3d_alone():
    plan = runner.plan_table1(SMOKE, "bm3d", "denoising").with_images(test=2)
    assert runner.estimate_seconds(plan, "cpu") > 0  # BM3D is timed, not counted as free


def test_solver_timing_builds_the_flow_of_its_config(monkeypatch):
    from bench import flows

    built = []
    real = flows.flow_from_config

    def spy(cfg):
        built.append(cfg["hidden"])
        return real(cfg)

    monkeypatch.setattr(flows, "flow_from_config", spy)
    cfg = tiny_flow().arch_config
    assert runner.time_solver_iteration(flow_config=cfg, batch=2) > 0
    assert built == [8]
    with pytest.raises(ValueError, match="width"):
        runner.time_solver_iteration()


# ---- common options ----------------------------------------------------------------------------
COMMON = {  # option -> (parameter default, commands that take it)
    "--device": ("auto", {"train", "sample", "run", "findings", "ablation", "perf", "scale"}),
    "--no-progress": (True, {"train", "run", "findings", "ablation", "scale"}),
    "--threads": ("auto", {"train", "sample", "run", "findings", "ablation", "perf", "scale"}),
    "--results": (
        "results",
        {"train", "sample", "run", "report", "findings", "ablation", "perf", "compare", "scale"},
    ),
    "--out": (
        "reports",
        {"sample", "run", "report", "findings", "ablation", "perf", "compare", "scale"},
    ),
    "--seed": (0, {"train", "sample", "run", "findings", "ablation"}),
    "--dataset": ("builtin", {"train", "sample", "run"}),
    "--data-root": (None, {"train", "run", "findings", "scale"}),
}


@pytest.mark.parametrize("option", sorted(COMMON))
def test_common_options_have_one_spelling_and_default(option):
    from bench.cli import main

    default, commands = COMMON[option]
    for name, cmd in main.commands.items():
        found = [
            p for p in cmd.params if option in p.opts or option in getattr(p, "secondary_opts", [])
        ]
        if name in commands:
            assert len(found) == 1, f"bench {name} lacks {option}"
            assert found[0].default == default, (name, option, found[0].default)
            if option == "--no-progress":
                assert found[0].name == "progress" and "--progress" in found[0].opts
        else:
            assert not found, f"bench {name} takes {option}, which does nothing there"


def test_train_passes_progress_and_threads(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from bench import train

    seen = {}

    def fake_train(*args, **kw):
        seen.update(kw, threads=torch.get_num_threads())
        meta = {"path": "x.pt", "num_params": 1, "epochs": 1, "val_bpd": 1.0, "fingerprint": "f"}
        return SimpleNamespace(meta=meta)

    monkeypatch.setattr(train, "train", fake_train)
    base = ["train", "--preset", "smoke", "--device", "cpu", "--results", str(tmp_path)]
    assert invoke(base).exit_code == 0 and seen["progress"] is True
    before = torch.get_num_threads()
    try:
        result = invoke(base + ["--no-progress", "--threads", "1"])
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    assert seen["progress"] is False and seen["threads"] == 1


def test_sample_out_is_the_reports_folder_or_a_png(width8_checkpoint, tmp_path):
    base = ["sample", "--checkpoint", str(width8_checkpoint), "--device", "cpu"]
    base += ["--stds", "0,1", "--per-row", "2"]
    folder = tmp_path / "reports"
    result = invoke(base + ["--out", str(folder)])
    assert result.exit_code == 0, result.output
    assert (folder / "fig1_samples.png").read_bytes()[:4] == b"\x89PNG"
    png = tmp_path / "elsewhere" / "fig.png"
    assert invoke(base + ["--out", str(png)]).exit_code == 0
    assert png.read_bytes()[:4] == b"\x89PNG" and not (png.parent / ".lock").exists()


@pytest.mark.parametrize("name", ["fig.jpg", "fig.PDF", "fig.svg"])
def test_sample_out_with_another_file_suffix_is_refused(width8_checkpoint, tmp_path, name):
    """`--out d/fig.jpg` made a folder named fig.jpg: now one line naming the suffix and the
    fix, and nothing is created."""
    out = tmp_path / "d" / name
    result = invoke(["sample", "--checkpoint", str(width8_checkpoint), "--out", str(out)])
    one_line_error(result, str(out), out.suffix, ".png")
    assert not (tmp_path / "d").exists()


def test_sample_out_an_existing_folder_named_png_is_refused(width8_checkpoint, tmp_path):
    out = tmp_path / "x.png"
    out.mkdir()
    result = invoke(["sample", "--checkpoint", str(width8_checkpoint), "--out", str(out)])
    one_line_error(result, str(out), "is a folder")
    assert list(out.iterdir()) == []


def test_sample_out_an_existing_folder_with_a_dot_is_the_reports_folder(
    width8_checkpoint, tmp_path
):
    out = tmp_path / "reports.v2"
    out.mkdir()
    args = ["sample", "--checkpoint", str(width8_checkpoint), "--device", "cpu", "--out", str(out)]
    result = invoke([*args, "--stds", "0", "--per-row", "1"])
    assert result.exit_code == 0, result.output
    assert (out / "fig1_samples.png").is_file()


def test_estimate_overlaps_bm3d_with_a_fused_solve(monkeypatch):
    monkeypatch.setattr(runner.estimate, "time_solver_iteration", lambda *a, **k: 1.0)
    monkeypatch.setattr(runner.estimate, "time_method_image", lambda *a, **k: 2.0)
    plan = runner.plan_table1(SMOKE, "ours,bm3d", "denoising").with_images(test=1, select=2)
    solve, bm3d = (2 * 2 + 1 * 1) * 10 * 1.0, 1 * 2.0
    cells = runner.estimate_seconds(plan, "cpu", threads=2)
    assert cells == pytest.approx(solve + bm3d)  # per cell: one after the other
    # fused on 2 threads: BM3D on one thread beside the solve, which runs on one thread fewer
    fused = runner.estimate_seconds(plan, "cpu", threads=2, fused_batch=8)
    assert fused == pytest.approx(solve + bm3d / 2)
    # on one thread there is no worker beside it; with --jobs 2 the cells are shared out
    assert runner.estimate_seconds(plan, "cpu", threads=1, fused_batch=8) == pytest.approx(
        solve + bm3d
    )
    assert runner.estimate.overlapped(1.0, 5.0, 2) == 5.0  # cells longer than the solve finish last
