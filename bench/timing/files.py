"""Table 2's files: table2.md, and the raw times, summary and header facts under the results
folder (`write_timings`), read back and checked by `load_timings` so that table2.md can be
rebuilt without timing again."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.atomic import atomic_write_text
from bench.errors import BenchError
from bench.timing.ablation import add_ratios
from bench.timing.settings import MODE_LABELS, SECTIONS
from bench.timing.table2 import format_table2

TIMING_FILES = ("timing.csv", "timing_summary.csv", "timing_meta.json")
TABLE2_FILE = "table2.md"


def timing_paths(results_dir) -> list[Path]:
    """The files `write_timings` writes under `results_dir`."""
    return [Path(results_dir) / n for n in TIMING_FILES]


def write_table2(df: pd.DataFrame, meta: dict, out_dir) -> Path:
    """Write `out_dir/table2.md` atomically; returns its path."""
    path = Path(out_dir) / "table2.md"
    atomic_write_text(path, format_table2(df, meta))
    return path


def write_timings(df: pd.DataFrame, meta: dict, results_dir) -> list[Path]:
    """Raw per-iteration times (`timing.csv`: section, arch, mode, iteration, ms), the summary
    (`timing_summary.csv`) and the header facts (`timing_meta.json`), each written atomically."""
    results_dir = Path(results_dir)
    raw = pd.DataFrame(
        [
            {
                "section": r["section"],
                "arch": r["arch"],
                "mode": r["mode"],
                "iteration": i,
                "ms": float(t),
            }
            for _, r in df.iterrows()
            for i, t in enumerate(r["times_ms"])
        ]
    )
    out = []
    for name, frame in (
        ("timing.csv", raw),
        ("timing_summary.csv", add_ratios(df).drop(columns=["times_ms"])),
    ):
        path = results_dir / name
        atomic_write_text(path, frame.to_csv(index=False))
        out.append(path)
    path = results_dir / "timing_meta.json"
    atomic_write_text(path, json.dumps(meta, indent=2, default=str) + "\n")
    out.append(path)
    return out


TIMING_META_KEYS = (
    "device", "threads", "torch", "batch", "width", "iters", "warmup", "weights", "command", "date",
)  # fmt: skip
TIMING_SUMMARY_COLUMNS = (
    "section", "arch", "mode", "label", "params", "width", "batch", "iters", "mean_ms", "std_ms",
    "median_ms",
)  # fmt: skip
TIMING_OPTIONAL_NUMBERS = (
    "gflop", "max_abs_dx", "max_abs_dlogdet", "n_convs", "published_ms", "published_std",
    "published_params", "warmup", "rounds",
)  # fmt: skip


def load_timings(results_dir) -> tuple[pd.DataFrame, dict]:
    """Read back what `write_timings` wrote (summary with its raw times, and the header
    facts), so that table2.md can be rebuilt without timing again.

    Returns (summary, meta): one summary row per (section, arch, mode) with its raw times
    (`times_ms`, ms) and `ratio` to coupling; meta the header facts. Raises BenchError when a
    file is missing (run `bench ablation --timing`), or one line naming the file and the fix
    (delete the timing files and rerun) when one is unreadable, not UTF-8, not a JSON object,
    lacks a column or key, holds a non-number, a time that is not positive and finite, an
    unknown mode, a configuration twice, no coupling row to compare with, or a mean, count of
    iterations or set of configurations that the raw times do not bear out."""
    results_dir = Path(results_dir)
    fix = (
        f"delete {results_dir}/timing.csv, timing_summary.csv and timing_meta.json and rerun "
        "`bench ablation --timing`"
    )
    (spath, rpath, mpath), summary, raw, meta = _read_timing_files(results_dir, fix)
    _check_labels(summary, raw, spath, rpath, fix)
    _check_numbers(summary, raw, spath, rpath, fix)
    _check_configurations(summary, spath, fix)
    times = _raw_times(summary, raw, spath, rpath, fix)
    summary["times_ms"] = [times[(r.section, r.arch, r.mode)] for r in summary.itertuples()]
    return add_ratios(summary), meta


def _read_timing_files(results_dir: Path, fix: str):
    """((summary, raw, meta paths), summary, raw, meta) as read, modes as strings ('' for
    none); a BenchError when a file is missing, one line naming it when it is unreadable."""
    from bench import stored

    paths = [results_dir / n for n in ("timing_summary.csv", "timing.csv", "timing_meta.json")]
    for path in paths:
        if not path.is_file():
            raise BenchError(
                f"no timing results in {results_dir} ({path} missing): "
                "run `bench ablation --timing` first"
            )
    spath, rpath, mpath = paths
    na = {"keep_default_na": False, "na_values": [""]}
    summary = stored.read_csv(spath, fix, TIMING_SUMMARY_COLUMNS, **na)
    raw = stored.read_csv(rpath, fix, ("section", "arch", "mode", "iteration", "ms"), **na)
    meta = stored.read_json_object(mpath, fix, TIMING_META_KEYS)
    if not (meta["width"] is None or (isinstance(meta["width"], int) and meta["width"] > 0)):
        raise stored.malformed(mpath, "has a width that is not a positive integer", fix)
    for frame in (summary, raw):
        frame["mode"] = frame["mode"].fillna("").astype(str)
    return paths, summary, raw, meta


def _check_labels(summary, raw, spath: Path, rpath: Path, fix: str) -> None:
    """Rows present; every section and arch given; every mode known."""
    from bench import stored

    if len(summary) == 0:
        raise stored.malformed(spath, "has no rows", fix)
    for path, frame in ((spath, summary), (rpath, raw)):
        for col in ("section", "arch"):
            if frame[col].isna().any():
                raise stored.malformed(path, f"has an empty value in column {col}", fix)
        bad = ~frame["mode"].isin(list(MODE_LABELS))
        if bad.any():
            raise stored.malformed(path, f"has an unknown mode {frame['mode'][bad].iloc[0]!r}", fix)


def _check_numbers(summary, raw, spath: Path, rpath: Path, fix: str) -> None:
    """The summary's numbers finite and >= 0 (batch, iters, mean positive), optional numbers
    numeric or NaN (NaN columns added where absent), raw times positive and finite (`raw['ms']`
    made numeric)."""
    from bench import stored

    checked = {}
    for col in ("params", "width", "batch", "iters", "mean_ms", "std_ms", "median_ms"):
        checked[col] = v = stored.numeric(summary, col, spath, fix, allow_nan=False)
        if not np.isfinite(v).all() or (v < 0).any():
            raise stored.malformed(spath, f"has a {col} that is not a finite number >= 0", fix)
    if ((checked["batch"] < 1) | (checked["iters"] < 1) | (checked["mean_ms"] <= 0)).any():
        raise stored.malformed(spath, "has a batch, iters or mean_ms that is not positive", fix)
    for col in TIMING_OPTIONAL_NUMBERS:
        if col in summary:
            stored.numeric(summary, col, spath, fix)  # NaN (not measured) allowed
        else:
            summary[col] = np.nan
    ms = stored.numeric(raw, "ms", rpath, fix, allow_nan=False)
    stored.numeric(raw, "iteration", rpath, fix, allow_nan=False)
    if not (np.isfinite(ms) & (ms > 0)).all():
        raise stored.malformed(rpath, "has a time that is not a positive finite number", fix)
    raw["ms"] = ms


def _check_configurations(summary, spath: Path, fix: str) -> None:
    """Each configuration once, and a coupling row in every timed section."""
    from bench import stored

    keys = ["section", "arch", "mode"]
    if summary.duplicated(keys).any():
        raise stored.malformed(spath, "lists a configuration twice", fix)
    for section in set(summary["section"]) & set(SECTIONS):
        if not ((summary["section"] == section) & (summary["arch"] == "coupling")).any():
            raise stored.malformed(spath, f"has no coupling row for {section!r} to compare", fix)


def _raw_times(summary, raw, spath: Path, rpath: Path, fix: str) -> dict:
    """{(section, arch, mode): times in iteration order}, checked against the summary's count
    of iterations and mean."""
    from bench import stored

    keys = ["section", "arch", "mode"]
    times = {k: g.sort_values("iteration")["ms"].to_numpy(np.float64) for k, g in raw.groupby(keys)}
    for r in summary.itertuples():
        t = times.get((r.section, r.arch, r.mode))
        what = f"{r.section}/{r.arch}{f' ({r.mode})' if r.mode else ''}"
        if t is None or t.size != int(r.iters):
            got = 0 if t is None else t.size
            raise stored.malformed(
                rpath, f"holds {got} times of {what}, where timing_summary.csv says {r.iters}", fix
            )
        if not math.isclose(float(t.mean()), float(r.mean_ms), rel_tol=1e-9):
            raise stored.malformed(
                spath, f"has a mean of {what} that its times in timing.csv do not give", fix
            )
    return times
