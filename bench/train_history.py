"""What identifies a training (PROTOCOL §2): the settings that change the trained model, the
check that a resumed checkpoint was trained with the requested ones, and the per-epoch history
file written beside a checkpoint with its source (`bench.provenance`)."""

from __future__ import annotations

from pathlib import Path

from bench import config
from bench import provenance as P
from bench.atomic import atomic_write_text
from bench.errors import CheckpointError


def resume_mismatches(ckpt: dict, wanted: dict) -> list[tuple[str, object, object]]:
    """(setting, checkpoint's value, requested value) for every setting that changes the
    trained model and differs between a checkpoint and a request (PROTOCOL §2: seed, width and
    the preset's data knobs, batch size, learning rate, betas, dataset and its files, batches
    per epoch). Settings an older checkpoint did not record are compared with the values the
    code used then (batch size, learning rate and betas were always config's)."""
    have = checkpoint_identity(ckpt)
    return [(k, have[k], wanted[k]) for k in have if k in wanted and have[k] != wanted[k]]


_IDENTITY_KEYS = (
    "seed", "width (--preset)", "architecture (--arch)", "training images (--preset)",
    "validation images (--preset)", "batch size", "learning rate", "Adam betas",
    "dataset (--dataset)", "training files (--data-root)", "--batches-per-epoch",
)  # fmt: skip


def checkpoint_identity(ckpt: dict) -> dict:
    """The settings that change a checkpoint's trained model, named as `resume_mismatches`
    names them (also the identity of its history file: `training_source`)."""
    preset = ckpt.get("preset") or {}
    return {
        "seed": ckpt.get("seed", 0),
        "width (--preset)": ckpt["arch_config"].get("hidden"),
        "architecture (--arch)": ckpt["arch_config"].get("arch"),
        "training images (--preset)": preset.get("train_images"),
        "validation images (--preset)": preset.get("valid_images"),
        "batch size": ckpt.get("batch_size", config.TRAIN_BATCH),
        "learning rate": ckpt.get("lr", config.TRAIN_LR),
        "Adam betas": list(ckpt.get("betas", config.TRAIN_BETAS)),
        "dataset (--dataset)": ckpt.get("dataset"),
        "training files (--data-root)": ckpt.get("train_fingerprint"),
        "--batches-per-epoch": ckpt.get("batches_per_epoch"),
    }


_FIX_HINT = {
    "seed": "--seed {0}",
    "width (--preset)": "the preset it was trained with",
    "architecture (--arch)": "--arch {0}",
    "training images (--preset)": "the preset it was trained with",
    "validation images (--preset)": "the preset it was trained with",
    "dataset (--dataset)": "--dataset {0}",
    "training files (--data-root)": "the same --data-root",
    "--batches-per-epoch": "--batches-per-epoch {0}",
    "--batches-per-epoch all": "no --batches-per-epoch",
}


def check_resume(path: Path, ckpt: dict, wanted: dict) -> None:
    """Refuse to resume the checkpoint `ckpt` (at `path`) for a request `wanted`
    (`training_identity`) that differs in a setting that changes the model: CheckpointError
    naming the first such setting, both values and the option that fixes it."""
    diffs = resume_mismatches(ckpt, wanted)
    if not diffs:
        return
    name, have, want = diffs[0]
    shown = {  # fingerprints of files mean nothing to a reader: say what they are
        "training files (--data-root)": (
            ckpt.get("dataset_label"),
            wanted.get("training files label") or "the requested files",
        ),
        "--batches-per-epoch": (have or "all", want or "all"),
    }.get(name, (have, want))
    hint_key = f"{name} all" if name == "--batches-per-epoch" and have is None else name
    hint = _FIX_HINT.get(hint_key, "the value it was trained with").format(have)
    more = f" (and {len(diffs) - 1} more setting(s))" if len(diffs) > 1 else ""
    raise CheckpointError(
        f"checkpoint {path} was trained with {name} {shown[0]}, not {shown[1]}{more}: pass "
        f"{hint} to resume it, --force to retrain from scratch, or another --checkpoint"
    )


def history_path(checkpoint: str | Path) -> Path:
    """Where the per-epoch history of a checkpoint is written: beside it, as CSV."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.history.csv")


def training_identity(preset, dataset, arch, seed, train_set, batches_per_epoch) -> dict:
    """The settings of a training that change the model, as `checkpoint_identity` names
    them (`train_set`: the loaded training images, whose fingerprint names the files)."""
    return {
        "seed": seed,
        "width (--preset)": preset.hidden,
        "architecture (--arch)": arch,
        "training images (--preset)": preset.train_images,
        "validation images (--preset)": preset.valid_images,
        "batch size": preset.batch_size,
        "learning rate": config.TRAIN_LR,
        "Adam betas": list(config.TRAIN_BETAS),
        "dataset (--dataset)": dataset,
        "training files (--data-root)": train_set.fingerprint,
        "--batches-per-epoch": batches_per_epoch,
    }


def training_source(identity: dict, what: str) -> P.Source:
    """The source of a checkpoint's history file: the training settings that change the
    model (`checkpoint_identity`'s keys), labelled with `what` was trained."""
    key = {k: identity.get(k) for k in _IDENTITY_KEYS}
    return P.Source(f"training of a {what}, seed {key['seed']}", key)


def write_history(
    history: list[dict], checkpoint: str | Path, source: P.Source | None = None
) -> Path | None:
    """The per-epoch training history as CSV (small, committed with the results while the
    checkpoint itself stays out of git); `source` is recorded for it (`bench.provenance`)."""
    import pandas as pd

    if not history:
        return None
    path = atomic_write_text(
        history_path(checkpoint), pd.DataFrame(history).to_csv(index=False, float_format="%.6g")
    )
    if source is not None:
        P.record([path], source, sidecar=True)
    return path
