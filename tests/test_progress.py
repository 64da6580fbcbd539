"""Progress bars are drawn only on a terminal (issue 11, item 7g): every bar comes from
`bench.progress.bar`, which draws nothing when stderr is a file or a pipe, so a log keeps no
carriage returns or escape codes; --no-progress still turns bars off on a terminal."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest
import torch
from conftest import REPO, invoke, tiny_flow

from bench import progress

pytestmark = pytest.mark.usefixtures("one_thread")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_are_drawn_only_on_a_terminal_and_only_when_asked():
    assert progress.enabled(True, Terminal())
    assert not progress.enabled(False, Terminal())
    assert not progress.enabled(True, io.StringIO())
    assert not progress.enabled(True, object())  # no isatty at all

    log = io.StringIO()
    with progress.bar(total=3, desc="x", file=log) as bar:
        bar.update(3)
    assert log.getvalue() == ""
    term = Terminal()
    with progress.bar(total=3, desc="x", file=term) as bar:
        bar.update(3)
    assert "\r" in term.getvalue()  # a terminal does get the bar


def test_every_bar_goes_through_bench_progress():
    direct = re.compile(r"^\s*(from tqdm|import tqdm)|\btqdm\(", re.M)
    users = [
        str(p.relative_to(REPO))
        for p in sorted((REPO / "bench").rglob("*.py"))
        if p.name != "progress.py" and direct.search(p.read_text())
    ]
    assert users == [], f"tqdm used directly in {users}: use bench.progress.bar"


def test_a_run_with_progress_on_writes_no_bar_into_redirected_stderr(tmp_path, tmp_cache):
    flow = tiny_flow()
    ckpt = tmp_path / "flow8.pt"
    torch.save({"arch_config": flow.arch_config, "model": flow.state_dict()}, ckpt)
    args = ["run", "--table", "1", "--preset", "smoke", "--dataset", "builtin"]
    args += ["--methods", "ours", "--tasks", "denoising", "--device", "cpu", "--threads", "1"]
    args += ["--checkpoint", str(ckpt), "--progress", "--results", str(tmp_path / "res")]
    res = invoke(args + ["--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert "\r" not in res.stderr and "\x1b[" not in res.stderr, repr(res.stderr[-300:])


def test_training_with_progress_into_a_log_file_writes_no_bar(tmp_path):
    """A real process whose stderr is a file: `bench train` draws its epoch bar nowhere."""
    log = tmp_path / "train.log"
    args = ["train", "--preset", "smoke", "--epochs", "1", "--device", "cpu", "--threads", "1"]
    args += ["--results", str(tmp_path / "res"), "--progress"]
    with log.open("w") as err:
        done = subprocess.run(
            [sys.executable, "-c", "from bench.cli import main; main()", *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=REPO,
            env={**_env(), "BENCH_CACHE": str(tmp_path / "cache")},
            timeout=600,
        )
    text = log.read_text()
    assert done.returncode == 0, text
    assert "\r" not in text and "\x1b[" not in text, repr(text[-300:])


def _env() -> dict:
    import os

    return {**os.environ, "OMP_NUM_THREADS": "1"}
