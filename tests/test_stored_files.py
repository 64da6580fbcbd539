"""Every file the harness reads back from results/ (run.json, cell CSVs and arrays, the stored
inputs, timing*.csv and timing_meta.json, realism.csv and realism_meta.json): a malformed,
truncated, non-UTF-8 or wrong-schema file is one BenchError line naming the file and the fix,
never a traceback, and nothing loaded executes code."""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from test_nonfinite import _manifest, _store

from bench import findings, runner
from bench import timing as tm
from bench.errors import BenchError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_dir(tmp_path):
    """A small valid stored run: GlowIP on denoising, paper weight, 4 test images."""
    d = tmp_path / "results" / "runs" / "celeba-smoke-files"
    _store(d, "test", "glowip", "denoising", 0.1, [30.0, 31.0, 32.0, 33.0])
    selection = {"glowip": {"denoising": {"weight": 0.1, "source": "paper", "failed": False}}}
    man = _manifest(
        d.name, ["glowip"], ["denoising"], selection, weights="paper",
        labels={"glowip": {"0.1": "glowip[gamma=0.1]"}}, grids={"glowip": [0.1]},
    )  # fmt: skip
    runner.write_manifest(d, man)
    return d


def _raises(fn, *needles):
    with pytest.raises(BenchError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def _cli_one_line(args, *needles):
    from bench.cli import main

    out = CliRunner().invoke(main, args)
    assert out.exit_code == 2, out.output
    assert "Traceback" not in out.output
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    for needle in needles:
        assert needle in lines[0]


# ---- run.json ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content, problem",
    [
        (b'{"run_id": "x", ', "is not valid JSON"),
        (b"\xff\xfe{}", "is not UTF-8 text"),
        (b"[1, 2, 3]", "holds a JSON list, not an object"),
        (b'"run"', "holds a JSON string, not an object"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"", "is not valid JSON"),
    ],
)
def test_malformed_manifest(run_dir, content, problem):
    (run_dir / "run.json").write_bytes(content)
    _raises(lambda: runner.read_manifest(run_dir), "run.json", problem, "delete the run folder")


@pytest.mark.parametrize(
    "key, value, problem",
    [
        ("methods", None, "lacks the key 'methods'"),
        ("methods", "glowip", "has a 'methods' that is not a list of method names"),
        ("preset", {"name": "smoke"}, "has a 'preset' that is not an object with name"),
        ("seed", "0", "has a 'seed' that is not an integer"),
        ("selection", [], "has a 'selection' that is not {method: {task:"),
        ("selection", {"glowip": {"denoising": {"weight": "0.1"}}}, "'selection'"),
        ("grids", {"glowip": ["a"]}, "has a 'grids' that is not"),
        ("test_images", {"count": 4}, "has a 'test_images' that is not"),
        ("model", {"num_params": "many"}, "has a 'model' that is not"),
    ],
)
def test_manifest_of_the_wrong_schema(run_dir, key, value, problem):
    man = json.loads((run_dir / "run.json").read_text())
    if value is None:
        del man[key]
    else:
        man[key] = value
    (run_dir / "run.json").write_text(json.dumps(man))
    _raises(lambda: runner.read_manifest(run_dir), "run.json", problem, "rerun")


def test_list_runs_and_the_report_command_survive_a_list_manifest(run_dir, tmp_path):
    results = run_dir.parent.parent
    (run_dir / "run.json").write_text("[]")
    assert runner.list_runs(results) == [run_dir]  # only the order; no AttributeError
    _cli_one_line(
        ["report", "--results", str(results), "--out", str(tmp_path / "r")],
        "run.json holds a JSON list, not an object",
    )


# ---- cell CSVs ---------------------------------------------------------------------------------
def _cell(run_dir) -> Path:
    return run_dir / "cells" / "test" / "glowip[gamma=0.1]__denoising.csv"


def _edit_cell(run_dir, edit):
    path = _cell(run_dir)
    frame = pd.read_csv(path)
    frame = edit(frame)
    frame.to_csv(path, index=False)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "is empty"),
        ("stage,method\n", "lacks the column(s) task, weight, image"),
        (None, "has no rows"),  # the header alone
        ("truncate", "'Fal' in column diverged (expected True or False)"),
    ],
)
def test_truncated_or_empty_cell(run_dir, text, problem):
    path = _cell(run_dir)
    full = path.read_text()
    if text is None:
        text = full.splitlines()[0] + "\n"
    elif text == "truncate":
        text = full[: full.rindex("False") + 3]  # cut in the last row's diverged flag
    path.write_text(text)
    for read in (runner.read_cells, runner.stored_failures):
        _raises(lambda read=read: read(run_dir), str(path), problem, "delete it and")


def test_a_truncated_diverged_flag_is_not_read_as_divergence(run_dir):
    """astype(bool) read 'False' and '' as True: every row of a damaged file 'diverged'."""
    path = _cell(run_dir)
    text = path.read_text().replace(",False,", ",,", 1)
    path.write_text(text)
    _raises(lambda: runner.read_cells(run_dir), "an empty value in column diverged")


def test_non_utf8_cell(run_dir):
    path = _cell(run_dir)
    path.write_bytes(path.read_bytes().replace(b"glowip", b"glow\xffp", 1))
    _raises(lambda: runner.read_cells(run_dir), str(path), "is not UTF-8 text")


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda f: f.assign(psnr=["abc", 1, 2, 3]), "non-number 'abc' in column psnr"),
        (lambda f: f.assign(psnr=[np.nan, 1.0, 2.0, 3.0]), "NaN or -inf PSNR on a row not"),
        (lambda f: f.assign(psnr=[-np.inf, 1.0, 2.0, 3.0]), "NaN or -inf PSNR"),
        (lambda f: f.assign(ssim=[np.inf, 1.0, 1.0, 1.0]), "non-finite ssim"),
        (lambda f: f.assign(stage="select"), "rows of another stage than 'test'"),
        (lambda f: f.assign(image="same.jpg"), "holds an image twice"),
        (lambda f: f.assign(index=[0.5, 1, 2, 3]), "non-integer image index"),
        (lambda f: f.assign(diverged=["yes", False, False, False]), "'yes' in column diverged"),
    ],
)
def test_cell_of_the_wrong_schema(run_dir, edit, problem):
    _edit_cell(run_dir, edit)
    _raises(lambda: runner.read_cells(run_dir), "glowip[gamma=0.1]__denoising.csv", problem)


def test_nan_loss_and_diverged_rows_are_valid(run_dir):
    """A method without a loss stores NaN there (not a divergence); a diverged row stores NaN
    metrics. Both read back, and only the diverged row counts as a failure."""

    def edit(f):
        f["loss"] = np.nan
        f.loc[3, ["psnr", "ssim", "mse5"]] = np.nan
        f.loc[3, "diverged"] = True
        f.loc[0, "psnr"] = np.inf
        return f

    _edit_cell(run_dir, edit)
    rows = runner.read_cells(run_dir)
    assert rows.diverged.tolist() == [False, False, False, True]
    assert rows.loss.isna().all() and rows.psnr.iloc[0] == np.inf
    assert runner.stored_failures(run_dir) == ["test/glowip[gamma=0.1]__denoising (1/4 diverged)"]


# ---- arrays ------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this would create the file `marker`: proof that no pickle is loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_restored_images_never_unpickle(run_dir, tmp_path):
    marker = tmp_path / "executed"
    path = _cell(run_dir).with_suffix(".npy")
    np.save(path, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    _raises(
        lambda: runner.read_restored(run_dir, "glowip[gamma=0.1]", "denoising"),
        str(path), "delete it and glowip[gamma=0.1]__denoising.csv",
    )  # fmt: skip
    assert not marker.exists()
    pickle.dumps(_Payload(marker))  # the payload itself is a valid pickle


@pytest.mark.parametrize(
    "write, problem",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "is unreadable"),
        (lambda p: p.write_bytes(b"not numpy"), "is unreadable"),
        (lambda p: np.save(p, np.zeros((4, 3, 32, 32), np.float32)), "not uint8 images"),
        (lambda p: np.save(p, np.zeros((4, 32, 32), np.uint8)), "not uint8 images"),
    ],
)
def test_malformed_restored_images(run_dir, write, problem):
    path = _cell(run_dir).with_suffix(".npy")
    write(path)
    _raises(lambda: runner.read_restored(run_dir, "glowip[gamma=0.1]", "denoising"), problem)


def _inputs(run_dir, **arrays):
    path = run_dir / "inputs" / "test" / "denoising.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    base = {
        "target": np.zeros((4, 3, 32, 32), np.uint8),
        "measurement": np.zeros((4, 3, 32, 32), np.uint8),
        "names": np.array(["a", "b", "c", "d"]),
    }
    base.update(arrays)
    with open(path, "wb") as f:
        np.savez(f, **{k: v for k, v in base.items() if v is not None})
    return path


def test_stored_inputs(run_dir, tmp_path):
    _inputs(run_dir)
    assert runner.read_inputs(run_dir, "denoising")["names"] == ["a", "b", "c", "d"]
    path = _inputs(run_dir, names=None)
    _raises(lambda: runner.read_inputs(run_dir, "denoising"), str(path), "lacks the array(s)")
    marker = tmp_path / "executed"
    _inputs(run_dir, names=np.array([_Payload(marker)] * 4, dtype=object))
    _raises(lambda: runner.read_inputs(run_dir, "denoising"), "is unreadable")
    assert not marker.exists()
    _inputs(run_dir, target=np.zeros((3, 3, 32, 32), np.uint8))
    _raises(lambda: runner.read_inputs(run_dir, "denoising"), "not uint8 (4, 3, H, W)")
    path.write_bytes(path.read_bytes()[:200])
    _raises(lambda: runner.read_inputs(run_dir, "denoising"), "is unreadable", "rerun")
    np.save(path.with_suffix(".tmp.npy"), np.zeros(3))
    shutil.move(path.with_suffix(".tmp.npy"), path)
    _raises(lambda: runner.read_inputs(run_dir, "denoising"), "is not a NumPy .npz archive")


# ---- timing files ------------------------------------------------------------------------------
@pytest.fixture
def timing_dir(tmp_path):
    d = tmp_path / "results"
    d.mkdir()
    for name in ("timing.csv", "timing_summary.csv", "timing_meta.json"):
        shutil.copy(REPO / "results" / name, d / name)
    return d


def _load(d):
    return tm.load_timings(d)


def _first_row(text: str, column: str, edit) -> str:
    """`text` (a CSV) with the first data row's `column` replaced by edit(value): the edits
    do not depend on the committed numbers."""
    lines = text.splitlines()
    col = lines[0].split(",").index(column)
    cells = lines[1].split(",")
    cells[col] = edit(cells[col])
    lines[1] = ",".join(cells)
    return "\n".join(lines) + "\n"


def test_committed_timings_load(timing_dir):
    df, meta = _load(timing_dir)
    assert len(df) == 9 and meta["width"] == 512


@pytest.mark.parametrize(
    "name, edit, problem",
    [
        ("timing_meta.json", lambda t: "[]", "holds a JSON list, not an object"),
        ("timing_meta.json", lambda t: t.replace('"device"', '"dev"'), "lacks the key(s) 'device'"),
        ("timing_meta.json", lambda t: t[:40], "is not valid JSON"),
        ("timing_meta.json", lambda t: t.replace('"width": 512', '"width": "x"'), "width"),
        ("timing.csv", lambda t: _first_row(t, "ms", lambda v: "abc" + v), "non-number 'abc"),
        ("timing.csv", lambda t: _first_row(t, "ms", lambda v: "-" + v), "not a positive finite"),
        ("timing.csv", lambda t: _first_row(t, "ms", lambda v: "inf"), "not a positive fin"),
        ("timing.csv", lambda t: "\n".join(t.splitlines()[:-1]) + "\n", "holds 49 times of inv"),
        ("timing.csv", lambda t: t.replace("iteration", "it", 1), "lacks the column(s) iteration"),
        ("timing.csv", lambda t: "", "is empty"),
        ("timing_summary.csv", lambda t: t.replace(",recompute,", ",fast,", 1), "unknown mode"),
        ("timing_summary.csv", lambda t: t + t.splitlines()[1] + "\n", "configuration twice"),
        (
            "timing_summary.csv",
            lambda t: _first_row(t, "mean_ms", lambda v: f"{float(v) + 1}"),
            "do not give",
        ),
        ("timing_summary.csv", lambda t: t.replace("mean_ms", "mean", 1), "lacks the column(s)"),
        ("timing_summary.csv", lambda t: _first_row(t, "mean_ms", lambda v: ""), "empty value"),
    ],
)
def test_malformed_timing_files(timing_dir, name, edit, problem):
    path = timing_dir / name
    path.write_text(edit(path.read_text()))
    _raises(lambda: _load(timing_dir), name, problem, "rerun `bench ablation --timing`")


def test_non_utf8_timing_file(timing_dir):
    (timing_dir / "timing.csv").write_bytes(b"section,arch\n\xff\xfe,1\n")
    _raises(lambda: _load(timing_dir), "timing.csv is not UTF-8 text")


def test_findings_reads_the_timing_files_strictly(timing_dir):
    rows, meta = findings.timing_results(timing_dir)
    assert rows and meta["width"] == 512
    (timing_dir / "timing_meta.json").write_text("[]")
    _raises(lambda: findings.timing_results(timing_dir), "timing_meta.json holds a JSON list")
    (timing_dir / "timing_meta.json").write_text("{}")
    path = timing_dir / "timing.csv"
    path.write_text(_first_row(path.read_text(), "ms", lambda v: ""))
    _raises(lambda: findings.timing_results(timing_dir), "timing.csv has an empty value in col")


# ---- realism files -----------------------------------------------------------------------------
@pytest.fixture
def realism_dir(tmp_path):
    d = tmp_path / "results"
    d.mkdir()
    for name in (findings.REALISM_FILE, findings.REALISM_META):
        shutil.copy(REPO / "results" / name, d / name)
    return d


@pytest.mark.parametrize(
    "name, edit, problem",
    [
        (findings.REALISM_META, lambda t: "[1]", "holds a JSON list, not an object"),
        (findings.REALISM_META, lambda t: t[:30], "is not valid JSON"),
        (findings.REALISM_FILE, lambda t: t.replace("fd_hi", "x", 1), "lacks the column(s) fd_hi"),
        (
            findings.REALISM_FILE,
            lambda t: re.sub(r"^(samples,0,[^,]*,[^,]*,)[^,]*", r"\1lots", t, count=1, flags=re.M),
            "non-number 'lots'",
        ),  # fmt: skip
        (findings.REALISM_FILE, lambda t: t.replace("samples,0,", "noise,0,", 1), "unknown set"),
        (findings.REALISM_FILE, lambda t: t.splitlines()[0] + "\n", "has no samples rows"),
        (findings.REALISM_FILE, lambda t: "", "is empty"),
    ],
)
def test_malformed_realism_files(realism_dir, name, edit, problem):
    path = realism_dir / name
    path.write_text(edit(path.read_text()))
    _raises(lambda: findings.load_realism(realism_dir), name, problem, "bench findings --realism")


def test_committed_realism_loads(realism_dir):
    df, meta = findings.load_realism(realism_dir)
    assert len(df) == 9 and meta["n"] == 500


def test_findings_command_names_a_malformed_cell(run_dir, tmp_path):
    results = run_dir.parent.parent
    _cell(run_dir).write_text("stage\n")
    _cli_one_line(
        ["findings", "--results", str(results), "--out", str(tmp_path / "r")],
        "glowip[gamma=0.1]__denoising.csv", "lacks the column(s)",
    )  # fmt: skip
