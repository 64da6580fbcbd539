"""`bench compare`: two runs of the same test images paired image by image."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import tiny_flow

from bench import config, runner
from bench.compare import compare_runs, comparison_file
from bench.errors import BenchError

pytestmark = pytest.mark.usefixtures("one_thread")
PRESET = config.get_preset("smoke").with_(test_images=3, iters=3)


def run(flow, results, fingerprint, seed=0):
    return runner.run_table1(
        flow, {"fingerprint": fingerprint}, preset=PRESET, dataset="builtin", device="cpu",
        progress=False, threads=1, methods="glowip,ours", tasks="denoising", weights="paper",
        results_dir=results, seed=seed,
    )  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    base = run(tiny_flow(0), results, "flow-a")
    new = run(tiny_flow(1), results, "flow-b")
    other_seed = run(tiny_flow(1), results, "flow-b", seed=3)
    return results, base, new, other_seed


def test_differences_are_paired_per_image(runs):
    _, base, new, _ = runs
    rows = {r["method"]: r for r in compare_runs(new.run_dir, base.run_dir)}
    assert set(rows) == {"glowip", "ours"}
    a, b = runner.read_cells(new.run_dir), runner.read_cells(base.run_dir)
    for m, r in rows.items():
        x = a[(a.method == m) & (a.stage == "test")].set_index("image").psnr
        y = b[(b.method == m) & (b.stage == "test")].set_index("image").psnr
        d = (x - y.loc[x.index]).to_numpy()
        assert r["psnr"]["n"] == 3
        assert r["psnr"]["mean"] == pytest.approx(d.mean())
        assert r["psnr"]["lo"] < d.mean() < r["psnr"]["hi"]
        assert r["psnr"]["wins"] == pytest.approx(float(np.mean(d > 0)))


def test_runs_of_other_measurements_are_refused(runs):
    _, base, _, other_seed = runs
    with pytest.raises(BenchError, match="differ in their seed"):
        compare_runs(other_seed.run_dir, base.run_dir)


def test_cli_writes_a_report_named_by_both_runs(runs, tmp_path):
    from bench.cli import main

    results, base, new, _ = runs
    args = ["compare", "--results", str(results), "--out", str(tmp_path)]
    res = CliRunner().invoke(main, args + ["--run", new.run_id, "--baseline", base.run_id])
    assert res.exit_code == 0, res.output
    text = (tmp_path / comparison_file(new.run_id, base.run_id)).read_text()
    assert "flow-a" in text and "flow-b" in text and "| GlowIP | denoising |" in text
    same = CliRunner().invoke(main, args + ["--run", base.run_id, "--baseline", base.run_id])
    assert same.exit_code == 2 and "pass two runs" in same.stderr
