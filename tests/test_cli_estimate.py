"""`bench run` before it starts: one default preset everywhere, inputs checked before any
estimate, an estimate of the cells still to compute only (and none when nothing is), counts
at the start and at the end that count the same cells, and a run far beyond the device
refused unless --max-hours allows it (issue 11, items 4, 7a and 7b)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import invoke, one_line_error, tiny_flow
from PIL import Image

from bench import config, runner

pytestmark = pytest.mark.usefixtures("one_thread")

# a smoke run of the solver on denoising: 2 grid cells (valid images), then 1 test cell
RUN = ["run", "--table", "1", "--preset", "smoke", "--dataset", "builtin", "--methods", "ours"]
RUN += ["--tasks", "denoising", "--device", "cpu", "--threads", "1", "--no-progress"]


@pytest.fixture
def ckpt(width8_checkpoint):
    return width8_checkpoint


@pytest.fixture
def spies(monkeypatch):
    """The cells each estimate was asked to time, and the solver timings made."""
    seen = {"estimates": [], "timed": 0}
    real_estimate, real_timer = runner.estimate_seconds, runner.time_solver_iteration

    def estimate(*args, **kw):
        seen["estimates"].append([str(c) for c in kw.get("cells") or []])
        return real_estimate(*args, **kw)

    def timer(*args, **kw):
        seen["timed"] += 1
        return real_timer(*args, **kw)

    monkeypatch.setattr(runner, "estimate_seconds", estimate)
    monkeypatch.setattr(runner.estimate, "time_solver_iteration", timer)
    return seen


def _counts(output: str) -> tuple[int, int, int, int]:
    """(finished, total) said at the start and (computed, reused) said at the end."""
    start = re.search(r"^(\d+) of (\d+) cells finished", output, re.M)
    end = re.search(r"(\d+) of \d+ cells computed, (\d+) finished before and reused", output)
    assert start and end, output
    return int(start[1]), int(start[2]), int(end[1]), int(end[2])


# ---- item 7a: finished cells -------------------------------------------------------------------
def test_a_rerun_estimates_only_the_cells_left_and_counts_the_same_cells(
    ckpt, tmp_path, tmp_cache, spies
):
    args = RUN + ["--checkpoint", str(ckpt), "--results", str(tmp_path / "res")]
    args += ["--out", str(tmp_path / "rep")]
    first = invoke(args)
    assert first.exit_code == 0, first.output
    assert "0 of 3 cells finished, 3 to compute; estimated time:" in first.output
    assert _counts(first.output) == (0, 3, 3, 0)
    assert len(spies["estimates"][0]) == 3

    # everything finished: said so, and no estimate is made at all
    spies["timed"] = 0
    again = invoke(args)
    assert again.exit_code == 0, again.output
    assert "3 of 3 cells finished: nothing to compute" in again.output
    assert "estimated" not in again.output and spies["timed"] == 0
    # the test cell chosen after the grid counts as finished at the start, as at the end
    assert _counts(again.output) == (3, 3, 0, 3)

    # one test cell lost: the estimate times it alone, and the end agrees with the start
    run_dir = next((tmp_path / "res" / "runs").iterdir())
    (test_csv,) = (run_dir / "cells" / "test").glob("*.csv")
    test_csv.unlink()
    third = invoke(args)
    assert third.exit_code == 0, third.output
    assert "2 of 3 cells finished, 1 to compute; estimated time:" in third.output
    assert spies["estimates"][-1] == [f"test/{test_csv.stem}"]
    assert _counts(third.output) == (2, 3, 1, 2)


def test_cell_status_follows_the_grid(tmp_path):
    smoke = config.get_preset("smoke").with_(test_images=2, select_images=2, iters=2)
    plan = runner.plan_table1(smoke, "ours", "denoising")
    assert runner.cell_status(plan).describe() == "0 of 3 cells finished, 3 to compute"
    result = runner.run_table1(
        tiny_flow(), {"fingerprint": "status"}, smoke, methods="ours", tasks="denoising",
        results_dir=tmp_path, progress=False, threads=1,
    )  # fmt: skip
    status = runner.cell_status(plan, result.run_dir)
    assert sorted(status.finished) == sorted(result.computed) and not status.todo
    assert runner.cell_status(plan, result.run_dir, force=True).finished == []
    # a grid cell lost: the test cell's weight is open again, so it is to compute
    next((result.run_dir / "cells" / "select").glob("*.csv")).unlink()
    status = runner.cell_status(plan, result.run_dir)
    assert status.describe() == "1 of 3 cells finished, 2 to compute"
    assert {c.stage for c in status.todo} == {"select", "test"}


# ---- item 7b: inputs before the estimate -------------------------------------------------------
def test_missing_training_images_are_refused_before_any_estimate(tmp_path, tmp_cache, spies):
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ["182638.jpg", "162771.jpg"]:  # one test and one valid image, no train image
        Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(
            root / "img_align_celeba" / name
        )
    args = ["run", "--table", "1", "--preset", "smoke", "--dataset", "celeba"]
    args += ["--data-root", str(root), "--methods", "ours", "--tasks", "denoising"]
    args += ["--device", "cpu", "--threads", "1", "--no-progress"]
    res = invoke(args + ["--results", str(tmp_path / "res"), "--out", str(tmp_path / "rep")])
    one_line_error(res, "no CelebA train files")
    assert "estimated" not in res.output and spies["timed"] == 0 and not spies["estimates"]


def test_a_default_checkpoint_of_another_dataset_is_refused_before_any_estimate(
    ckpt, tmp_path, tmp_cache, spies
):
    from bench.train import default_checkpoint_path

    other = default_checkpoint_path("builtin", "smoke", "coupling", tmp_path / "res")
    other.parent.mkdir(parents=True)
    flow = tiny_flow()
    torch.save(
        {"arch_config": flow.arch_config, "model": flow.state_dict(), "dataset": "celeba"}, other
    )
    res = invoke(RUN + ["--results", str(tmp_path / "res"), "--out", str(tmp_path / "rep")])
    one_line_error(res, "was trained on celeba, not builtin")
    assert "estimated" not in res.output and spies["timed"] == 0


# ---- item 4: one default preset; a run beyond the device needs --max-hours ---------------------
@pytest.mark.parametrize("command", ["train", "sample", "run", "ablation"])
def test_every_preset_option_defaults_to_the_cpu_preset(command):
    from click.testing import CliRunner

    from bench.cli import main

    assert config.DEFAULT_PRESET == "cpu"
    (param,) = [p for p in main.commands[command].params if "--preset" in p.opts]
    assert param.default == config.DEFAULT_PRESET and param.show_default
    help_text = CliRunner().invoke(main, [command, "--help"]).output
    assert re.search(r"--preset \[[a-z|]+\]\s+.*\[default: cpu\]", help_text, re.S), help_text


def test_max_hours_is_in_the_help_with_its_default():
    from click.testing import CliRunner

    from bench.cli import main
    from bench.cli.run import MAX_HOURS

    help_text = " ".join(CliRunner().invoke(main, ["run", "--help"]).output.split())
    assert "--max-hours HOURS" in help_text and f"[default: {MAX_HOURS:g}" in help_text


def test_a_run_estimated_beyond_max_hours_is_refused_before_anything_runs(
    ckpt, tmp_path, tmp_cache
):
    res = invoke(
        RUN
        + ["--checkpoint", str(ckpt), "--results", str(tmp_path / "res")]
        + ["--out", str(tmp_path / "rep"), "--max-hours", "1e-9"]
    )
    one_line_error(res, "estimated", "on cpu", "more than --max-hours 1e-09", "--max-hours 1 ")
    assert "--preset" not in res.stderr  # smoke is the smallest preset: none to suggest
    assert not (tmp_path / "res").exists() and not (tmp_path / "rep").exists()


@pytest.mark.parametrize("preset, smaller", [("paper", "cpu"), ("cpu", "smoke"), ("smoke", None)])
def test_the_refusal_suggests_a_preset_smaller_than_the_one_running(preset, smaller):
    """`--preset cpu` beyond --max-hours said "use a smaller --preset (e.g. cpu)"."""
    from bench.cli.run_checks import smaller_preset as _smaller_preset

    assert _smaller_preset(config.get_preset(preset)) == smaller


def test_run_without_preset_runs_the_cpu_preset_without_a_note(ckpt, tmp_path, tmp_cache):
    args = [a for a in RUN if a not in ("--preset", "smoke")] + ["--methods", "bm3d"]
    args += ["--checkpoint", str(ckpt), "--results", str(tmp_path / "res")]
    res = invoke(args + ["--out", str(tmp_path / "rep"), "--max-hours", "1e-9"])
    one_line_error(res, "more than --max-hours", "a smaller --preset (e.g. smoke)")
    assert "Table 1 on builtin, preset cpu:" in res.stdout and "--preset given" not in res.output
