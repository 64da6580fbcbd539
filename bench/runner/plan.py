"""What a Table 1 run computes: its cells (`Cell`) and their plan (`Plan`, `plan_table1`),
with the method and task names it accepts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.config import Preset
from bench.errors import BenchError
from bench.runner.layout import CELLS_DIR, STAGES

SELECT_ON = ("valid", "test")
WEIGHT_MODES = ("grid", "paper", "run")


@dataclass(frozen=True)
class Cell:
    """One (stage, method, weight, task): all images of the stage restored in one batch."""

    stage: str  # 'select' (valid images) or 'test'
    method: str
    task: str
    weight: float | None
    label: str  # the method's run name, e.g. 'csgm[gamma=0.01]'

    @property
    def partition(self) -> str:
        return "valid" if self.stage == "select" else "test"

    @property
    def stem(self) -> str:
        return f"{self.label}__{self.task}"

    def relpath(self, suffix: str = ".csv") -> Path:
        return Path(CELLS_DIR) / self.stage / f"{self.stem}{suffix}"

    def __str__(self) -> str:
        return f"{self.stage}/{self.stem}"


@dataclass
class Plan:
    """Which cells a Table 1 run needs; built (and validated) before any work starts."""

    preset: Preset
    methods: list[str]
    tasks: list[str]
    select_on: str
    weights: str
    weight_names: dict[str, str | None]
    grids: dict[str, tuple]  # the weights tried per method ((None,) for weightless methods)
    skipped: dict[tuple[str, str], str]  # (method, task) -> reason it does not apply
    fixed: dict[tuple[str, str], tuple[float | None, str]]  # -> (weight, source), no selection
    to_select: list[tuple[str, str]]  # (method, task) pairs whose weight a grid decides
    grid_cells: list[Cell]  # the grid: stage 'select' (valid) or 'test' (select_on='test')
    fixed_cells: list[Cell]  # test cells whose weight is known up front
    labels: dict[tuple[str, float | None], str] = field(default_factory=dict)
    # weights='run': the run the weights come from and what it chose per (method, task)
    weights_from: str | None = None
    chosen: dict[tuple[str, str], float | None] = field(default_factory=dict)
    # images actually loaded per stage ('select', 'test'), set once they are known
    # (`with_images`); until then a stage counts the preset's number
    loaded: dict[str, int] = field(default_factory=dict)

    @property
    def grid_stage(self) -> str:
        return "select" if self.select_on == "valid" else "test"

    @property
    def n_after_selection(self) -> int:
        """Test cells that can only run once the grid has chosen their weight."""
        return len(self.to_select) if self.grid_stage == "select" else 0

    @property
    def n_cells(self) -> int:
        return len(self.grid_cells) + len(self.fixed_cells) + self.n_after_selection

    def images(self, stage: str) -> int:
        """Images a cell of `stage` restores: those actually loaded when known (a partial
        CelebA copy or a small dataset may hold fewer than the preset asks), else the
        preset's number."""
        if stage in self.loaded:
            return self.loaded[stage]
        return self.preset.select_images if stage == "select" else self.preset.test_images

    def with_images(self, **loaded: int) -> Plan:
        """This plan with the numbers of images actually loaded, e.g.
        ``plan.with_images(test=len(test_set), select=len(valid_set))``."""
        from dataclasses import replace

        unknown = set(loaded) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}: use {', '.join(STAGES)}")
        return replace(self, loaded={**self.loaded, **{k: int(v) for k, v in loaded.items()}})

    def cell(self, stage: str, method: str, task: str, weight: float | None) -> Cell:
        return Cell(stage, method, task, weight, self.labels[(method, _wkey(weight))])

    def describe(self) -> str:
        """One line: how many cells on how many images (the images actually loaded once
        `with_images` has set them)."""

        def count(n: int, what: str) -> str:
            return f"{n} {what}{'' if n == 1 else 's'}"

        parts = []
        if self.grid_cells:
            partition = "valid" if self.grid_stage == "select" else "test"
            images = count(self.images(self.grid_stage), f"{partition} image")
            parts.append(f"{count(len(self.grid_cells), 'grid cell')} on {images}")
        n_test = len(self.fixed_cells) + self.n_after_selection
        if n_test:
            images = count(self.images("test"), "test image")
            parts.append(f"{count(n_test, 'test cell')} on {images}")
        return f"{count(self.n_cells, 'cell')} ({', '.join(parts) or 'nothing to run'})"


def _wkey(weight: float | None) -> float | None:
    return None if weight is None else float(weight)


def weight_key(weight) -> str:
    """A weight as a manifest key: repr of the float, 'None' for no weight (NaN is None)."""
    if weight is None or (isinstance(weight, float) and math.isnan(weight)):
        return "None"
    return repr(float(weight))


# ---- method and task names ---------------------------------------------------------------------
def _split_names(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        item = str(item).strip()
        if item and item not in out:
            out.append(item)
    return out


def resolve_methods(value: str | Sequence[str] | None) -> list[str]:
    """Method names (comma-separated or a list), checked; None: Table 1's methods in its row
    order (`bench.methods.default_method_names`: the registered variants, e.g.
    'ours-released' or 'map-all', run only when named in --methods)."""
    from bench import methods as M

    names = _split_names(value)
    if names is None:
        return list(M.default_method_names())
    if not names:
        raise BenchError(f"--methods is empty: name one or more of {', '.join(M.all_methods())}")
    for name in names:
        M.get_method(name)  # raises BenchError naming the choices
    return names


def resolve_tasks(value: str | Sequence[str] | None) -> list[str]:
    """Task names (comma-separated or a list; None: all four), checked."""
    from bench import tasks as T

    names = _split_names(value)
    if names is None:
        return [t for t in T.TASKS if T.TASKS[t].default]
    if not names:
        raise BenchError(f"--tasks is empty: name one or more of {', '.join(T.TASKS)}")
    for name in names:
        T.get_task(name)  # raises BenchError naming the choices
    return names


# ---- the plan ----------------------------------------------------------------------------------
@dataclass
class _Draft:
    """A plan's per-method parts while `plan_table1` builds them, in the order it adds them
    (`chosen`, `weights_from`: the weights of another run, for weights='run')."""

    chosen: dict[tuple[str, str], float | None] = field(default_factory=dict)
    weights_from: str | None = None
    weight_names: dict[str, str | None] = field(default_factory=dict)
    grids: dict[str, tuple] = field(default_factory=dict)
    labels: dict[tuple[str, float | None], str] = field(default_factory=dict)
    skipped: dict[tuple[str, str], str] = field(default_factory=dict)
    fixed: dict[tuple[str, str], tuple[float | None, str]] = field(default_factory=dict)
    to_select: list[tuple[str, str]] = field(default_factory=list)


def _check_plan_options(preset: Preset, select_on: str, weights: str) -> None:
    """Raise BenchError for an unknown selection mode or a preset knob below 1."""
    if select_on not in SELECT_ON:
        raise BenchError(f"unknown --select-on {select_on!r}: choose one of {', '.join(SELECT_ON)}")
    if weights not in WEIGHT_MODES:
        raise BenchError(f"unknown --weights {weights!r}: choose one of {', '.join(WEIGHT_MODES)}")
    for knob in ("test_images", "iters") + (("select_images",) if weights == "grid" else ()):
        value = getattr(preset, knob)
        if not isinstance(value, int) or value < 1:
            raise BenchError(f"preset {preset.name!r} has {knob}={value!r}: it must be >= 1")


def _add_method(
    draft: _Draft, m: str, method, preset: Preset, task_names: list[str], weights: str
) -> None:
    """Add method `m` to the draft: its grid, the tasks it skips, and per supported task
    a fixed weight or a grid to select from."""
    draft.weight_names[m] = method.weight_name
    if method.weight_name is None:
        grid: tuple = (None,)
    else:
        grid = tuple(float(w) for w in method.grid(preset))
    draft.grids[m] = grid
    supported = []
    for t in task_names:
        reason = method.supports(t)
        if reason:
            draft.skipped[(m, t)] = str(reason)
        else:
            supported.append(t)
    if not supported:
        return
    if method.weight_name is not None and weights == "grid" and not grid:
        raise BenchError(
            f"empty weight grid for {m} ({method.weight_name}) under preset {preset.name!r}: "
            "give the preset a non-empty grid, or use --weights paper"
        )
    for t in supported:
        _add_weight(draft, m, t, method, grid, weights)
    ws = set(grid) | {w for (mm, _), (w, _) in draft.fixed.items() if mm == m}
    for w in ws:
        draft.labels[(m, _wkey(w))] = method.run_name(w)
    stems = [draft.labels[(m, _wkey(w))] for w in ws]
    if len(set(stems)) != len(stems):
        raise BenchError(f"{m}: two weights of its grid share a run name ({stems})")


def _add_weight(draft: _Draft, m: str, t: str, method, grid: tuple, weights: str) -> None:
    """How (method `m`, task `t`) gets its weight: fixed (no weight, the paper's, the only
    grid value), skipped (no paper weight), or selected on the grid."""
    if method.weight_name is None:
        draft.fixed[(m, t)] = (None, "no weight")
    elif weights == "run":
        if draft.chosen.get((m, t)) is None:
            draft.skipped[(m, t)] = (
                f"run {draft.weights_from} chose no {method.weight_name} for {m} on {t}"
            )
        else:
            draft.fixed[(m, t)] = (float(draft.chosen[(m, t)]), f"run {draft.weights_from}")
    elif weights == "paper":
        w = method.paper_weight(t)
        if w is not None:
            draft.fixed[(m, t)] = (float(w), "paper")
        elif len(grid) == 1:
            draft.fixed[(m, t)] = (grid[0], "only value")
        else:
            draft.skipped[(m, t)] = f"the paper gives no {method.weight_name} for {m} on {t}"
    elif len(grid) == 1:
        draft.fixed[(m, t)] = (grid[0], "only value")
    else:
        draft.to_select.append((m, t))


def plan_table1(
    preset: Preset,
    methods: str | Sequence[str] | None = None,
    tasks: str | Sequence[str] | None = None,
    select_on: str = "valid",
    weights: str = "grid",
    chosen: dict[tuple[str, str], float | None] | None = None,
    weights_from: str | None = None,
) -> Plan:
    """The cells of a Table 1 run. Raises BenchError (before any work) for unknown methods or
    tasks, an unknown selection mode, or an empty weight grid.

    `weights`: 'grid' (selected on the grid), 'paper' (the paper's chosen weights) or 'run'
    (`chosen`, the weight per (method, task) that the run `weights_from` selected: its test
    cells rerun on other images or iterations, `bench run --weights-from`; a pair it has no
    weight for is skipped, saying so)."""
    from bench.methods import get_method

    _check_plan_options(preset, select_on, weights)
    if weights == "run" and (chosen is None or not weights_from):
        raise BenchError("weights 'run' needs the chosen weights and the run they come from")
    method_names = resolve_methods(methods)
    task_names = resolve_tasks(tasks)
    grid_stage = "select" if select_on == "valid" else "test"

    d = _Draft(chosen=dict(chosen or {}), weights_from=weights_from)
    for m in method_names:
        _add_method(d, m, get_method(m), preset, task_names, weights)

    grid_cells = [
        Cell(grid_stage, m, t, w, d.labels[(m, _wkey(w))])
        for (m, t) in d.to_select
        for w in d.grids[m]
    ]
    fixed_cells = [
        Cell("test", m, t, w, d.labels[(m, _wkey(w))]) for (m, t), (w, _) in d.fixed.items()
    ]
    if not grid_cells and not fixed_cells:
        raise BenchError(
            "nothing to run: every chosen method is skipped on every chosen task "
            f"({'; '.join(f'{m} on {t}: {r}' for (m, t), r in d.skipped.items())})"
        )
    return Plan(
        preset=preset,
        methods=method_names,
        tasks=task_names,
        select_on=select_on,
        weights=weights,
        weight_names=d.weight_names,
        grids=d.grids,
        skipped=d.skipped,
        fixed=d.fixed,
        to_select=d.to_select,
        grid_cells=grid_cells,
        fixed_cells=fixed_cells,
        labels=d.labels,
        weights_from=d.weights_from,
        chosen=d.chosen,
    )
