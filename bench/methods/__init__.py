"""Restoration methods: the contract and registry (`base`), the paper's solver (`ours`) and its
ablation (`l1_z0`); the baselines CSGM, GlowIP, MAP and BM3D live in ``baselines/`` (import
package ``bench_baselines``). Each method is one module that registers itself; reading the
registry (:data:`METHODS`, :func:`get_method`) loads every built-in and plugin
(`bench.plugins.ensure_loaded`).
"""

from __future__ import annotations

from bench.lazy import lazy_names
from bench.methods.base import (
    METHODS,
    WEIGHT_SYMBOLS,
    FlowMethod,
    Method,
    Objective,
    Restoration,
    format_weight,
    guarded_objective,
    l1_fit,
    l2_fit,
    plugin_call,
    preset_grid,
    preset_of,
)


def register(method):
    """Register a method (a Method subclass or instance) by its name; returns its argument.
    Raises PluginError for a name already taken or the wrong base type (`bench.plugins`)."""
    from bench.plugins import register as register_item

    is_class = isinstance(method, type) and issubclass(method, Method)
    if not (isinstance(method, Method) or is_class):
        from bench.plugins import PluginError

        raise PluginError(f"{method!r} is not a method: subclass bench.Method or bench.FlowMethod")
    return register_item(method)


def all_methods() -> dict[str, Method]:
    """Every registered method: Table 1's first (csgm, glowip, map, bm3d, ours), then the
    others in registration order (variants, then plugins)."""
    return dict(METHODS.items())


def get_method(name: str | Method) -> Method:
    """The method called `name` (a Method is returned as is); BenchError naming the choices."""
    return METHODS.get(name)


def default_method_names() -> tuple[str, ...]:
    """The methods run without --methods (those declaring `default = True`), in order."""
    return tuple(n for n, m in METHODS.items() if m.default)


def default_methods() -> list[Method]:
    """The methods of Table 1 (`default_method_names`), in order."""
    return [METHODS.get(n) for n in default_method_names()]


_lazy = lazy_names(__name__, {"Ours": "bench.methods.ours", "L1FromZero": "bench.methods.l1_z0"})


def __getattr__(name: str):
    if name == "DEFAULT_METHODS":  # Table 1's methods, in its row order (declared per method)
        return default_method_names()
    return _lazy(name)


__all__ = [
    "METHODS",
    "WEIGHT_SYMBOLS",
    "FlowMethod",
    "Method",
    "Objective",
    "Restoration",
    "all_methods",
    "default_method_names",
    "default_methods",
    "format_weight",
    "guarded_objective",
    "get_method",
    "l1_fit",
    "l2_fit",
    "plugin_call",
    "preset_grid",
    "preset_of",
    "register",
]
