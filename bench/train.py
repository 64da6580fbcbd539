"""Training the flows (PROTOCOL §2): loop, validation bits/dim, atomic checkpoints, resume.

A checkpoint records the architecture, the preset, the dataset and a fingerprint of the
training files, so that a run never silently uses a flow trained on something else.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import config
from bench import provenance as P
from bench.atomic import atomic_write, atomic_write_text
from bench.config import Preset
from bench.errors import BenchError, CheckpointError
from bench.flows import MultiScaleFlow, build_flow, flow_from_config

CHECKPOINT_VERSION = 1
SAVE_EVERY_S = 120.0  # mid-epoch checkpoint interval, so an interruption loses little
VALID_SEED = 1234  # fixed dequantization noise for comparable validation bits/dim


def default_checkpoint_path(
    dataset: str, preset_name: str, arch: str = "coupling", results_dir: str | Path = "results"
) -> Path:
    return Path(results_dir) / "checkpoints" / f"{dataset}-{preset_name}-{arch}.pt"


def model_fingerprint(flow: torch.nn.Module) -> str:
    """Short hash of the architecture and every parameter and buffer value."""
    h = hashlib.sha1(repr(getattr(flow, "arch_config", "")).encode())
    for name, t in flow.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


# plain types a checkpoint may hold besides tensors and builtins: torch.__version__ was stored
# as a TorchVersion (a str subclass) by checkpoints written before plain strings were used
_SAFE_GLOBALS = [torch.torch_version.TorchVersion]
ARCH_FIELDS = {  # arch_config field: (type, required)
    "arch": (str, True),
    "hidden": (int, True),
    "steps": ((list, tuple), True),
    "splits": ((list, tuple), True),
    "in_channels": (int, False),
    "size": (int, False),
    "inv_mode": (str, False),
}


def _malformed(path: Path, what: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path} is malformed ({what}): retrain it with `bench train --force` or "
        "pass another --checkpoint"
    )


def _check_arch_config(cfg, path: Path) -> None:
    if not isinstance(cfg, dict):
        raise _malformed(path, f"arch_config is a {type(cfg).__name__}, not a mapping")
    missing = [k for k, (_, required) in ARCH_FIELDS.items() if required and k not in cfg]
    if missing:
        raise _malformed(path, f"arch_config lacks {', '.join(missing)}")
    unknown = sorted(set(cfg) - set(ARCH_FIELDS))
    if unknown:
        raise _malformed(path, f"arch_config has unknown fields {', '.join(unknown)}")
    for k, (kind, _) in ARCH_FIELDS.items():
        if k in cfg and (not isinstance(cfg[k], kind) or isinstance(cfg[k], bool) and kind is int):
            raise _malformed(path, f"arch_config field {k} is {cfg[k]!r}")
    from bench.flows import ARCHITECTURES, INV_MODES

    if cfg["arch"] not in ARCHITECTURES:
        raise _malformed(path, f"arch_config field arch is {cfg['arch']!r}, not one of "
                               f"{', '.join(ARCHITECTURES)}")  # fmt: skip
    for k in ("hidden", "in_channels", "size"):
        if k in cfg and cfg[k] < 1:
            raise _malformed(path, f"arch_config field {k} is {cfg[k]!r}")
    steps, splits = list(cfg["steps"]), list(cfg["splits"])
    if not steps or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                            for v in steps):  # fmt: skip
        raise _malformed(path, f"arch_config field steps is {cfg['steps']!r}")
    if len(splits) != len(steps) or not all(isinstance(v, bool) for v in splits):
        raise _malformed(path, f"arch_config field splits is {cfg['splits']!r}")
    if "inv_mode" in cfg and cfg["inv_mode"] not in INV_MODES:
        raise _malformed(path, f"arch_config field inv_mode is {cfg['inv_mode']!r}")


def nonfinite_tensors(state, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors holding NaN or inf in a (nested) state dict."""
    bad = []
    items = state.items() if isinstance(state, dict) else enumerate(state)
    for k, v in items:
        name = f"{prefix}{k}"
        if isinstance(v, torch.Tensor):
            if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all()):
                bad.append(name)
        elif isinstance(v, dict | list | tuple):
            bad.extend(nonfinite_tensors(v, f"{name}."))
    return bad


def _read(path: Path) -> dict:
    """The checkpoint at `path`, loaded without executing anything (tensors and plain data
    only: `torch.load(weights_only=True)`) and checked: its fields, its architecture and that
    every weight is finite. Raises CheckpointError (one line) otherwise."""
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file: pass the .pt file")
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} not found: train one with `bench train` or pass --checkpoint"
        )
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():  # not a refused class or function: garbage
            raise CheckpointError(
                f"checkpoint {path} is unreadable (UnpicklingError): delete it and retrain"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain data, which could "
            "run code while loading: refused; use a checkpoint written by `bench train`"
        ) from None
    except OSError as e:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({e.strerror or type(e).__name__}): check the "
            "file's permissions or pass another --checkpoint"
        ) from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user problem
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(e).__name__}): delete it and retrain"
        ) from None
    if not isinstance(ckpt, dict) or "arch_config" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a bench checkpoint: delete it or pass another")
    _check_arch_config(ckpt["arch_config"], path)
    model = ckpt["model"]
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise _malformed(path, "model is not a mapping of tensors")
    for key, kind in (("epoch", int), ("step", int), ("history", list), ("preset", dict)):
        if key in ckpt and not isinstance(ckpt[key], kind):
            raise _malformed(path, f"{key} is {type(ckpt[key]).__name__}")
    for i, h in enumerate(ckpt.get("history") or []):
        if not isinstance(h, dict) or not all(
            isinstance(h.get(k), int | float) and not isinstance(h.get(k), bool)
            for k in ("epoch", "val_bpd")
        ):
            raise _malformed(path, f"history entry {i} is not an epoch record with val_bpd")
    bad = nonfinite_tensors(model) + nonfinite_tensors(ckpt.get("optimizer") or {}, "optimizer.")
    if bad:
        raise CheckpointError(
            f"checkpoint {path} holds NaN or inf in {bad[0]}"
            f"{f' and {len(bad) - 1} more tensors' if len(bad) > 1 else ''}: it diverged; "
            "retrain with `bench train --force` (or another --seed) or use an earlier checkpoint"
        )
    return ckpt


def _flow_of(ckpt: dict, path: Path) -> MultiScaleFlow:
    try:
        flow = flow_from_config(ckpt["arch_config"])
    except (TypeError, ValueError, RuntimeError) as e:
        raise _malformed(path, f"arch_config cannot build a flow: {str(e)[:120]}") from None
    try:
        flow.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else (first[0] if first else "")
        raise _malformed(path, f"weights do not fit its architecture: {detail}") from None
    return flow


def _meta(ckpt: dict, path: Path, flow: MultiScaleFlow) -> dict:
    return {
        "path": str(path),
        "fingerprint": ckpt.get("fingerprint") or model_fingerprint(flow),
        "arch": flow.arch,
        "hidden": flow.arch_config["hidden"],
        "num_params": flow.num_params(),
        "dataset": ckpt.get("dataset"),
        "dataset_label": ckpt.get("dataset_label"),
        "preset": ckpt.get("preset", {}).get("name"),
        "epochs": ckpt.get("epoch", 0),
        "epochs_planned": ckpt.get("preset", {}).get("epochs"),
        "train_images": ckpt.get("train_images"),
        "train_fingerprint": ckpt.get("train_fingerprint"),
        "val_bpd": (ckpt.get("history") or [{}])[-1].get("val_bpd"),
        "complete": ckpt.get("complete", False),
    }


def load_checkpoint(
    path: str | Path, device: str = "cpu", arch: str | None = None
) -> tuple[MultiScaleFlow, dict]:
    """The flow stored at `path` (eval mode, on `device`) and its metadata. Refuses a
    checkpoint of another architecture than `arch` when one is asked for."""
    path = Path(path)
    ckpt = _read(path)
    cfg = ckpt["arch_config"]
    if arch is not None and cfg["arch"] != arch:
        raise CheckpointError(
            f"checkpoint {path} holds a {cfg['arch']} flow but --arch {arch} was asked: "
            f"pass --arch {cfg['arch']} or another --checkpoint"
        )
    flow = _flow_of(ckpt, path)
    flow.to(device).eval()
    return flow, _meta(ckpt, path, flow)


@dataclass
class TrainResult:
    flow: MultiScaleFlow
    meta: dict
    history: list[dict]


def _batches(n: int, batch: int, epoch: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    perm = torch.randperm(n, generator=g)
    return [perm[i : i + batch] for i in range(0, n - batch + 1, batch)]  # drop last partial


@torch.no_grad()
def evaluate_bpd(flow: MultiScaleFlow, x255: torch.Tensor, device: str, batch: int = 128) -> float:
    """Mean validation bits/dim with fixed dequantization noise."""
    from bench.data import to_model

    flow.eval()
    g = torch.Generator().manual_seed(VALID_SEED)
    total, n = 0.0, 0
    for i in range(0, len(x255), batch):
        xb = to_model(x255[i : i + batch], generator=g).to(device)
        total += flow.bits_per_dim(xb).sum().item()
        n += len(xb)
    return total / max(n, 1)


class TrainingDiverged(BenchError):
    """A non-finite loss, gradient, weight or validation score during training."""


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


def _check_resume(path: Path, ckpt: dict, wanted: dict) -> None:
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


def _grad_norm(params) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())


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
) -> TrainResult:
    """Train (or resume training) the preset's flow and save it atomically to `checkpoint`.

    Paper settings (PROTOCOL §2): Adam lr 1e-4, betas (0.5, 0.999), batch 32, mean NLL of the
    dequantized data. A checkpoint is written every epoch, every SAVE_EVERY_S seconds and on
    Ctrl-C; rerunning the same command resumes from it, and any setting that changes the
    trained model (see `resume_mismatches`) must match the checkpoint's; only the number of
    epochs may grow. The per-epoch history is also written beside the checkpoint
    (`<name>.history.csv`). The checkpoint is locked while training (`bench.locks`): a second
    live writer is refused.

    A non-finite loss, gradient, weight or validation score stops training with
    `TrainingDiverged` (one line naming the epoch and batch); nothing non-finite is ever
    saved, so the last good checkpoint stays as it was.

    `batches_per_epoch` stops every epoch after that many batches; 1 reproduces a DEFECT of the
    released code (PROTOCOL §8: its loop stopped each epoch after the first batch).

    The history file of another training (other settings or files) is not replaced unless
    `replace` (`bench.provenance`; BenchError naming both).

    `before_training` is called once every check has passed, just before the first batch
    (`bench train` resolves `--threads auto` there: after any refusal, before the work)."""
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
        )  # fmt: skip


def _train_locked(
    preset, dataset, data_root, device, arch, path, seed, force, progress, log, batches_per_epoch,
    replace=False, before_training=None,
) -> TrainResult:  # fmt: skip
    from bench.data import load_images, to_model
    from bench.progress import bar as progress_bar

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
    epoch, step, history = 0, 0, []
    wanted = training_identity(preset, dataset, arch, seed, train_set, batches_per_epoch)
    source = training_source(wanted, f"{arch} flow, width {preset.hidden}, {train_set.label}")
    if force or not path.exists():
        # the history beside the checkpoint may be a committed result: a fresh training never
        # replaces one made from another training without --replace (a resumed checkpoint's
        # own history is checked by _check_resume's identity)
        P.check([history_path(path)], source, replace, option="--results DIR (or --checkpoint)")
    else:
        ckpt = _read(path)
        _check_resume(path, ckpt, {**wanted, "training files label": train_set.label})
        if ckpt["arch_config"] != flow.arch_config:
            raise CheckpointError(
                f"checkpoint {path} holds a {ckpt['arch_config']['arch']} flow configured as "
                f"{ckpt['arch_config']}, not {flow.arch_config}: pass --force to retrain or "
                "another --checkpoint"
            )
        try:
            flow.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
        except (KeyError, ValueError, RuntimeError) as e:
            raise _malformed(
                path, f"model or optimizer state unusable: {type(e).__name__}"
            ) from None
        epoch, step, history = ckpt["epoch"], ckpt.get("step", 0), ckpt.get("history", [])
        write_history(history, path, source)
        if epoch >= preset.epochs:
            log(f"checkpoint {path} already holds {epoch} epochs: nothing to do (--force retrains)")
            flow.eval()
            return TrainResult(flow, _meta(ckpt, path, flow), history)
        log(f"resuming from {path}: epoch {epoch + 1}, batch {step}")

    x_all = train_set.images
    _check_enough_images(len(x_all))
    n_batches = len(x_all) // config.TRAIN_BATCH
    if batches_per_epoch is not None:
        n_batches = min(n_batches, batches_per_epoch)

    def save(complete: bool = False) -> None:
        model, optim = flow.state_dict(), opt.state_dict()
        bad = nonfinite_tensors(model) + nonfinite_tensors(optim, "optimizer.")
        if bad:  # never replace the last good checkpoint with a diverged model
            raise TrainingDiverged(
                f"training diverged by epoch {epoch + 1}, batch {step}: {bad[0]} holds NaN or "
                f"inf; nothing was saved and {path} keeps the last good state"
            )
        ckpt = {
            "version": CHECKPOINT_VERSION,
            "arch_config": flow.arch_config,
            "model": model,
            "optimizer": optim,
            "epoch": epoch,
            "step": step,
            "history": history,
            "preset": preset.to_dict(),
            "dataset": dataset,
            "dataset_label": train_set.label,
            "train_images": len(train_set),
            "train_fingerprint": train_set.fingerprint,
            "valid_images": len(valid_set),
            "seed": seed,
            "batches_per_epoch": batches_per_epoch,
            "batch_size": config.TRAIN_BATCH,
            "lr": config.TRAIN_LR,
            "betas": list(config.TRAIN_BETAS),
            "fingerprint": model_fingerprint(flow),
            "complete": complete,
            "torch": str(torch.__version__),  # a plain str: loadable with weights_only=True
        }
        atomic_write(path, lambda f: torch.save(ckpt, f))

    def diverged(what: str, batch: int) -> TrainingDiverged:
        good = (
            f"{path} keeps the last good state (resuming it repeats the same batches and "
            "likely diverges again): retrain with --force and another --seed"
            if path.exists()
            else "nothing was saved: rerun with another --seed"
        )
        return TrainingDiverged(
            f"training diverged at epoch {epoch + 1}, batch {batch}: {what}; {good}"
        )

    if before_training is not None:
        before_training()
    if epoch == 0 and step == 0:  # a fresh flow (a resumed one keeps its initialisation)
        g = torch.Generator().manual_seed(seed)
        first = _batches(len(x_all), config.TRAIN_BATCH, 0, seed)[0]
        flow.initialize(to_model(x_all[first], generator=g).to(device))

    params = [p for p in flow.parameters() if p.requires_grad]
    last_save = time.time()
    try:
        while epoch < preset.epochs:
            flow.train()
            batches = _batches(len(x_all), config.TRAIN_BATCH, epoch, seed)
            g = torch.Generator().manual_seed(seed * 7919 + epoch)
            for _ in range(step):  # keep the dequantization stream aligned on resume
                torch.rand((config.TRAIN_BATCH, *x_all.shape[1:]), generator=g)
            bar = progress_bar(
                total=n_batches,
                progress=progress,
                initial=step,
                desc=f"epoch {epoch + 1}/{preset.epochs}",
                unit="batch",
            )
            t0, seen = time.time(), 0
            while step < n_batches:
                xb = to_model(x_all[batches[step]], generator=g).to(device)
                loss = -flow.log_prob(xb).mean()
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise diverged(f"the loss is {loss_value}", step + 1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = float(_grad_norm(params))
                if not math.isfinite(grad_norm):
                    raise diverged(f"the gradient norm is {grad_norm}", step + 1)
                opt.step()
                step += 1
                seen += len(xb)
                bpd = (loss_value + flow.dim * math.log(config.N_BINS / 2)) / (
                    flow.dim * math.log(2)
                )
                bar.set_postfix(loss=f"{loss_value:.1f}", bpd=f"{bpd:.3f}")
                bar.update(1)
                if time.time() - last_save > SAVE_EVERY_S:
                    save()
                    last_save = time.time()
            bar.close()
            seconds = time.time() - t0
            val = evaluate_bpd(flow, valid_set.images, device)
            if not math.isfinite(val):
                raise diverged(f"validation bits/dim is {val}", step)
            epoch, step = epoch + 1, 0
            history.append(
                {
                    "epoch": epoch,
                    "train_bpd": bpd,
                    "val_bpd": val,
                    "seconds": seconds,
                    "images_per_s": seen / max(seconds, 1e-9),
                }
            )
            log(
                f"epoch {epoch}: train {bpd:.3f} bits/dim, valid {val:.3f} bits/dim, "
                f"{seconds:.0f} s, {seen / max(seconds, 1e-9):.0f} images/s"
            )
            save(complete=epoch >= preset.epochs)
            write_history(history, path, source)
            last_save = time.time()
    except KeyboardInterrupt:
        save()
        log(f"interrupted: checkpoint saved to {path}; rerun the same command to resume")
        raise
    flow.eval()
    return TrainResult(flow, _meta(_read(path), path, flow), history)


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
        "batch size": config.TRAIN_BATCH,
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


def _check_enough_images(n: int) -> None:
    if n < config.TRAIN_BATCH:
        raise CheckpointError(f"only {n} training images: need at least {config.TRAIN_BATCH}")


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
    _check_enough_images(len(train_set))
    if checkpoint is not None and not Path(checkpoint).exists():
        wanted = training_identity(preset, dataset, "coupling", 0, train_set, None)
        source = training_source(wanted, f"coupling flow, width {preset.hidden}")
        P.check([history_path(checkpoint)], source, replace, "--results DIR (or --checkpoint)")


def check_checkpoint_dataset(path: str | Path, meta: dict, dataset: str) -> None:
    """A default checkpoint (`meta` from `load_checkpoint`) must be of the run's dataset."""
    if meta["dataset"] != dataset:
        raise CheckpointError(
            f"checkpoint {path} was trained on {meta['dataset']}, not {dataset}: "
            f"delete it or pass --checkpoint"
        )


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
    own = _read(path) if path.exists() else {}
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
