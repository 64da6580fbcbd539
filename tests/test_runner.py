"""The Table 1 runner: every default method on every task through the runner (conformance),
resume after an interruption, determinism, divergence, the joblib and Dask backends, and the
`bench run` command's one-line errors.

A tiny untrained flow (width 8) is passed straight to the runner, so nothing is trained; the
builtin dataset with 2 images and 3 solver iterations keeps every cell well under a second."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import tiny_flow

from bench import config, runner
from bench.errors import BenchError

PRESET = config.get_preset("smoke").with_(
    test_images=2, select_images=2, iters=3, gamma_grid=(0.0, 0.1), alpha_grid=(0.002, 0.02)
)
METRIC_COLUMNS = ["psnr", "ssim", "mse5", "loss", "diverged"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def flow():
    return tiny_flow()


def run(flow, results, **kw):
    args = dict(preset=PRESET, dataset="builtin", device="cpu", progress=False, threads=1)
    args.update(kw)
    return runner.run_table1(flow, {"fingerprint": "tiny-test-flow"}, results_dir=results, **args)


def per_image(result):
    rows = runner.read_cells(result.run_dir)
    keys = ["stage", "method", "task", "weight", "image"]
    return rows.sort_values(keys).reset_index(drop=True)[keys + METRIC_COLUMNS]


class CallCounter:
    """Wraps the registered methods' restore: counts calls, can raise KeyboardInterrupt after
    `stop_after` calls, or make chosen images of the k-th call diverge (`diverge`: call index
    -> image indices set to NaN and flagged)."""

    def __init__(self, monkeypatch, names, stop_after=None, diverge=None):
        from bench import methods as M

        M.all_methods()
        self.calls = []
        self.stop_after = stop_after
        self.diverge = diverge or {}
        for name in names:
            inst = M.METHODS[name]
            monkeypatch.setattr(inst, "restore", self._wrap(name, inst.restore))

    def _wrap(self, name, original):
        def restore(flow, task, y, weight, *args, **kwargs):
            if self.stop_after is not None and len(self.calls) >= self.stop_after:
                raise KeyboardInterrupt
            k = len(self.calls)
            self.calls.append((name, getattr(task, "name", task), weight))
            res = original(flow, task, y, weight, *args, **kwargs)
            bad = self.diverge.get(k)
            if bad:
                res.x[list(bad)] = float("nan")
                res.diverged[list(bad)] = True
            return res

        return restore


# ---- plan and validation -----------------------------------------------------------------------
def test_plan_counts_cells_and_skips():
    plan = runner.plan_table1(PRESET)
    assert plan.methods == ["csgm", "glowip", "map", "bm3d", "ours"]
    assert plan.tasks == ["denoising", "deblurring", "inpainting", "colorization"]
    # csgm, glowip and ours grid-search 2 weights on each of 4 tasks; map (one β) and bm3d
    # (no weight) run directly on the test images, on denoising only
    assert len(plan.grid_cells) == 3 * 4 * 2
    assert {c.stage for c in plan.grid_cells} == {"select"}
    assert sorted((c.method, c.task) for c in plan.fixed_cells) == [
        ("bm3d", "denoising"),
        ("map", "denoising"),
    ]
    assert plan.n_cells == 24 + 2 + 12
    assert set(plan.skipped) == {(m, t) for m in ("map", "bm3d") for t in plan.tasks[1:]}
    assert all(plan.skipped.values())
    on_test = runner.plan_table1(PRESET, select_on="test")
    assert {c.stage for c in on_test.grid_cells} == {"test"}
    assert on_test.n_cells == 24 + 2
    paper = runner.plan_table1(PRESET, weights="paper")
    assert not paper.grid_cells and paper.n_cells == 3 * 4 + 2
    ours = {c.task: c.weight for c in paper.fixed_cells if c.method == "ours"}
    assert ours == config.PAPER_WEIGHTS["ours"]


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"methods": "ours,nope"}, "unknown method 'nope'"),
        ({"tasks": "denoising,superres"}, "unknown task 'superres'"),
        ({"methods": " , "}, "--methods is empty"),
        ({"select_on": "train"}, "unknown --select-on"),
    ],
)
def test_plan_rejects_bad_options(kw, match):
    with pytest.raises(BenchError, match=match):
        runner.plan_table1(PRESET, **kw)


def test_plan_rejects_empty_grid():
    with pytest.raises(BenchError, match="empty weight grid for csgm"):
        runner.plan_table1(PRESET.with_(gamma_grid=()), methods="csgm")
    # the paper's weights need no grid
    assert runner.plan_table1(PRESET.with_(gamma_grid=()), methods="csgm", weights="paper")


# ---- conformance ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_run(flow, tmp_path_factory):
    return run(flow, tmp_path_factory.mktemp("full"))


def test_every_default_method_on_every_task(full_run):
    from bench import methods as M

    res = full_run
    assert not res.failed and not res.reused
    assert len(res.computed) == res.plan.n_cells
    rows = runner.read_cells(res.run_dir)
    assert list(rows.columns) == list(runner.CSV_COLUMNS)
    for m in M.DEFAULT_METHODS:
        for t in res.plan.tasks:
            method = M.get_method(m)
            if method.supports(t):
                assert res.plan.skipped[(m, t)] == method.supports(t)
                assert (m, t) not in res.selection
                continue
            w = res.selection[(m, t)]
            if method.weight_name is None:
                assert w is None
            else:
                assert w in res.plan.grids[m]
            cell = res.plan.cell("test", m, t, w)
            frame = rows[(rows.stage == "test") & (rows.method == m) & (rows.task == t)]
            assert len(frame) == PRESET.test_images, (m, t)
            assert not frame.diverged.any()
            assert np.isfinite(frame[["psnr", "ssim", "mse5"]].to_numpy()).all(), (m, t)
            assert (frame.iters == (PRESET.iters if method.needs_flow else 0)).all()
            assert set(frame.preset) == {"smoke"} and set(frame.model) == {"tiny-test-flow"}
            img = np.load(res.run_dir / cell.relpath(".npy"))
            assert img.shape == (PRESET.test_images, 3, 32, 32) and img.dtype == np.uint8
            assert (img % 8 == 0).all()
    # every grid value ran on the selection (valid) images
    sel = rows[rows.stage == "select"]
    assert set(sel.partition) == {"valid"}
    assert len(sel) == len(res.plan.grid_cells) * PRESET.select_images
    # the selected weight is the best mean PSNR of the grid
    for (m, t), w in res.selection.items():
        if (m, t) in res.plan.to_select:
            means = sel[(sel.method == m) & (sel.task == t)].groupby("weight").psnr.mean()
            assert means.idxmax() == w


# ---- resume and determinism ----------------------------------------------------------------------
def test_resume_after_interrupt_recomputes_nothing_finished(flow, tmp_path, monkeypatch):
    from bench import report

    kw = dict(methods="ours,glowip", tasks="denoising,inpainting")
    clean = run(flow, tmp_path / "clean", **kw)
    assert len(clean.computed) == 12  # 2 methods x 2 tasks x (2 grid + 1 test)

    with monkeypatch.context() as mp:
        counter = CallCounter(mp, ["ours", "glowip"], stop_after=5)
        with pytest.raises(KeyboardInterrupt):
            run(flow, tmp_path / "resumed", **kw)
    run_dir = runner.runs_root(tmp_path / "resumed") / clean.run_id
    assert len(list(run_dir.glob("cells/*/*.csv"))) == 5
    assert not list(run_dir.glob("cells/*/.*.tmp"))

    with monkeypatch.context() as mp:
        counter = CallCounter(mp, ["ours", "glowip"])
        resumed = run(flow, tmp_path / "resumed", **kw)
    assert resumed.run_id == clean.run_id
    assert len(counter.calls) == 7 and len(resumed.reused) == 5

    # a lost cell file is the only one recomputed
    victim = next(iter(sorted(run_dir.glob("cells/test/*.csv"))))
    victim.unlink()
    with monkeypatch.context() as mp:
        counter = CallCounter(mp, ["ours", "glowip"])
        again = run(flow, tmp_path / "resumed", **kw)
    assert len(counter.calls) == 1 and again.computed == [f"test/{victim.stem}"]

    # identical per-image results and an identical table
    assert per_image(resumed).equals(per_image(clean))
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(
        report.summary_frame(resumed.run_dir), report.summary_frame(clean.run_dir)
    )


def test_force_recomputes_and_runs_are_deterministic(flow, tmp_path, monkeypatch):
    kw = dict(methods="ours,map", tasks="denoising", weights="paper")
    a = run(flow, tmp_path / "a", **kw)
    b = run(flow, tmp_path / "b", **kw)
    assert a.run_id == b.run_id
    assert per_image(a).equals(per_image(b))
    assert np.array_equal(
        np.load(a.run_dir / "cells/test/ours[alpha=0.05]__denoising.npy"),
        np.load(b.run_dir / "cells/test/ours[alpha=0.05]__denoising.npy"),
    )
    with monkeypatch.context() as mp:
        counter = CallCounter(mp, ["ours", "map"])
        run(flow, tmp_path / "a", **kw)
        assert counter.calls == []
        run(flow, tmp_path / "a", force=True, **kw)
        assert len(counter.calls) == 2
    # another seed or another model is another run
    assert run(flow, tmp_path / "a", seed=1, **kw).run_id != a.run_id
    other = runner.run_table1(
        tiny_flow(1), None, PRESET, results_dir=tmp_path / "a", progress=False, threads=1, **kw
    )
    assert other.run_id != a.run_id


# ---- divergence ----------------------------------------------------------------------------------
def test_diverged_cells_are_recorded_as_failed(flow, tmp_path, monkeypatch):
    from bench import report

    # calls: select α=0.002, select α=0.02 (both images diverge), test α=0.002 (one diverges)
    counter = CallCounter(monkeypatch, ["ours"], diverge={1: [0, 1], 2: [1]})
    res = run(flow, tmp_path, methods="ours", tasks="denoising")
    assert [c[2] for c in counter.calls] == [0.002, 0.02, 0.002]
    # the fully diverged weight is never selected; the selected one then half diverges on test
    assert res.selection[("ours", "denoising")] == 0.002
    rows = runner.read_cells(res.run_dir)
    bad = rows[rows.diverged]
    assert len(bad) == 2 + 1  # select α=0.02 (both images), test α=0.002 (one)
    assert bad[["psnr", "ssim", "mse5", "loss"]].isna().all().all()
    assert not rows[~rows.diverged][["psnr", "ssim", "mse5"]].isna().any().any()
    assert len(res.failed) == 2
    summary = report.summary_frame(res.run_dir)
    rec = summary[(summary.method == "ours") & (summary.task == "denoising")].iloc[0]
    assert rec.status == "failed" and "1/2 images diverged" in rec.reason
    md = report.write_table1(res.run_dir, tmp_path / "reports").read_text()
    assert "**failed**" in md and "2/2 images diverged" in md


def test_every_weight_diverging_leaves_nothing_to_run(flow, tmp_path, monkeypatch):
    from bench import report

    CallCounter(monkeypatch, ["glowip"], diverge={0: [0, 1], 1: [0, 1]})
    res = run(flow, tmp_path, methods="glowip", tasks="inpainting")
    assert res.selection[("glowip", "inpainting")] is None
    assert not list(res.run_dir.glob("cells/test/*.csv"))
    summary = report.summary_frame(res.run_dir)
    assert summary.iloc[0].status == "failed"


# ---- parallel and distributed execution ----------------------------------------------------------
def test_joblib_workers_match_in_process(flow, tmp_path):
    kw = dict(methods="ours", tasks="denoising,colorization", weights="paper")
    serial = run(flow, tmp_path / "serial", **kw)
    parallel = run(flow, tmp_path / "parallel", jobs=2, **kw)
    assert parallel.run_id == serial.run_id and len(parallel.computed) == 2
    assert per_image(parallel).equals(per_image(serial))


def test_dask_backend_on_a_loopback_cluster(flow, tmp_path):
    distributed = pytest.importorskip("distributed")
    kw = dict(methods="ours", tasks="denoising,inpainting", weights="paper")
    serial = run(flow, tmp_path / "serial", **kw)
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",  # a real loopback socket, not the in-process transport
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        res = run(
            flow,
            tmp_path / "dask",
            backend="dask",
            scheduler=cluster.scheduler_address,
            **kw,
        )
    assert res.run_id == serial.run_id and len(res.computed) == 2
    assert per_image(res).equals(per_image(serial))


def test_dask_backend_needs_a_scheduler(flow, tmp_path):
    with pytest.raises(BenchError, match="--scheduler"):
        run(flow, tmp_path, methods="ours", tasks="denoising", backend="dask")
    with pytest.raises(BenchError, match="--scheduler is only used"):
        run(flow, tmp_path, methods="ours", tasks="denoising", scheduler="tcp://127.0.0.1:1")


def test_estimate_is_positive_and_counts_cells():
    plan = runner.plan_table1(PRESET.with_(hidden=8), methods="ours,bm3d", tasks="denoising")
    est = runner.estimate_seconds(plan, "cpu")
    assert 0 < est < 600
    assert runner.format_duration(5400 * 3) == "4.5 h"
    assert runner.format_duration(math.nan) == "unknown"


# ---- the command line ----------------------------------------------------------------------------
def invoke(args):
    from bench.cli import main

    return CliRunner().invoke(main, args, catch_exceptions=False)


def one_line_error(result, match):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert match in lines[0]


@pytest.mark.parametrize(
    "args, match",
    [
        (["run"], "needs --table 1"),
        (["run", "--table", "2"], "--table 2 is not run"),
        (["run", "--table", "1", "--preset", "smoke", "--methods", "csgm,bogus"], "bogus"),
        (["run", "--table", "1", "--preset", "smoke", "--tasks", "deblur"], "unknown task"),
        (["run", "--table", "1", "--preset", "smoke", "--checkpoint", "/no/such.pt"], "not found"),
        (
            ["run", "--table", "1", "--preset", "smoke", "--backend", "dask"],
            "needs --scheduler",
        ),
    ],
)
def test_bad_options_give_one_line_errors(args, match, tmp_path, monkeypatch):
    from bench import train

    def no_training(*a, **k):
        raise AssertionError("work started before the options were checked")

    monkeypatch.setattr(train, "ensure_flow", no_training)
    one_line_error(invoke(args + ["--results", str(tmp_path), "--out", str(tmp_path)]), match)


def test_empty_grid_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(config.PRESETS, "smoke", config.PRESETS["smoke"].with_(gamma_grid=()))
    result = invoke(
        [
            "run",
            "--table",
            "1",
            "--preset",
            "smoke",
            "--methods",
            "csgm",
            "--results",
            str(tmp_path),
        ]
    )
    one_line_error(result, "empty weight grid")


def test_help():
    for cmd in ("run", "report"):
        result = invoke([cmd, "--help"])
        assert result.exit_code == 0
        assert "--results" in result.output and "--out" in result.output
    text = invoke(["run", "--help"]).output
    for opt in (
        "--table", "--preset", "--dataset", "--data-root", "--methods", "--tasks", "--device",
        "--jobs", "--backend", "--scheduler", "--select-on", "--weights", "--checkpoint",
        "--force", "--seed",
    ):  # fmt: skip
        assert opt in text
    assert "--run" in invoke(["report", "--help"]).output


def test_cli_run_then_report(flow, tmp_path, monkeypatch):
    from bench import train

    meta = {"fingerprint": "tiny-cli-flow", "arch": "coupling", "hidden": 8, "epochs": 0}
    monkeypatch.setattr(train, "ensure_flow", lambda *a, **k: (flow, meta))
    results, out = tmp_path / "results", tmp_path / "reports"
    args = ["run", "--table", "1", "--preset", "smoke", "--methods", "ours,map"]
    args += ["--tasks", "denoising", "--device", "cpu", "--threads", "1", "--no-progress"]
    args += ["--results", str(results), "--out", str(out)]
    first = invoke(args)
    assert first.exit_code == 0, first.output
    assert "4 cells (2 grid cells on 4 valid images, 2 test cells on 4 test images)" in first.output
    assert "0 of 4 cells finished, 4 to compute; estimated time: " in first.output
    assert "| Ours |" in first.output
    assert "4 of 4 cells computed, 0 finished before and reused" in first.output
    for name in ("table1.md", "grid_search.png", "fig3_denoising.png"):
        assert (out / name).is_file()
    second = invoke(args)
    assert second.exit_code == 0, second.output
    assert "0 of 4 cells computed, 4 finished before and reused" in second.output
    rebuilt = invoke(["report", "--results", str(results), "--out", str(tmp_path / "r2")])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert (tmp_path / "r2" / "table1.md").is_file()
    one_line_error(invoke(["report", "--results", str(results), "--run", "nope"]), "matches no run")


def test_run_lock_refuses_a_live_writer_and_takes_over_a_dead_ones(tmp_path):
    from conftest import lock_holder

    from bench import locks
    from bench.runner import acquire_run_lock

    run_dir = tmp_path / "run"
    lock = acquire_run_lock(run_dir)
    assert lock.read_text() == str(os.getpid())
    locks.release(lock)
    assert not lock.exists()
    # a live process holding the lock: refused with a one-line message naming it
    with lock_holder(run_dir / ".lock") as pid:
        with pytest.raises(BenchError, match=f"pid {pid}"):
            acquire_run_lock(run_dir)
    # the lock of a process that is gone, or a stale file naming any pid (even a live,
    # unrelated one such as pid 1), is taken over
    (run_dir / ".lock").write_text("1")
    lock = acquire_run_lock(run_dir)
    assert lock.read_text() == str(os.getpid())
    locks.release(lock)


def test_locks_cannot_be_won_twice_by_processes_starting_together(tmp_path):
    """Six processes racing for one lock: exactly one wins each time. The winner holds the
    lock until every other process has tried (each leaves a mark), so a process that starts
    late on a busy machine still races against a held lock, never a released one."""
    import subprocess
    import sys

    script = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from bench import locks\n"
        "from bench.errors import BenchError\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "marks = Path(sys.argv[1] + '.tried')\n"
        "try:\n"
        "    locks.acquire(sys.argv[1])\n"
        "    print('won', flush=True)\n"
        "    deadline = time.time() + 30\n"
        "    while len(list(marks.glob('*'))) < 5 and time.time() < deadline:\n"
        "        time.sleep(0.05)\n"
        "except BenchError:\n"
        "    print('refused', flush=True)\n"
        "marks.mkdir(exist_ok=True)\n"
        "(marks / str(os.getpid())).touch()\n"
    )
    import time

    for trial in range(3):
        start = str(time.time() + 1.5)
        target = tmp_path / f"race{trial}"
        procs = [
            subprocess.Popen([sys.executable, "-c", script, str(target), start],
                             stdout=subprocess.PIPE, text=True)
            for _ in range(6)
        ]  # fmt: skip
        outs = [p.communicate(timeout=60)[0].strip() for p in procs]
        assert outs.count("won") == 1, outs


def test_a_symlink_locks_its_target(tmp_path):
    from bench import locks

    real = tmp_path / "c.pt"
    real.write_bytes(b"x")
    link = tmp_path / "link.pt"
    link.symlink_to(real)
    assert locks.lock_path(link) == locks.lock_path(real)


def test_commands_are_recorded_and_a_noop_rerun_leaves_the_manifest_alone(flow, tmp_path):
    first = run(flow, tmp_path, methods="glowip", tasks="denoising", command="bench run --a")
    run(flow, tmp_path, methods="map", tasks="denoising", command="bench run --b")
    path = first.run_dir / runner.MANIFEST
    man = runner.read_manifest(first.run_dir)
    assert man["commands"] == ["bench run --a", "bench run --b"]
    before = path.read_bytes()
    again = run(flow, tmp_path, methods="glowip,map", tasks="denoising", command="bench run --c")
    assert again.computed == [] and path.read_bytes() == before
