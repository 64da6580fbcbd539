"""What the reports know about a run's methods and tasks: the declarations its manifest
records (`Method.describe`, `Task.describe`), else those of the registered item, else plain
defaults made from the name. So a run renders the same whether or not the module or plugin
that defined its items is loaded, and a run stored before declarations were recorded renders
as it always did."""

from __future__ import annotations

from bench.methods.base import WEIGHT_SYMBOLS
from bench.tasks.base import figure_name


def _registered(kind: str, name: str):
    from bench.errors import BenchError
    from bench.plugins import registries

    try:
        return registries()[kind].get(name)
    except BenchError:
        return None


def method_info(man: dict | None, method: str) -> dict:
    """{'label', 'weight_name', 'weight_symbol', 'defect', 'ablation', 'default', 'variant_of'}
    of a run's method."""
    recorded = (man or {}).get("method_info", {}).get(method)
    item = _registered("methods", method)
    if recorded is not None:  # a declaration the run did not record yet: the registry's
        return {**(item.describe() if item is not None else {}), **recorded}
    if item is not None:
        return item.describe()
    weight_name = (man or {}).get("weight_names", {}).get(method)
    return {
        "label": (man or {}).get("method_labels", {}).get(method, method),
        "weight_name": weight_name,
        "weight_symbol": WEIGHT_SYMBOLS.get(weight_name, weight_name or ""),
        "defect": None,
        "ablation": None,
        "default": False,
        "variant_of": None,
    }


def task_info(man: dict | None, task: str) -> dict:
    """{'label', 'figure', 'display_label', 'default'} of a run's task."""
    recorded = (man or {}).get("task_info", {}).get(task)
    if recorded is not None:
        return recorded
    item = _registered("tasks", task)
    if item is not None:
        return item.describe()
    return {"label": task.capitalize(), "figure": None, "display_label": "measurement"}


def weight_symbol(man: dict | None, method: str) -> str:
    """The symbol reports write for a method's weight ('γ'; '' for no weight)."""
    info = method_info(man, method)
    if not info.get("weight_name"):
        return ""
    return info.get("weight_symbol") or WEIGHT_SYMBOLS.get(info["weight_name"], info["weight_name"])


def task_title(man: dict | None, task: str) -> str:
    """A task's column title: its label ('Denoising', '2× downsampling')."""
    return task_info(man, task).get("label") or task.capitalize()


def figure_number(man: dict | None, task: str) -> int | None:
    """The paper's figure number of a task (None: a task the paper did not show)."""
    return task_info(man, task).get("figure")


def figure_file(task: str, man: dict | None = None) -> str:
    """The file name of a task's figure: 'fig3_denoising.png', or 'fig_TASK.png' for a task
    outside Figures 3–6."""
    return figure_name(task, figure_number(man, task))


def figure_caption(man: dict | None, task: str) -> str:
    """'Figure 3: denoising', or the task's label for a task the paper did not show."""
    n = figure_number(man, task)
    return f"Figure {n}: {task}" if n is not None else f"{task_title(man, task)} ({task})"


def split_methods(methods: list[str], man: dict | None = None) -> tuple[list[str], list[str]]:
    """(the methods compared in the tables' main part and the figures: Table 1's and any
    user's own; the variants of those: released-code defects, ablations, 'map-all')."""
    main = [m for m in methods if not method_info(man, m).get("variant_of")]
    return main, [m for m in methods if m not in main]


def defect_text(method: str, man: dict | None = None) -> str:
    """What a variant shows: its defect, its ablation, or that it is not in the paper."""
    info = method_info(man, method)
    return (
        info.get("defect")
        or (f"ablation: {info['ablation']}" if info.get("ablation") else None)
        or "a variant, not in the paper's table"
    )


def plugins_line(man: dict) -> list[str]:
    """['- **Plugins**: tikhonov (plugin FILE), …'] for the methods and tasks of a run that a
    plugin or an installed package's entry point defined; [] when every one is built in."""
    found = [
        f"{name} ({info['origin']})"
        for kind in ("method_info", "task_info")
        for name, info in man.get(kind, {}).items()
        if str(info.get("origin", "")).startswith(("plugin", "entry point"))
    ]
    for kind, text in (man.get("item_origins") or {}).items():
        name, _, origin = str(text or "").partition(": ")
        if origin.startswith(("plugin", "entry point")):
            found.append(f"{name} ({kind}, {origin})")
    return [f"- **Plugins**: {', '.join(found)}"] if found else []
