"""The newcomer's path leaves the committed files untouched: in a fresh clone of the
repository, README's Quick start command, then every command at smoke size inside the
checkout. Afterwards `git status` is clean: each command either left the committed reports and
results byte for byte as they were (a rebuild from the same source), wrote only files git
ignores (a local checkpoint), or was refused with one line naming the flag that allows it."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, invoke, one_line_error


def _git(*args, cwd) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


def _quick_start(tmp: Path) -> list[str]:
    """README's Quick start `bench ...` command, its /tmp folder moved under `tmp`."""
    text = (REPO / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    line = next(x for x in re.findall(r"```bash\n(.*?)\n```", quick, re.S) if "bench run" in x)
    command = line.split("&&")[-1].strip().replace("/tmp/bench-smoke", str(tmp / "smoke"))
    args = shlex.split(command)
    assert args[0] == "bench"
    return args[1:]


@pytest.fixture
def clone(tmp_path, monkeypatch):
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout")
    if not list((REPO / "results" / "runs").glob("*/run.json")):
        pytest.skip("no committed run in this checkout")
    path = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(path)], check=True)
    if _git("status", "--porcelain", cwd=path):
        pytest.skip("the clone is not clean to begin with")
    monkeypatch.chdir(path)
    return path


def _compare_runs(clone: Path) -> tuple[str, str] | None:
    for p in (clone / "reports").glob("compare-*-to-*.md"):
        base, new = p.stem[len("compare-") :].split("-to-")
        return new, base
    return None


def test_the_newcomer_path_leaves_the_committed_files_untouched(clone, tmp_path, monkeypatch):
    refused = []

    def run(args):
        monkeypatch.setattr("sys.argv", ["bench", *args])  # the command reports record
        return invoke(args)

    def refuses(args, *why):
        r = run(args)
        one_line_error(r, "--replace", *why)
        refused.append(args[0])

    def works(args):
        r = run(args)
        assert r.exit_code == 0, f"bench {' '.join(args)}: {r.output}"

    works(_quick_start(tmp_path))  # writes outside the checkout
    works(["report", "--results", str(tmp_path / "smoke/results"),
           "--out", str(tmp_path / "smoke/reports")])  # fmt: skip
    works(["info"])
    smoke = ["--preset", "smoke", "--threads", "1"]
    works(["train", *smoke, "--no-progress"])  # a local checkpoint: ignored by git
    refuses(["sample", *smoke], "fig1_samples.png", "--out")
    refuses(["run", "--table", "1", *smoke, "--no-progress"], "table1.md", "--out")
    works(["report"])  # rebuilds the committed reports from the committed run, identically
    works(["findings", "--no-progress"])
    ckpt = "results/checkpoints/builtin-smoke-coupling.pt"
    refuses(["findings", "--realism", "--checkpoint", ckpt, "--samples", "10", "--threads", "1",
             "--no-progress"], "realism")  # fmt: skip
    refuses(["ablation", "--timing", *smoke, "--allow-busy", "--no-progress"], "--out")
    refuses(["perf", *smoke], "perf")
    pair = _compare_runs(clone)
    if pair:
        works(["compare", "--run", pair[0], "--baseline", pair[1]])
    assert _git("status", "--porcelain", cwd=clone) == ""
    assert refused == ["sample", "run", "findings", "ablation", "perf"]
