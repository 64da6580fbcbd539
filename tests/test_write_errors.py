"""Unwritable places: every failure to create, write or replace a file (read-only filesystem,
permission denied, no space left, a file in the way of a folder) is one line naming the path,
the problem and the fix, exit 2; what was there stays intact and finished work is kept."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile

import pytest
from conftest import REPO, invoke, one_line_error, tiny_flow

from bench import atomic, runner
from bench.errors import WriteError

pytestmark = pytest.mark.usefixtures("one_thread")

CODES = {
    errno.EROFS: "read-only",
    errno.EACCES: "permission denied",
    errno.ENOSPC: "no space left",
}


@pytest.fixture(scope="module")
def flow():
    return tiny_flow()


@pytest.fixture
def no_training(flow, monkeypatch):
    from bench import train

    meta = {"fingerprint": "tiny-write-flow", "arch": "coupling", "hidden": 8, "epochs": 0}
    monkeypatch.setattr(train, "ensure_flow", lambda *a, **k: (flow, meta))


def run_args(results, out, methods="glowip", tasks="denoising,deblurring"):
    args = ["run", "--table", "1", "--preset", "smoke", "--methods", methods, "--tasks", tasks]
    args += ["--weights", "paper", "--device", "cpu", "--threads", "1", "--no-progress"]
    return args + ["--results", str(results), "--out", str(out)]


def fail_writes_under(monkeypatch, root, code, after: int = 0):
    """os.replace into `root` fails with `code` after `after` successful replaces."""
    real = os.replace
    seen = {"n": 0}

    def replace(src, dst, *a, **kw):
        if str(dst).startswith(str(root)):
            seen["n"] += 1
            if seen["n"] > after:
                raise OSError(code, os.strerror(code), str(dst))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(atomic.os, "replace", replace)


@pytest.mark.parametrize("code", list(CODES))
def test_atomic_write_failure_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch, code):
    path = tmp_path / "table.md"
    path.write_text("old")
    fail_writes_under(monkeypatch, tmp_path, code)
    with pytest.raises(WriteError) as err:
        atomic.atomic_write_text(path, "new")
    msg = str(err.value)
    assert str(path) in msg and CODES[code] in msg.lower() and "\n" not in msg
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"], "no temporary file left"


def test_a_file_in_the_way_of_the_folder(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    with pytest.raises(WriteError, match="a file is in the way"):
        atomic.atomic_write_text(blocker / "runs" / "x.json", "{}")


def test_temporary_file_that_cannot_be_created(tmp_path, monkeypatch):
    def mkstemp(*a, **kw):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path))

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    with pytest.raises(WriteError, match="permission denied"):
        atomic.atomic_write_text(tmp_path / "x.txt", "x")


def test_bench_run_on_a_results_path_that_is_a_file(tmp_path, no_training):
    (tmp_path / "results").write_text("a file")
    res = invoke(run_args(tmp_path / "results", tmp_path / "out"))
    one_line_error(res, str(tmp_path / "results"), "a file is in the way")


@pytest.mark.parametrize("code", list(CODES))
def test_bench_run_on_an_unwritable_results_folder(tmp_path, monkeypatch, no_training, code):
    results = tmp_path / "results"
    fail_writes_under(monkeypatch, results, code)
    res = invoke(run_args(results, tmp_path / "out"))
    one_line_error(res, str(results), CODES[code])


def test_a_failure_mid_run_keeps_finished_cells_and_the_rerun_resumes(
    tmp_path, monkeypatch, no_training
):
    results, out = tmp_path / "results", tmp_path / "out"
    real = os.replace
    csvs = {"n": 0}

    def replace(src, dst, *a, **kw):
        if str(dst).endswith(".csv") and "cells" in str(dst):
            csvs["n"] += 1
            if csvs["n"] == 2:  # the second cell's rows: the disk is full
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(atomic.os, "replace", replace)
    one_line_error(invoke(run_args(results, out)), "no space left")
    [run_dir] = runner.list_runs(results)
    assert len(list((run_dir / "cells" / "test").glob("*.csv"))) == 1
    assert not list(run_dir.rglob("*.tmp")), "no half-written file"
    monkeypatch.setattr(atomic.os, "replace", real)
    again = invoke(run_args(results, out))
    assert again.exit_code == 0, again.output
    assert "1 of 2 cells finished, 1 to compute" in again.output + again.stderr
    assert "1 of 2 cells computed, 1 finished before and reused" in again.output


@pytest.mark.parametrize("code", list(CODES))
def test_bench_report_into_an_unwritable_folder(tmp_path, monkeypatch, no_training, code):
    results, out = tmp_path / "results", tmp_path / "out"
    first = invoke(run_args(results, out, tasks="denoising"))
    assert first.exit_code == 0, first.output
    before = (out / "table1.md").read_bytes()
    fail_writes_under(monkeypatch, out, code)
    res = invoke(["report", "--results", str(results), "--out", str(out)])
    one_line_error(res, str(out), CODES[code])
    assert (out / "table1.md").read_bytes() == before


def test_bench_train_into_an_unwritable_folder(tmp_path, monkeypatch):
    ckpt = tmp_path / "ckpts" / "c.pt"
    fail_writes_under(monkeypatch, tmp_path / "ckpts", errno.EROFS)
    res = invoke(
        [
            "train", "--preset", "smoke", "--dataset", "builtin", "--checkpoint", str(ckpt),
            "--no-progress", "--threads", "1",  # (auto announces its count as training starts)
        ]
    )  # fmt: skip
    one_line_error(res, str(ckpt), "read-only")


def test_a_file_set_is_replaced_together_or_not_at_all(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    b.write_text("old b")

    def fail(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError, match="no space left"):
        with atomic.all_or_nothing():
            atomic.atomic_write_text(a, "new a")
            atomic.atomic_write(b, fail, mode="w")
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
    with atomic.all_or_nothing():
        atomic.atomic_write_text(a, "new a")
        atomic.atomic_write_text(b, "new b")
        assert a.read_text() == "old a", "replaced only when the set is complete"
    assert (a.read_text(), b.read_text()) == ("new a", "new b")


def test_a_report_set_that_runs_out_of_space_half_way_stays_whole(
    tmp_path, monkeypatch, no_training
):
    """The reviewer's case: a full disk at the last figure left figures of the new run beside
    table1.md of the old one."""
    results, out = tmp_path / "results", tmp_path / "out"
    assert invoke(run_args(results, out)).exit_code == 0  # run A (seed 0)
    [run_a] = runner.list_runs(results)
    # run B's reports replace A's (--replace: they come from another run)
    assert invoke(run_args(results, out) + ["--seed", "1", "--replace"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    real = tempfile.mkstemp
    calls = {"n": 0}

    def mkstemp(*a, **kw):
        if str(kw.get("dir", "")).startswith(str(out)):
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError(errno.ENOSPC, "No space left on device", str(out))
        return real(*a, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    args = ["report", "--results", str(results), "--out", str(out), "--run", run_a.name]
    res = invoke([*args, "--replace"])
    one_line_error(res, "no space left")
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before


# ---- a closed stdout (`bench ... | head -1`) --------------------------------------------------
def _bench_into_a_closed_pipe(args, read: int) -> tuple[int, str]:
    """Run `bench ARGS` in a subprocess whose stdout reader reads `read` bytes, then goes
    (0: gone before the first write); returns the exit code and stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from bench.cli import main; main()", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if read:
        assert len(proc.stdout.read(read)) == read
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    return proc.wait(timeout=300), stderr


@pytest.mark.parametrize("read", [0, 1])
def test_a_closed_stdout_is_no_error(read):
    """`bench info | head -c 1`: what comes after the reader has gone is dropped silently."""
    code, stderr = _bench_into_a_closed_pipe(["info", "--arch", "glow", "--hidden", 512], read)
    assert (code, stderr) == (0, "")


def test_a_closed_stdout_never_stops_the_work(tmp_path, no_training):
    """`bench report | head -1` wrote table1.md and table2.md, never claims.md, and failed
    with `cannot use ?: Broken pipe`: the command finishes all its writes and exits 0."""
    results, out = tmp_path / "results", tmp_path / "out"
    assert invoke(run_args(results, out, tasks="denoising")).exit_code == 0
    piped = tmp_path / "piped"
    code, stderr = _bench_into_a_closed_pipe(
        ["report", "--results", results, "--out", piped], read=0
    )
    assert (code, stderr) == (0, ""), stderr
    plain = tmp_path / "plain"
    assert invoke(["report", "--results", str(results), "--out", str(plain)]).exit_code == 0
    assert (piped / "claims.md").is_file()
    assert sorted(p.name for p in piped.iterdir()) == sorted(p.name for p in plain.iterdir())
