"""Names a package imports only when first read (PEP 562), so that importing it stays light:
`lazy_names` makes the module `__getattr__` of `bench.methods`, `bench.tasks` and `bench.data`."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_names(module: str, homes: Mapping[str, str]) -> Callable[[str], object]:
    """A module `__getattr__` for the module named `module`: a name of `homes` is imported
    from the module `homes[name]` (a dotted path) when first read; any other name raises
    AttributeError as Python words it ("module 'bench.tasks' has no attribute 'x'")."""

    def __getattr__(name: str):
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        return getattr(importlib.import_module(home), name)

    return __getattr__
