"""No command silently replaces a report or result made from another run, preset or dataset
(`bench.provenance`): each output folder records what each file was made from; another source
is refused with one line naming both and the flag that allows it (--replace), and nothing is
touched; a rebuild from the same source goes through; every printed rebuild command works
exactly as printed."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, invoke, one_line_error, tiny_flow

from bench import config, provenance, report, runner
from bench.errors import BenchError

pytestmark = pytest.mark.usefixtures("one_thread")

PRESET = config.get_preset("smoke").with_(
    test_images=3, select_images=2, iters=2, gamma_grid=(0.0, 0.1), alpha_grid=(0.002,)
)
META = {"fingerprint": "feedc0ffee12", "arch": "coupling", "hidden": 8, "epochs": 1}


# ---- the record ---------------------------------------------------------------------------------
def test_a_file_of_another_source_is_refused_naming_both_and_the_fix(tmp_path):
    a = provenance.Source("run A", {"run": "a"})
    b = provenance.Source("run B", {"run": "b"})
    target = tmp_path / "table1.md"
    target.write_text("from A\n")
    provenance.record([target], a)
    provenance.check([target], a)  # the same source: a rebuild
    with pytest.raises(BenchError) as e:
        provenance.check([target], b, option="--out DIR")
    msg = str(e.value)
    assert "\n" not in msg and "run A" in msg and "run B" in msg
    assert "--out DIR" in msg and "--replace" in msg
    provenance.check([target], b, replace=True)
    assert target.read_text() == "from A\n"


def test_a_file_without_a_record_counts_as_another_source(tmp_path):
    target = tmp_path / "claims.md"
    target.write_text("hand-written\n")
    with pytest.raises(BenchError, match="unknown source"):
        provenance.check([target], provenance.Source("run A", {"run": "a"}))
    (tmp_path / provenance.SOURCES_FILE).write_text("{not json")  # damaged: never overwritten
    with pytest.raises(BenchError, match="unreadable or not JSON"):
        provenance.check([target], provenance.Source("run A", {"run": "a"}))
    (tmp_path / provenance.SOURCES_FILE).unlink()
    provenance.check([tmp_path / "absent.md"], provenance.Source("run A", {"run": "a"}))


def test_a_partial_source_matches_only_on_what_it_knows(tmp_path):
    target = tmp_path / "table1.md"
    target.write_text("x")
    provenance.record([target], provenance.table1_source("celeba-cpu-1", "celeba", "cpu"))
    provenance.check([target], provenance.table1_source(None, "celeba", "cpu"), partial=True)
    with pytest.raises(BenchError, match="preset smoke"):
        provenance.check([target], provenance.table1_source(None, "builtin", "smoke"), partial=True)
    with pytest.raises(BenchError):
        provenance.check([target], provenance.table1_source("celeba-cpu-2", "celeba", "cpu"))


def test_the_record_is_deterministic_and_forgets_removed_files(tmp_path):
    files = [tmp_path / n for n in ("b.md", "a.png")]
    for f in files:
        f.write_text("x")
    src = provenance.Source("run A", {"run": "a", "n": (1, 2)})
    provenance.record(files, src)
    first = (tmp_path / provenance.SOURCES_FILE).read_bytes()
    provenance.record(files, src)
    assert (tmp_path / provenance.SOURCES_FILE).read_bytes() == first
    files[1].unlink()
    provenance.record(files, src)
    assert set(provenance.read_sources(tmp_path)) == {"b.md"}
    assert provenance.recorded(files[0])["key"] == {"run": "a", "n": [1, 2]}


# ---- the commands -------------------------------------------------------------------------------
def _run(results, seed):
    return runner.run_table1(
        tiny_flow(),
        META,
        PRESET,
        "builtin",
        methods="glowip",
        tasks="denoising",
        device="cpu",
        results_dir=results,
        seed=seed,
        progress=False,
        threads=1,
        command=f"bench run --table 1 --seed {seed}",
    )


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    results = tmp_path_factory.mktemp("store") / "results"
    return results, _run(results, 0).run_id, _run(results, 1).run_id


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_bench_report_refuses_a_reports_folder_of_another_run(two_runs, tmp_path):
    results, first, second = two_runs
    out = tmp_path / "reports"
    opts = ["--results", str(results), "--out", str(out)]
    assert invoke(["report", "--run", first, *opts]).exit_code == 0
    before = _snapshot(out)
    one_line_error(invoke(["report", "--run", second, *opts]), first, second, "--replace")
    assert _snapshot(out) == before  # refused before anything was written
    # a plain `bench report` rebuilds the run the folder was made from, not the latest run
    assert invoke(["report", *opts]).exit_code == 0
    assert _snapshot(out) == before
    assert invoke(["report", "--run", second, *opts, "--replace"]).exit_code == 0
    assert f"`{second}`" in (out / report.TABLE1_FILE).read_text()
    assert provenance.recorded_run(out / report.TABLE1_FILE) == second


def test_bench_run_refuses_before_computing(two_runs, tmp_path, monkeypatch):
    """A reports folder made from another dataset or preset is refused before training or
    solving anything (the run's own id is checked as soon as it is known)."""
    results, first, _ = two_runs
    out = tmp_path / "reports"
    assert invoke(["report", "--run", first, "--results", str(results), "--out", str(out)])
    provenance.record(
        report.table1_paths(out), provenance.table1_source("celeba-cpu-x", "celeba", "cpu")
    )

    def never(*a, **k):
        raise AssertionError("trained or solved before refusing")

    monkeypatch.setattr("bench.train.ensure_flow", never)
    monkeypatch.setattr("bench.runner.run_table1", never)
    args = ["run", "--table", "1", "--preset", "smoke", "--dataset", "builtin", "--threads", "1"]
    r = invoke([*args, "--results", str(tmp_path / "r"), "--out", str(out), "--no-progress"])
    one_line_error(r, "celeba-cpu-x", "--out DIR", "--replace")
    assert not (tmp_path / "r").exists()


def _printed_rebuild(md: str) -> list[str]:
    m = re.search(r"^- \*\*Rebuild\*\*: `([^`]+)`", md, flags=re.M)
    assert m, "the report prints how to rebuild it"
    args = shlex.split(m.group(1))
    assert args[0] == "bench"
    return args[1:]


def test_every_printed_rebuild_command_works_exactly_as_printed(two_runs, tmp_path, monkeypatch):
    results, first, _ = two_runs
    monkeypatch.chdir(tmp_path)
    out = "my reports"  # a relative folder with a space, not the default
    assert invoke(["report", "--run", first, "--results", str(results), "--out", out])
    assert invoke(["findings", "--run", first, "--results", str(results), "--out", out])
    for name in (report.TABLE1_FILE, "claims.md"):
        path = tmp_path / out / name
        before = path.read_bytes()
        path.unlink()
        args = _printed_rebuild(before.decode())
        r = invoke(args)
        assert r.exit_code == 0, r.output
        assert path.read_bytes() == before, name
    claims = (tmp_path / out / "claims.md").read_text()
    assert f"(and {results / 'realism.csv'}," in claims  # the files it reads, where they are


def test_training_does_not_replace_the_history_of_another_training(tmp_path):
    from bench.train import history_path, train

    tiny = config.get_preset("smoke").with_(
        name="tiny", hidden=8, epochs=1, train_images=64, valid_images=32
    )
    ckpt = tmp_path / "flow.pt"
    train(tiny, "builtin", checkpoint=ckpt, progress=False, log=lambda *a: None)
    history = history_path(ckpt).read_bytes()
    with pytest.raises(BenchError, match="--replace") as e:
        train(tiny, "builtin", checkpoint=ckpt, seed=1, force=True, progress=False,
              log=lambda *a: None)  # fmt: skip
    assert "seed 0" in str(e.value) and "seed 1" in str(e.value)
    assert history_path(ckpt).read_bytes() == history
    train(tiny, "builtin", checkpoint=ckpt, seed=1, force=True, replace=True, progress=False,
          log=lambda *a: None)  # fmt: skip
    assert provenance.recorded(history_path(ckpt))["key"]["seed"] == 1


# ---- the repository -----------------------------------------------------------------------------
def test_no_committed_file_is_ignored_by_git():
    """Runs and histories made locally are ignored; a committed one must be listed in
    .gitignore's exceptions (else a later change to it would go unnoticed)."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "ls-files", "-ci", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == []


def test_a_sources_json_bench_did_not_write_is_never_overwritten(two_runs, tmp_path):
    results, first, _ = two_runs
    out = tmp_path / "reports"
    out.mkdir()
    theirs = '{"sources": ["https://example.org/data.csv"], "owner": "me"}\n'
    (out / provenance.SOURCES_FILE).write_text(theirs)
    r = invoke(["report", "--run", first, "--results", str(results), "--out", str(out)])
    one_line_error(r, "sources.json", "not a bench record", "move it away", "--out DIR")
    r = invoke(["report", "--run", first, "--results", str(results), "--out", str(out),
                "--replace"])  # fmt: skip
    one_line_error(r, "not a bench record")
    assert (out / provenance.SOURCES_FILE).read_text() == theirs
    assert not (out / report.TABLE1_FILE).exists()
    (out / provenance.SOURCES_FILE).write_text("not json at all")
    one_line_error(invoke(["report", "--run", first, "--results", str(results), "--out",
                           str(out)]), "unreadable or not JSON")  # fmt: skip


def test_adding_timing_or_realism_updates_the_same_runs_claims(two_runs, tmp_path):
    """claims.md is the claims of one run: the timing and realism results it quotes, added
    later to the same results folder, update it (they are guarded by their own records)."""
    import shutil

    results, first, _ = two_runs
    store = tmp_path / "results"
    shutil.copytree(results, store)
    out = tmp_path / "reports"
    opts = ["--run", first, "--results", str(store), "--out", str(out)]
    assert invoke(["findings", *opts]).exit_code == 0
    before = (out / "claims.md").read_text()
    for name in ("timing.csv", "timing_summary.csv", "timing_meta.json"):
        shutil.copy(REPO / "results" / name, store / name)
    assert invoke(["findings", *opts]).exit_code == 0
    after = (out / "claims.md").read_text()
    assert after != before and "timing preset `paper`, not this run's preset `smoke`" in after
    assert invoke(["report", *opts]).exit_code == 0


def test_a_history_keeps_its_record_beside_it_and_a_fresh_clone_can_retrain(tmp_path):
    """A history's record is its own sidecar (no shared file changes when a local training
    writes one); a fresh training with the recorded settings (the checkpoint gone, as in a
    clone) goes through."""
    from bench.train import history_path, train

    tiny = config.get_preset("smoke").with_(
        name="tiny", hidden=8, epochs=1, train_images=64, valid_images=32
    )
    ckpt = tmp_path / "flow.pt"
    train(tiny, "builtin", checkpoint=ckpt, progress=False, log=lambda *a: None)
    assert provenance.sidecar_path(history_path(ckpt)).is_file()
    assert not (tmp_path / provenance.SOURCES_FILE).exists()
    ckpt.unlink()
    train(tiny, "builtin", checkpoint=ckpt, progress=False, log=lambda *a: None)


def test_bench_run_refuses_another_run_of_the_same_preset_before_its_estimate(
    two_runs, width8_checkpoint, tmp_path
):
    results, first, _ = two_runs
    out = tmp_path / "reports"
    assert invoke(["report", "--run", first, "--results", str(results), "--out", str(out)])
    args = ["run", "--table", "1", "--preset", "smoke", "--dataset", "builtin", "--methods",
            "glowip", "--tasks", "denoising", "--threads", "1", "--no-progress",
            "--checkpoint", str(width8_checkpoint), "--results", str(results),
            "--out", str(out)]  # fmt: skip
    r = invoke(args)
    one_line_error(r, first, "--replace")
    assert "estimated" not in r.output
