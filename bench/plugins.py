"""Loading the built-in items and the plugins, the same way, in every process (README "Add your
own method, task, dataset or flow").

Where items come from, in this order (the order registries list them):

1. the built-in modules (:data:`BUILTIN_MODULES`): each registers its item on import;
2. installed packages' entry points in the groups of :data:`ENTRY_POINT_GROUPS`
   (``bench.methods``, ``bench.tasks``, ``bench.datasets``, ``bench.flows``); an entry point
   names a class, an instance or a module that registers on import;
3. the environment variable ``BENCH_PLUGINS`` (os.pathsep-separated), then ``--plugin`` options:
   a ``.py`` file, or an importable module, optionally ``:NAME`` for one object in it to register.

Reading any registry calls :func:`ensure_loaded` first. Worker processes (joblib's loky
processes, Dask workers) therefore load the same built-ins, entry points and ``BENCH_PLUGINS``
on their first lookup; the runner also hands them :func:`loaded_specs` so plugins given with
``--plugin`` load there too (:func:`load`). Loading is idempotent.

A broken plugin raises :class:`PluginError` (one line naming the plugin and the problem; the
CLI exits 2): an import error, a missing name, a duplicate name, the wrong base class, or a
plugin that registers nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
import types
from collections.abc import Iterable
from pathlib import Path

from bench.errors import BenchError
from bench.registry import describe_item

PLUGINS_ENV = "BENCH_PLUGINS"
# the built-ins, loaded through the same import-and-register path as a plugin
BUILTIN_MODULES = (
    "bench.tasks.denoising",
    "bench.tasks.deblurring",
    "bench.tasks.inpainting",
    "bench.tasks.colorization",
    "bench.tasks.inpainting_random",
    "bench.tasks.super_resolution",
    "bench.tasks.compressed_sensing",
    "bench.datasets",
    "bench.flows",
    "bench_baselines.csgm",
    "bench_baselines.glowip",
    "bench_baselines.map",
    "bench_baselines.bm3d",
    "bench_baselines.measurement",
    "bench_baselines.tv",
    "bench_baselines.pnp_bm3d",
    "bench_baselines.biharmonic",
    "bench.methods.ours",
    "bench.methods.l1_z0",
)
ENTRY_POINT_GROUPS = {
    "bench.methods": "methods",
    "bench.tasks": "tasks",
    "bench.datasets": "datasets",
    "bench.flows": "flows",
}


class PluginError(BenchError):
    """A plugin that cannot be loaded; the message names the plugin and the problem."""


_state = types.SimpleNamespace(
    done=False, loading=False, origin="", loaded={}, specs=[], digests={}
)
# `loaded` maps each loaded plugin's key to the origin its items were registered under;
# `digests` a plugin file's key to the sha256 of the file it was loaded from


def registries() -> dict:
    """The four registries by kind: {'methods', 'tasks', 'datasets', 'flows'}."""
    from bench.datasets import DATASETS
    from bench.flows import FLOWS
    from bench.methods.base import METHODS
    from bench.tasks.base import TASKS

    return {"methods": METHODS, "tasks": TASKS, "datasets": DATASETS, "flows": FLOWS}


def register(item, replace: bool = False):
    """Register a method, task, dataset or flow architecture (a class, instantiated without
    arguments, or an instance) in the registry of its base type; returns it unchanged, so it
    serves as a class decorator. Raises PluginError (wrong base type, no name, a name taken)."""
    for registry in registries().values():
        base = registry.base
        if isinstance(item, base) or (isinstance(item, type) and issubclass(item, base)):
            try:
                return registry.add(item, origin=_state.origin, replace=replace)
            except BenchError as e:
                raise PluginError(str(e)) from None
    raise PluginError(
        f"{describe_item(item)} is not a method, task, dataset or flow architecture: subclass "
        "bench.Method (or bench.FlowMethod), bench.Task, bench.Dataset or bench.FlowArchitecture"
    )


@contextlib.contextmanager
def _origin(name: str):
    previous, _state.origin = _state.origin, name
    try:
        yield
    finally:
        _state.origin = previous


def ensure_loaded() -> None:
    """Load the built-ins, the entry points and ``BENCH_PLUGINS`` once per process."""
    if _state.done or _state.loading:
        return
    _state.loading = True
    try:
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        for registry in registries().values():  # in BUILTIN_MODULES order, whatever was
            registry.sort(lambda name, r=registry: builtin_rank(r.origin(name)))  # imported first
        load_entry_points()
        load(env_specs())
        _state.done = True
    finally:
        _state.loading = False


def builtin_rank(origin: str) -> int:
    """The position in BUILTIN_MODULES of the module (or package) an item came from; after
    every built-in for anything else."""
    for i, module in enumerate(BUILTIN_MODULES):
        if origin == module or origin.startswith(module + "."):
            return i
    return len(BUILTIN_MODULES)


def env_specs() -> list[str]:
    """The plugins named by ``BENCH_PLUGINS`` (os.pathsep-separated; empty entries ignored)."""
    return [s for s in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if s.strip()]


def load_entry_points() -> None:
    """Register every entry point of the :data:`ENTRY_POINT_GROUPS` of installed packages."""
    from importlib.metadata import entry_points

    regs = registries()
    for group, kind in ENTRY_POINT_GROUPS.items():
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            key = f"entry point {group}:{ep.name} = {ep.value}"
            if key in _state.loaded:
                continue
            with _origin(key):
                try:
                    obj = ep.load()
                except Exception as e:  # a plugin's import may raise anything
                    raise PluginError(f"{key}: {describe_failure(e)}") from None
                if not isinstance(obj, types.ModuleType):
                    try:
                        regs[kind].add(obj, origin=key)
                    except BenchError as e:
                        raise PluginError(f"{key}: {e}") from None
            _state.loaded[key] = key


def spec_key(spec: str) -> str:
    """A plugin spec with a file path made absolute (so a worker in another folder finds it)."""
    path, name = split_spec(spec)
    if looks_like_file(path):
        path = str(Path(path).expanduser().resolve())
    return f"{path}:{name}" if name else path


def split_spec(spec: str) -> tuple[str, str]:
    """'pkg.mod:Name' -> ('pkg.mod', 'Name'); 'file.py' -> ('file.py', '')."""
    spec = spec.strip()
    head, sep, tail = spec.rpartition(":")
    if sep and tail.isidentifier() and head:
        return head, tail
    return spec, ""


def looks_like_file(path: str) -> bool:
    return path.endswith(".py") or os.sep in path or Path(path).is_file()


def load(specs: Iterable[str]) -> list[str]:
    """Load plugins given as files or modules (see the module docstring); returns their keys.
    Raises PluginError naming the plugin and the problem."""
    ensure_loaded()
    keys = []
    for spec in specs:
        key = spec_key(spec)
        if key in _state.loaded and _state.digests.get(key) != file_digest(key):
            forget([key])  # the file changed since it was loaded here: load the new code
        if key not in _state.loaded:
            load_one(spec, key)
        keys.append(key)
    return keys


def file_digest(key: str) -> str | None:
    """sha256 of a plugin file (None: a module plugin, or a file that cannot be read)."""
    path = split_spec(key)[0]
    if not looks_like_file(path):
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


load_plugins = load  # `bench.load_plugins([...])`, from Python


def load_one(spec: str, key: str) -> None:
    """Import one plugin and check it registered something; on any failure, nothing of it
    stays registered or imported (so a corrected plugin loads cleanly). PluginError."""
    path, name = split_spec(spec)
    origin = f"plugin {display_path(key)}"
    counts = {kind: len(reg.registered()) for kind, reg in registries().items()}
    try:
        with _origin(origin):
            import_and_register(spec, path, name)
        added = {kind: len(reg.registered()) - counts[kind] for kind, reg in registries().items()}
        if not any(added.values()):
            raise PluginError(
                f"plugin {spec} registered nothing: call bench.register(...) on its method, "
                "task, dataset or flow (or name one object: --plugin FILE:NAME)"
            )
    except PluginError:
        unregister(origin, path)
        raise
    _state.loaded[key] = origin
    _state.digests[key] = file_digest(key)
    _state.specs.append(key)


def origin_digest(origin: str) -> str | None:
    """sha256 of the plugin file that registered items under `origin` (None: a built-in, an
    entry point or a module plugin)."""
    for key, recorded in _state.loaded.items():
        if recorded == origin:
            return _state.digests.get(key)
    return None


def display_path(key: str) -> str:
    """A plugin key as reports show it: a file inside the working folder relative to it (so a
    report does not depend on where the checkout lives), else as the key."""
    path, name = split_spec(key)
    if looks_like_file(path):
        with contextlib.suppress(ValueError):
            path = str(Path(path).relative_to(Path.cwd()))
    return f"{path}:{name}" if name else path


def import_and_register(spec: str, path: str, name: str) -> None:
    """Import the plugin (and register `name` from it, if given); every failure becomes one
    PluginError line naming the plugin."""
    try:
        module = import_plugin(path)
        if name:
            if not hasattr(module, name):
                raise PluginError(f"plugin {spec}: {path} has no name {name!r}")
            register(getattr(module, name))
    except PluginError as e:
        msg = str(e) if str(e).startswith("plugin ") else f"plugin {spec}: {e}"
        raise PluginError(msg) from None
    except BenchError as e:
        raise PluginError(f"plugin {spec}: {e}") from None
    except SystemExit as e:
        raise PluginError(f"plugin {spec}: it called sys.exit({e.code}) while loading") from None
    except Exception as e:  # a plugin's import may raise anything: one line, never a traceback
        raise PluginError(f"plugin {spec}: {describe_failure(e, path)}") from None


def unregister(origin: str, path: str) -> None:
    """Remove every item registered under `origin`, and the plugin's module from sys.modules."""
    for registry in registries().values():
        for item in [n for n in registry.registered() if registry.origin(n) == origin]:
            registry.pop(item)
    sys.modules.pop(
        file_module_name(Path(path).expanduser().resolve()) if looks_like_file(path) else path, None
    )


def forget(keys: Iterable[str]) -> None:
    """Unregister the items of loaded plugins (by `spec_key`) and forget that they were loaded,
    so a later `load` registers them again (tests; interactive use)."""
    for key in keys:
        key = spec_key(key)
        origin = _state.loaded.pop(key, None)
        _state.digests.pop(key, None)
        if isinstance(origin, str):
            unregister(origin, split_spec(key)[0])
        with contextlib.suppress(ValueError):
            _state.specs.remove(key)


def import_plugin(path: str) -> types.ModuleType:
    """Import a plugin file (under a name derived from its absolute path) or module."""
    if not looks_like_file(path):
        return importlib.import_module(path)
    file = Path(path).expanduser().resolve()
    if file.is_dir():
        raise PluginError(
            f"plugin {path}: is a folder: give a .py file, or an importable module name"
        )
    if not file.is_file():
        raise PluginError(
            f"plugin {path}: no such file (give a .py file or an importable module name)"
        )
    module_name = file_module_name(file)
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def file_module_name(file: Path) -> str:
    """The module name a plugin file is imported under: unique per absolute path, and the same
    in every process (workers import it under the same name)."""
    digest = hashlib.sha256(str(file).encode()).hexdigest()[:8]
    return f"bench_plugin_{file.stem}_{digest}"


def describe_failure(e: BaseException, path: str = "") -> str:
    """One line: the exception type, its message and where in the plugin it was raised (the
    last line of the traceback inside the plugin's own file, if any)."""
    if isinstance(e, SyntaxError):
        return f"syntax error at {Path(e.filename or '?').name} line {e.lineno}: {e.msg}"
    if isinstance(e, ModuleNotFoundError):
        return f"cannot import {e.name!r} (install it, or fix the import)"
    where = ""
    own = Path(path).name if path and looks_like_file(path) else ""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename).name == own]
    if frames:
        where = f" (at {own} line {frames[-1].lineno})"
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}{where}"


def loaded_specs() -> list[str]:
    """The plugins loaded from BENCH_PLUGINS and --plugin in this process, as absolute keys:
    what a worker process loads (:func:`load`) before it computes."""
    return list(_state.specs)
