"""Plugins (README, "Add your own method, task, dataset or flow"): loading from --plugin,
BENCH_PLUGINS and entry points; the same items in joblib and Dask worker processes; one-line
errors for broken plugins; the registry's surface; the Python API."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from conftest import invoke, one_line_error, tiny_flow

import bench
from bench import config, plugins, runner
from bench.errors import BenchError
from bench.methods import METHODS
from bench.tasks import TASKS

EXAMPLES = Path(__file__).parents[1] / "examples" / "plugins"
TIKHONOV, DOWNSAMPLE = str(EXAMPLES / "tikhonov.py"), str(EXAMPLES / "downsample.py")
# one weight per method: no grid search, four test cells (two methods × two tasks)
PRESET = config.get_preset("smoke").with_(
    test_images=2, iters=2, grids={"tikhonov": (0.01,), "ours": (0.02,)}
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def clean_plugins(monkeypatch):
    """Each test starts with the built-ins only and leaves them so; BENCH_PLUGINS restored."""
    monkeypatch.delenv(plugins.PLUGINS_ENV, raising=False)
    yield
    plugins.forget(plugins.loaded_specs())


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


# a flow-architecture plugin: glow under another name
GLOW2 = """
import bench
from bench.flows.glow import Glow

class Glow2(Glow):
    name = "glow2"
    label = "glow, registered again under another name"

bench.register(Glow2)
"""


# ---- broken plugins: one line naming the plugin and the problem, exit 2 -------------------------
BROKEN = {
    "import_error": ("import numpy_that_is_not_installed\n", "cannot import"),
    "raises": ("raise RuntimeError('boom')\n", "RuntimeError: boom"),
    "syntax": ("def f(:\n", "syntax error"),
    "wrong_base": (
        "import bench\nclass Tikhonov:\n    name = 'tik'\nbench.register(Tikhonov)\n",
        "class Tikhonov is not a method, task, dataset or flow",
    ),
    "duplicate": (
        "import bench\nclass M(bench.Method):\n    name = 'csgm'\nbench.register(M)\n",
        "duplicate method name 'csgm'",
    ),
    "no_name": (
        "import bench\nclass T(bench.Task):\n    pass\nbench.register(T)\n",
        "has no name",
    ),
    "nothing": ("x = 1\n", "registered nothing"),
    "exits": ("import sys\nsys.exit(3)\n", "called sys.exit(3)"),
    "bad_name": (
        "import bench\nclass M(bench.Method):\n    name = 'my/floor'\nbench.register(M)\n",
        "method name 'my/floor' is not allowed",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_plugin_is_one_line_naming_it(case, tmp_path):
    text, problem = BROKEN[case]
    path = write(tmp_path, f"{case}.py", text)
    result = invoke(["info", "--plugin", path])
    one_line_error(result, f"plugin {path}", problem)
    assert "tik" not in METHODS and "csgm" in METHODS


def test_a_missing_name_or_file_or_module_or_a_folder(tmp_path):
    one_line_error(invoke(["info", "--plugin", TIKHONOV + ":Nope"]), "has no name 'Nope'")
    one_line_error(invoke(["info", "--plugin", str(tmp_path / "gone.py")]), "no such file")
    one_line_error(invoke(["info", "--plugin", "no_such_plugin_module"]), "cannot import")
    one_line_error(invoke(["info", "--plugin", str(tmp_path) + "/"]), "is a folder")


def test_a_broken_plugin_in_bench_plugins_is_one_line_too(tmp_path, monkeypatch):
    path = write(tmp_path, "dup.py", BROKEN["duplicate"][0])
    monkeypatch.setenv(plugins.PLUGINS_ENV, path)
    one_line_error(invoke(["info", "--arch", "glow"]), f"plugin {path}", "duplicate")


def test_a_plugin_dataset_or_architecture_is_a_valid_choice_and_others_are_not(tmp_path):
    one_line_error(invoke(["info", "--arch", "nope"]), "unknown flow architecture 'nope'", "glow")
    path = write(tmp_path, "arch.py", GLOW2)
    result = invoke(["info", "--arch", "glow2", "--hidden", "8", "--plugin", path])
    assert result.exit_code == 0, result.output
    assert "architecture: glow2" in result.output


# ---- registry surface ----------------------------------------------------------------------------
def test_register_by_decorator_or_call_and_lookup_errors():
    @bench.register
    class Floor(bench.Method):
        name = "floor-test"
        needs_flow = False

    try:
        assert isinstance(METHODS["floor-test"], Floor) and bench.register(Floor) is Floor
        assert METHODS.names()[:5] == ["csgm", "glowip", "map", "bm3d", "ours"]
        assert METHODS.names()[-1] == "floor-test"
        with pytest.raises(BenchError, match="duplicate method name 'floor-test'"):
            bench.register(type("Other", (bench.Method,), {"name": "floor-test"}))
    finally:
        METHODS.pop("floor-test")
    with pytest.raises(BenchError, match=r"unknown task 'x' \(--tasks\): choose one of denoising"):
        bench.get_task("x")


def test_a_preset_overrides_a_grid_by_method_name():
    ours = METHODS["ours"]
    assert ours.grid("cpu") == config.ALPHA_GRID
    assert ours.grid(config.get_preset("cpu").with_(grids={"ours": (0.1,)})) == (0.1,)
    assert config.get_preset("cpu").to_dict() == config.get_preset("cpu").with_().to_dict()
    assert "grids" not in config.get_preset("cpu").to_dict()  # run ids unchanged


# ---- plugins in worker processes ----------------------------------------------------------------
def plugin_run(
    tmp_path,
    specs=(TIKHONOV, DOWNSAMPLE),
    methods="tikhonov,ours",
    tasks="downsample2,denoising",
    **kw,
):
    """Load `specs` (as a worker does before each cell) and run them into `tmp_path`."""
    plugins.load(list(specs))
    return runner.run_table1(
        tiny_flow(),
        {"fingerprint": "plugin-test"},
        PRESET,
        "builtin",
        methods=methods,
        tasks=tasks,
        results_dir=tmp_path,
        progress=False,
        threads=1,
        **kw,
    )


def rows(result):
    keys = ["method", "task", "image"]
    frame = runner.read_cells(result.run_dir, "test")
    return frame.sort_values(keys).reset_index(drop=True)[keys + ["psnr", "ssim"]]


def test_plugins_run_in_joblib_workers_as_in_process(tmp_path):
    serial = plugin_run(tmp_path / "serial")
    parallel = plugin_run(tmp_path / "parallel", jobs=2)
    assert len(parallel.computed) == 4 and rows(parallel).equals(rows(serial))
    assert set(rows(serial).method) == {"tikhonov", "ours"}


def test_plugins_run_on_dask_worker_processes(tmp_path):
    distributed = pytest.importorskip("distributed")
    serial = plugin_run(tmp_path / "serial")
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,  # a separate process: the plugins must load there
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        res = plugin_run(tmp_path / "dask", backend="dask", scheduler=cluster.scheduler_address)
    assert len(res.computed) == 4 and rows(res).equals(rows(serial))


def test_the_cli_runs_a_plugin_into_table1(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["run", "--table", "1", "--preset", "smoke", "--dataset", "builtin", "--threads", "1"]
    args += ["--plugin", TIKHONOV, "--plugin", DOWNSAMPLE, "--methods", "tikhonov"]
    args += ["--tasks", "downsample2,denoising", "--no-progress"]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    table = (tmp_path / "reports" / "table1.md").read_text()
    assert "Tikhonov (pixel-space least squares)" in table and "2× downsampling" in table
    assert "λ = " in table
    assert (tmp_path / "reports" / "fig_downsample2.png").is_file()
    # no chosen method needs a flow: none is trained, and the table says so
    assert not (tmp_path / "results" / "checkpoints").exists()
    assert "- **Model**: none (no method of this run needs a flow)" in table


def test_a_stored_run_renders_the_same_without_its_plugins(tmp_path):
    from bench import report

    res = plugin_run(tmp_path / "results")
    with_plugins = report.render_table1(res.run_dir)
    assert "Tikhonov (pixel-space least squares)" in with_plugins and "λ = 0.01" in with_plugins
    # plugin files inside the working folder are named relative to it (pytest runs in the repo)
    assert (
        "- **Plugins**: tikhonov (plugin examples/plugins/tikhonov.py), downsample2 (plugin "
        in (with_plugins)
    )
    plugins.forget(plugins.loaded_specs())
    assert "tikhonov" not in METHODS and "downsample2" not in TASKS
    assert report.render_table1(res.run_dir) == with_plugins


def test_info_lists_every_registered_item_with_its_plugin():
    result = invoke(["info", "--list", "--plugin", TIKHONOV, "--plugin", DOWNSAMPLE])
    assert result.exit_code == 0, result.output
    assert "* ours: Ours; α (alpha); every task" in result.output
    assert "tikhonov: Tikhonov (pixel-space least squares); λ (lambda); " in result.output
    assert (
        "[plugin examples/plugins/downsample.py]" in result.output and "coupling:" in result.output
    )


# ---- entry points --------------------------------------------------------------------------------
def test_entry_points_of_an_installed_package_are_discovered(tmp_path, monkeypatch):
    pkg = tmp_path / "site"
    (pkg / "my_bench_plugin").mkdir(parents=True)
    (pkg / "my_bench_plugin" / "__init__.py").write_text(
        (EXAMPLES / "tikhonov.py").read_text().replace("bench.register(Tikhonov)", "")
    )
    info = pkg / "my_bench_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-bench-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[bench.methods]\ntikhonov = my_bench_plugin:Tikhonov\n")
    monkeypatch.syspath_prepend(str(pkg))
    try:
        plugins.load_entry_points()
        assert type(METHODS["tikhonov"]).__module__ == "my_bench_plugin"
        assert "entry point bench.methods:tikhonov" in METHODS.origin("tikhonov")
    finally:
        METHODS.pop("tikhonov")


# ---- the Python API -----------------------------------------------------------------------------
def test_restore_in_three_lines_and_rows_as_one_frame(tmp_path):
    from bench import data

    images = data.load_images("builtin", "test", limit=2, progress=False).images
    out = bench.restore(images, "ours", tiny_flow(), task="denoising", iters=2)
    assert out.x.shape == (2, 3, 32, 32) and out.psnr.shape == (2,)
    with pytest.raises(BenchError, match="needs a trained flow"):
        bench.restore(images, "ours", None, iters=2)
    res = plugin_run(tmp_path)
    frame = bench.load_rows(tmp_path)
    assert len(frame) == len(runner.read_cells(res.run_dir))
    assert {"method", "task", "weight", "image", "psnr", "ssim"} <= set(frame.columns)
    assert bench.load_rows(res.run_dir).equals(frame)
    torch.testing.assert_close(out.y, TASKS["denoising"].measure(images, ["img0", "img1"]))


def test_the_readme_python_example_runs(width8_checkpoint):
    from conftest import REPO

    readme = (REPO / "README.md").read_text()
    section = readme.split("## Use it from Python", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace("results/checkpoints/celeba-cpu-coupling.pt", str(width8_checkpoint))
    code = code.replace('"results"', repr(str(REPO / "results"))).replace("iters=300", "iters=2")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["out"].x.shape == (8, 3, 32, 32) and len(scope["rows"]) > 0


# ---- a plugin method that fails or breaks the contract, an edited plugin -----------------------
def method_plugin(tmp_path, body: str, name: str = "probe") -> str:
    return write(
        tmp_path,
        f"{name}.py",
        f"""
        import numpy as np
        import torch
        import bench

        class Probe(bench.Method):
            name = "{name}"
            needs_flow = False

            def restore(self, flow, task, y, weight, iters, seeds, device, progress=None, lr=None):
        {textwrap.indent(textwrap.dedent(body), " " * 16)}

        bench.register(Probe)
        """,
    )


@pytest.mark.parametrize(
    "body,problem",
    [
        ("raise ValueError('no convergence')", "failed on denoising: ValueError: no convergence"),
        ("return y", "returned Tensor on denoising: restore must return a bench.Restoration"),
        (
            "return bench.Restoration(y[:, :, :16], np.zeros(len(seeds)), "
            "np.zeros(len(seeds), bool), 0.0)",
            "returned x of shape (1, 3, 16, 32)",  # the estimate restores one image first
        ),
    ],
)
def test_a_plugin_method_that_fails_is_one_line_naming_it(body, problem, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = method_plugin(tmp_path, body)
    args = ["run", "--table", "1", "--preset", "smoke", "--dataset", "builtin", "--threads", "1"]
    args += ["--plugin", path, "--methods", "probe", "--tasks", "denoising", "--no-progress"]
    one_line_error(invoke(args), "method probe (plugin probe.py)", problem)


def test_an_edited_plugin_file_is_loaded_again(tmp_path):
    path = method_plugin(tmp_path, "raise ValueError('v1')")
    plugins.load([path])
    first = METHODS["probe"]
    assert plugins.load([path]) and METHODS["probe"] is first  # unchanged: not reloaded
    Path(path).write_text(Path(path).read_text().replace("v1", "v2"))
    plugins.load([path])  # what a worker does before each cell
    assert METHODS["probe"] is not first
    with pytest.raises(ValueError, match="v2"):
        METHODS["probe"].restore(None, "denoising", torch.zeros(1, 3, 32, 32), None, 1, [0], "cpu")


def test_the_recorded_command_names_bench_plugins(monkeypatch):
    from bench.cli.output import command_line

    monkeypatch.setenv(plugins.PLUGINS_ENV, TIKHONOV)
    monkeypatch.setattr("sys.argv", ["bench", "run", "--table", "1"])
    assert command_line() == f"BENCH_PLUGINS={TIKHONOV} bench run --table 1"


def test_a_checkpoint_of_an_unregistered_architecture_asks_for_its_plugin(tmp_path):
    from bench.errors import CheckpointError
    from bench.train import load_checkpoint

    flow = tiny_flow()
    cfg = {**flow.arch_config, "arch": "my-flow"}
    torch.save({"arch_config": cfg, "model": flow.state_dict()}, tmp_path / "f.pt")
    match = "unregistered architecture .* 'my-flow'.*load that plugin"
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path / "f.pt")


def test_table1_runs_on_a_plugin_architecture(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "arch.py", GLOW2)
    common = ["--preset", "smoke", "--dataset", "builtin", "--threads", "1", "--no-progress"]
    common += ["--plugin", path, "--arch", "glow2"]
    args = ["run", "--table", "1", *common, "--methods", "ours", "--tasks", "denoising"]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    table = (tmp_path / "reports" / "table1.md").read_text()
    assert "glow2" in table and "- **Plugins**: glow2 (flow, plugin arch.py)" in table
    assert (tmp_path / "results" / "checkpoints" / "builtin-smoke-glow2.pt").is_file()


def test_a_run_refuses_cells_of_an_edited_plugin_unless_forced(tmp_path):
    copy = tmp_path / "tik.py"
    copy.write_text(Path(TIKHONOV).read_text())

    def run(**kw):
        return plugin_run(tmp_path / "results", [str(copy)], "tikhonov", "denoising", **kw)

    assert len(run().computed) == 1 and len(run().reused) == 1  # unchanged: resumed
    copy.write_text(copy.read_text().replace("CG_MAX_ITERS = 100", "CG_MAX_ITERS = 1"))
    with pytest.raises(BenchError, match=r"the plugin of method tikhonov \(plugin .*tik.py\) "):
        run()
    assert len(run(force=True).computed) == 1
    assert len(run().reused) == 1


BAD_OBJECTIVE = """
import torch
import bench
from bench.methods import FlowMethod


class BadShape(FlowMethod):
    name = "bad-shape"
    weight_name = None

    def objective(self, flow, task, y, weight):
        return lambda z, x, logdet: (x - y).abs().sum()  # one number, not one per row


class Raises(FlowMethod):
    name = "raises-objective"
    weight_name = None

    def objective(self, flow, task, y, weight):
        def f(z, x, logdet):
            raise RuntimeError("boom in the objective")

        return f


bench.register(BadShape())
bench.register(Raises())
"""


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("bad-shape", r"one loss per row|shape"),
        ("raises-objective", "RuntimeError: boom in the objective"),
    ],
)
def test_a_plugin_objective_failing_is_one_line_in_both_paths(tmp_path, method, message, fuse):
    spec = write(tmp_path, "bad_objective.py", BAD_OBJECTIVE)
    with pytest.raises(BenchError, match=rf"method {method} \(plugin .*\) failed on denoising: "):
        plugin_run(tmp_path / "r", [spec], method, "denoising", fuse=fuse)
    with pytest.raises(BenchError, match=message):
        plugin_run(tmp_path / "r", [spec], method, "denoising", fuse=fuse)
