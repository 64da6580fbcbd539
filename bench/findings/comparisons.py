"""The comparisons of a run's reported cells: each claim of the paper on its tasks, the
released-code variants against the methods they corrupt, and the ablation steps."""

from __future__ import annotations

import math

from bench.findings.constants import MIN_PAIRED_IMAGES, NOT_MEANINGFUL
from bench.findings.evidence import flow_shortfalls, withheld
from bench.findings.verdicts import paired, verdict_better, verdict_tie
from bench.report.keyed_tables import ABLATION, CLAIMS, DEFECTS, Claim


def test_cells(data) -> dict:
    """(method, task) -> per-image test rows of its reported cell, indexed by image name."""
    from bench.report import cell_rows, summary_frame

    cells = {}
    for rec in summary_frame(data).itertuples():
        if rec.status != "ok":
            continue
        w = None if math.isnan(rec.weight) else rec.weight
        rows = cell_rows(data.rows, "test", rec.method, rec.task, w)
        cells[(rec.method, rec.task)] = rows.set_index("image")[["psnr", "ssim", "mse5"]]
    return cells


def compare(cells: dict, a: str, b: str, task: str) -> dict | None:
    """Paired PSNR and SSIM differences of method a minus method b on one task."""
    if (a, task) not in cells or (b, task) not in cells:
        return None
    x, y = cells[(a, task)], cells[(b, task)]
    common = x.index.intersection(y.index)
    if len(common) < 2:
        return None
    x, y = x.loc[common], y.loc[common]
    return {
        "a": a,
        "b": b,
        "task": task,
        "psnr": paired(x["psnr"].to_numpy(), y["psnr"].to_numpy()),
        "ssim": paired(x["ssim"].to_numpy(), y["ssim"].to_numpy()),
    }


def claim_results(data, cells: dict | None = None) -> list[dict]:
    """Every claim of CLAIMS with its per-task comparisons and verdicts (`cells`: the run's
    test cells from `test_cells`, read once by the caller that needs them several times).

    'intervals' is what the intervals alone say; 'verdict' is the same unless the evidence
    falls short (fewer than MIN_PAIRED_IMAGES paired images, or a smoke flow: see
    flow_shortfalls), where it reads 'not meaningful at this size (why)'; 'shortfalls' lists
    why."""
    cells = test_cells(data) if cells is None else cells
    man = data.manifest
    flow_short = flow_shortfalls(man.get("model"), (man.get("preset") or {}).get("name"))
    return [_claim_result(c, cells, flow_short) for c in CLAIMS]


def _claim_result(c: Claim, cells: dict, flow_short: list[str]) -> dict:
    """One claim's comparisons on its tasks and its overall verdict."""
    comps = [_task_comparison(c, cells, t, flow_short) for t in c.tasks]
    overall = _overall({r["intervals"] for r in comps})
    short = list(
        dict.fromkeys(
            s for r in comps if r["verdict"].startswith(NOT_MEANINGFUL) for s in r["shortfalls"]
        )
    )
    return (
        {"claim": c, "comparisons": comps, "intervals": overall,
         "verdict": f"{NOT_MEANINGFUL} ({'; '.join(short)})" if short else overall,
         "shortfalls": short}
    )  # fmt: skip


def _task_comparison(c: Claim, cells: dict, t: str, flow_short: list[str]) -> dict:
    """A claim's comparison on task `t` with what its intervals say and its verdict."""
    r = compare(cells, c.a, c.b, t)
    if r is None:
        return {"a": c.a, "b": c.b, "task": t, "verdict": "not run", "intervals": "not run"}
    judge = verdict_tie if c.kind == "tie" else verdict_better
    r["intervals"] = judge(r["psnr"], r["ssim"])
    n = r["psnr"]["n"]
    few = [f"{n} images < {MIN_PAIRED_IMAGES}"] if n < MIN_PAIRED_IMAGES else []
    r["shortfalls"] = few + flow_short
    r["verdict"] = withheld(r["intervals"], r["shortfalls"])
    return r


def _overall(verdicts: set[str]) -> str:
    """A claim's verdict from its per-task verdicts."""
    decided = [v for v in verdicts if v.startswith(("supported", "contradicted"))]
    if verdicts == {"supported"}:
        return "supported"
    if verdicts == {"not run"}:
        return "not run"
    if not decided:  # unresolved or undetermined (and not run) everywhere
        undetermined = any(v.startswith("undetermined") for v in verdicts)
        return "undetermined" if undetermined else "unresolved"
    if any(v.startswith("contradicted") for v in verdicts) and not any(
        v.startswith("supported") for v in verdicts
    ):
        return "not supported"
    return "partly supported"


def pair_results(data, pairs, cells: dict | None = None) -> list[dict]:
    """Method a against method b on every task of the run where both ran, for each
    (a, b, what) of `pairs`; each result carries its `what`."""
    cells = test_cells(data) if cells is None else cells
    out = []
    for a, b, what in pairs:
        for t in data.manifest["tasks"]:
            r = compare(cells, a, b, t)
            if r is not None:
                r["what"] = what
                out.append(r)
    return out


def ablation_results(data, cells: dict | None = None) -> list[dict]:
    """The steps from GlowIP to the solver, one ingredient at a time (needs 'l1-z0' and
    'ours-released' in the run)."""
    return pair_results(data, ABLATION, cells)


def defect_results(data, cells: dict | None = None) -> list[dict]:
    """Each released-code variant against the method it corrupts."""
    return pair_results(data, DEFECTS, cells)
