"""Convergence traces (`bench.traces`), and the run settings the scale study adds: the test
offset (the replication set), the weights of another run, the preset's sizes overridden, and
`bench train --width/--keep-epochs/--max-minutes`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import invoke, one_line_error, tiny_flow

from bench import data, metrics, runner, traces
from bench.methods import get_method
from bench.solve import solve_latents, trace_steps
from bench.tasks import get_task, image_seeds

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = [f"img{i}.png" for i in range(4)]


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(3)
    return torch.randint(0, 256, (len(NAMES), 3, 32, 32), generator=g, dtype=torch.uint8)


def test_trace_steps_are_log_spaced_with_zero_and_the_last():
    assert trace_steps(300) == (0, 1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300)
    assert trace_steps(1500) == (
        0, 1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000, 1500
    )  # fmt: skip
    assert trace_steps(10) == (0, 1, 2, 3, 5, 10)
    assert trace_steps(1) == (0, 1)
    assert trace_steps(0) == (0,)


def test_batch_psnr_is_the_metrics_psnr(images):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(len(NAMES), 3, 32, 32, generator=g) * 2 - 1
    x[0] = data.to_model(images[:1])[0]  # an exact restoration: +inf, as metrics.psnr says
    got = traces.batch_psnr(x, images).numpy()
    want = metrics.psnr(data.to_pixels(x), metrics.reference(images))
    assert np.isposinf(got[0]) and np.isposinf(want[0])
    np.testing.assert_allclose(got[1:], want[1:], rtol=1e-12)


def _problem(flow, images, method="ours", task="deblurring", weight=0.02):
    y = get_task(task).measure(images, NAMES)
    return get_method(method).problem(flow, task, y, weight, image_seeds(NAMES), "cpu")


def test_a_trace_never_changes_the_solve_and_ends_at_the_returned_image(images):
    flow = tiny_flow()
    plain = solve_latents(flow, [_problem(flow, images)], 12)[0]
    recorder = traces.TraceRecorder(images)
    traced = solve_latents(flow, [_problem(flow, images)], 12, trace=recorder)[0]
    assert torch.equal(plain.z, traced.z) and torch.equal(plain.x, traced.x)
    assert recorder.steps == [0, 1, 2, 3, 5, 10, 12]
    part = recorder.part(slice(None))
    assert part["psnr"].shape == (7, len(NAMES))
    np.testing.assert_array_equal(part["psnr"][-1], traces.batch_psnr(plain.x, images).numpy())
    np.testing.assert_allclose(part["objective"][-1], plain.loss, rtol=1e-6)
    # the solve makes progress: the objective falls from z0 to the last step on every image
    assert (part["objective"][-1] < part["objective"][0]).all()


def test_a_diverged_row_is_traced_as_nan_from_its_divergence(images):
    flow = tiny_flow()
    problem = _problem(flow, images)
    objective = problem.objective

    def poisoned(z, x, logdet):  # row 1 diverges at the third evaluation
        loss = objective(z, x, logdet)
        poisoned.calls += 1
        if poisoned.calls >= 3:
            loss = loss + torch.tensor([0.0, math.inf, 0.0, 0.0])
        return loss

    poisoned.calls = 0
    problem.objective = poisoned
    recorder = traces.TraceRecorder(images)
    solve_latents(flow, [problem], 5, trace=recorder)
    part = recorder.part(slice(None))
    assert recorder.steps == [0, 1, 2, 3, 5]
    assert np.isfinite(part["psnr"][:2]).all()  # steps 0 and 1
    assert np.isnan(part["psnr"][2:, 1]).all() and np.isnan(part["objective"][2:, 1]).all()
    assert np.isfinite(part["psnr"][:, [0, 2, 3]]).all()


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """A smoke Table 1 run, fused and per cell, on the builtin images."""
    base = tmp_path_factory.mktemp("traced")
    out = {}
    for fuse in ("--fuse", "--no-fuse"):
        results = base / fuse.strip("-")
        args = ["run", "--table", "1", "--preset", "smoke", "--dataset", "builtin"]
        args += ["--results", str(results), "--out", str(base / f"rep{fuse}")]
        args += ["--no-progress", "--threads", "1", "--tasks", "denoising,inpainting", fuse]
        r = invoke(args)
        assert r.exit_code == 0, r.output
        out[fuse] = runner.find_run(results)
    return out


def test_every_latent_solve_of_a_run_is_traced_and_ends_at_its_stored_psnr(smoke_runs):
    run_dir = smoke_runs["--fuse"]
    rows = runner.read_cells(run_dir, "test")
    frame = traces.read_traces(run_dir)
    flow_methods = {m for m in rows["method"].unique() if get_method(m).needs_flow}
    assert set(frame["method"].unique()) == flow_methods  # BM3D (no latent solve) has none
    assert list(traces.read_traces(run_dir, "select")["step"].unique()) == list(trace_steps(10))
    last = frame[frame["step"] == frame["step"].max()]
    merged = last.merge(rows, on=["method", "task", "image"], suffixes=("_trace", ""))
    assert len(merged) == len(rows[rows["method"].isin(flow_methods)])
    np.testing.assert_allclose(merged["psnr_trace"], merged["psnr"], rtol=1e-5)


def test_fused_and_per_cell_traces_agree(smoke_runs):
    keys = ["method", "task", "image", "step"]
    fused = traces.read_traces(smoke_runs["--fuse"]).sort_values(keys, ignore_index=True)
    alone = traces.read_traces(smoke_runs["--no-fuse"]).sort_values(keys, ignore_index=True)
    assert len(fused) == len(alone) > 0
    pd.testing.assert_frame_equal(fused[keys], alone[keys])
    np.testing.assert_allclose(fused["psnr"], alone["psnr"], atol=0.05)


def test_summary_has_a_mean_and_interval_per_step(smoke_runs):
    summary = traces.summarize(traces.read_traces(smoke_runs["--fuse"]))
    assert {"task", "method", "weight", "step", "n", "mean", "lo", "hi"} <= set(summary)
    finite = summary[np.isfinite(summary["lo"])]
    assert (
        len(finite) and ((finite["lo"] <= finite["mean"]) & (finite["mean"] <= finite["hi"])).all()
    )


def test_a_run_without_traces_reads_as_empty(tmp_path):
    assert traces.read_traces(tmp_path).empty


# ---- the replication set: --test-offset ---------------------------------------------------------
def test_an_offset_skips_the_first_images_and_names_them():
    full = data.load_images("builtin", "test", limit=6, progress=False)
    later = data.load_images("builtin", "test", limit=2, progress=False, offset=4)
    assert later.names == full.names[4:6]
    assert torch.equal(later.images, full.images[4:6])
    assert (
        later.fingerprint
        != data.load_images("builtin", "test", limit=2, progress=False).fingerprint
    )
    assert "offset 4" in later.label and later.names[0] in later.label


def test_an_offset_past_the_images_is_one_line(tmp_path):
    r = invoke(
        ["run", "--table", "1", "--preset", "smoke", "--dataset", "builtin", "--test-offset",
         "100000", "--results", str(tmp_path), "--out", str(tmp_path / "rep"), "--no-progress"]
    )  # fmt: skip
    one_line_error(r, "offset 100000", "--test-offset")


# ---- --weights-from, --test-images, --iters -----------------------------------------------------
def test_weights_from_a_run_test_its_choice_on_other_images(smoke_runs, tmp_path):
    source = smoke_runs["--fuse"]
    results = source.parent.parent
    args = ["run", "--table", "1", "--preset", "smoke", "--dataset", "builtin", "--results"]
    args += [str(results), "--out", str(tmp_path / "rep"), "--no-progress", "--threads", "1"]
    args += ["--tasks", "denoising,inpainting", "--weights-from", source.name[:-4]]
    args += ["--test-offset", "2", "--test-images", "2", "--iters", "3"]
    r = invoke(args)
    assert r.exit_code == 0, r.output
    run_dir = runner.find_run(results)
    assert run_dir != source
    man = runner.read_manifest(run_dir)
    assert man["key"]["weights_from"]["run"] == source.name
    assert man["preset"]["iters"] == 3 and man["preset"]["test_images"] == 2
    assert (
        man["test_images"]["first"]
        == data.load_images("builtin", "test", limit=4, progress=False).names[2]
    )
    chosen = runner.stored_selection(source)
    rows = runner.read_cells(run_dir)
    assert set(rows["stage"]) == {"test"}  # no grid
    for (m, t), w in chosen.items():
        sub = rows[(rows["method"] == m) & (rows["task"] == t)]
        assert len(sub) == 2
        assert sub["weight"].isna().all() if w is None else (sub["weight"] == w).all()
        assert man["selection"][m][t]["source"] in ("no weight", f"run {source.name}")
    assert (rows.loc[rows["method"] == "ours", "iters"] == 3).all()


def test_weights_from_refuses_what_it_cannot_use(smoke_runs, tmp_path):
    results = str(smoke_runs["--fuse"].parent.parent)
    base = ["run", "--table", "1", "--preset", "smoke", "--dataset", "builtin", "--no-progress"]
    base += ["--out", str(tmp_path / "rep")]
    r = invoke([*base, "--results", results, "--weights-from", "nosuchrun"])
    one_line_error(r, "nosuchrun")
    r = invoke([*base, "--results", results, "--weights-from", smoke_runs["--fuse"].name,
                "--weights", "paper"])  # fmt: skip
    one_line_error(r, "--weights-from", "--weights paper")
    r = invoke(["run", "--table", "general", "--preset", "smoke", "--test-offset", "3"])
    one_line_error(r, "--test-offset", "--table 1")


def test_weights_of_an_unfinished_run_are_refused(smoke_runs, tmp_path):
    import json
    import shutil

    copy = tmp_path / "runs" / smoke_runs["--fuse"].name
    shutil.copytree(smoke_runs["--fuse"], copy)
    man = json.loads((copy / "run.json").read_text())
    man["complete"] = False
    (copy / "run.json").write_text(json.dumps(man))
    with pytest.raises(Exception, match="not complete"):
        runner.stored_selection(copy)


# ---- bench train --width, --keep-epochs, --max-minutes ------------------------------------------
def _train(tmp_path, *extra):
    args = ["train", "--preset", "smoke", "--dataset", "builtin", "--results", str(tmp_path)]
    return invoke([*args, "--no-progress", "--threads", "1", *extra])


def test_a_kept_epoch_is_the_training_of_that_many_epochs(tmp_path):
    from bench.train import kept_epoch_path, load_checkpoint

    main = tmp_path / "a" / "flow.pt"
    r = _train(tmp_path / "a", "--epochs", "2", "--width", "8", "--keep-epochs", "1",
               "--checkpoint", str(main))  # fmt: skip
    assert r.exit_code == 0, r.output
    r = _train(tmp_path / "b", "--epochs", "1", "--width", "8")
    assert r.exit_code == 0, r.output
    once = tmp_path / "b" / "checkpoints" / "builtin-smoke-coupling-w8.pt"
    kept, kept_meta = load_checkpoint(kept_epoch_path(main, 1))
    _, once_meta = load_checkpoint(once)
    assert kept_meta["epochs"] == 1 and kept_meta["complete"] and kept.arch_config["hidden"] == 8
    assert kept_meta["fingerprint"] == once_meta["fingerprint"]
    assert load_checkpoint(main)[1]["fingerprint"] != kept_meta["fingerprint"]


def test_a_time_budget_ends_the_training_after_an_epoch(tmp_path):
    from bench.train import load_checkpoint

    r = _train(tmp_path, "--epochs", "3", "--width", "8", "--max-minutes", "1e-6")
    assert r.exit_code == 0, r.output
    assert "time budget" in r.output
    _, meta = load_checkpoint(tmp_path / "checkpoints" / "builtin-smoke-coupling-w8.pt")
    assert meta["epochs"] == 1 and meta["complete"]


@pytest.mark.parametrize("value", ["0", "x", "5", ","])
def test_bad_kept_epochs_are_one_line(tmp_path, value):
    one_line_error(_train(tmp_path, "--keep-epochs", value), "--keep-epochs")


def test_a_trace_whose_cell_is_not_finished_is_left_out(smoke_runs, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(smoke_runs["--fuse"], copy)
    before = traces.read_traces(copy)
    victim = sorted((copy / "cells" / "test").glob("ours*.csv"))[0]
    victim.unlink()  # as an interrupted write, or a deleted cell, leaves it
    after = traces.read_traces(copy)
    assert len(after) < len(before) and len(after) > 0


def test_kept_epochs_already_trained_and_force(tmp_path):
    from bench.train import kept_epoch_path

    ckpt = tmp_path / "flow.pt"
    r = _train(tmp_path, "--epochs", "2", "--width", "8", "--keep-epochs", "1",
               "--checkpoint", str(ckpt))  # fmt: skip
    assert r.exit_code == 0, r.output
    r = _train(tmp_path, "--epochs", "3", "--width", "8", "--keep-epochs", "2",
               "--checkpoint", str(ckpt))  # fmt: skip
    one_line_error(r, "--keep-epochs 2", "--force")
    r = _train(tmp_path, "--epochs", "1", "--width", "8", "--force", "--replace",
               "--checkpoint", str(ckpt))  # fmt: skip
    assert r.exit_code == 0, r.output
    assert not kept_epoch_path(ckpt, 1).exists()  # the replaced training's kept epoch


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_time_budget_that_is_not_a_number_is_one_line(tmp_path, value):
    one_line_error(_train(tmp_path, "--max-minutes", value), "--max-minutes")


def test_an_empty_weights_from_is_one_line(tmp_path):
    r = invoke(["run", "--table", "1", "--preset", "smoke", "--weights-from", " ", "--results",
                str(tmp_path), "--out", str(tmp_path / "rep"), "--no-progress"])  # fmt: skip
    one_line_error(r, "--weights-from is empty")


def test_peaks_lists_the_solves_that_fall_after_their_best_step():
    import pandas as pd

    from bench.traces import peaks

    # per image: rising; peaked (falls 1 dB, objective still falling); flat (falls 0.05 dB)
    shapes = {"rising": (10, 20, 25), "peaked": (10, 25, 24), "flat": (10, 25, 24.95)}
    rows = []
    for method, means in shapes.items():
        for image in ("a", "b", "c"):
            for step, m in zip((0, 300, 1500), means, strict=True):
                jitter = {"a": -0.1, "b": 0.0, "c": 0.1}[image]
                rows.append({"step": step, "image": image, "psnr": m + jitter,
                             "objective": 100.0 - step / 100, "method": method,
                             "task": "denoising", "weight": 0.1})  # fmt: skip
    # an image diverged at the peak is left out of the pairing; one exact at step 0 is ignored
    rows.append({"step": 300, "image": "d", "psnr": math.nan, "objective": math.nan,
                 "method": "peaked", "task": "denoising", "weight": 0.1})  # fmt: skip
    rows.append({"step": 1500, "image": "d", "psnr": 5.0, "objective": 1.0,
                 "method": "peaked", "task": "denoising", "weight": 0.1})  # fmt: skip
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # steps in no order
    found = peaks(frame)
    assert found["method"].tolist() == ["peaked"]  # "flat" falls by 0.05 dB, under the margin
    r = found.iloc[0]
    assert (r.peak_step, r.last_step, r.n) == (300, 1500, 3)
    assert (r.peak_mean, r.last_mean) == pytest.approx((25.0, 24.0))
    assert r.fall == pytest.approx(1.0) and r.fall_lo == pytest.approx(1.0)
    assert (r.objective_peak, r.objective_last) == pytest.approx((97.0, 85.0))
    assert peaks(frame[frame["method"] == "rising"]).empty
    # a solve whose last step has no finite image is not compared with an earlier step
    diverged = frame[frame["method"] == "peaked"].copy()
    diverged.loc[diverged["step"] == 1500, "psnr"] = math.nan
    assert peaks(diverged).empty
