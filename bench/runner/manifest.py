"""A run's identity and its manifest (run.json): the key that determines its numbers and its
id, and the manifest merged with the one a previous call stored."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from bench import config
from bench.machine import describe_device
from bench.runner.layout import RUN_FORMAT
from bench.runner.plan import Plan, weight_key
from bench.runner.store import runs_root


def make_run_id(key: dict, dataset: str, preset_name: str) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return f"{dataset}-{preset_name}-{digest[:12]}"


def run_key(
    plan: Plan,
    dataset: str,
    test,
    select_set,
    fingerprint: str,
    seed: int,
    device,
    flow_dataset: str | None = None,
    precision: str = "fp32",
):
    """Everything that determines a run's numbers (its id is a hash of it): the plan's preset
    and selection, the images (`stage_images`), the model fingerprint, the seed and the
    device type; and the flow's training dataset when it is not the images' (an
    out-of-distribution run, PROTOCOL §9; left out otherwise, so earlier runs keep their ids);
    and the solves' precision when it is not float32 (`bench.precision`)."""
    import torch

    other = {"flow_dataset": flow_dataset} if flow_dataset and flow_dataset != dataset else {}
    if precision != "fp32":
        other["precision"] = precision
    if plan.weights == "run":  # weights another run selected (`bench run --weights-from`)
        other["weights_from"] = {
            "run": plan.weights_from,
            "weights": {
                f"{m}/{t}": w
                for (m, t), w in sorted(plan.chosen.items())
                if m in plan.methods and t in plan.tasks
            },
        }
    return {
        **other,
        "format": RUN_FORMAT,
        "dataset": dataset,
        "test_images": test.fingerprint,
        "select_images": select_set.fingerprint if select_set is not None else None,
        "preset": plan.preset.to_dict(),
        "model": str(fingerprint),
        "seed": int(seed),
        "select_on": plan.select_on if plan.weights == "grid" else None,
        "weights": plan.weights,
        "device": torch.device(device).type,
    }


def run_dir_of(results_dir: str | Path, key: dict) -> Path:
    """The store folder of the run with this `run_key` (it may not exist yet)."""
    return runs_root(results_dir) / make_run_id(key, key["dataset"], key["preset"]["name"])


def timestamp() -> str:
    """The local time now, ISO 8601 to the second (the manifest's 'created' and 'updated')."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _image_summary(imgs) -> dict:
    offset = int(getattr(imgs, "offset", 0) or 0)
    return {
        **({"offset": offset} if offset else {}),
        "label": imgs.label,
        "partition": imgs.partition,
        "count": len(imgs.names),
        "first": imgs.names[0] if imgs.names else None,
        "last": imgs.names[-1] if imgs.names else None,
        "fingerprint": imgs.fingerprint,
        "root": imgs.root,
        "skipped": list(imgs.skipped),
    }


def _ordered(names: Iterable[str], order: Sequence[str]) -> list[str]:
    """`names` without duplicates, those in `order` first (in that order)."""
    names = list(dict.fromkeys(names))
    order = [n for n in dict.fromkeys(order) if n in names]
    return order + [n for n in names if n not in order]


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def declared_origin(registry, name: str) -> dict:
    """{'origin': where the item was registered from, 'digest': sha256 of its plugin file (a
    plugin file's items only)}."""
    from bench import plugins

    origin = registry.origin(name)
    digest = plugins.origin_digest(origin)
    return {"origin": origin, **({"digest": digest} if digest else {})}


def changed_plugins(before: dict, plan: Plan) -> list[str]:
    """The plan's methods and tasks whose plugin file differs from the one the run's cells
    were computed with (`before`: the manifest found)."""
    from bench import methods as M
    from bench import tasks as T

    changed = []
    for kind, names, registry in (
        ("method", plan.methods, M.METHODS),
        ("task", plan.tasks, T.TASKS),
    ):
        for name in names:
            old = before.get(f"{kind}_info", {}).get(name, {}).get("digest")
            new = declared_origin(registry, name).get("digest")
            if old and old != new:
                changed.append(f"{kind} {name} ({registry.origin(name)})")
    return changed


def item_origins(dataset: str, flow) -> dict:
    """Where the run's dataset and flow architecture were registered from (a module of bench,
    a plugin, an entry point), for the reports' Plugins line."""
    from bench.datasets import DATASETS
    from bench.flows import FLOWS

    arch = getattr(flow, "arch", None)
    return {
        "dataset": f"{dataset}: {DATASETS.origin(dataset)}",
        "flow": f"{arch}: {FLOWS.origin(arch)}" if arch else None,
    }


def merge_manifest(
    old: dict,
    key: dict,
    run_id: str,
    plan: Plan,
    meta: dict,
    test,
    select_set,
    device: str,
    command: str | None,
    flow,
) -> dict:
    """The run's manifest, merged with the one already there (a rerun with other methods or
    tasks adds to the same run); `old` is the manifest already there ({} for a new run)."""
    merged = _merged_plan(old, plan)
    meta_clean = {k: v for k, v in meta.items() if _jsonable(v)}
    return {
        "format": RUN_FORMAT,
        "run_id": run_id,
        "created": old.get("created", timestamp()),
        "updated": timestamp(),
        "key": key,
        "dataset": key["dataset"],
        "flow_dataset": key.get("flow_dataset", key["dataset"]),
        "test_images": _image_summary(test),
        "select_images": _image_summary(select_set) if select_set is not None else None,
        "preset": plan.preset.to_dict(),
        "iters": plan.preset.iters,
        "lr": config.SOLVER_LR,
        "seed": key["seed"],
        "select_on": plan.select_on,
        "weights": plan.weights,
        "model": {
            **meta_clean,
            "arch_config": None if flow is None else dict(flow.arch_config),
        },
        "device": str(device),
        "device_description": describe_device(device),
        "item_origins": item_origins(key["dataset"], flow),
        "command": command or old.get("command"),
        "commands": run_commands(old, command),
        **merged,
        "selection": old.get("selection", {}),
        "complete": False,
    }


def _merged_plan(old: dict, plan: Plan) -> dict:
    """The manifest's record of what the run holds (methods, tasks, grids, weight names,
    labels, method labels, method and task declarations, skipped pairs, in that order): the old
    manifest's, with the plan's added (the plan's values win)."""
    from bench import methods as M
    from bench import tasks as T

    methods = _ordered(list(old.get("methods", [])) + plan.methods, M.default_method_names())

    task_order = list(T.TASKS)
    task_names = _ordered(list(old.get("tasks", [])) + plan.tasks, task_order)
    skipped = {m: dict(v) for m, v in old.get("skipped", {}).items()}
    for (m, t), reason in plan.skipped.items():
        skipped.setdefault(m, {})[t] = reason
    grids = dict(old.get("grids", {}))
    grids.update({m: list(g) for m, g in plan.grids.items()})
    weight_names = dict(old.get("weight_names", {}))
    weight_names.update(plan.weight_names)
    labels = {m: dict(v) for m, v in old.get("labels", {}).items()}
    for (m, w), label in plan.labels.items():
        labels.setdefault(m, {})[weight_key(w)] = label
    method_labels = dict(old.get("method_labels", {}))
    method_labels.update({m: M.get_method(m).label or m for m in plan.methods})
    # what the reports need about each method and task, so a run renders without the module or
    # plugin that defined them (`Method.describe`, `Task.describe`)
    method_info = dict(old.get("method_info", {}))
    method_info.update(
        {m: {**M.get_method(m).describe(), **declared_origin(M.METHODS, m)} for m in plan.methods}
    )
    task_info = dict(old.get("task_info", {}))
    task_info.update(
        {t: {**T.get_task(t).describe(), **declared_origin(T.TASKS, t)} for t in plan.tasks}
    )
    return {
        "methods": methods,
        "tasks": task_names,
        "grids": grids,
        "weight_names": weight_names,
        "labels": labels,
        "method_labels": method_labels,
        "method_info": method_info,
        "task_info": task_info,
        "skipped": skipped,
    }


def run_commands(old: dict, command: str | None = None) -> list[str]:
    """Every distinct command recorded in a run's manifest `old` (older manifests hold only
    'command'), oldest first, plus `command` when it is new."""
    cmds = list(old.get("commands") or ([old["command"]] if old.get("command") else []))
    if command and command not in cmds:
        cmds.append(command)
    return cmds
