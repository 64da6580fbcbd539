"""`bench findings`: paired statistics, verdicts, the realism proxy, the speed ratio, and a
claims.md that is rebuilt identically from stored results."""

from __future__ import annotations

import json
import math
import types

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import invoke, one_line_error, tiny_flow
from scipy import stats

from bench import config, findings, runner
from bench.errors import BenchError

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
    assert findings.verdict_better(_ci(*psnr), _ci(*ssim)) == verdict


@pytest.mark.parametrize(
    "psnr, ssim, verdict",
    [
        ((-0.3, 0.3), (-0.005, 0.005), "supported"),
        ((-0.3, 0.7), (-0.005, 0.005), "unresolved"),
        ((0.6, 1.2), (-0.005, 0.005), "contradicted (PSNR difference beyond the margin)"),
    ],
)
def test_tie_verdicts(psnr, ssim, verdict):
    assert findings.verdict_tie(_ci(*psnr), _ci(*ssim)) == verdict


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
    two = findings.write_claims(res.run_dir, results, tmp_path / "a").read_text()
    assert one == two
    assert "- **Run command**: `bench run --findings-test`" in one
    # its rebuild command names the folders it was made from and written to
    rebuild = f"`bench findings --run {res.run_id} --results {results} --out {tmp_path / 'a'}`"
    assert rebuild in one
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


def test_realism_on_too_few_images_names_the_samples_that_fit(stored, flow, tmp_path, monkeypatch):
    """The builtin dataset's 256 valid images with the default --samples 500 said "pass
    --samples with a smaller number": now the number that works, or that none does."""
    import dataclasses

    from bench import data

    res, results = stored
    ckpt = tmp_path / "flow.pt"
    torch.save({"arch_config": flow.arch_config, "model": flow.state_dict()}, ckpt)
    args = ["findings", "--results", str(results), "--out", str(tmp_path / "r"), "--realism"]
    args += ["--checkpoint", str(ckpt), "--no-progress", "--device", "cpu", "--threads", "1"]
    args += ["--replace"]  # (another test of this module stored a realism result there)
    found = len(data.load_images("builtin", "valid", None, progress=False).images)
    assert found < 2 * findings.REALISM_SAMPLES
    one_line_error(invoke(args), f"{found}", f"--samples {found // 2} or fewer")
    real = data.load_images

    def nineteen(*a, **kw):
        loaded = real(*a, **kw)
        return dataclasses.replace(loaded, images=loaded.images[:19], names=loaded.names[:19])

    monkeypatch.setattr(data, "load_images", nineteen)
    one_line_error(invoke(args), "19", "too few", "at least 10")
    with pytest.raises(BenchError, match="pass --samples 9 or fewer"):
        findings.realism(flow, np.zeros((19, 3, 32, 32), np.uint8), n=12, progress=False)


def test_findings_without_a_run_is_a_one_line_error(tmp_path):
    from click.testing import CliRunner

    from bench.cli import main

    out = CliRunner().invoke(main, ["findings", "--results", str(tmp_path / "none")])
    assert out.exit_code == 2 and "no Table 1 runs" in out.output
    assert "Traceback" not in out.output


# ---- strength of the evidence ------------------------------------------------------------------
def test_a_smoke_run_gives_no_verdict_on_any_claim(stored, tmp_path):
    from bench.report import load_run

    res, results = stored
    claims = findings.claim_results(load_run(res.run_dir))
    why = f"{findings.NOT_MEANINGFUL} (4 images < 30; smoke flow)"
    assert [c["verdict"] for c in claims] == [why] * len(findings.CLAIMS)
    ran = [r for c in claims for r in c["comparisons"] if "psnr" in r]
    assert ran and all(r["verdict"] == why for r in ran)
    md = findings.write_claims(res.run_dir, results, tmp_path).read_text()
    summary = md.split("## Summary")[1].split("\n## ")[0]
    assert summary.count(f"| {why} | n = 4 images per task; ") == len(findings.CLAIMS)
    table = md.split("## Table 1 claims")[1].split("\n## ")[0]
    assert table.count(f"| n = 4 images | {why} |") == len(ran)
    assert "A verdict needs at least 30 paired images" in md  # the threshold is stated


TRAINED = {"fingerprint": "f", "preset": "cpu", "epochs": 24, "hidden": 128}
SMOKE = {"fingerprint": "f", "preset": "smoke", "epochs": 1, "hidden": 16}


def _cells(n: int, gain: float = 1.0) -> dict:
    """Ours `gain` dB (and gain / 100 SSIM) above BM3D on n denoising images."""
    rng = np.random.default_rng(0)
    names = [f"{i:06d}.jpg" for i in range(n)]
    b = pd.DataFrame(
        {"psnr": rng.normal(30, 2, n), "ssim": rng.uniform(0.7, 0.9, n), "mse5": 1.0}, index=names
    )
    a = b.assign(
        psnr=b.psnr + gain + rng.normal(0, 0.3, n),
        ssim=b.ssim + gain / 100 + rng.normal(0, 3e-3, n),
    )
    return {("ours", "denoising"): a, ("bm3d", "denoising"): b}


@pytest.mark.parametrize(
    "n, preset, model, verdict",
    [
        (30, "cpu", TRAINED, "supported"),
        (192, "cpu", TRAINED, "supported"),
        (29, "cpu", TRAINED, "not meaningful at this size (29 images < 30)"),
        (192, "smoke", SMOKE, "not meaningful at this size (smoke flow)"),
        (192, "cpu", {**TRAINED, "preset": "smoke"}, "not meaningful at this size (smoke flow)"),
        (
            192, "cpu", {**TRAINED, "epochs": 3, "hidden": 32},
            "not meaningful at this size (flow trained 3 epoch(s) < 10; flow width 32 < 64)",
        ),
        (
            4, "cpu", {"fingerprint": "f"},
            "not meaningful at this size (4 images < 30; the flow's training epochs are not "
            "recorded; the flow's width is not recorded)",
        ),
    ],
)  # fmt: skip
def test_verdicts_need_enough_images_and_a_trained_flow(n, preset, model, verdict):
    data = types.SimpleNamespace(manifest={"preset": {"name": preset}, "model": model})
    claims = {c["claim"].key: c for c in findings.claim_results(data, _cells(n))}
    bm3d = claims["ours>bm3d"]
    assert bm3d["verdict"] == verdict and bm3d["comparisons"][0]["verdict"] == verdict
    assert bm3d["intervals"] == "supported"  # what the intervals alone say
    assert claims["ours>csgm"]["verdict"] == "not run"  # nothing measured, nothing withheld
    assert findings.claim_evidence(bm3d, model).startswith(f"n = {n} images per task; flow of")


def test_a_contradiction_at_the_threshold_stands():
    data = types.SimpleNamespace(manifest={"preset": {"name": "cpu"}, "model": TRAINED})
    (bm3d,) = [c for c in findings.claim_results(data, _cells(30, -1.0)) if c["claim"].b == "bm3d"]
    assert bm3d["verdict"] == "not supported"
    assert bm3d["comparisons"][0]["verdict"] == "contradicted"


def _realism_files(path, best, n=500, floor=30.0, meta=None):
    """realism.csv with the real-vs-real floor and σ = 1 at `best` (lo, mean, hi), σ = 0.5
    far behind it, and realism_meta.json (`meta`; default: a trained flow, n samples)."""
    lo, m, hi = best
    rows = [
        ["real B", "", n, 20, floor, floor - 1, floor + 1, 1.0, 0.9, 1.1],
        ["samples", 0.5, n, 20, 250.0, 245.0, 255.0, 0.5, 0.4, 0.6],
        ["samples", 1.0, n, 20, m, lo, hi, 1.2, 1.1, 1.3],
        ["best in range − best outside", "", n, 20, m - 250, lo - 255, hi - 245, "", "", ""],
    ]
    cols = ["set", "std", "n", "repeats", "fd", "fd_lo", "fd_hi", "hf_ratio", "hf_lo", "hf_hi"]
    pd.DataFrame(rows, columns=cols).to_csv(path / findings.REALISM_FILE, index=False)
    meta = {"n": n, "flow": TRAINED} if meta is None else meta
    (path / findings.REALISM_META).write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "best, n, flow, verdict",
    [
        # colour noise: the minimum lies inside [0.8, 1.2] but 5× the real-vs-real floor
        ((150.0, 155.0, 160.0), 500, TRAINED,
         "not supported (the best σ inside the range is 5.2× the real-vs-real floor; at most 2× "
         "needed)"),
        ((32.0, 35.0, 38.0), 500, TRAINED, "supported"),  # near the floor
        ((55.0, 58.0, 65.0), 500, TRAINED, "unresolved"),  # its interval straddles 2× the floor
        ((32.0, 35.0, 38.0), 500, SMOKE, "not meaningful at this size (smoke flow)"),
        ((32.0, 35.0, 38.0), 50, TRAINED, "not meaningful at this size (50 samples per σ < 128)"),
    ],
)  # fmt: skip
def test_realism_verdict_needs_samples_close_to_real_images(tmp_path, best, n, flow, verdict):
    _realism_files(tmp_path, best, n, meta={"n": n, "flow": flow})
    lines, v, evidence = findings.realism_section(tmp_path)
    assert v == verdict
    assert evidence.startswith(f"{n} samples per σ × 20 draws; flow of {flow['epochs']} epoch(s)")
    assert f"within 2× the floor (≤ 60.00). Evidence: {evidence}. Verdict: **{v}**." in lines[-1]


def test_realism_takes_the_run_flow_when_the_meta_names_its_fingerprint(tmp_path):
    model = "coupling flow, width 128, fingerprint `abc123`, validation 2.8 bits/dim"
    _realism_files(tmp_path, (32.0, 35.0, 38.0), meta={"n": 500, "model": model})
    run = {**TRAINED, "fingerprint": "abc123"}
    assert findings.realism_section(tmp_path, run)[1] == "supported"
    assert findings.realism_section(tmp_path, {**run, "epochs": 1})[1] == (
        "not meaningful at this size (flow trained 1 epoch(s) < 10)"
    )
    other = findings.realism_section(tmp_path, {**run, "fingerprint": "zzz"})
    assert other[1] == "not meaningful at this size (the flow is not recorded)"


@pytest.mark.parametrize(
    "meta, verdict",
    [
        ({"preset": "paper", "width": 512, "batch": 128, "iters": 50}, "supported"),
        ({"preset": "cpu", "width": 128, "batch": 32, "iters": 50},
         "supported (qualified: width 128, not the paper's 512; batch 32, not the paper's 128)"),
        ({"preset": "smoke", "width": 8, "batch": 4, "iters": 3},
         "not meaningful at this size (smoke timing preset: width 8, batch 4)"),
        ({"preset": "paper", "width": 512, "batch": 128, "iters": 50,
          "busy_note": "1.0 CPUs busy at start (--allow-busy)"},
         "supported (qualified: timed on a busy machine: 1.0 CPUs busy at start (--allow-busy))"),
    ],
)  # fmt: skip
def test_timing_verdict_says_what_it_measured(tmp_path, meta, verdict):
    pd.DataFrame(
        {"section": "generation", "arch": ["coupling"] * 3 + ["glow"] * 3,
         "mode": [""] * 3 + ["recompute"] * 3, "iteration": [0, 1, 2] * 2,
         "ms": [10.0, 11.0, 10.5, 25.0, 24.0, 24.5]}
    ).to_csv(tmp_path / "timing.csv", index=False)  # fmt: skip
    (tmp_path / "timing_meta.json").write_text(json.dumps(meta))
    lines, v, evidence = findings.timing_section(tmp_path)
    assert v == verdict
    assert evidence == (
        f"width {meta['width']}, batch {meta['batch']}, {meta['iters']} timed iterations per "
        f"configuration, timing preset {meta['preset']}"
    )
    assert f"Measured at {evidence}: **{verdict}**." in lines[-1]


def test_the_header_names_each_source_and_flags_another_flow_or_preset(tmp_path):
    """A claims.md that mixes sources says so: realism from another flow than the run's, a
    timing of another preset than the run's."""
    man = {"run_id": "celeba-cpu-x", "model": {**TRAINED, "fingerprint": "abc123"},
           "preset": {"name": "cpu"}}  # fmt: skip
    model = "coupling flow, width 128, fingerprint `zzz999`, validation 2.8 bits/dim"
    _realism_files(tmp_path, (32.0, 35.0, 38.0), meta={"n": 500, "model": model})
    pd.DataFrame(
        {"section": "generation", "arch": ["coupling", "glow"], "mode": ["", "recompute"],
         "iteration": [0, 0], "ms": [10.0, 25.0]}
    ).to_csv(tmp_path / "timing.csv", index=False)  # fmt: skip
    (tmp_path / "timing_meta.json").write_text(json.dumps({"preset": "smoke", "width": 8}))
    line = findings.sources_line(man, tmp_path)
    assert (
        "**another flow than this run's** (coupling flow, width 128, fingerprint `zzz999`" in line
    )
    assert "timing preset `smoke`, not this run's preset `cpu`" in line
    _realism_files(
        tmp_path, (32.0, 35.0, 38.0), meta={"n": 500, "model": model.replace("zzz999", "abc123")}
    )
    assert "from this run's flow `abc123`" in findings.sources_line(man, tmp_path)
