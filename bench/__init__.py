"""bench: a benchmark harness for normalizing-flow priors in inverse problems.

The public surface, for plugins and notebooks (README, "Add your own method, task, dataset or
flow" and "Use it from Python"):

- base types: :class:`Method`, :class:`FlowMethod`, :class:`Task`, :class:`Dataset`,
  :class:`FlowArchitecture`; :func:`register` files a class or an instance in its registry;
  :func:`load_plugins` loads plugin files or modules;
- :func:`load_rows` (a run's per-image rows as one DataFrame), :func:`restore` (a batch of
  images restored by a named method), :func:`load_flow` (a checkpoint).

Names are imported on first use, so ``import bench`` (and ``bench --help``) stays fast.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "Method": "bench.methods.base",
    "FlowMethod": "bench.methods.base",
    "Restoration": "bench.methods.base",
    "Task": "bench.tasks.base",
    "Dataset": "bench.datasets",
    "FlowArchitecture": "bench.flows",
    "register": "bench.plugins",
    "load_plugins": "bench.plugins",
    "load_rows": "bench.api",
    "restore": "bench.api",
    "load_flow": "bench.api",
    "get_method": "bench.methods",
    "get_task": "bench.tasks",
}


# subpackages a notebook reaches as attributes (`bench.data.load_images`)
_SUBMODULES = (
    "config",
    "data",
    "datasets",
    "flows",
    "methods",
    "metrics",
    "plugins",
    "runner",
    "tasks",
)


def __getattr__(name: str):
    import importlib

    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"bench.{name}")
    raise AttributeError(f"module 'bench' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = ["__version__", *_EXPORTS]
