"""The fused solve of a run's cells (the default; ``bench run --no-fuse`` keeps one solve per
cell): every cell of a flow method that restores through its latent problem
(`Method.fusable`) is cut into rows, the rows of many cells are packed into chunks of at most
`max_batch` generator passes, and each chunk is one `bench.solve.solve_latents` call: one
generator pass per iteration over all its rows, each cell's objective, weight and learning rate
on its own rows, divergence masked per row, MAP's second pass on MAP's rows only.

Rows are independent in a solve (PROTOCOL §5: the loss sums over images, Adam is elementwise,
the flow is frozen), so a row's restoration is the one the per-cell path gives, up to the
rounding of kernels whose order of summation depends on the batch size (tests/test_fused.py
states the tolerances). A cell is stored, atomically, as soon as its last rows are solved, so an
interrupted run resumes per cell exactly as the per-cell path does.

Chunks are filled in the order (stage, task, method, weight): the rows of one task sit together.
A cell may be split over consecutive chunks in this process; chunks sent to other processes
(``--jobs``, Dask) hold whole cells only, so that each is a unit of work of its own.

The other cells (BM3D and the classical baselines, and any method that overrides `restore`) run
as cells, as in the per-cell path. With ``--jobs 1`` and two or more threads they run in one
worker process with one thread while the fused solve goes on with the other threads, and the
solve takes every thread back once they are done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bench.precision import precision
from bench.runner.compute import (
    CellContext,
    CellInputs,
    cell_inputs,
    cell_output,
    cell_problem,
    compute_cell,
    flow_from,
    torch_threads,
)
from bench.runner.plan import Cell

# rows (generator passes) per chunk when --max-batch is not given: on a CPU, the solver's time
# per image-iteration stops falling at about this batch (reports/perf.md); on CUDA, what fits in
# half the free memory at CUDA_BYTES_PER_ROW_512 bytes per row for a width-512 flow
CPU_MAX_BATCH = 256
CUDA_BYTES_PER_ROW_512 = 24 * 2**20
CUDA_MAX_BATCH = 2048  # larger chunks store their cells later (resume granularity)


def default_max_batch(device: str, width: int | None) -> int:
    """Rows per chunk on `device` for a flow of `width` hidden channels: CPU_MAX_BATCH on a
    CPU; on CUDA, half the free device memory over an estimate of a row's activations
    (CUDA_BYTES_PER_ROW_512 scaled by width / 512), capped at CUDA_MAX_BATCH."""
    if not str(device).startswith("cuda"):
        return CPU_MAX_BATCH
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    per_row = CUDA_BYTES_PER_ROW_512 * max(width or 512, 16) / 512
    return int(max(1, min(CUDA_MAX_BATCH, free // 2 // per_row)))


def row_cost(method) -> float:
    """Generator passes per row of a method's solve: its declared `cost` (2 for MAP's second
    pass), 1 when it declares none."""
    return float(getattr(method, "cost", 1.0) or 1.0)


@dataclass(frozen=True)
class Segment:
    """Rows start..stop of the cell at `index` in a list of cells."""

    index: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def plan_chunks(
    cells: list[Cell], rows: list[int], costs: list[float], max_batch: int, split: bool = True
) -> list[list[Segment]]:
    """Pack the rows of `cells` (rows[i] images, costs[i] generator passes per row) into chunks
    of at most `max_batch` passes, cells taken in the order (stage, task, method, weight). With
    `split`, a cell is cut over consecutive chunks to fill them; without, chunks hold whole
    cells (a cell larger than `max_batch` alone). ValueError for max_batch < 1."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    order = sorted(range(len(cells)), key=lambda i: _order_key(cells[i]))
    chunks: list[list[Segment]] = []
    current: list[Segment] = []
    room = max_batch
    for i in order:
        start, cost = 0, max(costs[i], 1e-9)
        while start < rows[i]:
            left = rows[i] - start
            fits = max(0, int(room // cost)) if split else (left if left * cost <= room else 0)
            if fits == 0:
                if current:
                    chunks.append(current)
                    current, room = [], max_batch
                    continue
                fits = 1 if split else left  # larger than an empty chunk: alone
            take = min(left, fits)
            current.append(Segment(i, start, start + take))
            room -= take * cost
            start += take
    if current:
        chunks.append(current)
    return chunks


def _order_key(cell: Cell) -> tuple:
    weight = float("-inf") if cell.weight is None else float(cell.weight)
    return (cell.stage, cell.task, cell.method, weight)


@dataclass
class _Pending:
    """A cell whose rows are being solved: the cell, its inputs and the parts solved so far."""

    cell: Cell
    inputs: CellInputs
    parts: dict[int, tuple] = field(default_factory=dict)  # start -> (x, loss, diverged, trace)
    seconds: float = 0.0
    solved: int = 0

    @property
    def cost(self) -> float:
        """Generator passes per row (the method's declared `cost`: 2 for MAP)."""
        return row_cost(self.inputs.method)


class FusedSolver:
    """Solve fusable cells in chunks (`plan_chunks`) in this process, storing each cell as soon
    as its last rows are solved.

    `stages` maps a stage to its (images, names); `flow_source` is the flow or its payload;
    every chunk holds at most `max_batch` generator passes."""

    def __init__(self, stages, flow_source, ctx: CellContext, max_batch: int):
        self.stages, self.flow_source = stages, flow_source
        self.ctx, self.max_batch = ctx, max_batch
        self._measured: dict[tuple[str, str], object] = {}

    def inputs(self, cell: Cell) -> CellInputs:
        """The cell's inputs, its task's measurement of the stage's images made once."""
        images, names = self.stages[cell.stage]
        key = (cell.stage, cell.task)
        inp = cell_inputs(cell, images, names, self.ctx, self._measured.get(key))
        self._measured[key] = inp.y
        return inp

    def run(
        self,
        cells: list[Cell],
        store: Callable[[Cell, dict], None],
        split: bool = True,
        tick: Callable[[], None] = lambda: None,
        on_chunk: Callable[[int, int], None] = lambda k, n: None,
    ) -> None:
        """Solve `cells`; `store(cell, out)` gets each finished cell ({'rows', 'restored',
        'trace'}),
        `tick()` is called after every iteration, `on_chunk(k, n)` before chunk k of n."""
        if not cells:
            return
        pending = [_Pending(c, self.inputs(c)) for c in cells]
        rows = [len(p.inputs.names) for p in pending]
        chunks = plan_chunks(cells, rows, [p.cost for p in pending], self.max_batch, split)
        flow = flow_from(self.flow_source, self.ctx.device)
        for k, chunk in enumerate(chunks):
            on_chunk(k, len(chunks))
            self._solve_chunk(flow, [(seg, pending[seg.index]) for seg in chunk], tick)
            for seg in chunk:
                p = pending[seg.index]
                if p.parts and p.solved == rows[seg.index]:
                    store(p.cell, self._finish(p))
                    p.parts = {}

    def _solve_chunk(self, flow, chunk: list[tuple[Segment, _Pending]], tick) -> None:
        """One fused solve of a chunk's rows, traced (`bench.traces`); each segment's part and
        share of time recorded (the chunk's time split by generator passes: rows × cost)."""
        import torch

        from bench.solve import row_slices, solve_latents
        from bench.traces import TraceRecorder

        problems = [
            cell_problem(p.cell, p.inputs, flow, self.ctx, slice(seg.start, seg.stop))
            for seg, p in chunk
        ]
        recorder = TraceRecorder(
            torch.cat([p.inputs.x255[seg.start : seg.stop] for seg, p in chunk])
        )
        with precision(self.ctx.precision, self.ctx.device):
            results = solve_latents(
                flow, problems, self.ctx.iters, progress=lambda t: tick(), trace=recorder
            )
        passes = sum(seg.rows * p.cost for seg, p in chunk)
        slices = row_slices(problems)
        for (seg, p), res, rows in zip(chunk, results, slices, strict=True):
            p.parts[seg.start] = (res.x.cpu(), res.loss, res.diverged, recorder.part(rows))
            p.solved += seg.rows
            p.seconds += res.seconds * seg.rows * p.cost / passes

    def _finish(self, p: _Pending) -> dict:
        """The stored form of a finished cell: its parts in row order, scored."""
        import torch

        from bench.methods import Restoration
        from bench.traces import join_parts

        parts = [p.parts[s] for s in sorted(p.parts)]
        res = Restoration(
            x=torch.cat([part[0] for part in parts]),
            loss=np.concatenate([part[1] for part in parts]),
            diverged=np.concatenate([part[2] for part in parts]),
            seconds=p.seconds,
        )
        trace = join_parts([part[3] for part in parts])
        return cell_output(p.cell, self.ctx, p.inputs, res, p.seconds, trace)


def compute_unit(cells: list[Cell], stages, flow_source, ctx: CellContext, threads, max_batch):
    """A unit of work in a worker process: one cell that is not fusable (`compute_cell`), or
    fusable cells solved together. Returns [(cell, {'rows', 'restored', 'trace'})]."""
    from bench import methods as M
    from bench import plugins

    plugins.load(ctx.plugins)  # a worker looks the cells' methods up first

    if len(cells) == 1 and not M.get_method(cells[0].method).fusable:
        images, names = stages[cells[0].stage]
        return [(cells[0], compute_cell(cells[0], images, names, flow_source, ctx, threads))]
    out: list = []
    with torch_threads(threads):
        solver = FusedSolver(stages, flow_source, ctx, max_batch)
        solver.run(cells, lambda c, o: out.append((c, o)))
    return out


def split_fusable(cells: list[Cell], has_flow: bool) -> tuple[list[Cell], list[Cell]]:
    """(fusable cells, the others): a cell is fusable when its method is (`Method.fusable`)
    and the run has a flow."""
    from bench import methods as M

    fused = [c for c in cells if has_flow and M.get_method(c.method).fusable]
    return fused, [c for c in cells if c not in fused]


def work_units(cells: list[Cell], stages, max_batch: int) -> list[list[Cell]]:
    """The units of work of cells sent to other processes: each other cell alone, then the
    fusable cells packed whole into chunks (`plan_chunks` without splitting)."""
    from bench import methods as M

    fused, other = split_fusable(cells, True)
    rows = [len(stages[c.stage][1]) for c in fused]
    costs = [row_cost(M.get_method(c.method)) for c in fused]
    chunks = plan_chunks(fused, rows, costs, max_batch, split=False)
    return [[c] for c in other] + [[fused[s.index] for s in chunk] for chunk in chunks]
