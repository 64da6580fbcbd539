"""Training checkpoints (PROTOCOL §2): where they live, reading one safely, and the flow and
metadata it holds.

A checkpoint records the architecture, the preset, the dataset and a fingerprint of the
training files, so that a run never silently uses a flow trained on something else. Reading
never executes code (``torch.load(weights_only=True)``) and every field is checked; a problem
is a one-line :class:`~bench.errors.CheckpointError`.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch

from bench.errors import CheckpointError
from bench.flows import MultiScaleFlow, flow_from_config

CHECKPOINT_VERSION = 1


def default_checkpoint_path(
    dataset: str, preset_name: str, arch: str = "coupling", results_dir: str | Path = "results"
) -> Path:
    """results/checkpoints/<dataset>-<preset>-<arch>.pt: where `bench train` and `bench run`
    keep the preset's flow."""
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


def malformed_checkpoint(path: Path, what: str) -> CheckpointError:
    """The one-line error for a checkpoint whose content is not what `bench train` writes."""
    return CheckpointError(
        f"checkpoint {path} is malformed ({what}): retrain it with `bench train --force` or "
        "pass another --checkpoint"
    )


def _check_arch_config(cfg, path: Path) -> None:
    if not isinstance(cfg, dict):
        raise malformed_checkpoint(path, f"arch_config is a {type(cfg).__name__}, not a mapping")
    missing = [k for k, (_, required) in ARCH_FIELDS.items() if required and k not in cfg]
    if missing:
        raise malformed_checkpoint(path, f"arch_config lacks {', '.join(missing)}")
    unknown = sorted(set(cfg) - set(ARCH_FIELDS))
    if unknown:
        raise malformed_checkpoint(path, f"arch_config has unknown fields {', '.join(unknown)}")
    for k, (kind, _) in ARCH_FIELDS.items():
        if k in cfg and (not isinstance(cfg[k], kind) or isinstance(cfg[k], bool) and kind is int):
            raise malformed_checkpoint(path, f"arch_config field {k} is {cfg[k]!r}")
    from bench.flows import ARCHITECTURES, INV_MODES

    if cfg["arch"] not in ARCHITECTURES:
        # a well-formed name no registered architecture carries: a plugin's flow, most likely
        raise CheckpointError(
            f"checkpoint {path} names an unregistered architecture (arch_config field arch is "
            f"{cfg['arch']!r}, not one of {', '.join(ARCHITECTURES)}): if a plugin defines it, "
            "load that plugin (--plugin FILE or BENCH_PLUGINS); else the file is malformed: "
            "retrain it with `bench train --force`"
        )
    for k in ("hidden", "in_channels", "size"):
        if k in cfg and cfg[k] < 1:
            raise malformed_checkpoint(path, f"arch_config field {k} is {cfg[k]!r}")
    steps, splits = list(cfg["steps"]), list(cfg["splits"])
    if not steps or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                            for v in steps):  # fmt: skip
        raise malformed_checkpoint(path, f"arch_config field steps is {cfg['steps']!r}")
    if len(splits) != len(steps) or not all(isinstance(v, bool) for v in splits):
        raise malformed_checkpoint(path, f"arch_config field splits is {cfg['splits']!r}")
    if "inv_mode" in cfg and cfg["inv_mode"] not in INV_MODES:
        raise malformed_checkpoint(path, f"arch_config field inv_mode is {cfg['inv_mode']!r}")


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


def read_checkpoint(path: Path) -> dict:
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
        raise malformed_checkpoint(path, "model is not a mapping of tensors")
    for key, kind in (("epoch", int), ("step", int), ("history", list), ("preset", dict)):
        if key in ckpt and not isinstance(ckpt[key], kind):
            raise malformed_checkpoint(path, f"{key} is {type(ckpt[key]).__name__}")
    for i, h in enumerate(ckpt.get("history") or []):
        if not isinstance(h, dict) or not all(
            isinstance(h.get(k), int | float) and not isinstance(h.get(k), bool)
            for k in ("epoch", "val_bpd")
        ):
            raise malformed_checkpoint(
                path, f"history entry {i} is not an epoch record with val_bpd"
            )
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
        raise malformed_checkpoint(
            path, f"arch_config cannot build a flow: {str(e)[:120]}"
        ) from None
    try:
        flow.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else (first[0] if first else "")
        raise malformed_checkpoint(path, f"weights do not fit its architecture: {detail}") from None
    return flow


def checkpoint_meta(ckpt: dict, path: Path, flow: MultiScaleFlow) -> dict:
    """What `load_checkpoint` says about a checkpoint: its path, fingerprints, architecture,
    preset, dataset, epochs, last validation bits/dim and whether training finished."""
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
    ckpt = read_checkpoint(path)
    cfg = ckpt["arch_config"]
    if arch is not None and cfg["arch"] != arch:
        raise CheckpointError(
            f"checkpoint {path} holds a {cfg['arch']} flow but --arch {arch} was asked: "
            f"pass --arch {cfg['arch']} or another --checkpoint"
        )
    flow = _flow_of(ckpt, path)
    flow.to(device).eval()
    return flow, checkpoint_meta(ckpt, path, flow)


def check_checkpoint_dataset(path: str | Path, meta: dict, dataset: str) -> None:
    """A default checkpoint (`meta` from `load_checkpoint`) must be of the run's dataset."""
    if meta["dataset"] != dataset:
        raise CheckpointError(
            f"checkpoint {path} was trained on {meta['dataset']}, not {dataset}: "
            f"delete it or pass --checkpoint"
        )
