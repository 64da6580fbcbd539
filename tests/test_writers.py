"""One writer at a time: every command that writes shared state (the reports folder, timing,
perf and realism results) holds a lock for its whole read-compute-write section. A live
writer's lock makes a second command exit 2 with one line naming the writer's pid; a lock
left by a dead process is taken over (and released when the command ends)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from conftest import lock_holder, tiny_flow

from bench import config, runner

pytestmark = pytest.mark.usefixtures("one_thread")

PRESET = config.get_preset("smoke").with_(test_images=2, select_images=2, iters=3)


def invoke(args):
    from bench.cli import main

    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A stored Table 1 run (one cell) and a checkpoint of its flow."""
    base = tmp_path_factory.mktemp("store")
    flow = tiny_flow()
    ckpt = base / "flow.pt"
    torch.save({"arch_config": flow.arch_config, "model": flow.state_dict()}, ckpt)
    results = base / "results"
    runner.run_table1(
        flow,
        {"fingerprint": "writers-test", "arch": "coupling", "hidden": 8, "path": str(ckpt)},
        PRESET,
        "builtin",
        methods="ours",
        tasks="denoising",
        weights="paper",
        results_dir=results,
        progress=False,
        threads=1,
    )
    return results, ckpt


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def commands(results, ckpt, out):
    """(command line, the lock files it must hold) for every writer of shared state."""
    r, o = ["--results", str(results)], ["--out", str(out)]
    fast = ["--device", "cpu", "--threads", "1", "--no-progress"]
    timing = ["--preset", "smoke", "--width", "4", "--batch", "2", "--iters", "1", "--warmup", "0"]
    perf = ["--quick", "--device", "cpu", "--width", "4", "--batches", "2", "--train-batch", "2"]
    perf += ["--reps", "1", "--warmup", "1", "--matmul-size", "32", "--threads", "1"]
    return {
        "report": (["report", *r, *o], [out / ".lock"]),
        "findings": (["findings", *r, *o], [out / ".lock"]),
        "findings --realism": (
            ["findings", *r, *o, "--realism", "--checkpoint", str(ckpt), "--samples", "10", *fast],
            [out / ".lock", results / "realism.csv.lock"],
        ),
        "sample": (
            ["sample", "--checkpoint", str(ckpt), "--device", "cpu", "--per-row", "2", *o],
            [out / ".lock"],
        ),
        "ablation": (
            ["ablation", "--timing", *timing, *fast, "--allow-busy", *r, *o],
            [results / "timing.csv.lock", out / ".lock"],
        ),
        "perf": (["perf", *perf, *r, *o], [results / "perf.csv.lock", out / ".lock"]),
    }


NAMES = ["report", "findings", "findings --realism", "sample", "ablation", "perf"]


@pytest.mark.parametrize("name", NAMES)
def test_a_live_writer_is_refused_and_a_dead_ones_lock_is_taken_over(
    name, store, tmp_path, tmp_cache
):
    results, ckpt = store
    out = tmp_path / "reports"
    out.mkdir()
    args, lock_files = commands(results, ckpt, out)[name]
    for lock in lock_files:
        with lock_holder(lock) as live_pid:
            result = invoke(args)
            assert result.exit_code == 2, result.output
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
            assert f"pid {live_pid}" in lines[0] and "Traceback" not in result.output
            assert lock.read_text() == str(live_pid)  # the live writer's lock is left alone
        lock.write_text(str(dead_pid()))
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert not any(lock.exists() for lock in lock_files)  # released at the end


def test_run_refuses_to_write_reports_another_live_writer_holds(
    store, tmp_path, tmp_cache, monkeypatch
):
    from bench import train

    flow = tiny_flow()
    meta = {"fingerprint": "writers-run", "arch": "coupling", "hidden": 8, "epochs": 0}
    monkeypatch.setattr(train, "ensure_flow", lambda *a, **k: (flow, meta))
    out, results = tmp_path / "reports", tmp_path / "results"
    out.mkdir()
    args = ["run", "--table", "1", "--preset", "smoke", "--methods", "ours", "--weights", "paper"]
    args += ["--tasks", "denoising", "--device", "cpu", "--threads", "1", "--no-progress"]
    args += ["--results", str(results), "--out", str(out)]
    with lock_holder(out / ".lock") as live_pid:
        refused = invoke(args)
    assert refused.exit_code == 2, refused.output
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {live_pid}" in lines[0], refused.stderr
    assert not (out / "table1.md").exists()
    (out / ".lock").write_text(str(dead_pid()))
    again = invoke(args)  # resumes the stored cells and writes the report
    assert again.exit_code == 0, again.output
    assert "0 of 1 cells computed, 1 finished before and reused" in again.output
    assert (out / "table1.md").is_file() and not (out / ".lock").exists()
