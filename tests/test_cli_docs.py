"""What the documentation says of the commands is true, and their help is quick (issue 11,
items 7d, 7e, 7f and 7h): README's list of the commands without --device, the option table of
bench/cli/options.py, tox in the test extra, what `bench report` rebuilds, and `bench --help`
without torch, matplotlib, pandas or scipy."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import REPO

import bench.cli.options


def _commands_without(option: str) -> set[str]:
    from bench.cli import main

    return {
        name
        for name, cmd in main.commands.items()
        if not any(
            option in p.opts or option in getattr(p, "secondary_opts", ()) for p in cmd.params
        )
    }


def test_readme_names_exactly_the_commands_without_device_and_threads():
    text = " ".join((REPO / "README.md").read_text().split())
    claim = re.search(r"\(all but ([^)]*)\) takes (.*?);", text)
    assert claim, "README no longer says which commands take --device"
    excluded = set(re.findall(r"`(\w+)`", claim[1]))
    options = re.findall(r"`(--[a-z-]+)", claim[2])
    assert "--device" in options
    for option in options:
        assert excluded == _commands_without(option), (option, excluded)


def test_common_options_table_names_the_commands_without_device():
    (row,) = [
        line for line in bench.cli.options.__doc__.splitlines() if line.startswith("| `--device`")
    ]
    excluded = set(re.findall(r"`(\w+)`", row.split("all but", 1)[1]))
    assert excluded == _commands_without("--device")


def test_tox_comes_with_the_test_extra():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert any(re.match(r"tox\b", dep) for dep in project["optional-dependencies"]["test"])
    assert "tox -e" in (REPO / "README.md").read_text()


def test_report_help_says_what_it_rebuilds_and_what_it_does_not():
    from click.testing import CliRunner

    from bench.cli import main

    text = " ".join(CliRunner().invoke(main, ["report", "--help"]).output.split())
    assert "every report" not in text
    for name in ("table1.md", "grid_search.png", "Figures 3–6", "table2.md", "claims.md"):
        assert name in text.split("Not rebuilt here")[0], name
    rest = text.split("Not rebuilt here", 1)[1]
    assert "perf.md (`bench perf`" in rest and "fig1_samples.png (`bench sample`" in rest


HEAVY = ("torch", "matplotlib", "pandas", "scipy", "skimage", "torchvision", "numpy")


def test_the_cli_imports_no_heavy_library():
    code = f"import sys, bench.cli; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "", f"`import bench.cli` imports {out.stdout.strip()}"


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["train", "--help"]])
def test_help_imports_no_heavy_library(args):
    code = (
        "import sys\n"
        "from bench.cli import main\n"
        f"try:\n    main({args!r}, standalone_mode=False)\n"
        "finally:\n"
        f"    print('LOADED:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.rstrip().endswith("LOADED:"), out.stdout[-300:]


def test_run_help_names_the_declared_default_methods_and_tasks():
    """The help text cannot import the registries (it must stay fast), so it spells the
    defaults out: they must be what the methods and tasks declare."""
    from bench.cli import main
    from bench.methods import default_method_names
    from bench.tasks import TASKS

    params = {p.name: p for p in main.commands["run"].params}
    methods = re.search(r"Table 1's: ([\w,-]+)[;\]]", params["methods"].help)[1]
    tasks = re.search(r"Table 1's, ([\w,-]+)[;\]]", params["tasks"].help)[1]
    assert methods.split(",") == list(default_method_names())
    assert tasks.split(",") == [t for t in TASKS if TASKS[t].default]


def test_every_package_is_installed_by_a_wheel():
    """pyproject lists the packages by hand (baselines/ installs as bench_baselines): a package
    missing there works in an editable install and is absent from a wheel."""
    import tomllib

    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "bench").rglob("__init__.py")
    }
    assert listed == found | {"bench_baselines"}
