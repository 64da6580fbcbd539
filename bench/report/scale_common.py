"""What the parts of reports/scale.md share: the study's runs read as paired test cells, and
how a paired difference is written."""

from __future__ import annotations

import math

from bench.findings import test_cells
from bench.report.frames import load_run
from bench.report.text import num
from bench.runner import find_run

FIGURES_DIR = "scale"


def cells_of(results_dir, run_id: str | None, rename: dict | None = None, images=None) -> dict:
    """A stored run's reported test cells (`test_cells`), methods renamed by `rename`, rows
    restricted to `images` (names) when given; {} for no run."""
    if not run_id:
        return {}
    cells = test_cells(load_run(find_run(results_dir, run_id)))
    out = {}
    for (m, t), frame in cells.items():
        if images is not None:
            frame = frame.loc[frame.index.isin(images)]
        out[((rename or {}).get(m, m), t)] = frame
    return out


def diff_text(r: dict | None, key: str = "psnr", digits: int = 2) -> str:
    if r is None:
        return "—"
    d = r[key]
    return f"{num(d['mean'], digits)} [{num(d['lo'], digits)}, {num(d['hi'], digits)}]"


def bpd_key(flow: dict) -> float:
    v = flow.get("val_bpd")
    return -float(v) if isinstance(v, (int, float)) else math.inf
