"""Reports from the results store: Table 1 Markdown (header, our numbers with intervals, the
paper convention beside the published values, selected weights, skipped and failed cells, the
grid search), the grid PNG, Figures 3–6, `bench report`, and reading incomplete runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import tiny_flow

from bench import config, metrics, report, runner
from bench.errors import BenchError
from bench.flows import build_flow

PRESET = config.get_preset("smoke").with_(
    test_images=3, select_images=2, iters=3, gamma_grid=(0.0, 0.1), alpha_grid=(0.002, 0.02)
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def flow():
    return tiny_flow()


META = {
    "fingerprint": "feedc0ffee12",
    "arch": "coupling",
    "hidden": 8,
    "epochs": 1,
    "epochs_planned": 1,
    "val_bpd": 4.987,
    "path": "results/checkpoints/builtin-smoke-coupling.pt",
}


def run(flow, results, **kw):
    args = dict(preset=PRESET, dataset="builtin", device="cpu", progress=False, threads=1)
    args.update(kw)
    args.setdefault("command", "bench run --test")
    return runner.run_table1(flow, META, results_dir=results, **args)


@pytest.fixture(scope="module")
def stored(flow, tmp_path_factory):
    """glowip (grid with a 0 weight) and map (one β, denoising only) on two tasks."""
    res = run(
        flow,
        tmp_path_factory.mktemp("results"),
        methods="glowip,map",
        tasks="denoising,colorization",
    )
    out = tmp_path_factory.mktemp("reports")
    path = report.write_table1(res.run_dir, out)
    return res, out, path.read_text()


def test_table1_header_states_data_preset_model_command_date_device(stored):
    res, out, md = stored
    man = runner.read_manifest(res.run_dir)
    test = man["test_images"]
    assert md.startswith("# Table 1: image restoration on builtin (preset `smoke`)")
    assert test["label"] in md and "NOT CelebA" in md
    assert f"{test['count']} images, files {test['first']} … {test['last']}" in md
    assert md.count(f"{test['first']} … {test['last']}") == 1
    assert man["select_images"]["first"] in md
    assert "`smoke` (width 16" in md and "3 iterations" in md
    assert "coupling flow, width 8" in md and f"{flow_params():,} parameters" in md
    assert "fingerprint `feedc0ffee12`" in md and "4.987 bits/dim" in md
    assert "- **Run command**: `bench run --test`" in md
    rebuild = (
        f"bench report --run {man['run_id']} --results {res.run_dir.parent.parent} --out {out}"
    )
    assert f"- **Rebuild**: `{rebuild}`" in md
    assert "- **Device**: cpu (" in md


def flow_params() -> int:
    return build_flow("coupling", hidden=8).num_params()


def test_table1_numbers_match_the_stored_rows(stored):
    res, _, md = stored
    rows = runner.read_cells(res.run_dir)
    summary = report.summary_frame(res.run_dir)
    for rec in summary[summary.status == "ok"].itertuples():
        cell = rows[(rows.stage == "test") & (rows.method == rec.method) & (rows.task == rec.task)]
        assert rec.n == PRESET.test_images == len(cell)
        mean, half = metrics.mean_ci(cell.psnr.to_numpy())
        assert rec.psnr == pytest.approx(mean) and rec.psnr_ci == pytest.approx(half)
        assert rec.ssim == pytest.approx(cell.ssim.mean())
        assert rec.paper_psnr == pytest.approx(metrics.paper_psnr(cell.mse5.to_numpy()))
        assert f"{mean:.2f} ± {half:.2f} / " in md
        pub_psnr, pub_ssim = config.PUBLISHED_TABLE1[rec.method][rec.task]
        assert (
            f"{rec.paper_psnr:.2f} / {rec.ssim:.3f} (paper: {pub_psnr:.2f} / {pub_ssim:.3f})" in md
        )


def test_table1_lists_weights_skips_and_grid(stored):
    res, _, md = stored
    w = res.selection[("glowip", "denoising")]
    assert f"γ = {report.format_weight(w)} (valid grid)" in md
    assert "| MAP | β = 0.5 (only value) | n/a |" in md
    assert "MAP on colorization: skipped — " in md
    assert "## Grid search" in md and "| GlowIP (γ) |" in md
    assert "| method | 0 | 0.1 |" in md  # the grid's columns, 0 included
    assert "**" in md.split("## Grid search")[1]  # the selected weight in bold


def test_pngs_are_written(stored):
    import matplotlib.image as mpimg

    _, out, md = stored
    for name in ("grid_search.png", "fig3_denoising.png", "fig6_colorization.png"):
        img = mpimg.imread(out / name)
        assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50, name
        assert f"]({name})" in md
    assert not (out / "fig4_deblurring.png").exists()  # deblurring was not run


def test_rebuilding_gives_the_same_report(stored):
    res, out, md = stored
    again = report.write_table1(res.run_dir, out).read_text()
    assert again == md  # byte for byte: no timestamp, no command of the rebuild


def test_paper_convention_pools_batches_of_32():
    rng = np.random.default_rng(0)
    mse = rng.uniform(0.5, 3.0, size=40)
    value, batches = report.paper_convention_psnr(mse)
    assert batches == 2
    expect = (metrics.paper_psnr(mse[:32]) + metrics.paper_psnr(mse[32:])) / 2
    assert value == pytest.approx(expect)
    assert math.isnan(report.paper_convention_psnr([1.0, np.nan])[0])


def test_select_on_test_reports_the_best_test_weight(flow, tmp_path):
    res = run(flow, tmp_path, methods="glowip", tasks="inpainting", select_on="test")
    rows = runner.read_cells(res.run_dir)
    assert set(rows.stage) == {"test"} and len(rows) == 2 * PRESET.test_images
    best = rows.groupby("weight").psnr.mean().idxmax()
    assert res.selection[("glowip", "inpainting")] == best
    md = report.write_table1(res.run_dir, tmp_path / "reports").read_text()
    assert "(test grid)" in md and "grid search directly on the test images" in md


def test_paper_weights_report(flow, tmp_path):
    res = run(flow, tmp_path, methods="glowip", tasks="deblurring", weights="paper")
    md = report.write_table1(res.run_dir, tmp_path / "reports").read_text()
    assert "γ = 0 (paper)" in md and "No grid search in this run." in md
    assert (tmp_path / "reports" / "grid_search.png").is_file()


def test_incomplete_run_shows_missing_cells(stored, tmp_path):
    import shutil

    res, _, _ = stored
    copy = tmp_path / "runs" / res.run_id
    shutil.copytree(res.run_dir, copy)
    for path in copy.glob("cells/test/map*__denoising.*"):
        path.unlink()
    summary = report.summary_frame(copy)
    rec = summary[(summary.method == "map") & (summary.task == "denoising")].iloc[0]
    assert rec.status == "not run"
    md = report.write_table1(copy, tmp_path / "reports").read_text()
    assert "MAP on denoising: not run yet" in md


def test_find_run(stored, tmp_path):
    res, _, _ = stored
    results = res.run_dir.parent.parent
    assert runner.find_run(results) == res.run_dir
    assert runner.find_run(results, res.run_id[:18]) == res.run_dir
    with pytest.raises(BenchError, match="matches no run"):
        runner.find_run(results, "celeba-paper")
    with pytest.raises(BenchError, match="no Table 1 runs"):
        runner.find_run(tmp_path)


def test_bench_report_command(stored, tmp_path):
    from bench.cli import main

    res, _, _ = stored
    results = str(res.run_dir.parent.parent)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["report", "--results", results, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| GlowIP |" in result.output and (out / "table1.md").is_file()
    bad = CliRunner().invoke(main, ["report", "--results", str(tmp_path / "none")])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: no Table 1 runs")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_released_code_variants_get_their_own_section(flow, tmp_path):
    run(flow, tmp_path, methods="glowip,map", tasks="denoising", weights="paper")
    res = run(
        flow, tmp_path, methods="map-released", tasks="denoising", weights="paper", command="b2"
    )
    md = report.write_table1(res.run_dir, tmp_path / "reports").read_text()
    assert "- **Run commands** (each added cells to this run): `bench run --test`; `b2`" in md
    ours, rest = md.split("## Variants outside the paper's table")
    assert "| MAP |" in ours and "MAP (released sign)" not in ours
    variants, convention = rest.split("## Paper convention beside the published Table 1")
    assert "| MAP (released sign) |" in variants
    assert "released code subtracts the NLL" in variants
    assert "MAP (released sign)" not in convention.split("## Selected weights")[0]
