"""The switches of the flow layers, set only through their context managers:

- the fast path (`fast_path_enabled`, on by default): the couplings compute the same function
  as their straightforward definitions by faster code (`bench.flows.coupling_layer`);
  `reference_path()` switches the straightforward code back on (for tests and `bench perf
  --reference`);
- data-dependent initialisation (`data_initialization()`): inside it, an ActNorm that was never
  initialised initialises itself from the first batch it sees (`bench.flows.actnorm`); outside
  it an ActNorm never changes.

The layers read the state as `switches.FAST_PATH` and `switches.DATA_INIT` at each call (a
module attribute: never `from ... import` them, which would copy the value).
"""

from __future__ import annotations

import contextlib

FAST_PATH = True
DATA_INIT = False


def fast_path_enabled() -> bool:
    """Whether the couplings run their fast path (the default) or the straightforward code."""
    return FAST_PATH


@contextlib.contextmanager
def reference_path(enabled: bool = True):
    """Inside the block, the couplings run the straightforward code of their definition
    (no folding, no channels-last, no GEMM formulation, no cached weights); for comparisons."""
    global FAST_PATH
    previous = FAST_PATH
    FAST_PATH = not enabled
    try:
        yield
    finally:
        FAST_PATH = previous


@contextlib.contextmanager
def data_initialization():
    """Inside the block, a forward pass initialises every ActNorm it meets that was not
    initialised yet from the batch it sees (PROTOCOL §2). Outside, ActNorms never change."""
    global DATA_INIT
    previous = DATA_INIT
    DATA_INIT = True
    try:
        yield
    finally:
        DATA_INIT = previous
