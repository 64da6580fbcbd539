"""Training the flows (PROTOCOL §2): `train` (resumable, locked), `ensure_flow` (load the
preset's checkpoint, training it first when missing or unfinished), and the checks `bench run`
makes before it starts.

The parts: :mod:`bench.train_checkpoint` (checkpoint files: reading, checking, loading),
:mod:`bench.train_history` (what identifies a training; the history file beside a checkpoint)
and :mod:`bench.train_loop` (the epochs). Their public names are importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import config
from bench import provenance as P
from bench.config import Preset
from bench.errors import CheckpointError
from bench.flows import MultiScaleFlow, build_flow
from bench.train_checkpoint import (
    ARCH_FIELDS,
    CHECKPOINT_VERSION,
    check_checkpoint_dataset,
    checkpoint_meta,
    default_checkpoint_path,
    load_checkpoint,
    malformed_checkpoint,
    model_fingerprint,
    nonfinite_tensors,
    read_checkpoint,
)
from bench.train_history import (
    check_resume,
    checkpoint_identity,
    history_path,
    resume_mismatches,
    training_identity,
    training_source,
    write_history,
)
from bench.train_loop import (
    SAVE_EVERY_S,
    VALID_SEED,
    Training,
    TrainingDiverged,
    check_enough_images,
    evaluate_bpd,
    kept_epoch_path,
)

__all__ = [
    "ARCH_FIELDS",
    "CHECKPOINT_VERSION",
    "SAVE_EVERY_S",
    "VALID_SEED",
    "TrainResult",
    "Training",
    "TrainingDiverged",
    "check_checkpoint_dataset",
    "check_enough_images",
    "check_resume",
    "check_training_data",
    "checkpoint_identity",
    "checkpoint_meta",
    "default_checkpoint_path",
    "ensure_flow",
    "evaluate_bpd",
    "history_path",
    "kept_epoch_path",
    "load_checkpoint",
    "model_fingerprint",
    "nonfinite_tensors",
    "read_checkpoint",
    "resume_mismatches",
    "train",
    "training_identity",
    "training_source",
    "write_history",
]


@dataclass
class TrainResult:
    """A finished `train`: the flow (eval mode), its checkpoint's metadata and the per-epoch
    history."""

    flow: MultiScaleFlow
    meta: dict
    history: list[dict]


def train(
    preset: Preset,
    dataset: str = "builtin",
    data_root: str | Path | None = None,
    device: str = "cpu",
    arch: str = "coupling",
    checkpoint: str | Path | None = None,
    results_dir: str | Path = "results",
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
    log=print,
    batches_per_epoch: int | None = None,
    replace: bool = False,
    before_training: Callable[[], object] | None = None,
    keep_epochs: Iterable[int] = (),
    max_minutes: float | None = None,
) -> TrainResult:
    """Train (or resume training) the preset's flow and save it atomically to `checkpoint`.

    Paper settings (PROTOCOL §2): Adam lr 1e-4, betas (0.5, 0.999), batch 32 (a preset's own
    `train_batch` when it sets one: `gpu`), mean NLL of the dequantized data. A checkpoint is
    written every epoch, every SAVE_EVERY_S seconds and on Ctrl-C; rerunning the same command
    resumes from it, and any setting that changes the trained model (see `resume_mismatches`)
    must match the checkpoint's; only the number of epochs may grow. The per-epoch history is
    also written beside the checkpoint (`<name>.history.csv`). The checkpoint is locked while
    training (`bench.locks`): a second live writer is refused.

    A non-finite loss, gradient, weight or validation score stops training with
    `TrainingDiverged` (one line naming the epoch and batch); nothing non-finite is ever
    saved, so the last good checkpoint stays as it was.

    `batches_per_epoch` stops every epoch after that many batches; 1 reproduces a DEFECT of the
    released code (PROTOCOL §8: its loop stopped each epoch after the first batch).

    The history file of another training (other settings or files) is not replaced unless
    `replace` (`bench.provenance`; BenchError naming both).

    `before_training` is called once every check has passed, just before the first batch
    (`bench train` resolves `--threads auto` there: after any refusal, before the work).

    `keep_epochs`: after each of these epochs, the checkpoint is also copied to
    `kept_epoch_path` (<name>.epochNN.pt), a finished training of that many epochs (the flows
    of a prior-strength sweep, docs/PROTOCOL.md §10). `max_minutes`: a time budget for this
    call's epochs; training stops after the last epoch that leaves room for another as long,
    and the checkpoint is then a finished training of the epochs done (ValueError unless > 0)."""
    if max_minutes is not None and not max_minutes > 0:
        raise ValueError(f"max_minutes must be > 0, not {max_minutes!r}")
    from bench import locks

    path = (
        Path(checkpoint)
        if checkpoint
        else default_checkpoint_path(dataset, preset.name, arch, results_dir)
    )
    if path.is_symlink():  # train the checkpoint the link points to (and lock that one)
        path = path.resolve()
    with locks.holding(path, "bench train"):
        return _train_locked(
            preset, dataset, data_root, device, arch, path, seed, force, progress, log,
            batches_per_epoch, replace, before_training,
            frozenset(int(e) for e in keep_epochs),
            None if max_minutes is None else 60.0 * max_minutes,
        )  # fmt: skip


def _train_locked(
    preset, dataset, data_root, device, arch, path, seed, force, progress, log, batches_per_epoch,
    replace=False, before_training=None, keep_epochs=frozenset(), max_seconds=None,
) -> TrainResult:  # fmt: skip
    from bench.data import load_images

    train_set = load_images(
        dataset, "train", data_root, limit=preset.train_images, progress=progress
    )
    valid_set = load_images(
        dataset, "valid", data_root, limit=preset.valid_images, progress=progress
    )
    log(
        f"training {arch} flow (hidden {preset.hidden}, preset {preset.name}) on "
        f"{len(train_set)} images of {train_set.label}; validating on {len(valid_set)}"
    )

    torch.manual_seed(seed)
    flow = build_flow(arch, hidden=preset.hidden).to(device)
    opt = torch.optim.Adam(
        flow.parameters(), lr=config.TRAIN_LR, betas=config.TRAIN_BETAS, fused=True
    )  # one kernel per step: ~10% faster training on CPU
    wanted = training_identity(preset, dataset, arch, seed, train_set, batches_per_epoch)
    source = training_source(wanted, f"{arch} flow, width {preset.hidden}, {train_set.label}")
    training = Training(
        flow, opt, path, preset, dataset, train_set, valid_set, seed, batches_per_epoch, source,
        device, keep_epochs=keep_epochs, max_seconds=max_seconds,
    )  # fmt: skip
    if force:
        for old in path.parent.glob(f"{path.stem}.epoch*{path.suffix}"):
            old.unlink()  # the kept epochs of the training --force replaces
    if force or not path.exists():
        # the history beside the checkpoint may be a committed result: a fresh training never
        # replaces one made from another training without --replace (a resumed checkpoint's
        # own history is checked by check_resume's identity)
        P.check([history_path(path)], source, replace, option="--results DIR (or --checkpoint)")
    else:
        finished = _resume(training, wanted, log)
        if finished is not None:
            return finished

    check_enough_images(len(train_set.images), preset.batch_size)
    if before_training is not None:
        before_training()
    training.initialize()
    training.run(progress, log)
    flow.eval()
    return TrainResult(flow, checkpoint_meta(read_checkpoint(path), path, flow), training.history)


def _resume(training: Training, wanted: dict, log) -> TrainResult | None:
    """Continue `training` from its checkpoint, refused unless that was trained with the
    `wanted` settings; a TrainResult when the checkpoint already holds every epoch."""
    path, flow = training.path, training.flow
    ckpt = read_checkpoint(path)
    check_resume(path, ckpt, {**wanted, "training files label": training.train_set.label})
    if ckpt["arch_config"] != flow.arch_config:
        raise CheckpointError(
            f"checkpoint {path} holds a {ckpt['arch_config']['arch']} flow configured as "
            f"{ckpt['arch_config']}, not {flow.arch_config}: pass --force to retrain or "
            "another --checkpoint"
        )
    try:
        flow.load_state_dict(ckpt["model"])
        training.opt.load_state_dict(ckpt["optimizer"])
    except (KeyError, ValueError, RuntimeError) as e:
        raise malformed_checkpoint(
            path, f"model or optimizer state unusable: {type(e).__name__}"
        ) from None
    training.epoch, training.step = ckpt["epoch"], ckpt.get("step", 0)
    behind = sorted(e for e in training.keep_epochs if e <= training.epoch)
    if behind:
        raise CheckpointError(
            f"--keep-epochs {','.join(map(str, behind))}: {path} already holds "
            f"{training.epoch} epoch(s), so those cannot be kept now: pass --force to retrain "
            "from scratch, or keep later epochs only"
        )
    training.history = ckpt.get("history", [])
    write_history(training.history, path, training.source)
    if training.epoch >= training.preset.epochs:
        log(
            f"checkpoint {path} already holds {training.epoch} epochs: nothing to do (--force "
            "retrains)"
        )
        flow.eval()
        return TrainResult(flow, checkpoint_meta(ckpt, path, flow), training.history)
    log(f"resuming from {path}: epoch {training.epoch + 1}, batch {training.step}")
    return None


def check_training_data(
    preset: Preset,
    dataset: str,
    data_root: str | Path | None = None,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    replace: bool = False,
) -> None:
    """Refuse now what training with `preset` would refuse once started: training or
    validation images missing, fewer training images than one batch, or (a fresh training
    of `checkpoint`, seed 0 as `ensure_flow` trains it) a history beside it made from another
    training without `replace` (`bench run` checks this before its estimate when its flow must
    be trained first)."""
    from bench.data import load_images

    train_set = load_images(
        dataset, "train", data_root, limit=preset.train_images, progress=progress
    )
    load_images(dataset, "valid", data_root, limit=preset.valid_images, progress=progress)
    check_enough_images(len(train_set), preset.batch_size)
    if checkpoint is not None and not Path(checkpoint).exists():
        wanted = training_identity(preset, dataset, "coupling", 0, train_set, None)
        source = training_source(wanted, f"coupling flow, width {preset.hidden}")
        P.check([history_path(checkpoint)], source, replace, "--results DIR (or --checkpoint)")


def ensure_flow(
    preset: Preset,
    dataset: str = "builtin",
    data_root: str | Path | None = None,
    device: str = "cpu",
    arch: str = "coupling",
    checkpoint: str | Path | None = None,
    results_dir: str | Path = "results",
    progress: bool = True,
    log=print,
    replace: bool = False,
) -> tuple[MultiScaleFlow, dict]:
    """Load the given checkpoint, or the preset's default one, training it first if it is
    missing or unfinished (`replace`: as in `train`). A given checkpoint that does not exist
    is an error."""
    if checkpoint is not None:
        return load_checkpoint(checkpoint, device, arch)
    path = default_checkpoint_path(dataset, preset.name, arch, results_dir)
    if path.exists():
        flow, meta = load_checkpoint(path, device, arch)
        check_checkpoint_dataset(path, meta, dataset)
        if meta["complete"] and meta["epochs"] >= preset.epochs:
            return flow, meta
    # an unfinished default checkpoint is finished with the settings it was started with (its
    # seed and batches per epoch); preset or data differences are still refused
    own = read_checkpoint(path) if path.exists() else {}
    try:
        result = train(
            preset, dataset, data_root, device, arch, path, results_dir,
            seed=own.get("seed", 0), progress=progress, log=log,
            batches_per_epoch=own.get("batches_per_epoch"), replace=replace,
        )  # fmt: skip
    except CheckpointError as e:
        raise CheckpointError(
            f"{e} (`bench run` finishes the default checkpoint {path} before solving: finish "
            f"it with `bench train`, delete it, or pass --checkpoint)"
        ) from None
    return result.flow, result.meta
