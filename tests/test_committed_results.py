"""The committed reports are what the committed results say: rebuilding table1.md, table2.md
and claims.md from results/ (as `bench report` does) gives the committed files byte for byte.
Skips when the repository holds no stored run (a fresh checkout before any run)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

REPORTS = REPO / "reports"
RESULTS = REPO / "results"


def _run_id(md: str) -> str:
    m = re.search(r"^- \*\*Run\*\*: `([^`]+)`", md, flags=re.M)
    assert m, "table1.md names its run"
    return m.group(1)


@pytest.fixture
def committed(monkeypatch):
    table1 = REPORTS / "table1.md"
    if not table1.is_file():
        pytest.skip("no committed reports/table1.md")
    run_id = _run_id(table1.read_text())
    if not (RESULTS / "runs" / run_id / "run.json").is_file():
        pytest.skip(f"results/runs/{run_id} is not in this checkout")
    monkeypatch.chdir(REPO)  # reports name the run by its path relative to the repository
    return run_id


def test_table1_is_rebuilt_from_the_committed_run(committed):
    from bench.report import load_run, render_table1

    data = load_run(f"results/runs/{committed}")
    figures = {
        t: f for t, f in re.findall(r"!\[Figure \d+: (\w+)\]\(([^)]+)\)", _read("table1.md"))
    }
    assert render_table1(data, figures) == _read("table1.md")


def test_claims_are_rebuilt_from_the_committed_results(committed):
    from bench.findings import CLAIMS_FILE, render_claims
    from bench.report import load_run

    if not (REPORTS / CLAIMS_FILE).is_file():
        pytest.skip("no committed reports/claims.md")
    m = re.search(r"^# The paper's claims, tested on run `([^`]+)`", _read(CLAIMS_FILE), re.M)
    assert m, "claims.md names its run"
    assert m.group(1) == committed, "table1.md and claims.md come from the same run"
    md = render_claims(load_run(f"results/runs/{m.group(1)}"), "results")
    assert md == _read(CLAIMS_FILE)


def test_table2_is_rebuilt_from_the_committed_timings():
    from bench import timing as tm

    if not (RESULTS / "timing.csv").is_file() or not (REPORTS / "table2.md").is_file():
        pytest.skip("no committed timing results")
    df, meta = tm.load_timings(RESULTS)
    assert tm.format_table2(df, meta) == _read("table2.md")


def _read(name: str) -> str:
    return (REPORTS / name).read_text()


def test_committed_run_comparisons_are_rebuilt_from_the_committed_runs(monkeypatch):
    from bench.compare import render_comparison

    monkeypatch.chdir(REPO)
    files = sorted(REPORTS.glob("compare-*-to-*.md"))
    if not files:
        pytest.skip("no committed run comparison")
    for path in files:
        text = path.read_text()
        new, base = re.search(r"^# Run comparison: `([^`]+)` against the baseline `([^`]+)`",
                              text, re.M).groups()  # fmt: skip
        command = re.search(r"^- \*\*Made by\*\*: `([^`]+)`", text, re.M).group(1)
        if not all((RESULTS / "runs" / r / "run.json").is_file() for r in (new, base)):
            pytest.skip("the compared runs are not in this checkout")
        assert render_comparison(RESULTS / "runs" / new, RESULTS / "runs" / base, command) == text


def test_general_table_is_rebuilt_from_the_committed_runs(monkeypatch):
    from bench.cli.general import recorded_general_runs
    from bench.report import GENERAL_FILE, load_run, render_general

    if not (REPORTS / GENERAL_FILE).is_file():
        pytest.skip("no committed reports/general.md")
    monkeypatch.chdir(REPO)
    runs = recorded_general_runs("results", "reports")
    assert runs, "general.md records the runs it was made from, and they are committed"
    md = render_general([load_run(d) for d in runs])
    assert md == _read(GENERAL_FILE)
    for d in runs:
        assert f"`{d.name}`" in md


def test_scale_study_is_rebuilt_from_the_committed_runs(monkeypatch, tmp_path):
    from bench.report.scale import SCALE_MD, render_scale
    from bench.scale import read_record

    if not (REPORTS / SCALE_MD).is_file():
        pytest.skip("no committed reports/scale.md")
    monkeypatch.chdir(REPO)
    record = read_record("results")
    assert record, "scale.md's study is recorded in results/scale.json"
    assert render_scale(record, "results", tmp_path) == _read(SCALE_MD)
