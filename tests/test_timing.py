"""Table 2 timing ablation: the glow modes agree, the report is complete, the CLI behaves."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bench import timing as tm
from bench.cli import main
from bench.flows import InvConv1x1, build_flow

SMALL = dict(hidden=8, steps=(1, 1, 2))


pytestmark = pytest.mark.usefixtures("one_thread")


def _perturbed_glow(seed: int = 0):
    """A small glow flow pushed away from the identity: ActNorm initialised, every parameter
    (zero-initialised last convs included) perturbed."""
    torch.manual_seed(seed)
    flow = build_flow("glow", **SMALL)
    flow.initialize(torch.rand(8, 3, 32, 32) * 2 - 1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return flow.eval()


def test_glow_modes_generate_the_same_images():
    flow = _perturbed_glow()
    convs = tm.inv_convs(flow)
    assert convs
    w0 = [m.matrix().detach().clone() for m in convs]
    z = 0.7 * torch.randn(3, flow.dim)
    out = {}
    with torch.no_grad():
        for mode in ("cached", "recompute", "lu", "cached"):
            tm.set_glow_mode(flow, mode)
            assert all(m.mode == mode for m in convs)
            out.setdefault(mode, []).append(flow.inverse(z))
    x_ref, ld_ref = out["cached"][0]
    assert x_ref.abs().max() > 0.1 and ld_ref.abs().max() > 1.0  # not a trivial map
    for mode, results in out.items():
        for x, ld in results:
            scale = x_ref.abs().max()
            torch.testing.assert_close(x, x_ref, atol=1e-4 * scale, rtol=1e-4, msg=mode)
            torch.testing.assert_close(ld, ld_ref, atol=1e-4 * ld_ref.abs().max(), rtol=1e-4)
    # switching to lu and back keeps W
    for m, w in zip(convs, w0, strict=True):
        torch.testing.assert_close(m.matrix().detach(), w, atol=1e-5, rtol=1e-5)
    # and the forward direction inverts the generated images in every mode
    for mode in tm.GLOW_MODES:
        tm.set_glow_mode(flow, mode)
        with torch.no_grad():
            z_back, _ = flow(x_ref)
        torch.testing.assert_close(z_back, z, atol=1e-3, rtol=1e-3)


def test_set_glow_mode_keeps_the_flow_frozen():
    flow = _perturbed_glow()
    flow.requires_grad_(False)
    for mode in tm.GLOW_MODES:
        tm.set_glow_mode(flow, mode)
        assert not any(p.requires_grad for p in flow.parameters()), mode


def test_solver_iteration_only_moves_z():
    flow = _perturbed_glow()
    tm.set_glow_mode(flow, "cached")
    before = {k: v.clone() for k, v in flow.state_dict().items()}
    times = tm.time_solver_steps(flow, batch=2, iters=2, warmup=1, device="cpu")
    assert times.shape == (2,) and np.all(times > 0)
    assert all(p.grad is None for p in flow.parameters())
    for k, v in flow.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_time_generation_returns_ms_per_iteration():
    flow = build_flow("coupling", hidden=4)
    flow.initialize(torch.rand(4, 3, 32, 32) * 2 - 1)
    times = tm.time_generation(flow, batch=2, iters=4, warmup=1, device="cpu")
    assert isinstance(times, np.ndarray) and times.shape == (4,) and np.all(times > 0)


@pytest.fixture(scope="module")
def smoke_df():
    return tm.run_timing_ablation(width=4, batch=2, iters=2, warmup=0, device="cpu", progress=False)


def test_smoke_ablation_writes_table2(tmp_path, smoke_df):
    df = smoke_df
    gen = df[df["section"] == "generation"]
    assert list(zip(gen["arch"], gen["mode"], strict=True)) == list(tm.MEASUREMENTS)
    assert set(df["section"]) == {"generation", "solver", "inverses"}
    assert all(len(t) == 2 for t in df["times_ms"])  # every timed iteration kept, all rounds
    assert (df.loc[df["section"] != "inverses", "rounds"] == 2).all()
    assert (df.loc[df["arch"] == "coupling", "ratio"] == 1.0).all()
    assert (gen["max_abs_dx"].dropna() < 1e-3).all()
    meta = tm.timing_meta("cpu", 4, 2, 2, 0, "bench ablation --timing --width 4", preset="smoke")
    path = tm.write_table2(df, meta, tmp_path / "reports")
    text = path.read_text()
    assert path.name == "table2.md"
    for word in (
        "coupling",
        "glow",
        "recompute",
        "cached",
        "LU",
        "threads",
        "torch",
        "bench ablation --timing --width 4",
        "Solver iteration",
        "Reading",
    ):
        assert word in text, word
    for arch in ("coupling", "glow"):
        n = build_flow(arch, hidden=4).num_params()
        assert f"{n:,}" in text
    files = tm.write_timings(df, meta, tmp_path / "results")
    raw = (tmp_path / "results" / "timing.csv").read_text().splitlines()
    assert raw[0] == "section,arch,mode,iteration,ms"
    assert len(raw) == 1 + 2 * (len(tm.MEASUREMENTS) * 2 + 1)
    assert all(f.exists() for f in files)
    assert not list((tmp_path / "results").glob("*.tmp*"))
    back, meta_back = tm.load_timings(tmp_path / "results")
    assert meta_back == meta
    assert tm.format_table2(back, meta_back) == text


def test_reading_is_computed_from_the_numbers(smoke_df):
    df = smoke_df.copy()
    means = {
        ("coupling", ""): 2.0,
        ("glow", "recompute"): 6.0,
        ("glow", "cached"): 4.0,
        ("glow", "lu"): 4.2,
    }
    for (arch, mode), m in means.items():
        sel = (df["arch"] == arch) & (df["mode"] == mode)
        df.loc[sel, "mean_ms"] = m
        df.loc[sel, "std_ms"] = 0.01
    text = tm.reading(df)
    assert "3.00× slower than coupling" in text
    assert "ratio is 2.00×" in text and "2.10×" in text
    assert "removes 50% of the glow–coupling gap" in text


def test_parameter_counts_at_paper_width():
    # the exact counts the report prints at width 512 (PROTOCOL §2-3); cheap to build
    assert build_flow("coupling", hidden=512).num_params() == 32_736_864
    glow = build_flow("glow", hidden=512)
    assert glow.num_params() == 33_780_096
    tm.set_glow_mode(glow, "lu")
    assert glow.num_params() == 33_780_096


def test_checkpoint_replaces_its_architecture(tmp_path):
    pytest.importorskip("bench.train")
    flow = build_flow("coupling", hidden=4)
    flow.initialize(torch.rand(4, 3, 32, 32) * 2 - 1)
    ckpt = tmp_path / "c.pt"
    torch.save({"arch_config": flow.arch_config, "model": flow.state_dict()}, ckpt)
    df = tm.run_timing_ablation(None, 2, 1, 0, "cpu", checkpoint=str(ckpt), progress=False)
    assert (df["width"] == 4).all()
    assert set(df.loc[df["arch"] == "coupling", "weights"]) == {str(ckpt)}
    assert set(df.loc[df["arch"] == "glow", "weights"]) == {"untrained"}
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="width"):
        tm.run_timing_ablation(8, 2, 1, 0, "cpu", checkpoint=str(ckpt), progress=False)


def test_resolve_timing_options():
    p = tm.resolve_timing_options("paper", None, None, 50, None)
    assert (p.width, p.batch, p.iters) == (512, 128, 50)
    assert tm.resolve_timing_options("smoke", 16, None, None, 0).width == 16
    assert (
        tm.resolve_timing_options("cpu", None, None, None, None, from_checkpoint=True).width is None
    )


def test_cli_help():
    r = CliRunner().invoke(main, ["ablation", "--help"])
    assert r.exit_code == 0
    assert "--timing" in r.output and "--preset" in r.output


def test_cli_help_says_the_rounds_each_preset_runs():
    """`--rounds [default: 5]` while `--preset smoke` ran 3 rounds (one per timed iteration at
    most): the help names each preset's rounds, from bench.timing's presets."""
    r = CliRunner().invoke(main, ["ablation", "--help"])
    text = " ".join(r.output.split())
    rounds = text.split("--rounds")[1].split("--threads")[0]
    assert "[default: 5]" not in rounds
    for name, p in tm.TIMING_PRESETS.items():
        n = min(tm.DEFAULT_ROUNDS, p.iters)
        assert f"{name} {n}" in rounds, rounds
        assert f"{name}: width {p.width}, {p.iters} iterations, batch {p.batch}" in text


def test_cli_without_timing_is_a_one_line_error():
    r = CliRunner().invoke(main, ["ablation"])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "--timing" in lines[0]


def test_cli_smoke_run(tmp_path, monkeypatch):
    from bench import machine

    monkeypatch.setattr(machine, "busy_cpus", lambda interval=0.2: 0.0)  # a quiet machine
    r = CliRunner().invoke(
        main,
        [
            "ablation",
            "--timing",
            "--preset",
            "smoke",
            "--width",
            "4",
            "--iters",
            "1",
            "--warmup",
            "0",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--no-progress",
            "--out",
            str(tmp_path / "rep"),
            "--results",
            str(tmp_path / "res"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "| glow |" in r.output
    text = (tmp_path / "rep" / "table2.md").read_text()
    assert re.search(r"^- command: `bench .*`$", text, flags=re.M)
    assert "| glow | inverse cached once |" in text
    assert (tmp_path / "res" / "timing.csv").exists()


def test_invconv_is_used_by_glow_only():
    assert not tm.inv_convs(build_flow("coupling", hidden=4))
    assert all(isinstance(m, InvConv1x1) for m in tm.inv_convs(build_flow("glow", **SMALL)))


def test_a_timing_estimated_beyond_max_hours_is_refused_before_it_starts(tmp_path, monkeypatch):
    """The paper preset's 1500 iterations take hours on a CPU: an explicit choice is needed."""
    from conftest import one_line_error

    from bench import machine
    from bench import timing as tm

    monkeypatch.setattr(machine, "busy_cpus", lambda interval=0.2: 0.0)  # a quiet machine
    asked = []

    def estimate(width, batch, iters, warmup, device):
        asked.append((width, batch, iters))
        return 2.5 * 3600.0

    monkeypatch.setattr(tm, "estimate_ablation_seconds", estimate)
    monkeypatch.setattr(tm, "run_timing_ablation", lambda *a, **k: 1 / 0)  # never started
    args = ["ablation", "--timing", "--preset", "paper", "--threads", "1", "--no-progress",
            "--out", str(tmp_path / "rep"), "--results", str(tmp_path / "res")]  # fmt: skip
    r = CliRunner().invoke(main, args)
    one_line_error(r, "estimated 2.5 h", "--max-hours 1", "--iters 50", "--max-hours 3")
    assert asked == [(512, 128, tm.resolve_timing_options("paper", None, None, None, None).iters)]
    assert not (tmp_path / "rep" / "table2.md").exists()
