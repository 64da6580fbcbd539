"""`bench findings`: paired statistics, verdicts, the realism proxy, the speed ratio, and a
claims.md that is rebuilt identically from stored results."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_flow
from scipy import stats

from bench import config, findings, runner

PRESET = config.get_preset("smoke").with_(test_images=4, iters=3)
METHODS = "csgm,glowip,map,bm3d,ours,map-released,ours-released,l1-z0"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def flow():
    return tiny_flow()


@pytest.fixture(scope="module")
def stored(flow, tmp_path_factory):
    """Every Table 1 method and both released-code variants, paper weights, two tasks."""
    results = tmp_path_factory.mktemp("results")
    res = runner.run_table1(
        flow,
        {"fingerprint": "findings-test", "arch": "coupling", "hidden": 8},
        PRESET,
        "builtin",
        methods=METHODS,
        tasks="denoising,colorization",
        weights="paper",
        results_dir=results,
        progress=False,
        threads=1,
        command="bench run --findings-test",
    )
    return res, results


# ---- statistics --------------------------------------------------------------------------------
def test_paired_matches_scipy_and_counts_wins():
    rng = np.random.default_rng(0)
    b = rng.normal(30, 2, 50)
    a = b + 0.5 + rng.normal(0, 0.3, 50)
    r = findings.paired(a, b)
    t = stats.ttest_rel(a, b)
    lo, hi = t.confidence_interval(0.95)
    assert r["n"] == 50 and r["mean"] == pytest.approx((a - b).mean())
    assert (r["lo"], r["hi"]) == pytest.approx((lo, hi))
    assert r["p"] == pytest.approx(t.pvalue)
    assert r["wins"] == pytest.approx(((a - b) > 0).mean())
    assert r["boot_lo"] < r["mean"] < r["boot_hi"]
    assert abs(r["boot_lo"] - lo) < 0.1 and abs(r["boot_hi"] - hi) < 0.1


def test_paired_handles_too_few_and_constant_differences():
    assert math.isnan(findings.paired([1.0], [0.0])["mean"])
    r = findings.paired([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert r["mean"] == 1.0 and r["lo"] == r["hi"] == 1.0 and r["wins"] == 1.0


def _ci(lo, hi):
    return {"mean": (lo + hi) / 2, "lo": lo, "hi": hi}


@pytest.mark.parametrize(
    "psnr, ssim, verdict",
    [
        ((0.2, 1.0), (0.01, 0.02), "supported"),
        ((-1.0, -0.2), (-0.02, -0.01), "contradicted"),
        ((0.2, 1.0), (-0.01, 0.02), "supported on PSNR only"),
        ((-0.2, 1.0), (-0.03, -0.01), "contradicted on SSIM"),
        ((0.2, 1.0), (-0.03, -0.01), "split (one metric each way)"),
        ((-0.2, 1.0), (-0.01, 0.02), "unresolved"),
    ],
)
def test_better_verdicts(psnr, ssim, verdict):
    assert findings._verdict_better(_ci(*psnr), _ci(*ssim)) == verdict


@pytest.mark.parametrize(
    "psnr, ssim, verdict",
    [
        ((-0.3, 0.3), (-0.005, 0.005), "supported"),
        ((-0.3, 0.7), (-0.005, 0.005), "unresolved"),
        ((0.6, 1.2), (-0.005, 0.005), "contradicted (PSNR difference beyond the margin)"),
    ],
)
def test_tie_verdicts(psnr, ssim, verdict):
    assert findings._verdict_tie(_ci(*psnr), _ci(*ssim)) == verdict


def test_frechet_distance_of_gaussians():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(4000, 3))
    assert findings.frechet(f, f) == pytest.approx(0.0, abs=1e-6)
    shifted = f + np.array([1.0, 2.0, 0.0])
    assert findings.frechet(shifted, f) == pytest.approx(5.0, rel=1e-6)
    # N(0, 4I) against N(0, I) in 3 dimensions: 3 * (2 - 1)^2 = 3
    assert findings.frechet(rng.normal(size=(20000, 3)) * 2, f) == pytest.approx(3.0, rel=0.1)


def test_hf_energy_is_zero_for_flat_images_and_grows_with_noise():
    flat = np.full((2, 3, 8, 8), 100, np.uint8)
    noisy = np.random.default_rng(0).integers(0, 256, (2, 3, 8, 8)).astype(np.uint8)
    assert (findings.hf_energy(flat) < 1e-20).all() and (findings.hf_energy(noisy) > 0.1).all()


def test_speed_ratio_interval_covers_the_true_ratio():
    rng = np.random.default_rng(0)
    c = rng.normal(100, 5, 50)
    r = findings.speed_ratio(2 * rng.normal(100, 5, 50), c)
    assert r["lo"] < 2.0 < r["hi"] and r["ratio"] == pytest.approx(2.0, rel=0.05)


# ---- claims on a stored run --------------------------------------------------------------------
def test_comparisons_are_paired_per_image_from_the_stored_rows(stored):
    from bench.report import load_run

    res, _ = stored
    data = load_run(res.run_dir)
    claims = {c["claim"].key: c for c in findings.claim_results(data)}
    rows = runner.read_cells(res.run_dir)
    test = rows[rows.stage == "test"]

    def metric(method, task, col):
        cell = test[(test.method == method) & (test.task == task)]
        return cell.set_index("image")[col].sort_index()

    comp = claims["ours>csgm"]["comparisons"][0]
    assert comp["task"] == "denoising"
    diff = metric("ours", "denoising", "psnr") - metric("csgm", "denoising", "psnr")
    assert comp["psnr"]["n"] == PRESET.test_images
    assert comp["psnr"]["mean"] == pytest.approx(diff.mean())
    # deblurring and inpainting were not run: the claim says so instead of guessing
    assert [c["verdict"] for c in claims["ours>csgm"]["comparisons"][1:]] == ["not run"] * 2
    assert claims["ours=glowip"]["comparisons"][0]["task"] == "colorization"
    defects = findings.defect_results(data)
    assert {(d["a"], d["task"]) for d in defects} == {
        ("map-released", "denoising"),
        ("ours-released", "denoising"),
        ("ours-released", "colorization"),
    }


def test_claims_md_is_rebuilt_identically_and_states_its_sources(stored, tmp_path):
    res, results = stored
    pd.DataFrame(
        {
            "section": ["generation"] * 4,
            "arch": ["coupling", "coupling", "glow", "glow"],
            "mode": ["", "", "recompute", "recompute"],
            "iteration": [0, 1, 0, 1],
            "ms": [10.0, 11.0, 25.0, 24.0],
        }
    ).to_csv(results / "timing.csv", index=False)
    (results / "timing_meta.json").write_text('{"command": "bench ablation --timing --x"}')
    one = findings.write_claims(res.run_dir, results, tmp_path / "a").read_text()
    two = findings.write_claims(res.run_dir, results, tmp_path / "b").read_text()
    assert one == two
    assert "- **Run command**: `bench run --findings-test`" in one
    assert f"`bench findings --run {res.run_id}`" in one
    assert "| the solver beats CSGM (denoising, deblurring, inpainting) |" in one
    assert "| denoising +" in one or "| denoising -" in one  # key numbers in the summary
    assert "glow (recompute)" in one and "`bench ablation --timing --x`" in one
    assert "Not computed: run `bench findings --realism`" in one
    assert "MAP (released sign) − MAP" in one and "Ours (released code: α = 0) − Ours" in one
    assert "(paper: 37.72 / 0.918)" in one  # published Table 1 beside ours
    ablation = one.split("## What makes the solver better than GlowIP")[1].split("\n## ")[0]
    assert "L1 fit from z₀ = 0 (ablation) − GlowIP" in ablation
    assert "Ours (released code: α = 0) − L1 fit from z₀ = 0 (ablation)" in ablation
    assert "Ours − Ours (released code: α = 0)" in ablation


def test_seed_section_compares_runs_that_differ_only_in_seed(stored, flow, tmp_path):
    res, results = stored
    other = runner.run_table1(
        flow,
        {"fingerprint": "findings-test", "arch": "coupling", "hidden": 8},
        PRESET,
        "builtin",
        methods="ours",
        tasks="denoising",
        weights="paper",
        results_dir=results,
        progress=False,
        threads=1,
        seed=1,
    )
    assert other.run_id != res.run_id
    df = findings.seed_results(results, runner.read_manifest(res.run_dir))
    ours = df[(df.method == "ours") & (df.task == "denoising")]
    assert sorted(ours.seed) == [0, 1] and ours.psnr.nunique() == 2  # other noise, other mean
    md = findings.write_claims(res.run_dir, results, tmp_path).read_text()
    section = md.split("### Unseeded noise")[1]
    assert "seed 0: PSNR / SSIM | seed 1: PSNR / SSIM" in section
    assert "| denoising | Ours |" in section and "| colorization |" not in section


def test_findings_command_with_realism(stored, flow, tmp_path):
    from click.testing import CliRunner

    from bench.cli import main

    res, results = stored
    ckpt = tmp_path / "flow.pt"
    torch.save({"arch_config": flow.arch_config, "model": flow.state_dict()}, ckpt)
    out = CliRunner().invoke(
        main,
        ["findings", "--results", str(results), "--out", str(tmp_path / "r"), "--realism",
         "--checkpoint", str(ckpt), "--samples", "12", "--no-progress", "--device", "cpu"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    df = pd.read_csv(results / findings.REALISM_FILE)
    assert list(df.set[:2]) == ["real B", "samples"]
    assert sorted(df[df.set == "samples"]["std"]) == sorted(config.SAMPLE_STDS)
    assert (df.repeats == findings.REALISM_REPEATS).all() and (df.n == 12).all()
    ok = df[df.set != "best in range − best outside"]
    assert (ok.fd_lo <= ok.fd).all() and (ok.fd <= ok.fd_hi).all()
    floor = df[df.set == "real B"].iloc[0]
    assert floor.fd < df[df.set == "samples"].fd.min()  # an untrained flow is far from real
    md = (tmp_path / "r" / findings.CLAIMS_FILE).read_text()
    assert "## Figure 1" in md and "| σ = 0.8 |" in md and "real set B (floor)" in md
    missing = CliRunner().invoke(
        main, ["findings", "--results", str(results), "--realism", "--checkpoint", "nope.pt"]
    )
    assert missing.exit_code == 2 and "checkpoint 'nope.pt' is missing" in missing.output


def test_findings_without_a_run_is_a_one_line_error(tmp_path):
    from click.testing import CliRunner

    from bench.cli import main

    out = CliRunner().invoke(main, ["findings", "--results", str(tmp_path / "none")])
    assert out.exit_code == 2 and "no Table 1 runs" in out.output
    assert "Traceback" not in out.output
