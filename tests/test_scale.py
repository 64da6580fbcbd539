"""The scale study (`bench scale`, `bench.scale`, reports/scale.md) on a smoke baseline: each
part is a Table 1 run made with the baseline's weights, recorded by role, and scale.md is
rebuilt identically by `bench report`."""

from __future__ import annotations

import json

import pytest
from conftest import invoke, one_line_error

from bench import runner
from bench import scale as S

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = "csgm,glowip,map,bm3d,ours,ours-released,l1-z0"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    results, out = root / "results", root / "reports"
    args = ["run", "--table", "1", "--preset", "smoke", "--dataset", "builtin", "--methods"]
    args += [METHODS, "--results", str(results), "--out", str(out), "--no-progress"]
    r = invoke([*args, "--threads", "1"])
    assert r.exit_code == 0, r.output
    base = runner.find_run(results)
    ckpt = results / "checkpoints" / "builtin-smoke-coupling.pt"
    for part, checkpoint in (("replication", None), ("budget", None), ("sweep", ckpt)):
        S.run_part(part, base, results, None, "cpu", 1, False, lambda m: None, checkpoint,
                   "bench scale (test)", subset=4, budget_iters=25)  # fmt: skip
    r = invoke(["scale", "--part", "report", "--results", str(results), "--out", str(out)])
    assert r.exit_code == 0, r.output
    return {"results": results, "out": out, "base": base}


def test_each_part_is_a_run_with_the_baselines_weights(study):
    record = json.loads((study["results"] / S.SCALE_FILE).read_text())
    base = study["base"]
    assert record["baseline"] == base.name
    chosen = runner.stored_selection(base)
    budget = runner.find_run(study["results"], record["parts"]["budget"])
    man = runner.read_manifest(budget)
    assert man["preset"]["iters"] == 25 and man["key"]["weights_from"]["run"] == base.name
    rows = runner.read_cells(budget)
    ours = rows[rows["method"] == "ours"]
    for t, w in ((t, w) for (m, t), w in chosen.items() if m == "ours"):
        assert (ours.loc[ours["task"] == t, "weight"] == w).all()
    repl = runner.find_run(study["results"], record["parts"]["replication"])
    assert set(runner.read_cells(base)["image"]).isdisjoint(runner.read_cells(repl)["image"])
    (flow,) = record["parts"]["sweep"].values()
    paper = runner.read_manifest(runner.find_run(study["results"], flow["paper"]))
    assert paper["weights"] == "paper" and paper["methods"] == ["ours"]


def test_scale_md_states_every_part_and_is_rebuilt_identically(study):
    out = study["out"]
    text = (out / "scale.md").read_text()
    for heading in ("## The runs", "## Convergence", "## The iteration budget",
                    "## The prior's strength", "## Replication", "## Per claim"):  # fmt: skip
        assert heading in text
    assert (out / "scale" / "convergence.png").stat().st_size > 0
    assert (out / "scale" / "prior_strength.png").stat().st_size > 0
    r = invoke(["report", "--results", str(study["results"]), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "scale.md").read_text() == text


def test_the_sweep_needs_a_flow_and_the_report_a_study(study, tmp_path):
    r = invoke(["scale", "--part", "sweep", "--results", str(study["results"]), "--out",
                str(study["out"]), "--no-progress", "--threads", "1"])  # fmt: skip
    one_line_error(r, "--checkpoint")
    empty = tmp_path / "results"
    (empty / "runs").mkdir(parents=True)
    from bench.errors import BenchError
    from bench.report.scale import write_scale_report

    with pytest.raises(BenchError, match="no scale study"):
        write_scale_report(empty, tmp_path / "out", False)


def test_a_part_states_its_estimate_and_refuses_one_too_long(study):
    base = ["scale", "--results", str(study["results"]), "--out", str(study["out"])]
    base += ["--no-progress", "--threads", "1"]
    ckpt = study["results"] / "checkpoints" / "builtin-smoke-coupling.pt"
    r = invoke([*base, "--part", "sweep", "--checkpoint", str(ckpt)])  # 64 images: new runs
    assert r.exit_code == 0, r.output
    assert "scale study, sweep (selected) on builtin, preset smoke: " in r.output
    assert "estimated time" in r.output and "report: " in r.output  # the study grew: updated
    r = invoke([*base, "--part", "budget", "--max-hours", "1e-6"])  # 1500 iterations: new
    one_line_error(r, "--max-hours")


def test_part_settings_follow_the_baseline():
    man = {"methods": ["csgm", "glowip", "map", "bm3d", "ours"],
           "test_images": {"count": 50, "offset": 20}}  # fmt: skip
    (repl,) = S.part_settings("replication", man)
    assert repl["test_offset"] == 70  # right after the baseline's own images
    selected, paper = S.part_settings("sweep", man, subset=8)
    assert {"l1-z0", "ours-released"} <= set(selected["methods"])  # even if the baseline lacks them
    assert paper["weights"] == "paper" and selected["test_images"] == 8


def test_a_part_of_another_baseline_is_refused_before_it_runs(study):
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="records the study of run"):
        S.check_baseline(study["results"], "celeba-cpu-000000000000")


def test_a_method_has_one_color_in_every_panel_and_the_legend_names_all(monkeypatch, tmp_path):
    # MAP solves denoising only: on that panel it once took the color the other panels gave
    # the solver, and the legend (on a panel without MAP) did not name it
    import pandas as pd

    import bench.report.png as png
    from bench.report.scale import _draw_convergence

    figures = []
    monkeypatch.setattr(png, "save_png", lambda fig, path: figures.append(fig))
    rows = [{"task": t, "method": m, "step": s, "mean": 1.0, "lo": 0.5, "hi": 1.5}
            for t, ms in (("denoising", ("csgm", "map", "ours")), ("inpainting", ("csgm", "ours")))
            for m in ms for s in (0, 10)]  # fmt: skip
    _draw_convergence(pd.DataFrame(rows), tmp_path / "c.png")
    [fig] = figures
    colors: dict = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            colors.setdefault(line.get_label(), set()).add(line.get_color())
    assert {m: len(c) for m, c in colors.items()} == {"csgm": 1, "map": 1, "ours": 1}
    assert len({c for cs in colors.values() for c in cs}) == 3
    legend = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert sorted(legend) == ["csgm", "map", "ours"]
