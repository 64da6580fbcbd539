"""What the commands say when something is off: one line each, naming the right option, path
or value (found by trying the harness as a newcomer)."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import invoke, one_line_error, tiny_flow

from bench.cli.errors import handle_errors
from bench.errors import BenchError, BenchWarning

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    flow = tiny_flow()
    path = tmp_path_factory.mktemp("ck") / "flow.pt"
    torch.save({"arch_config": flow.arch_config, "model": flow.state_dict()}, path)
    return path


@pytest.mark.parametrize("stds", ["nan", "inf", "0,-1", "1,inf"])
def test_sample_refuses_non_finite_or_negative_stds(ckpt, tmp_path, stds):
    res = invoke(["sample", "--checkpoint", str(ckpt), "--stds", stds, "--out", str(tmp_path)])
    one_line_error(res, "--stds needs finite non-negative numbers")


def test_sample_refuses_a_flow_that_generates_nan(tmp_path):
    flow = tiny_flow()
    with torch.no_grad():
        for name, p in flow.named_parameters():
            if name.endswith("conv2.bias"):
                p.fill_(3e38)  # finite weights whose generation overflows
    path = tmp_path / "big.pt"
    torch.save({"arch_config": flow.arch_config, "model": flow.state_dict()}, path)
    res = invoke(  # (--threads 1: an auto count is announced on stderr once the work starts)
        ["sample", "--checkpoint", str(path), "--out", str(tmp_path / "f.png"), "--threads", "1"]
    )
    one_line_error(res, "generates NaN or inf")
    assert not (tmp_path / "f.png").exists()


def test_compare_names_the_option_that_matched_nothing(tmp_path):
    from bench import runner

    runner.run_table1(
        tiny_flow(), {"fingerprint": "msg"}, runner.config.get_preset("smoke").with_(
            test_images=2, iters=2), dataset="builtin", methods="glowip", tasks="denoising",
        weights="paper", results_dir=tmp_path, progress=False, threads=1,
    )  # fmt: skip
    res = invoke(["compare", "--results", str(tmp_path), "--baseline", "nosuch"])
    one_line_error(res, "--baseline 'nosuch' matches no run")


def test_timing_fix_names_the_results_folder_in_use(tmp_path):
    from bench.findings import timing_results

    (tmp_path / "timing.csv").write_text("not,a\ntiming,file\n")
    with pytest.raises(BenchError) as err:
        timing_results(tmp_path)
    assert f"delete {tmp_path / 'timing.csv'}" in str(err.value)


def test_our_warnings_are_one_line_and_said_once(capsys):
    @handle_errors
    def command():
        for _ in range(4):
            warnings.warn("12 image files are in no partition", BenchWarning, stacklevel=1)

    command()
    err = capsys.readouterr().err
    assert err == "warning: 12 image files are in no partition\n"
