"""The stores a command shares with others: the locks around its writes, and the stored run a
report command reads.

Writers of shared state hold a lock (`bench.locks`) around their whole read-compute-write
section: the reports folder (`lock_reports`), and the timing, perf and realism results
(`lock_results`). A second live writer is refused with a one-line error naming its pid.
"""

from __future__ import annotations

from pathlib import Path

WRITER = "bench command"  # who holds a lock, as the refusal names it (any bench command)


def lock_reports(out: str | Path):
    """`with lock_reports(out):` — this command is the only writer of the reports folder
    `out` (its `.lock`); the folder is created first, so that every writer locks the same
    file whether or not the folder existed."""
    from bench import locks

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    return locks.holding(folder, WRITER)


def lock_results(path: str | Path):
    """`with lock_results(results / 'timing.csv'):` — this command is the only writer of a
    results file and its companions (the lock is `<file>.lock` beside it)."""
    from bench import locks

    return locks.holding(Path(path), WRITER)


def report_run(results_dir, out, run_id, report_file: str):
    """The stored Table 1 run a report command uses: `run_id` when given, else the run that
    OUT/`report_file` was made from (so a plain `bench report` rebuilds what is there), else
    the latest Table 1 run. A general-table run is refused (BenchError): general.md has its
    own rebuild."""
    from bench import provenance as P
    from bench.errors import BenchError
    from bench.runner import find_run, list_runs, runs_root

    if run_id is None:
        made_from = P.recorded_run(Path(out) / report_file)
        if made_from and (runs_root(results_dir) / made_from).is_dir():
            run_id = made_from
    runs = list_runs(results_dir)
    table1 = [d for d in runs if not is_general_run(d)]
    if run_id is None:  # the latest Table 1 run: a general table's runs have their own report
        if table1 or not runs:
            return table1[-1] if table1 else find_run(results_dir, None)
        raise BenchError(
            f"no Table 1 run in {runs_root(results_dir)}, only general-table runs: run "
            "`bench run --table 1`, or rewrite general.md with `bench run --table general` "
            "(nothing is recomputed)"
        )
    found = find_run(results_dir, run_id)
    if is_general_run(found):
        raise BenchError(
            f"run {found.name} is a general-table run, not Table 1's: `bench report` rebuilds "
            "general.md from the runs it records; pass a Table 1 run to --run"
        )
    return found


def is_general_run(run_dir: Path) -> bool:
    """Whether a stored run is one of `bench run --table general`'s (its preset says so)."""
    from bench.config import is_general_preset
    from bench.runner import read_manifest

    try:
        preset = read_manifest(run_dir).get("preset")
    except Exception:  # noqa: BLE001 - an unreadable manifest is reported by whoever reads it
        return False
    return is_general_preset(preset)
