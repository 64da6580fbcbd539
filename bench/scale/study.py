"""The scale study (docs/PROTOCOL.md §10): how the verdicts of a Table 1 run (the
*baseline*) move with the iteration budget, the prior's strength and other images. Each part is
an ordinary Table 1 run in the store, made with the baseline's own selected weights
(`bench run --weights-from`), and recorded by role in RESULTS/scale.json, from which
`bench report` rebuilds reports/scale.md:

- `replication`: the baseline's methods and tasks on the next test images
  (`REPLICATION_OFFSET`: the replication set);
- `budget`: the first `SUBSET_IMAGES` test images at `BUDGET_ITERS` iterations (the paper's),
  every method that iterates plus BM3D;
- `sweep`: for each flow given (checkpoints of one training after several epochs, wider
  flows), the first `SUBSET_IMAGES` test images with the solver at the baseline's α and at the
  paper's α, the L1 fits without the prior term and GlowIP.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from bench import config
from bench.atomic import atomic_write_text
from bench.errors import BenchError

SCALE_FILE = "scale.json"
PARTS = ("replication", "budget", "sweep")
REPLICATION_OFFSET = config.EVAL_IMAGES  # the replication set of the cpu preset's baseline
SUBSET_IMAGES = 64
BUDGET_ITERS = config.SOLVER_ITERS  # the paper's 1500
BUDGET_METHODS = ("csgm", "glowip", "map", "bm3d", "ours", "ours-released", "l1-z0")
SWEEP_METHODS = ("glowip", "ours", "ours-released", "l1-z0")
SWEEP_PAPER_METHODS = ("ours",)


def record_path(results_dir: str | Path) -> Path:
    return Path(results_dir) / SCALE_FILE


def read_record(results_dir: str | Path) -> dict:
    """RESULTS/scale.json ({} when there is none); BenchError naming it when unreadable."""
    path = record_path(results_dir)
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise BenchError(
            f"{path} is unreadable ({type(e).__name__}): delete it and rerun `bench scale` "
            "(its runs are kept in the store and are reused)"
        ) from None
    if not isinstance(record, dict) or not isinstance(record.get("baseline"), str):
        raise BenchError(f"{path} is not a scale record: delete it and rerun `bench scale`")
    return record


def write_record(results_dir: str | Path, record: dict) -> Path:
    return atomic_write_text(record_path(results_dir), json.dumps(record, indent=1) + "\n")


def part_settings(
    part: str, baseline: dict, subset: int = SUBSET_IMAGES, budget_iters: int = BUDGET_ITERS
) -> list[dict]:
    """The `run_table1` settings of a part (one per run), from the baseline's manifest:
    `subset` test images for the budget and the sweep, `budget_iters` iterations for the
    budget; the replication set is the baseline's number of test images after its own."""
    methods = list(baseline["methods"])
    if part == "replication":  # the test images right after the baseline's own
        images = baseline["test_images"]
        offset = int(images.get("offset", 0)) + int(images["count"])
        return [{"role": "replication", "methods": methods, "test_offset": offset}]
    if part == "budget":
        keep = [m for m in methods if m in BUDGET_METHODS]
        return [{"role": "budget", "methods": keep, "iters": budget_iters, "test_images": subset}]
    if part == "sweep":
        return [
            {"role": "selected", "methods": list(SWEEP_METHODS), "test_images": subset},
            {"role": "paper", "methods": list(SWEEP_PAPER_METHODS), "weights": "paper",
             "test_images": subset},
        ]  # fmt: skip
    raise BenchError(f"unknown --part {part!r}: choose one of {', '.join(PARTS)}")


def run_part(
    part: str,
    baseline_dir: Path,
    results_dir: str | Path,
    data_root,
    device: str,
    threads: int | None,
    progress: bool,
    log: Callable[[str], None],
    checkpoint: str | Path | None = None,
    command: str | None = None,
    subset: int = SUBSET_IMAGES,
    budget_iters: int = BUDGET_ITERS,
    before: Callable[[object, dict], None] | None = None,
) -> list[str]:
    """Run one part of the study (resuming whatever its runs already hold) and record it in
    RESULTS/scale.json; the ids of its runs. The flow is the baseline's checkpoint, or for the
    sweep `checkpoint`. `before(plan, settings)` is called before each run with its plan
    (`runner.plan_table1`) and settings (`part_settings`' plus dataset, seed, checkpoint):
    `bench scale` states its estimate there, and refuses one over --max-hours."""
    from bench import runner
    from bench.train import load_checkpoint

    man = runner.read_manifest(baseline_dir)
    check_baseline(results_dir, baseline_dir.name)
    if part == "sweep" and checkpoint is None:
        raise BenchError("--part sweep needs --checkpoint: the flow to test")
    path = Path(checkpoint or man["model"].get("path") or "")
    if not path.is_file():
        raise BenchError(
            f"checkpoint {path} not found: the scale study needs the flow "
            f"({'--checkpoint' if checkpoint else 'the baseline run'}'s), trained first"
        )
    flow, meta = load_checkpoint(path, device)
    if part != "sweep" and meta["fingerprint"] != man["model"]["fingerprint"]:
        raise BenchError(
            f"{path} holds flow {meta['fingerprint']}, not the baseline's "
            f"{man['model']['fingerprint']}: retrain it, or pass another baseline (--run)"
        )
    chosen = runner.stored_selection(baseline_dir)
    preset = stored_preset(man["preset"])
    ids = []
    for s in part_settings(part, man, subset, budget_iters):
        sized = preset.with_(**{k: s[k] for k in ("iters", "test_images") if k in s})
        if part == "sweep":  # the preset states the flow tested: its width and epochs
            sized = sized.with_(hidden=int(meta["hidden"]), epochs=int(meta["epochs"]))
        weights = s.get("weights", "run")
        log(f"scale study, {part} ({s['role']}): {', '.join(s['methods'])} with flow {path}")
        if before is not None:
            plan = runner.plan_table1(
                sized, s["methods"], man["tasks"], "valid", weights,
                chosen if weights == "run" else None,
                baseline_dir.name if weights == "run" else None,
            )  # fmt: skip
            before(plan, {**s, "dataset": man["dataset"], "seed": int(man["seed"]),
                          "checkpoint": str(path)})  # fmt: skip
        result = runner.run_table1(
            flow, {**meta, "path": str(path)}, sized, man["dataset"], data_root,
            s["methods"], man["tasks"], device, select_on="valid", weights=weights,
            results_dir=results_dir, seed=int(man["seed"]), progress=progress,
            command=command, log=log, threads=threads, test_offset=s.get("test_offset", 0),
            chosen=chosen if weights == "run" else None,
            weights_from=baseline_dir.name if weights == "run" else None,
        )  # fmt: skip
        ids.append(result.run_id)
        _record(results_dir, baseline_dir.name, part, s["role"], result.run_id, meta, path)
    return ids


def stored_preset(stored: dict) -> config.Preset:
    """The preset a run stored (`Preset.to_dict`), as a Preset: the baseline's own sizes, with
    whatever overrides it was run with."""
    fields = dict(stored)
    for k in ("gamma_grid", "alpha_grid"):
        if k in fields:
            fields[k] = tuple(fields[k])
    if "grids" in fields:
        fields["grids"] = {m: tuple(g) for m, g in fields["grids"].items()}
    return config.Preset(**fields)


def check_baseline(results_dir, baseline: str) -> None:
    """BenchError when RESULTS/scale.json records a study of another baseline run (checked
    before a part runs, so that no work is lost)."""
    record = read_record(results_dir)
    if record and record["baseline"] != baseline:
        raise BenchError(
            f"{record_path(results_dir)} records the study of run {record['baseline']}, not "
            f"{baseline}: leave out --run, or pass --results DIR for another study"
        )


def _record(results_dir, baseline: str, part: str, role: str, run_id: str, meta, path) -> None:
    """Add a finished run to RESULTS/scale.json under its part and role."""
    check_baseline(results_dir, baseline)
    record = read_record(results_dir)
    record["baseline"] = baseline
    parts = record.setdefault("parts", {})
    if part != "sweep":
        parts[part] = run_id
    else:
        flows = parts.setdefault("sweep", {})
        entry = flows.setdefault(meta["fingerprint"], {})
        entry.update(
            {
                "checkpoint": str(path),
                "width": meta.get("hidden"),
                "epochs": meta.get("epochs"),
                "val_bpd": meta.get("val_bpd"),
                role: run_id,
            }
        )
    write_record(results_dir, record)
