"""Threads on a busy machine (issue 11): `--threads auto` gives torch the CPUs other processes
leave free and says so in one line; every computing command takes --threads; `bench run`
times its estimate with the count its workers use; `bench ablation --timing` refuses a busy
machine unless --allow-busy, and says in table2.md when it timed on one."""

from __future__ import annotations

import types

import pytest
import torch
from click.testing import CliRunner
from conftest import one_line_error

from bench import machine
from bench.cli import main
from bench.cli.threads import ThreadsType
from bench.errors import BenchError

pytestmark = pytest.mark.usefixtures("one_thread")

# commands that compute nothing with torch (statistics of stored results at most)
NON_COMPUTING = {"info", "report", "compare"}


def invoke(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.fixture
def fake_machine(monkeypatch):
    """A machine of `state['cpus']` CPUs of which other processes keep `state['busy']` busy."""
    state = {"cpus": 2, "busy": 0.0, "reads": 0}

    def busy_cpus(interval=machine.BUSY_INTERVAL_S):
        state["reads"] += 1
        return state["busy"]

    monkeypatch.setattr(machine, "available_cpus", lambda: state["cpus"])
    monkeypatch.setattr(machine, "busy_cpus", busy_cpus)
    return state


# ---- the rule ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cpus, busy, jobs, expected",
    [
        (2, 1.0, 1, 1),  # one core busy elsewhere: one thread
        (2, 0.0, 1, 2),  # idle: every CPU
        (2, 0.3, 1, 2),  # a little background work: still every CPU
        (2, 0.6, 1, 1),  # more than half a core taken: give it up
        (4, 1.5, 1, 3),  # exactly half a core free counts as free (rounded half up)
        (2, 3.5, 1, 1),  # over-busy: never fewer than one
        (2, None, 1, 2),  # unreadable: counted as idle
        (4, 0.0, 2, 2),  # free // jobs per worker
        (4, 1.0, 2, 1),
        (2, 0.0, 4, 1),  # more workers than CPUs: one each
        (8, -1.0, 1, 8),  # never more than the CPUs
    ],
)
def test_default_threads_leaves_busy_cpus_alone(cpus, busy, jobs, expected):
    if busy is None:
        assert machine.default_threads(jobs, 0.0, cpus) == expected
    else:
        assert machine.default_threads(jobs, busy, cpus) == expected


def test_default_threads_reads_the_machine(fake_machine):
    fake_machine.update(cpus=2, busy=1.0)
    assert machine.default_threads() == 1
    fake_machine.update(busy=0.0)
    assert machine.default_threads() == 2
    from bench import runner

    fake_machine.update(cpus=4, busy=1.0)
    assert runner.default_threads(2) == 1 and runner.default_threads(1) == 3


def test_the_choice_is_one_line_naming_count_and_reason(fake_machine):
    fake_machine.update(cpus=2, busy=1.0)
    assert machine.choose_threads() == (
        1,
        "threads: 1 of 2 CPUs (1.0 busy with other processes; --threads N to choose)",
    )
    fake_machine.update(cpus=4, busy=0.0)
    assert machine.choose_threads(2) == (
        2,
        "threads: 2 per worker × 2 workers of 4 CPUs (0.0 busy with other processes; "
        "--threads N to choose)",
    )
    # a reading already taken is used, not retaken
    reads = fake_machine["reads"]
    assert machine.choose_threads(busy=3.0)[0] == 1 and fake_machine["reads"] == reads


# ---- the reading --------------------------------------------------------------------------------
def _stat(cpu0, cpu1, other=(0, 0)):
    """A /proc/stat with busy/idle ticks per CPU (cpu2 is outside this process's affinity)."""

    def line(name, busy, idle):
        return f"{name} {busy} 0 0 {idle} 0 0 0 0 0 0"

    total = [sum(v) for v in zip(cpu0, cpu1, other, strict=True)]
    rows = [line("cpu", *total), line("cpu0", *cpu0), line("cpu1", *cpu1), line("cpu2", *other)]
    return "\n".join(rows + ["intr 0", "ctxt 0"]) + "\n"


def test_busy_cpus_reads_proc_stat_over_this_process_cpus(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text(_stat((100, 900), (100, 900), (0, 1000)))
    clock = types.SimpleNamespace(wall=0.0, cpu=0.0)

    def sleep(seconds):
        clock.wall += seconds
        clock.cpu += 0.25 * seconds  # this process: a quarter of a CPU meanwhile
        # over 1 s: cpu0 fully busy, cpu1 idle; cpu2 (not ours) fully busy
        stat.write_text(_stat((200, 900), (100, 1000), (100, 1000)))

    fake_time = types.SimpleNamespace(
        sleep=sleep, perf_counter=lambda: clock.wall, process_time=lambda: clock.cpu
    )
    monkeypatch.setattr(machine, "PROC_STAT", stat)
    monkeypatch.setattr(machine, "time", fake_time)
    monkeypatch.setattr(machine, "_affinity", lambda: {0, 1})
    # 1.0 CPU busy on our two, less our own 0.25; cpu2 does not count
    assert machine.busy_cpus(1.0) == pytest.approx(0.75)
    assert machine.cpu_ticks() == (300, 2200, 2)


def test_busy_cpus_falls_back_to_the_load_average(tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "PROC_STAT", tmp_path / "absent")
    monkeypatch.setattr(machine.os, "getloadavg", lambda: (1.7, 2.1, 2.2))
    assert machine.busy_cpus() == pytest.approx(1.7)


# ---- the commands -------------------------------------------------------------------------------
def test_every_computing_command_takes_threads_defaulting_to_auto():
    assert NON_COMPUTING < set(main.commands)
    for name, cmd in main.commands.items():
        found = [p for p in cmd.params if "--threads" in p.opts]
        if name in NON_COMPUTING:
            assert not found, f"bench {name} computes nothing but takes --threads"
            continue
        assert len(found) == 1, f"bench {name} computes but lacks --threads"
        assert found[0].default == "auto" and isinstance(found[0].type, ThreadsType), name
        assert "auto" in found[0].help, name


def test_threads_accepts_a_count_or_auto():
    t = ThreadsType()
    assert t.convert("auto", None, None) is None and t.convert("3", None, None) == 3
    r = invoke(["train", "--threads", "0"])
    assert r.exit_code == 2 and "--threads" in r.output


def _fake_train(monkeypatch, seen):
    from bench import train

    def fake(*args, before_training=None, **kw):
        seen["before"] = torch.get_num_threads()  # what checks and refusals ran with
        if before_training is not None:
            before_training()
        seen["threads"] = torch.get_num_threads()
        meta = {"path": "x.pt", "num_params": 1, "epochs": 1, "val_bpd": 1.0, "fingerprint": "f"}
        return types.SimpleNamespace(meta=meta)

    monkeypatch.setattr(train, "train", fake)


def test_train_applies_the_auto_count_and_says_why(fake_machine, monkeypatch, tmp_path):
    seen = {}
    _fake_train(monkeypatch, seen)
    base = ["train", "--preset", "smoke", "--device", "cpu", "--results", str(tmp_path)]
    fake_machine.update(cpus=2, busy=1.0)
    torch.set_num_threads(2)
    r = invoke(base)
    assert r.exit_code == 0, r.output
    assert seen["threads"] == 1 and seen["before"] == 2  # read just before the first batch
    assert r.stderr.splitlines() == [
        "threads: 1 of 2 CPUs (1.0 busy with other processes; --threads N to choose)"
    ]
    assert torch.get_num_threads() == 2  # the command's count does not outlive it
    # an explicit count is used as given, without a reading or a line
    reads = fake_machine["reads"]
    r = invoke(base + ["--threads", "2"])
    assert r.exit_code == 0 and seen["threads"] == 2
    assert "threads:" not in r.stderr and fake_machine["reads"] == reads
    torch.set_num_threads(1)


@pytest.mark.parametrize(
    "cpus, busy, jobs, expected", [(2, 1.0, 1, 1), (2, 0.0, 1, 2), (4, 0.0, 2, 2), (4, 1.0, 2, 1)]
)
def test_run_estimates_with_the_count_its_workers_use(
    fake_machine, monkeypatch, tmp_path, tmp_cache, cpus, busy, jobs, expected
):
    from bench import runner, train

    fake_machine.update(cpus=cpus, busy=busy)
    seen = {}

    def estimate(plan, device, jobs=1, threads=None, **kw):
        seen["estimate"] = (jobs, threads)
        return 1.0

    def run_table1(*args, threads=None, **kw):
        seen["run"] = (args[8], threads)  # jobs is run_table1's 9th argument
        raise BenchError("stop here")

    monkeypatch.setattr(runner, "estimate_seconds", estimate)
    monkeypatch.setattr(runner, "run_table1", run_table1)
    monkeypatch.setattr(train, "ensure_flow", lambda *a, **k: (None, {}))
    args = ["run", "--table", "1", "--preset", "smoke", "--methods", "ours"]
    args += ["--tasks", "denoising", "--device", "cpu", "--jobs", str(jobs), "--no-progress"]
    args += ["--results", str(tmp_path / "res"), "--out", str(tmp_path / "rep")]
    r = invoke(args)
    assert "stop here" in r.output
    assert seen["estimate"] == seen["run"] == (jobs, expected)
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("threads:")]
    assert len(line) == 1 and f"{busy:.1f} busy with other processes" in line[0]
    assert fake_machine["reads"] == 1  # one reading, before the work


def test_the_estimate_counts_only_the_jobs_the_cpus_hold(fake_machine, monkeypatch):
    """`--jobs 3` on 2 CPUs was estimated at a third of one job's time and took half of it."""
    from bench import config, runner

    monkeypatch.setattr(runner.estimate, "time_solver_iteration", lambda *a, **k: 1.0)
    plan = runner.plan_table1(config.get_preset("smoke"), "ours", "denoising")
    plan = plan.with_images(test=1, select=2)
    fake_machine.update(cpus=2)
    one = runner.estimate_seconds(plan, "cpu", jobs=1, threads=1)
    assert runner.estimate_seconds(plan, "cpu", jobs=2, threads=1) == pytest.approx(one / 2)
    assert runner.estimate_seconds(plan, "cpu", jobs=3, threads=1) == pytest.approx(one / 2)
    fake_machine.update(cpus=8)
    assert runner.estimate_seconds(plan, "cpu", jobs=3, threads=1) == pytest.approx(one / 3)
    assert runner.estimate_seconds(plan, "cpu", jobs=3, threads=4) == pytest.approx(one / 2)


def _warnings(result) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if ln.startswith("warning:")]


@pytest.mark.parametrize(
    "jobs, threads, warned",
    [
        (3, "auto", ("--jobs 3", "3 threads on 2 CPUs", "--jobs 2")),
        (2, "2", ("--jobs 2", "2 threads per job", "4 threads on 2 CPUs", "--threads 1")),
        (1, "3", ("--threads 3", "2 CPUs", "--threads 2")),
        (2, "1", None),
        (2, "auto", None),
    ],
)
def test_run_warns_once_when_its_jobs_want_more_cpus_than_there_are(
    fake_machine, monkeypatch, tmp_path, tmp_cache, jobs, threads, warned
):
    from bench import runner, train

    fake_machine.update(cpus=2, busy=0.0)

    def run_table1(*args, **kw):
        raise BenchError("stop here")

    monkeypatch.setattr(runner, "estimate_seconds", lambda *a, **k: 1.0)
    monkeypatch.setattr(runner, "run_table1", run_table1)
    monkeypatch.setattr(train, "ensure_flow", lambda *a, **k: (None, {}))
    args = ["run", "--table", "1", "--preset", "smoke", "--methods", "ours", "--tasks"]
    args += ["denoising", "--device", "cpu", "--jobs", str(jobs), "--threads", threads]
    args += ["--no-progress", "--results", str(tmp_path / "res"), "--out", str(tmp_path / "rep")]
    r = invoke(args)
    assert "stop here" in r.stderr
    lines = _warnings(r)
    if warned is None:
        assert lines == []
        return
    assert len(lines) == 1, r.stderr
    for m in warned:
        assert m in lines[0], lines[0]


def test_threads_beyond_the_cpus_is_one_warning(fake_machine, monkeypatch, tmp_path):
    seen = {}
    _fake_train(monkeypatch, seen)
    fake_machine.update(cpus=2)
    base = ["train", "--preset", "smoke", "--device", "cpu", "--results", str(tmp_path)]
    r = invoke(base + ["--threads", "4"])
    assert r.exit_code == 0, r.output
    assert seen["threads"] == 4  # used as given
    [line] = _warnings(r)
    assert "--threads 4" in line and "2 CPUs" in line
    assert _warnings(invoke(base + ["--threads", "2"])) == []
    torch.set_num_threads(1)


# ---- Table 2 on a busy machine ------------------------------------------------------------------
def _ablation(tmp_path, *extra):
    args = ["ablation", "--timing", "--preset", "smoke", "--width", "4", "--iters", "1"]
    args += ["--warmup", "0", "--rounds", "1", "--device", "cpu", "--no-progress"]
    args += ["--out", str(tmp_path / "rep"), "--results", str(tmp_path / "res"), *extra]
    return invoke(args)


def test_ablation_refuses_a_busy_machine(fake_machine, monkeypatch, tmp_path):
    from bench import timing

    def never(*a, **k):
        raise AssertionError("timed on a busy machine")

    monkeypatch.setattr(timing, "run_timing_ablation", never)
    fake_machine.update(cpus=2, busy=1.0)
    r = _ablation(tmp_path)
    one_line_error(r, "busy", "1.0 of 2 CPUs", "load", "--allow-busy")
    assert len(r.stderr.strip().splitlines()) == 1  # refused before choosing threads
    assert not (tmp_path / "rep" / "table2.md").exists()
    assert not (tmp_path / "res" / "timing.csv").exists()


def test_ablation_allow_busy_times_and_says_so(fake_machine, monkeypatch, tmp_path):
    fake_machine.update(cpus=2, busy=1.0)
    monkeypatch.setattr(machine, "busy_since", lambda mark: 0.1)
    r = _ablation(tmp_path, "--allow-busy")
    assert r.exit_code == 0, r.output
    text = (tmp_path / "rep" / "table2.md").read_text()
    assert "- **timed on a busy machine**: 1.0 of 2 CPUs busy with other processes" in text
    assert "(--allow-busy)" in text
    assert "- other processes: 1.0 CPUs busy at start, 0.1 CPUs busy on average" in text
    assert "- threads: 1" in text  # the auto count on the busy machine
    assert "warning:" not in r.stderr


def test_ablation_quiet_machine_is_not_labelled_busy(fake_machine, monkeypatch, tmp_path):
    fake_machine.update(cpus=2, busy=0.0)
    monkeypatch.setattr(machine, "busy_since", lambda mark: 0.0)
    r = _ablation(tmp_path, "--threads", "1")  # (2 threads would fight the real machine's load)
    assert r.exit_code == 0, r.output
    text = (tmp_path / "rep" / "table2.md").read_text()
    assert "busy machine" not in text and "- other processes: 0.0 CPUs busy at start" in text


def test_ablation_warns_when_the_machine_became_busy(fake_machine, monkeypatch, tmp_path):
    fake_machine.update(cpus=2, busy=0.0)
    monkeypatch.setattr(machine, "busy_since", lambda mark: 1.2)
    r = _ablation(tmp_path, "--threads", "1")
    assert r.exit_code == 0, r.output
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1, r.stderr
    assert "1.2 of 2 CPUs busy on average during the timing" in warn[0]
    assert "rerun on a quiet machine" in warn[0]
    text = (tmp_path / "rep" / "table2.md").read_text()
    assert "- **timed on a busy machine**: other processes kept 1.2 of 2 CPUs busy" in text
    assert "(--allow-busy)" not in text
