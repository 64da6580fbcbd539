"""The lines that head a report and state what it rests on: the images, the model, the
preset, the weight selection, the methods outside the paper's table and the run commands."""

from __future__ import annotations

from bench.runner import run_commands


def images_line(info: dict | None) -> str:
    if not info:
        return "none"
    span = f"{info['first']} … {info['last']}" if info.get("first") else "no files"
    files = "" if span in info["label"] else f", files {span}"
    extra = f"; {len(info['skipped'])} unreadable skipped" if info.get("skipped") else ""
    return f"{info['label']} — {info['count']} images{files}{extra}"


def model_line(model: dict) -> str:
    if model.get("fingerprint") == "none" and model.get("arch") is None:
        return "none (no method of this run needs a flow)"
    parts = [f"{model.get('arch', '?')} flow", f"width {model.get('hidden', '?')}"]
    if model.get("num_params") is not None:
        parts.append(f"{int(model['num_params']):,} parameters")
    parts.append(f"fingerprint `{model.get('fingerprint', '?')}`")
    bpd = model.get("val_bpd")
    parts.append(
        f"validation {bpd:.3f} bits/dim"
        if isinstance(bpd, (int, float))
        else "validation bits/dim unknown"
    )
    if model.get("epochs") is not None:
        planned = model.get("epochs_planned")
        parts.append(f"{model['epochs']} epoch(s)" + (f" of {planned}" if planned else ""))
    if model.get("dataset_label") or model.get("dataset"):
        parts.append(f"trained on {model.get('dataset_label') or model.get('dataset')}")
    if model.get("path"):
        parts.append(f"checkpoint `{model['path']}`")
    return ", ".join(parts)


def preset_line(p: dict) -> str:
    grids = f"γ grid {list(p.get('gamma_grid', []))}, α grid {list(p.get('alpha_grid', []))}"
    return (
        f"`{p['name']}` (width {p['hidden']}, {p['epochs']} epoch(s), {p['test_images']} "
        f"test images, {p['select_images']} selection images, {p['iters']} iterations, "
        f"{grids}); the protocol is the same for every preset"
    )


def selection_line(man: dict) -> str:
    """How the run chose its weights: the paper's, or a grid search on which images."""
    if man.get("weights") == "paper":
        return "the paper's chosen weights (`--weights paper`), no grid search"
    if man.get("weights") == "run":
        source = ((man.get("key") or {}).get("weights_from") or {}).get("run", "?")
        return f"the weights run `{source}` selected (`--weights-from {source}`), no grid search"
    if man.get("select_on") == "test":
        return (
            "grid search directly on the test images, best mean PSNR reported "
            "(`--select-on test`: the paper's practice, optimistic)"
        )
    return (
        "grid search on the selection images (valid partition), the best weight per method "
        "and task by mean PSNR then run on the test images"
    )


def run_commands_line(man: dict) -> str:
    cmds = run_commands(man) or ["(run from Python)"]
    if len(cmds) == 1:
        return f"- **Run command**: `{cmds[0]}`"
    return "- **Run commands** (each added cells to this run): " + "; ".join(f"`{c}`" for c in cmds)
