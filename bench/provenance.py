"""Where each report and result came from, so that no command silently replaces a file made
from another run, preset or dataset.

Every folder that bench writes reports or results into holds ``sources.json``: for each file
bench wrote there, the *source* it was made from — a small identity (``key``: the Table 1
run, the timing configuration, the flow's training settings…) and how messages name it
(``label``). Before a command writes, it checks its target files:

- a file that does not exist, or that was made from the same source (a rebuild, a resumed
  run, a re-measurement with the same settings), is written;
- a file made from another source, or one bench has no record of, is refused with one line
  naming both sources and the two ways out: write elsewhere (``--out DIR`` or
  ``--results DIR``), or ``--replace`` to overwrite it.

The record is written after the files themselves, under a lock of ``sources.json``; it holds
no timestamps, so rebuilding a report rewrites it byte for byte. The keys are built by the
commands from what they are about to write (`table1_source`, `timing_source`, …, below, kept
here so that a report and the command that rebuilds it agree).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError

SOURCES_FILE = "sources.json"
FORMAT = 1
REPLACE_FLAG = "--replace"
SIDECAR_SUFFIX = ".source.json"
DEFAULT_RESULTS = "results"  # the commands' default --results
DEFAULT_OUT = "reports"  # the commands' default --out


@dataclass(frozen=True)
class Source:
    """What a set of files is made from. `key` decides identity (JSON-able values; a None
    value in a *partial* source matches anything, for a check made before every part is
    known); `label` is how messages and reports name it."""

    label: str
    key: Mapping = field(default_factory=dict)

    def same_as(self, other_key: Mapping | None, partial: bool = False) -> bool:
        if not isinstance(other_key, Mapping):
            return False
        mine = _plain(self.key)
        theirs = _plain(other_key)
        if partial:
            return all(v is None or theirs.get(k) == v for k, v in mine.items())
        return mine == theirs


def _plain(value):
    """`value` as JSON would give it back (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def sources_path(folder: str | Path) -> Path:
    return Path(folder) / SOURCES_FILE


def _parse(folder: str | Path) -> tuple[dict, str | None]:
    """(the files recorded in `folder`'s sources.json, None), or ({}, why it is not a record
    bench wrote) — ({}, None) when there is none."""
    path = sources_path(folder)
    if not path.exists():
        return {}, None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        return {}, f"is unreadable or not JSON ({type(e).__name__})"
    if not (isinstance(value, dict) and value.get("format") == FORMAT
            and isinstance(value.get("files"), dict)):  # fmt: skip
        return {}, "is not a bench record (no 'format' and 'files' of ours)"
    return {k: v for k, v in value["files"].items() if isinstance(v, dict)}, None


def foreign(folder: str | Path) -> str | None:
    """Why `folder`'s sources.json is not a record bench wrote (unreadable, not JSON, another
    layout), or None when it is ours or absent: such a file is never overwritten."""
    return _parse(folder)[1]


def _refuse_foreign(folders: Iterable[Path], option: str) -> None:
    for folder in folders:
        why = foreign(folder)
        if why:
            raise BenchError(
                f"{sources_path(folder)} {why}: bench keeps its record of what each file was "
                f"made from there and will not overwrite it; move it away, or write elsewhere "
                f"with {option}"
            )


def sidecar_path(path: str | Path) -> Path:
    """Where a file's own record lives when it is kept beside it (`record(sidecar=True)`):
    `<file>.source.json`, for files in folders where local and committed files mix."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_sources(folder: str | Path) -> dict[str, dict]:
    """{file name: {'label', 'key'}} recorded in `folder`; {} when there is no record or it is
    not ours (then every existing file counts as of unknown source, which refuses safely)."""
    return _parse(folder)[0]


def recorded(path: str | Path) -> dict | None:
    """The record of one file ({'label', 'key'}): its sidecar's, else its folder's; or None."""
    path = Path(path)
    side = sidecar_path(path)
    if side.is_file():
        try:
            value = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return None
        return value if isinstance(value, dict) else None
    return read_sources(path.parent).get(path.name)


def conflicts(
    paths: Iterable[str | Path], source: Source, partial: bool = False
) -> list[tuple[Path, str]]:
    """(path, what it was made from) for each existing file in `paths` made from another
    source than `source` (or of unknown source)."""
    out = []
    for p in map(Path, paths):
        if not p.exists():
            continue
        rec = recorded(p)
        if rec is None:
            out.append((p, f"an unknown source (no record in {sources_path(p.parent)})"))
        elif not source.same_as(rec.get("key"), partial):
            out.append((p, str(rec.get("label") or "another source")))
    return out


def check(
    paths: Iterable[str | Path],
    source: Source,
    replace: bool = False,
    option: str = "--out DIR",
    partial: bool = False,
) -> None:
    """Refuse (BenchError, one line) to overwrite a file in `paths` made from another source,
    unless `replace`; `option` is the command's way to write elsewhere."""
    paths = [Path(p) for p in paths]
    _refuse_foreign(dict.fromkeys(p.parent for p in paths), option)
    if replace:
        return
    found = conflicts(paths, source, partial)
    if not found:
        return
    path, theirs = found[0]
    more = f" (and {len(found) - 1} more file(s) there)" if len(found) > 1 else ""
    raise BenchError(
        f"{path} was made from {theirs}, not from {source.label}{more}: write elsewhere with "
        f"{option}, or pass {REPLACE_FLAG} to overwrite it"
    )


def record(paths: Iterable[str | Path], source: Source, sidecar: bool = False) -> None:
    """Record `source` for every existing file of `paths`, and forget files that are gone,
    in each folder's sources.json (atomically, under its lock), or with `sidecar` in each
    file's own `<file>.source.json` (for a folder where files made locally sit beside
    committed ones, so that a local file changes no committed record). A sources.json that
    bench did not write is never overwritten (BenchError)."""
    from bench import locks
    from bench.atomic import atomic_write_text

    entry = {"label": source.label, "key": _plain(source.key)}
    if sidecar:
        for p in map(Path, paths):
            if p.exists():
                text = json.dumps(entry, indent=1, sort_keys=True)
                atomic_write_text(sidecar_path(p), text + "\n")
        return
    by_folder: dict[Path, list[Path]] = {}
    for p in map(Path, paths):
        by_folder.setdefault(p.parent, []).append(p)
    _refuse_foreign(by_folder, "another folder")
    for folder, files in by_folder.items():
        target = sources_path(folder)
        with locks.holding(target, "bench command"):
            have = {**read_sources(folder), **{p.name: entry for p in files}}
            have = {k: v for k, v in have.items() if (folder / k).exists()}  # gone: forgotten
            text = json.dumps({"format": FORMAT, "files": have}, indent=1, sort_keys=True)
            atomic_write_text(target, text + "\n")


def recorded_run(path: str | Path) -> str | None:
    """The Table 1 run a report file (table1.md, claims.md) was made from, if recorded."""
    rec = recorded(path) or {}
    key = rec.get("key") if isinstance(rec.get("key"), dict) else {}
    run = key.get("run")
    if isinstance(run, dict):  # claims.md: {'run': its run's table1 key}
        run = run.get("run")
    return run if isinstance(run, str) else None


def rebuild_options(results_dir=None, out=None) -> str:
    """The `--results`/`--out` options that make a printed rebuild command work exactly as
    printed (from the folder it ran in): each given when it is not the default, as the user
    gave it."""
    import shlex

    parts = []
    for flag, value, default in (("--results", results_dir, DEFAULT_RESULTS),
                                 ("--out", out, DEFAULT_OUT)):  # fmt: skip
        if value is None:
            continue
        shown = as_given(value)
        if shown != default:
            parts.append(f"{flag} {shlex.quote(shown)}")
    return "".join(" " + p for p in parts)


def as_given(path: str | Path) -> str:
    """A path as a rebuild line prints it: relative to the current folder when it lies
    inside it (so `--results $PWD/results` and `--results results` print alike), else as
    given; normalised (`./x/` is `x`)."""
    import os

    path = Path(path)
    if path.is_absolute():
        try:
            return str(path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(path)
    return os.path.normpath(str(path))


# ---- the sources of the harness's outputs ------------------------------------------------------
def table1_source(run_id: str | None, dataset: str, preset: str) -> Source:
    """Table 1's report set (table1.md, grid_search.png, Figures 3–6): one stored run. With
    `run_id` None it is partial: any run of that dataset and preset matches (checked before
    the run's id is known)."""
    label = (
        f"Table 1 run {run_id} ({dataset}, preset {preset})"
        if run_id
        else f"a new Table 1 run ({dataset}, preset {preset})"
    )
    return Source(label, {"run": run_id, "dataset": dataset, "preset": preset})


def general_source(run_ids: list[str] | None, dataset: str, ood: str | None, preset: str) -> Source:
    """The general table's report set (general.md and its figures): its stored runs, the
    in-distribution one first; `ood` names the out-of-distribution dataset ('none': none).
    With `run_ids` None it is partial (checked before the ids are known)."""
    sets = dataset + (f" and {ood}" if ood and ood != "none" else "")
    label = (
        f"general-table runs {', '.join(run_ids)} ({sets}, preset {preset})"
        if run_ids
        else f"a new general-table run ({sets}, preset {preset})"
    )
    key = {"runs": list(run_ids) if run_ids else None, "dataset": dataset, "ood": ood}
    return Source(label, {**key, "preset": preset})


def run_source(manifest: Mapping) -> Source:
    """`table1_source` of a stored run's manifest."""
    preset = manifest.get("preset") or {}
    name = preset.get("name") if isinstance(preset, Mapping) else preset
    return table1_source(manifest.get("run_id"), manifest.get("dataset"), name)


TIMING_KEYS = ("preset", "width", "batch", "iters", "warmup", "device", "weights")


def timing_source(meta: Mapping) -> Source:
    """Table 2 and RESULTS/timing*: one timing configuration on one device (a rerun with the
    same settings is a re-measurement of the same thing)."""
    key = {k: meta.get(k) for k in TIMING_KEYS}
    label = (
        f"timing preset {key['preset']} (width {key['width']}, batch {key['batch']}, "
        f"{key['iters']} iterations, {key['device']})"
    )
    return Source(label, key)


REALISM_KEYS = ("model", "real", "n", "seed", "repeats", "components")


def realism_source(meta: Mapping) -> Source:
    """RESULTS/realism*: Figure 1's realism proxy of one flow against one set of real images."""
    key = {k: meta.get(k) for k in REALISM_KEYS}
    model = str(meta.get("model") or "?")
    fp = re.search(r"fingerprint `([^`]+)`", model)
    flow = f"flow `{fp.group(1)}`" if fp else model.split(", trained on")[0]
    return Source(f"the realism proxy of {flow} (n = {key['n']}, seed {key['seed']})", key)


def claims_source(run: Source) -> Source:
    """claims.md: the claims of one run. The timing and realism results it quotes come from
    the same results folder, whose own records guard them, and claims.md names them and flags
    one of another flow or preset (`bench.findings.sources_line`); adding or updating them
    updates the same run's claims, so they are not part of its identity."""
    return Source("claims of " + run.label, {"run": dict(run.key)})


def perf_source(preset: str, width: int, device: str, cpu: str) -> Source:
    """perf.md and RESULTS/perf.csv: one speed benchmark configuration on one machine (a
    rerun there is a re-measurement of the same thing)."""
    key = {"preset": preset, "width": int(width), "device": str(device), "cpu": cpu}
    return Source(f"speed benchmark preset {preset} (width {width}) on {device}, {cpu}", key)


def comparison_source(run_id: str, baseline: str) -> Source:
    """A compare-BASELINE-to-RUN.md report: two stored runs."""
    return Source(
        f"comparison of run {run_id} with {baseline}", {"run": run_id, "baseline": baseline}
    )
