"""One registry type for every kind of item a user can add: methods, tasks, datasets and flow
architectures (README "Add your own method, task, dataset or flow").

An item is an instance of the registry's base type with a non-empty ``name``. It registers by
decorator or by call (``bench.register`` picks the registry from the item's base type); lookup
by name fails with a one-line :class:`~bench.errors.BenchError` naming the choices; listing
keeps the order of registration, with the items that declare ``default = True`` (those a run
uses when none are named: Table 1's methods and tasks) first. Reading a registry first loads
the built-ins and the plugins (`bench.plugins.ensure_loaded`), so every reader sees the same
items in every process. Registering a second item under a name already taken is an error (a
plugin must not silently replace a built-in), unless ``replace=True``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Generic, TypeVar

from bench.errors import BenchError

T = TypeVar("T")
# names become file names (cells, checkpoints, figures) and entries of comma-separated options
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def describe_item(item) -> str:
    """A class by its name ('class Tikhonov'), anything else by its repr."""
    return f"class {item.__qualname__}" if isinstance(item, type) else repr(item)


class RegistryError(BenchError):
    """A registration that cannot be accepted: no name, a name taken, the wrong base type."""


class Registry(Generic[T]):
    """Named items of one base type, in registration order.

    - `kind`: the word used in messages ('method', 'task', 'dataset', 'flow architecture');
    - `base`: the type every item must be an instance of;
    - `option`: the command-line option that names items of this kind (for messages)."""

    def __init__(self, kind: str, base: type, option: str = ""):
        self.kind = kind
        self.base = base
        self.option = option
        self._items: dict[str, T] = {}
        self._origin: dict[str, str] = {}
        self._families: dict[str, tuple] = {}

    def _ensure(self) -> None:
        from bench import plugins

        plugins.ensure_loaded()

    # -- registration ------------------------------------------------------------------------
    def add(self, item, origin: str = "", replace: bool = False):
        """Register an instance of `base`, or a subclass of it (instantiated without arguments).
        Returns the argument unchanged, so it serves as a class decorator. Raises RegistryError
        for the wrong type, a missing name, or a name already registered (unless `replace`)."""
        if isinstance(item, type) and issubclass(item, self.base):
            name = getattr(item, "name", "")
            if type(self._items.get(name)) is item and not replace:
                return item  # this class is registered already (by its module and again)
            inst = item()
        else:
            inst = item
        if not isinstance(inst, self.base):
            raise RegistryError(
                f"{describe_item(item)} is not a {self.base.__module__}."
                f"{self.base.__qualname__}: a {self.kind} must subclass it"
            )
        name = getattr(inst, "name", "")
        if not isinstance(name, str) or not name:
            raise RegistryError(
                f"{describe_item(item)} has no name: set the class attribute `name`"
            )
        if not NAME.match(name):
            raise RegistryError(
                f"{self.kind} name {name!r} is not allowed: use letters, digits, '.', '_' and "
                "'-' (names become file names and entries of comma-separated options)"
            )
        if name in self._items and not replace and self._items[name] is not inst:
            where = self._origin.get(name) or "bench"
            raise RegistryError(
                f"duplicate {self.kind} name {name!r}"
                + (f" from {origin}" if origin else "")
                + f": {where} already registered one; rename it"
            )
        self._items[name] = inst
        self._origin[name] = origin or getattr(type(inst), "__module__", "")
        return item

    def add_family(self, prefix: str, factory, origin: str = "") -> None:
        """Let `get` build items on demand: a name ``prefix + parameter`` not registered is
        ``factory(parameter)``, registered then returned (``cs-0.3``, ``sr-8``). The factory
        raises BenchError, in one line naming the allowed values, for a parameter it refuses."""
        self._families[prefix] = (factory, origin or getattr(factory, "__module__", ""))

    def families(self) -> list[str]:
        """The prefixes of the families (`add_family`), e.g. ['denoising-', 'cs-', 'sr-']."""
        return list(self._families)

    def _from_family(self, name):
        if not isinstance(name, str):
            return None
        for prefix, (factory, origin) in self._families.items():
            if name.startswith(prefix) and len(name) > len(prefix):
                item = factory(name[len(prefix) :])
                if getattr(item, "name", None) != name:
                    raise BenchError(
                        f"{self.kind} {name!r}: write it as {getattr(item, 'name', '?')!r}"
                    )
                self.add(item, origin)
                return item
        return None

    def pop(self, name: str, default=None):
        """Forget an item (tests and interactive use); returns it, or `default`."""
        self._origin.pop(name, None)
        return self._items.pop(name, default)

    # -- lookup ------------------------------------------------------------------------------
    def get(self, name) -> T:
        """The item called `name` (an instance of `base` is returned as is); BenchError naming
        the choices."""
        self._ensure()
        if isinstance(name, self.base):
            return name
        try:
            return self._items[name]
        except (KeyError, TypeError):
            pass
        item = self._from_family(name)
        if item is not None:
            return item
        fix = f" ({self.option})" if self.option else ""
        more = "".join(f", {p}…" for p in self._families)
        raise BenchError(
            f"unknown {self.kind} {name!r}{fix}: choose one of {', '.join(self.ordered())}{more}"
        )

    def ordered(self) -> list[str]:
        """The names: the items declaring ``default = True`` first, each group in the order of
        registration (no loading)."""
        first = [n for n, item in self._items.items() if getattr(item, "default", False)]
        return first + [n for n in self._items if n not in first]

    def sort(self, key) -> None:
        """Reorder the items by `key(name)` (stable: equal keys keep registration order)."""
        order = sorted(self._items, key=key)
        self._items = {n: self._items[n] for n in order}

    def registered(self) -> list[str]:
        """The names registered so far, without loading the built-ins or plugins first."""
        return list(self._items)

    def origin(self, name: str) -> str:
        """The module (or plugin) that registered `name`."""
        return self._origin.get(name, "")

    def names(self) -> list[str]:
        self._ensure()
        return self.ordered()

    def items(self):
        self._ensure()
        return [(n, self._items[n]) for n in self.ordered()]

    def values(self):
        self._ensure()
        return [self._items[n] for n in self.ordered()]

    def __contains__(self, name) -> bool:
        self._ensure()
        return name in self._items

    def __getitem__(self, name: str) -> T:
        self._ensure()
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        self._ensure()
        return iter(self.ordered())

    def __len__(self) -> int:
        self._ensure()
        return len(self._items)

    def __repr__(self) -> str:
        return f"<Registry of {len(self)} {self.kind}s: {', '.join(self.ordered())}>"
