"""Training: lowers validation bits/dim, checkpoints record what they hold, resume, refusal of
mismatched checkpoints, and the info/train/sample commands."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from bench.cli import main
from bench.config import get_preset
from bench.errors import CheckpointError
from bench.train import evaluate_bpd, load_checkpoint, model_fingerprint, train

TINY = get_preset("smoke").with_(name="tiny", hidden=8, epochs=2, train_images=128, valid_images=32)


def _quiet(*_args, **_kw):
    pass


def test_training_lowers_validation_bits_per_dim(tmp_path):
    from bench.data import load_images
    from bench.flows import build_flow

    valid = load_images("builtin", "valid", limit=32, progress=False)
    torch.manual_seed(0)
    untrained = build_flow("coupling", hidden=8)
    from bench.data import to_model

    untrained.initialize(to_model(load_images("builtin", "train", limit=32, progress=False).images))
    before = evaluate_bpd(untrained, valid.images, "cpu")
    result = train(
        TINY.with_(epochs=3, train_images=256),
        "builtin",
        checkpoint=tmp_path / "c.pt",
        progress=False,
        log=_quiet,
    )
    after = result.history[-1]["val_bpd"]
    assert after < before - 0.1, (before, after)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]


def test_checkpoint_records_architecture_dataset_and_fingerprint(tmp_path):
    path = tmp_path / "c.pt"
    train(TINY.with_(epochs=1), "builtin", checkpoint=path, progress=False, log=_quiet)
    flow, meta = load_checkpoint(path)
    assert meta["arch"] == "coupling" and meta["hidden"] == 8
    assert meta["dataset"] == "builtin" and "NOT CelebA" in meta["dataset_label"]
    assert meta["epochs"] == 1 and meta["complete"]
    assert meta["fingerprint"] == model_fingerprint(flow)
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["train_fingerprint"] and ckpt["preset"]["hidden"] == 8
    assert not list(tmp_path.glob("*.tmp*")), "atomic write leaves no temporary file"


def test_resume_continues_where_it_stopped(tmp_path):
    path = tmp_path / "c.pt"
    one = train(TINY.with_(epochs=1), "builtin", checkpoint=path, progress=False, log=_quiet)
    two = train(TINY.with_(epochs=2), "builtin", checkpoint=path, progress=False, log=_quiet)
    assert [h["epoch"] for h in two.history] == [1, 2]
    assert two.history[0] == one.history[0]
    # the resumed run ends where an uninterrupted two-epoch run ends
    straight = train(
        TINY.with_(epochs=2), "builtin", checkpoint=tmp_path / "s.pt", progress=False, log=_quiet
    )
    pairs = zip(two.flow.state_dict().values(), straight.flow.state_dict().values(), strict=True)
    for a, b in pairs:
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_resume_after_ctrl_c_mid_epoch(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    calls = {"n": 0}
    real = torch.optim.Adam.step

    def flaky_step(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(torch.optim.Adam, "step", flaky_step)
    with pytest.raises(KeyboardInterrupt):
        train(TINY.with_(epochs=1), "builtin", checkpoint=path, progress=False, log=_quiet)
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["epoch"] == 0 and ckpt["step"] == 2
    monkeypatch.setattr(torch.optim.Adam, "step", real)
    result = train(TINY.with_(epochs=1), "builtin", checkpoint=path, progress=False, log=_quiet)
    assert result.meta["epochs"] == 1 and result.meta["complete"]


def test_refuses_checkpoint_of_another_architecture(tmp_path):
    path = tmp_path / "c.pt"
    train(TINY.with_(epochs=1), "builtin", checkpoint=path, progress=False, log=_quiet)
    with pytest.raises(CheckpointError, match="holds a coupling flow"):
        load_checkpoint(path, arch="glow")
    with pytest.raises(CheckpointError, match="--force"):
        train(
            TINY.with_(epochs=2),
            "builtin",
            arch="glow",
            checkpoint=path,
            progress=False,
            log=_quiet,
        )


def test_missing_and_corrupt_checkpoints_are_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(bad)


# ---- command line ---------------------------------------------------------------------------

COMMANDS = ["info", "train", "sample", "run", "report", "ablation", "perf", "findings", "compare"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help(cmd):
    registered = set(main.commands)
    if cmd not in registered:
        pytest.fail(f"command {cmd} is not registered: {sorted(registered)}")
    res = CliRunner().invoke(main, [cmd, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output


def test_info_prints_exact_parameter_counts():
    res = CliRunner().invoke(main, ["info", "--arch", "coupling", "--hidden", "512"])
    assert res.exit_code == 0
    assert "parameters: 32,736,864" in res.output and "flow steps: 14" in res.output
    assert "96x4x4 + 192x2x2 + 768x1x1" in res.output
    res = CliRunner().invoke(main, ["info", "--arch", "glow", "--hidden", "512"])
    assert "parameters: 33,780,096" in res.output


def test_train_and_sample_commands_write_checkpoint_and_figure(tmp_path, tmp_cache):
    runner = CliRunner()
    res = runner.invoke(
        main,
        [
            "train",
            "--preset",
            "smoke",
            "--dataset",
            "builtin",
            "--results",
            str(tmp_path / "results"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "checkpoint:" in res.output and "bits/dim" in res.output
    out = tmp_path / "fig1.png"
    res = runner.invoke(
        main,
        [
            "sample",
            "--preset",
            "smoke",
            "--dataset",
            "builtin",
            "--results",
            str(tmp_path / "results"),
            "--out",
            str(out),
            "--stds",
            "0,0.5,1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args,msg",
    [
        (["sample", "--checkpoint", "/nonexistent.pt"], "not found"),
        (["train", "--dataset", "celeba", "--data-root", "/nonexistent/celeba"], "not found"),
        (["sample", "--stds", "a,b"], "--stds"),
    ],
)
def test_bad_input_gives_one_line_error(args, msg, tmp_path):
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error:") and msg in lines[0], res.output
    assert "Traceback" not in res.output


def test_ensure_flow_refuses_a_default_checkpoint_of_another_dataset(tmp_path):
    from bench.train import default_checkpoint_path, ensure_flow

    path = default_checkpoint_path("celeba", "tiny", "coupling", tmp_path)
    train(TINY.with_(epochs=1), "builtin", checkpoint=path, progress=False, log=_quiet)
    with pytest.raises(CheckpointError, match="trained on builtin"):
        ensure_flow(TINY.with_(epochs=1), "celeba", results_dir=tmp_path, progress=False)
    flow, meta = ensure_flow(TINY.with_(epochs=1), "builtin", checkpoint=path, progress=False)
    assert meta["dataset"] == "builtin"


def test_batches_per_epoch_and_history_csv(tmp_path):
    import pandas as pd

    from bench.train import history_path

    path = tmp_path / "released.pt"
    result = train(
        TINY.with_(epochs=2), "builtin", checkpoint=path, progress=False, log=_quiet,
        batches_per_epoch=1,
    )  # fmt: skip
    ckpt = torch.load(path, weights_only=False)
    assert ckpt["batches_per_epoch"] == 1
    # one batch of 32 per epoch, as in the released code's loop
    assert [round(h["seconds"] * h["images_per_s"]) for h in result.history] == [32, 32]
    hist = pd.read_csv(history_path(path))
    assert list(hist.epoch) == [1, 2] and hist.val_bpd.notna().all()
    with pytest.raises(CheckpointError, match="--batches-per-epoch 1, not all"):
        train(TINY.with_(epochs=3), "builtin", checkpoint=path, progress=False, log=_quiet)
