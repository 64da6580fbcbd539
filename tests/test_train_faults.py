"""Training and checkpoint faults: non-finite numbers, resuming with other settings, two
writers, unsafe or malformed checkpoint files (issue: faults found by trying the harness)."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import invoke, one_line_error

from bench.config import get_preset
from bench.errors import CheckpointError
from bench.flows.multiscale import MultiScaleFlow
from bench.train import TrainingDiverged, load_checkpoint, train

TINY = get_preset("smoke").with_(name="tiny", hidden=8, epochs=1, train_images=128, valid_images=32)


def _quiet(*_args, **_kw):
    pass


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch tiny checkpoint (bytes), trained once for the module."""
    path = tmp_path_factory.mktemp("ckpt") / "c.pt"
    train(TINY, "builtin", checkpoint=path, progress=False, log=_quiet)
    return path.read_bytes()


@pytest.fixture
def ckpt(trained, tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(trained)
    return path


# ---- 2a. non-finite numbers in training ------------------------------------------------------
def test_a_nan_checkpoint_is_refused_and_never_trained_on(ckpt):
    """The issue's example: one weight set to NaN, then `bench train ... --epochs 2` printed
    'valid nan bits/dim', exited 0 and saved the NaN model as complete."""
    state = torch.load(ckpt, weights_only=False)
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name].view(-1)[0] = float("nan")
    torch.save(state, ckpt)
    before = ckpt.read_bytes()
    res = invoke(
        [
            "train", "--preset", "smoke", "--dataset", "builtin", "--checkpoint", str(ckpt),
            "--epochs", "2", "--no-progress",
        ]
    )  # fmt: skip
    one_line_error(res, "NaN or inf", name, "--force")
    assert ckpt.read_bytes() == before
    with pytest.raises(CheckpointError, match="NaN or inf"):
        load_checkpoint(ckpt)


def _nan_on_training_call(monkeypatch, target: int):
    """log_prob returns NaN on the `target`-th call made in training mode."""
    real = MultiScaleFlow.log_prob
    calls = {"n": 0}

    def log_prob(self, x):
        out = real(self, x)
        if self.training:
            calls["n"] += 1
            if calls["n"] == target:
                return out * float("nan")
        return out

    monkeypatch.setattr(MultiScaleFlow, "log_prob", log_prob)


def test_divergence_mid_epoch_stops_and_keeps_the_last_good_checkpoint(ckpt, monkeypatch):
    before = ckpt.read_bytes()
    _nan_on_training_call(monkeypatch, 2)  # epoch 2, batch 2
    with pytest.raises(TrainingDiverged, match="epoch 2, batch 2: the loss is nan") as err:
        train(TINY.with_(epochs=2), "builtin", checkpoint=ckpt, progress=False, log=_quiet)
    assert "keeps the last good state" in str(err.value) and "\n" not in str(err.value)
    assert ckpt.read_bytes() == before
    assert load_checkpoint(ckpt)[1]["epochs"] == 1


def test_a_nan_gradient_stops_training_before_the_step(ckpt, monkeypatch):
    before = ckpt.read_bytes()
    real = torch.optim.Adam.zero_grad
    calls = {"n": 0}

    def zero_grad(self, *a, **kw):
        real(self, *a, **kw)
        calls["n"] += 1
        if calls["n"] == 3:  # the third batch: a NaN gradient on one weight
            p = self.param_groups[0]["params"][0]
            p.register_hook(lambda g: g * float("nan"))

    monkeypatch.setattr(torch.optim.Adam, "zero_grad", zero_grad)
    with pytest.raises(TrainingDiverged, match="epoch 2, batch 3: the gradient norm is nan"):
        train(TINY.with_(epochs=2), "builtin", checkpoint=ckpt, progress=False, log=_quiet)
    assert ckpt.read_bytes() == before


def test_divergence_in_the_first_epoch_saves_nothing_and_the_cli_says_so(tmp_path, monkeypatch):
    path = tmp_path / "new.pt"
    _nan_on_training_call(monkeypatch, 1)
    res = invoke(
        [
            "train", "--preset", "smoke", "--dataset", "builtin", "--checkpoint", str(path),
            "--no-progress", "--threads", "1",  # (auto announces its count as training starts)
        ]
    )  # fmt: skip
    one_line_error(res, "epoch 1, batch 1", "nothing was saved")
    assert not path.exists()


def test_a_non_finite_model_is_never_saved(ckpt, monkeypatch):
    """Even where no check ran before the save (Ctrl-C after a step that overflowed)."""
    before = ckpt.read_bytes()
    real = torch.optim.Adam.step
    calls = {"n": 0}

    def step(self, *a, **kw):
        out = real(self, *a, **kw)
        calls["n"] += 1
        if calls["n"] == 2:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("inf"))
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    with pytest.raises(TrainingDiverged, match="nothing was saved"):
        train(TINY.with_(epochs=2), "builtin", checkpoint=ckpt, progress=False, log=_quiet)
    assert ckpt.read_bytes() == before


# ---- 3. resuming with different settings -----------------------------------------------------
@pytest.mark.parametrize(
    "change, setting, have, want",
    [
        ({"seed": 7}, "seed", "0", "7"),
        ({"batches_per_epoch": 2}, "--batches-per-epoch", "all", "2"),
        ({"preset": TINY.with_(epochs=2, hidden=12)}, "width", "8", "12"),
        ({"preset": TINY.with_(epochs=2, train_images=96)}, "training images", "128", "96"),
        ({"preset": TINY.with_(epochs=2, valid_images=16)}, "validation images", "32", "16"),
    ],
)
def test_resuming_with_another_setting_is_refused(ckpt, change, setting, have, want):
    before = ckpt.read_bytes()
    kw = {"preset": TINY.with_(epochs=2), **change}
    preset = kw.pop("preset")
    with pytest.raises(CheckpointError) as err:
        train(preset, "builtin", checkpoint=ckpt, progress=False, log=_quiet, **kw)
    msg = str(err.value)
    assert f"trained with {setting}" in msg and f" {have}, not {want}" in msg, msg
    assert "--force" in msg and "\n" not in msg
    assert ckpt.read_bytes() == before


def test_resuming_with_the_same_settings_and_more_epochs_works(ckpt):
    result = train(TINY.with_(epochs=2), "builtin", checkpoint=ckpt, progress=False, log=_quiet)
    assert result.meta["epochs"] == 2
    assert torch.load(ckpt, weights_only=True)["seed"] == 0


def test_the_cli_seed_example(ckpt):
    """`bench train --checkpoint a.pt --epochs 2 --seed 7` resumed a seed-0 checkpoint and
    recorded seed 7 in it."""
    before = ckpt.read_bytes()
    res = invoke(
        [
            "train", "--preset", "smoke", "--dataset", "builtin", "--checkpoint", str(ckpt),
            "--epochs", "2", "--seed", "7", "--no-progress",
        ]
    )  # fmt: skip
    one_line_error(res, "seed 0, not 7", "--seed 0")
    assert ckpt.read_bytes() == before


def test_another_dataset_is_refused(ckpt, tmp_path):
    from bench.train import check_resume

    stored = torch.load(ckpt, weights_only=True)
    with pytest.raises(CheckpointError, match="dataset \\(--dataset\\) builtin, not celeba"):
        check_resume(ckpt, stored, {"dataset (--dataset)": "celeba"})
    with pytest.raises(CheckpointError, match="training files"):
        check_resume(ckpt, stored, {"training files (--data-root)": "other"})
    with pytest.raises(CheckpointError, match="learning rate 0.0001, not 0.001"):
        check_resume(ckpt, stored, {"learning rate": 1e-3})


# ---- 4. two writers ------------------------------------------------------------------------
def test_a_second_live_trainer_on_the_same_checkpoint_is_refused(ckpt, tmp_path):
    from conftest import lock_holder

    before = ckpt.read_bytes()
    lock = ckpt.with_name(ckpt.name + ".lock")
    link = tmp_path / "link.pt"  # a symlink to the same checkpoint is the same checkpoint
    link.symlink_to(ckpt)
    with lock_holder(lock) as pid:
        for path in (ckpt, link):
            res = invoke(
                [
                    "train", "--preset", "smoke", "--dataset", "builtin", "--checkpoint",
                    str(path), "--epochs", "2", "--no-progress",
                ]
            )  # fmt: skip
            one_line_error(res, f"pid {pid}", "bench train")
        assert ckpt.read_bytes() == before
    # the lock of a process that is gone is taken over, and released at the end
    result = train(TINY.with_(epochs=2), "builtin", checkpoint=link, progress=False, log=_quiet)
    assert result.meta["epochs"] == 2 and not lock.exists()
    assert link.is_symlink() and torch.load(ckpt, weights_only=True)["epoch"] == 2


# ---- 8. loading a checkpoint never runs code ----------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_complex_nan_is_non_finite_too(ckpt):
    state = torch.load(ckpt, weights_only=True)
    state["model"]["extra"] = torch.tensor([complex(float("nan"), 0.0)])
    torch.save(state, ckpt)
    with pytest.raises(CheckpointError, match="NaN or inf in extra"):
        load_checkpoint(ckpt)


def test_a_folder_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)


def test_the_batches_per_epoch_hint_is_a_valid_command(ckpt):
    with pytest.raises(CheckpointError, match="pass no --batches-per-epoch to resume"):
        train(TINY.with_(epochs=2), "builtin", checkpoint=ckpt, progress=False, log=_quiet,
              batches_per_epoch=1)  # fmt: skip


def test_bench_run_finishes_an_unfinished_default_checkpoint_with_its_own_seed(tmp_path):
    from bench.train import default_checkpoint_path, ensure_flow

    path = default_checkpoint_path("builtin", "tiny", "coupling", tmp_path)
    train(TINY, "builtin", checkpoint=path, seed=7, progress=False, log=_quiet)
    flow, meta = ensure_flow(TINY.with_(epochs=2), "builtin", results_dir=tmp_path,
                             progress=False, log=_quiet)  # fmt: skip
    assert meta["epochs"] == 2
    assert torch.load(path, weights_only=True)["seed"] == 7


def test_a_crafted_checkpoint_runs_no_code(ckpt, tmp_path):
    marker = tmp_path / "pwned"
    state = torch.load(ckpt, weights_only=True)
    state["history"] = [_Payload(marker)]
    torch.save(state, ckpt)
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(ckpt)
    res = invoke(["sample", "--checkpoint", str(ckpt), "--out", str(tmp_path / "f.png")])
    one_line_error(res, "refused")
    assert not marker.exists()


def test_checkpoints_written_before_still_load(ckpt):
    """Older checkpoints stored torch.__version__ (a TorchVersion) and no batch size, lr or
    betas; they load and resume."""
    state = torch.load(ckpt, weights_only=True)
    state["torch"] = torch.__version__
    assert type(state["torch"]).__name__ == "TorchVersion"
    for k in ("batch_size", "lr", "betas"):
        state.pop(k)
    torch.save(state, ckpt)
    flow, meta = load_checkpoint(ckpt)
    assert meta["epochs"] == 1
    result = train(TINY.with_(epochs=2), "builtin", checkpoint=ckpt, progress=False, log=_quiet)
    assert result.meta["epochs"] == 2


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda s: s["arch_config"].pop("steps"), "arch_config lacks steps"),
        (
            lambda s: [s["arch_config"].pop(k) for k in ("steps", "splits", "hidden")],
            "arch_config lacks hidden, steps, splits",
        ),
        (lambda s: s["arch_config"].update(hidden="wide"), "field hidden is 'wide'"),
        (lambda s: s["arch_config"].update(arch="unet"), "field arch is 'unet'"),
        (lambda s: s["arch_config"].update(hidden=-3), "field hidden is -3"),
        (lambda s: s["arch_config"].update(splits=[True]), "field splits is"),
        (lambda s: s.update(history=["x"]), "history entry 0"),
        (lambda s: s["history"][-1].update(val_bpd="abc"), "history entry 0"),
        (lambda s: s.update(arch_config=[1, 2]), "not a mapping"),
        (lambda s: s.update(model={"x": 1}), "model is not a mapping of tensors"),
        (lambda s: s["model"].pop(next(iter(s["model"]))), "weights do not fit"),
        (lambda s: s["arch_config"].update(hidden=12), "weights do not fit"),
        (lambda s: s.update(epoch="three"), "epoch is str"),
    ],
)
def test_a_malformed_checkpoint_is_a_one_line_error(ckpt, edit, match):
    state = torch.load(ckpt, weights_only=True)
    edit(state)
    torch.save(state, ckpt)
    with pytest.raises(CheckpointError, match=match) as err:
        load_checkpoint(ckpt)
    assert "\n" not in str(err.value)
    res = invoke(["info", "--checkpoint", str(ckpt)])
    one_line_error(res, "malformed")
