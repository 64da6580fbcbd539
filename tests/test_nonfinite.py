"""Exact restorations (PSNR = +inf) are valid values, the best ones, and never a divergence:
weight selection, Table 1's means, intervals and Markdown, the grid-search figure, the paired
differences of `bench findings`, and every other mean over stored numbers (seeds, realism,
speed ratio) handle them and say so; only rows with diverged=True are called divergence."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_flow

from bench import config, findings, report, runner

INF = math.inf
PRESET = config.get_preset("smoke").with_(
    test_images=4, select_images=2, iters=2, gamma_grid=(0.0, 0.1), alpha_grid=(0.002, 0.02)
)
IMAGES = [f"{i:06d}.jpg" for i in range(1, 5)]

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- a hand-made results store -----------------------------------------------------------------
def _rows(stage, method, task, weight, psnr, diverged=None, ssim=None):
    """One cell's rows: PSNR +inf gives SSIM 1 and MSE5 0 (an exact image), a diverged row
    NaN metrics, as bench.runner.compute_cell stores them."""
    n = len(psnr)
    diverged = diverged or [False] * n
    rows = []
    for i, p in enumerate(psnr):
        exact = p == INF
        s = 1.0 if exact else (ssim[i] if ssim else 0.9 - 0.01 * i)
        m = 0.0 if exact else 0.5 + 0.1 * i
        if diverged[i]:
            p, s, m = math.nan, math.nan, math.nan
        rows.append(
            {"run_id": "hand-made", "stage": stage, "partition": "valid" if stage == "select"
             else "test", "method": method, "task": task, "weight_name": "gamma",
             "weight": math.nan if weight is None else weight, "image": IMAGES[i], "index": i,
             "seed": 0, "image_seed": i, "psnr": p, "ssim": s, "mse5": m,
             "loss": math.nan, "diverged": diverged[i], "iters": 2, "seconds": 0.1,
             "preset": "smoke", "model": "m", "dataset": "celeba", "device": "cpu"}
        )  # fmt: skip
    return rows


def _store(run_dir, stage, method, task, weight, psnr, **kw):
    label = f"{method}[gamma={report.format_weight(weight)}]"
    cell = runner.Cell(stage, method, task, weight, label)
    rows = _rows(stage, method, task, weight, psnr, **kw)
    runner.write_cell(run_dir, cell, rows, np.zeros((len(psnr), 3, 32, 32), np.uint8))
    return label


def _manifest(run_id, methods, tasks, selection, weights="grid", **extra):
    test = {"label": "CelebA (flat grey test folder)", "partition": "test", "count": 4,
            "first": IMAGES[0], "last": IMAGES[-1], "fingerprint": "f", "root": "x",
            "skipped": []}  # fmt: skip
    man = {
        "format": runner.RUN_FORMAT, "run_id": run_id, "created": "2026-01-01T00:00:00+00:00",
        "updated": "2026-01-01T00:00:00+00:00", "key": {"dataset": "celeba"},
        "dataset": "celeba", "test_images": test,
        "select_images": {**test, "partition": "valid", "count": 2} if weights == "grid"
        else None,
        "preset": PRESET.to_dict(), "iters": PRESET.iters, "lr": config.SOLVER_LR, "seed": 0,
        "select_on": "valid" if weights == "grid" else None, "weights": weights,
        "model": {"fingerprint": "m", "arch": "coupling", "hidden": 16},
        "device": "cpu", "device_description": "cpu", "command": "bench run --hand-made",
        "commands": ["bench run --hand-made"], "methods": methods, "tasks": tasks,
        "grids": {m: [0.0, 0.1] for m in methods},
        "weight_names": {m: "gamma" for m in methods},
        "labels": {m: {"0.0": f"{m}[gamma=0]", "0.1": f"{m}[gamma=0.1]"} for m in methods},
        "method_labels": {"glowip": "GlowIP", "ours": "Ours"}, "skipped": {},
        "selection": selection, "complete": True,
    }  # fmt: skip
    man.update(extra)
    return man


def _plan():
    return runner.plan_table1(PRESET, "glowip", "denoising,inpainting")


@pytest.fixture
def grid_run(tmp_path):
    """GlowIP on flat grey images: γ = 0.1 restores every selection image exactly; on the
    test images 3 of 4 (denoising) and all 4 (inpainting) are exact. The selection is what
    bench.runner.select_weights picks from the stored grid, as `bench run` records it."""
    run_dir = tmp_path / "results" / "runs" / "celeba-smoke-exact"
    for t in ("denoising", "inpainting"):
        _store(run_dir, "select", "glowip", t, 0.0, [30.0, 31.0])
        _store(run_dir, "select", "glowip", t, 0.1, [INF, INF])
    _store(run_dir, "test", "glowip", "denoising", 0.1, [INF, INF, INF, 35.0])
    _store(run_dir, "test", "glowip", "inpainting", 0.1, [INF] * 4)
    chosen = runner.select_weights(runner.read_cells(run_dir), _plan())
    selection = {
        "glowip": {
            t: {"weight": w, "source": "valid grid", "failed": w is None}
            for (_, t), w in chosen.items()
        }
    }
    runner.write_manifest(
        run_dir, _manifest(run_dir.name, ["glowip"], ["denoising", "inpainting"], selection)
    )
    return run_dir


# ---- selection ---------------------------------------------------------------------------------
def _grid_rows(psnr_by_weight, diverged_by_weight=None):
    rows = []
    for w, psnr in psnr_by_weight.items():
        div = (diverged_by_weight or {}).get(w)
        rows += _rows("select", "glowip", "denoising", w, psnr, diverged=div)
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "psnr, diverged, chosen",
    [
        ({0.0: [30.0, 31.0], 0.1: [INF, 29.0]}, None, 0.1),  # +inf beats every finite mean
        ({0.0: [INF, INF], 0.1: [INF, 40.0]}, None, 0.0),  # tie at +inf: the earlier value
        ({0.0: [30.0, 31.0], 0.1: [INF, INF]}, {0.0: [True, False]}, 0.1),  # 0.0 diverged
        ({0.0: [1.0, 1.0], 0.1: [INF, INF]}, {0.0: [True, False], 0.1: [False, True]}, None),
    ],
)
def test_selection_takes_inf_as_the_best_mean(psnr, diverged, chosen):
    plan = runner.plan_table1(PRESET, "glowip", "denoising")
    got = runner.select_weights(_grid_rows(psnr, diverged), plan)[("glowip", "denoising")]
    assert got == chosen


def test_cell_mean_psnr_is_inf_with_an_exact_image_and_nan_only_when_undefined():
    frame = pd.DataFrame(_rows("test", "glowip", "denoising", 0.1, [INF, 30.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runner.cell_mean_psnr(frame) == INF
    frame.loc[1, "diverged"] = True
    assert math.isnan(runner.cell_mean_psnr(frame))  # a divergence is never a valid mean
    frame = pd.DataFrame(_rows("test", "glowip", "denoising", 0.1, [30.0, 32.0]))
    assert runner.cell_mean_psnr(frame) == 31.0
    frame.loc[0, "psnr"] = -INF
    assert math.isnan(runner.cell_mean_psnr(frame))


def test_selection_of_the_hand_made_run(grid_run):
    chosen = runner.select_weights(runner.read_cells(grid_run), _plan())
    assert chosen == {("glowip", "denoising"): 0.1, ("glowip", "inpainting"): 0.1}
    assert runner.stored_failures(grid_run) == []  # +inf is not a divergence


# ---- Table 1 -----------------------------------------------------------------------------------
def test_summary_counts_exact_images_and_leaves_the_interval_undefined(grid_run):
    s = report.summary_frame(grid_run).set_index("task")
    den, inp = s.loc["denoising"], s.loc["inpainting"]
    assert den.status == inp.status == "ok"
    assert (den.n_exact, den.n, den.n_diverged) == (3, 4, 0)
    assert den.psnr == INF and math.isnan(den.psnr_ci) and den.psnr_finite == 35.0
    assert inp.n_exact == 4 and inp.psnr == INF and math.isnan(inp.psnr_finite)
    # paper convention: one batch of 4, pooled MSE 0 only where all 4 are exact
    assert inp.paper_psnr == INF and (inp.paper_exact, inp.paper_batches) == (1, 1)
    assert math.isfinite(den.paper_psnr) and den.paper_exact == 0
    assert den.ssim == pytest.approx((3 + 0.87) / 4)


def test_table1_says_inf_and_exact_not_failed(grid_run, tmp_path):
    md = report.write_table1(grid_run, tmp_path / "reports").read_text()
    assert "failed" not in md and "diverged" not in md.split("## Grid search")[0]
    assert "every weight of the grid diverged" not in md
    assert "+inf (3/4 images exact, interval undefined) / " in md
    assert "+inf (all 4 images exact, interval undefined) / 1.000 ± 0.000" in md
    assert "+inf (pooled MSE 0 in 1/1 batches) / 1.000 (paper: " in md
    assert "γ = 0.1 (valid grid)" in md
    assert "## Exact restorations (PSNR +inf)" in md
    assert (
        "- GlowIP on denoising: 3/4 test images restored exactly (PSNR +inf), so the mean PSNR "
        "is +inf and its 95% interval is undefined; the other 1 image(s) average 35.00 dB"
    ) in md
    grid = md.split("## Grid search")[1]
    assert "| GlowIP (γ) | 30.50 | **+inf (2/2 exact)** |" in grid
    assert "nan" not in md.lower().replace("nanmean", "")
    assert (tmp_path / "reports" / "grid_search.png").stat().st_size > 1000


def test_a_selection_stored_as_failed_before_inf_was_valid_is_not_called_divergence(
    grid_run, tmp_path
):
    man = runner.read_manifest(grid_run)
    man["selection"]["glowip"]["inpainting"] = {
        "weight": None, "source": "valid grid", "failed": True
    }  # fmt: skip
    runner.write_manifest(grid_run, man)
    s = report.summary_frame(grid_run).set_index("task").loc["inpainting"]
    assert s.status == "not run" and "rerun" in s.reason and "+inf" in s.reason
    md = report.write_table1(grid_run, tmp_path / "r").read_text()
    assert "every weight of the grid diverged" not in md and "**failed**" not in md
    assert "GlowIP on inpainting: not run yet — the stored selection says" in md


def test_grid_heights_put_inf_on_a_line_above_the_finite_means():
    ys, top = report.grid_y([30.0, INF, math.nan, 32.0])
    assert top == 33.0 and ys[1] == top and ys[0] == 30.0 and math.isnan(ys[2])
    ys, top = report.grid_y([INF, INF])
    assert top == 0.0 and (ys == 0.0).all()
    ys, top = report.grid_y([30.0, 31.0])
    assert top is None and list(ys) == [30.0, 31.0]


def test_grid_png_with_only_infinite_means(grid_run, tmp_path):
    import matplotlib.image as mpimg

    data = report.load_run(grid_run)
    data.rows.loc[data.rows.psnr.notna(), "psnr"] = INF
    path = report.write_grid_png(data, tmp_path / "g.png")
    assert mpimg.imread(path).shape[0] > 50


def test_paper_convention_of_a_pooled_mse_of_zero_is_inf():
    assert report.paper_convention_psnr([0.0] * 4) == (INF, 1)
    assert report.paper_convention_psnr([0.0] * 32 + [1.0] * 8) == (INF, 2)
    assert report.exact_batches([0.0] * 32 + [1.0] * 8) == 1


def test_runner_selects_and_reports_exact_restorations(tmp_path, monkeypatch, tmp_cache):
    """Through bench.runner.run_table1: a method that restores every image exactly (as a flow
    does on flat grey images) is selected and reported as +inf, not as diverged."""
    from bench import data
    from bench import methods as M
    from bench import tasks as T

    M.all_methods()
    clean = {}
    measure = T.Denoising.measure

    def remember(self, x255, names, seed=0):
        clean["x"] = x255
        return measure(self, x255, names, seed)

    glowip = M.METHODS["glowip"]
    restore = glowip.restore

    def exact(flow, task, y, weight, *a, **k):
        res = restore(flow, task, y, weight, *a, **k)
        res.x = data.to_model(clean["x"], u=torch.full(clean["x"].shape, 0.5))
        return res

    monkeypatch.setattr(T.Denoising, "measure", remember)
    monkeypatch.setattr(glowip, "restore", exact)
    res = runner.run_table1(
        tiny_flow(), {"fingerprint": "exact"}, PRESET.with_(test_images=3), "builtin",
        methods="glowip", tasks="denoising", progress=False, threads=1,
        results_dir=tmp_path / "results", command="bench run --exact",
    )  # fmt: skip
    assert res.selection[("glowip", "denoising")] == 0.0  # every γ exact: the first
    assert res.failed == []
    rows = runner.read_cells(res.run_dir)
    assert np.isposinf(rows.psnr).all() and (rows.ssim == 1).all() and (rows.mse5 == 0).all()
    md = report.write_table1(res.run_dir, tmp_path / "reports").read_text()
    assert "+inf (all 3 images exact, interval undefined) / 1.000 ± 0.000" in md
    assert "failed" not in md


# ---- findings: paired differences ---------------------------------------------------------------
def test_paired_differences_with_exact_images():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = findings.paired([INF, INF, 30.0, 31.0], [INF, 29.0, 28.0, 30.0])
    assert (r["n_exact_a"], r["n_exact_b"], r["n_pos_inf"], r["n_neg_inf"]) == (2, 1, 1, 0)
    assert r["mean"] == INF and math.isnan(r["lo"]) and math.isnan(r["hi"])
    assert r["wins"] == 0.75 and math.isnan(r["p"])
    r = findings.paired([30.0, 31.0], [INF, INF])
    assert r["mean"] == -INF and r["n_neg_inf"] == 2 and r["wins"] == 0.0
    r = findings.paired([INF, 30.0], [29.0, INF])
    assert math.isnan(r["mean"]) and (r["n_pos_inf"], r["n_neg_inf"]) == (1, 1)
    # exact on both sides everywhere: a difference of 0 on every image, a real interval
    r = findings.paired([INF] * 3, [INF] * 3)
    assert (r["mean"], r["lo"], r["hi"], r["n_pos_inf"]) == (0.0, 0.0, 0.0, 0)


def _d(lo, hi, **kw):
    return {"mean": (lo + hi) / 2, "lo": lo, "hi": hi, **kw}


def test_verdicts_with_infinite_psnr_differences():
    up = {"mean": INF, "lo": math.nan, "hi": math.nan, "n_pos_inf": 2, "n_neg_inf": 0}
    down = {**up, "mean": -INF, "n_pos_inf": 0, "n_neg_inf": 2}
    v = findings.verdict_better(up, _d(0.01, 0.02))
    assert v == (
        "supported on SSIM; PSNR difference +inf on 2 image(s) (a exact, b not): no interval"
    )
    assert findings.verdict_better(down, _d(-0.02, -0.01)).startswith("contradicted on SSIM; ")
    assert findings.verdict_better(up, _d(-0.02, 0.01)).startswith("undetermined (")
    assert findings.verdict_better(up, _d(-0.02, -0.01)).startswith("undetermined (")
    assert findings.verdict_tie(up, _d(-0.005, 0.005)).startswith("undetermined (")
    assert findings.verdict_tie(up, _d(0.02, 0.03)).startswith("contradicted (SSIM")


@pytest.fixture
def pair_run(tmp_path):
    """Ours (finite) against GlowIP (3/4 exact) on denoising, both exact on every inpainting
    image; the paper's weights, so no selection."""
    results = tmp_path / "results"
    run_dir = results / "runs" / "celeba-smoke-pairs"
    psnr = {
        ("ours", "denoising"): [33.0, 34.0, 35.0, 36.0],
        ("glowip", "denoising"): [INF, INF, INF, 35.0],
        ("ours", "inpainting"): [INF] * 4,
        ("glowip", "inpainting"): [INF] * 4,
    }
    ssim = {("ours", "denoising"): [0.9, 0.9, 0.9, 0.85], ("glowip", "denoising"): [1, 1, 1, 0.9]}
    selection = {}
    for (m, t), p in psnr.items():
        _store(run_dir, "test", m, t, 0.1, p, ssim=ssim.get((m, t)))
        selection.setdefault(m, {})[t] = {"weight": 0.1, "source": "paper", "failed": False}
    labels = {m: {"0.1": f"{m}[gamma=0.1]"} for m in ("ours", "glowip")}
    man = _manifest(
        run_dir.name, ["glowip", "ours"], ["denoising", "inpainting"], selection,
        weights="paper", labels=labels, grids={"ours": [0.1], "glowip": [0.1]},
    )  # fmt: skip
    runner.write_manifest(run_dir, man)
    return run_dir, results


def test_claims_say_how_many_images_were_exact_and_never_nan(pair_run, tmp_path):
    run_dir, results = pair_run
    claims = {c["claim"].key: c for c in findings.claim_results(report.load_run(run_dir))}
    comp = claims["ours>glowip"]["comparisons"][0]
    assert comp["psnr"]["mean"] == -INF and comp["psnr"]["n_exact_b"] == 3
    assert comp["intervals"].startswith("contradicted on SSIM; PSNR difference -inf on 3 image(s)")
    assert comp["verdict"].startswith("not meaningful at this size (4 images < 30")
    inp = claims["ours>glowip"]["comparisons"][2]
    assert inp["psnr"]["mean"] == 0.0 and inp["psnr"]["n_exact_a"] == 4  # both exact: 0
    md = findings.write_claims(run_dir, results, tmp_path).read_text()
    assert "nan" not in md.lower()
    assert "-inf [interval undefined] (exact: a 0/4, b 3/4)" in md
    assert "denoising -inf (exact: a 0/4, b 3/4) / " in md
    assert "+0.00 [+0.00, +0.00] (exact: a 4/4, b 4/4)" in md
    assert "Exact restorations (PSNR +inf, a valid value and the best one" in md
    conv = md.split("### The PSNR formula")[1]
    assert "| denoising | Ours − GlowIP | -inf |" in conv
    assert "| inpainting | Ours − GlowIP | undefined (both means +inf) | undefined (both" in conv


def test_seed_spreads_with_infinite_means():
    assert findings.spread([INF, INF], 2) == "0 (all +inf)"
    assert findings.spread([INF, 30.0], 2) == "+inf (some means +inf)"
    assert findings.spread([30.0, 31.5], 2) == "1.50"
    assert findings.mean_defined([math.nan, 0.5], 2, "why").startswith("undefined (why)")


# ---- findings: realism and speed ratio ----------------------------------------------------------
def test_hf_ratio_against_flat_real_images_is_undefined_not_a_warning():
    flat = np.full((3, 3, 8, 8), 120, np.uint8)
    noisy = np.random.default_rng(0).integers(0, 256, (3, 3, 8, 8)).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(findings.hf_ratio(flat, 0.0))
        assert findings.hf_ratio(noisy, 0.0) == INF
        ref = float(findings.hf_energy(noisy).mean())
        assert findings.hf_ratio(noisy, ref) == pytest.approx(1.0)


def _realism_csv(path, fd_lo=1.0):
    rows = [
        ["real B", "", 10, 20, 1.0, 0.9, 1.1, "", "", ""],
        ["samples", 0.5, 10, 20, 5.0, 4.0, 6.0, "inf", "", ""],
        ["samples", 1.0, 10, 20, 2.0, fd_lo, 3.0, "", "", ""],
        ["best in range − best outside", "", 10, 20, -3.0, "", "", "", "", ""],
    ]
    cols = ["set", "std", "n", "repeats", "fd", "fd_lo", "fd_hi", "hf_ratio", "hf_lo", "hf_hi"]
    pd.DataFrame(rows, columns=cols).to_csv(path, index=False)


def test_realism_section_with_undefined_values_says_so(tmp_path):
    _realism_csv(tmp_path / findings.REALISM_FILE)
    lines, verdict, _ = findings.realism_section(tmp_path)
    text = "\n".join(lines)
    assert verdict == "undetermined (interval undefined)"
    assert "| σ = 0.5 | 5.00 [4.00, 6.00] | +inf [interval undefined] |" in text
    assert "| real set B (floor) | 1.00 [0.90, 1.10] | undefined |" in text
    assert "nan" not in text.lower()


def test_speed_ratio_of_zero_times_is_undefined():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = findings.speed_ratio([1.0, 2.0], [0.0, 0.0])
    assert math.isnan(r["ratio"]) and math.isnan(r["lo"])
    assert math.isnan(findings.speed_ratio([], [1.0])["ratio"])
    assert findings.speed_ratio([2.0, 2.0], [1.0, 1.0])["ratio"] == 2.0


def test_mean_ci_of_non_finite_values():
    from bench.metrics import mean_ci

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mean_ci([INF, 30.0])[0] == INF and math.isnan(mean_ci([INF, 30.0])[1])
        assert all(math.isnan(v) for v in mean_ci([INF, -INF]))
        assert all(math.isnan(v) for v in mean_ci([math.nan, 1.0]))
