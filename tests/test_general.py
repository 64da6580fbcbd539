"""The general table (PROTOCOL §9): its tasks' operators and their refusals, a run's flow dataset
apart from its images, `bench run --table general` end to end with its report, resume and
rebuild."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from conftest import celeba_root_or_none, invoke, one_line_error

from bench import config
from bench.errors import BenchError
from bench.tasks import get_task, image_seeds

NAMES = ["a.jpg", "b.jpg", "c.jpg"]


def _images(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


# ---- tasks -------------------------------------------------------------------------------------
def test_compressed_sensing_matrix_noise_and_least_squares_image():
    task = get_task("cs-0.1")
    assert task.m == round(0.1 * 3072) == 307
    a = task.matrix
    assert a.shape == (307, 3072)
    # iid N(0, 1/m): each column has squared norm ~ 1, the entries' variance is 1/m
    assert abs(float(a.var()) * task.m - 1) < 0.01
    from bench.tasks.compressed_sensing import CompressedSensing

    assert torch.equal(a, CompressedSensing(0.1).matrix)  # one seeded matrix, every time
    x255 = _images(3)
    y = task.measure(x255, NAMES, seed=1)
    clean = task.clean(x255, NAMES, seed=1).double()
    eta = y.double() - task.A(clean)
    # eta ~ N(0, (0.1/sqrt(m))^2 I): its norm is close to 0.1 (float32 rounding of y aside)
    assert np.allclose(eta.norm(dim=1).numpy(), 0.1, atol=0.02)
    x_ls = task.pseudo_inverse(y.double())
    torch.testing.assert_close(task.A(x_ls), y.double(), rtol=1e-8, atol=1e-8)
    # the least-squares image is the minimum-norm one: it lies in the row space of A
    row_space = task.adjoint(torch.linalg.lstsq(a.T, x_ls.flatten(1).T).solution.T)
    torch.testing.assert_close(row_space, x_ls, rtol=1e-7, atol=1e-7)


def test_super_resolution_is_block_averaging_and_its_display_the_nearest_upsampling():
    task = get_task("sr-4")
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float64).reshape(2, 3, 32, 32)
    y = task.A(x)
    assert y.shape == (2, 3, 8, 8)
    assert y[1, 2, 3, 5] == x[1, 2, 12:16, 20:24].mean()
    shown = task.display(task.measure(_images(2), NAMES[:2]))
    assert shown.shape == (2, 3, 32, 32)
    assert (shown[:, :, :4, :4] == shown[:, :, :1, :1]).all()  # each 4×4 block is one value


def test_random_inpainting_draws_one_mask_per_image_keeping_thirty_percent():
    task = get_task("inpainting-random")
    seeds = image_seeds(NAMES, 0)
    masks = task.for_images(seeds).masks
    assert masks.shape == (3, 1, 32, 32)
    kept = masks.mean(dim=(1, 2, 3)).numpy()
    assert np.all(np.abs(kept - config.RANDOM_INPAINT_KEEP) < 0.05)
    assert not torch.equal(masks[0], masks[1])  # drawn per image
    torch.testing.assert_close(task.for_images(seeds[1:2]).masks[0], masks[1])
    assert not torch.equal(task.for_images(image_seeds(NAMES, 1)).masks, masks)  # per run seed
    y = task.measure(_images(3), NAMES)
    observed = (y != 0).any(dim=1, keepdim=True).float()
    assert torch.equal(observed * masks, observed)  # nothing shows outside the mask
    with pytest.raises(BenchError, match="for_images"):
        task.A(torch.zeros(1, 3, 32, 32))


def test_denoising_levels_scale_the_noise_and_share_the_family():
    base = get_task("denoising")
    low, high = get_task("denoising-0.05"), get_task("denoising-0.2")
    assert (low.noise_std, base.noise_std, high.noise_std) == (0.1, 0.2, 0.4)
    assert low.kind == high.kind == base.kind == "denoising" and not low.default
    x255 = torch.full((3, 3, 32, 32), 128, dtype=torch.uint8)
    spread = [float(t.noisy_pixels(x255, NAMES).double().std()) for t in (low, base, high)]
    assert spread[0] < spread[1] < spread[2]
    assert abs(spread[1] - 25.5) < 1.5


@pytest.mark.parametrize(
    "name, words",
    [
        ("cs-1.5", ["compressed-sensing ratio '1.5'", "(0, 1]"]),
        ("cs-0", ["compressed-sensing ratio '0'"]),
        ("cs-abc", ["compressed-sensing ratio 'abc'"]),
        ("sr-3", ["super-resolution factor '3'", "2, 4, 8, 16"]),
        ("sr-1", ["super-resolution factor '1'"]),
        ("sr-32", ["super-resolution factor '32'"]),
        ("sr-²", ["super-resolution factor '²'"]),
        ("denoising-2", ["denoising noise level '2'"]),
        ("cs-0.10", ["write it as 'cs-0.1'"]),
    ],
)
def test_a_ratio_or_factor_the_operator_does_not_allow_is_one_line(name, words):
    with pytest.raises(BenchError) as e:
        get_task(name)
    assert "\n" not in str(e.value)
    for w in words:
        assert w in str(e.value)
    result = invoke(["run", "--table", "general", "--preset", "smoke", "--tasks", name])
    one_line_error(result, *words)


def test_other_levels_are_built_on_demand():
    assert get_task("cs-0.3").m == round(0.3 * 3072)
    assert get_task("sr-8").A(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 4, 4)
    assert get_task("denoising-0.3").noise_std == pytest.approx(0.6)


# ---- the command -------------------------------------------------------------------------------
def _general(tmp_path, *more):
    return invoke(
        ["run", "--table", "general", "--preset", "smoke", "--dataset", "builtin",
         "--results", str(tmp_path / "results"), "--out", str(tmp_path / "reports"),
         "--no-progress", "--threads", "1", *more]
    )  # fmt: skip


def test_general_table_runs_resumes_and_rebuilds_byte_for_byte(tmp_path):
    args = ["--tasks", "denoising,sr-2,cs-0.1", "--methods", "ours,bm3d,glowip"]
    first = _general(tmp_path, *args)
    assert first.exit_code == 0, first.output
    md = (tmp_path / "reports" / "general.md").read_text()
    for words in ("Compressed sensing 0.1", "Super-resolution ×2", "n/a", "**", "± ",
                  "Flow trained on**: builtin", "preset `smoke`", "Run command"):  # fmt: skip
        assert words in md
    assert "Out of distribution" not in md  # --ood-dataset builtin is the flow's own dataset
    for t in ("denoising", "sr-2", "cs-0.1"):
        assert (tmp_path / "reports" / "general" / f"{t}.png").is_file()
    # BM3D is a denoiser: skipped elsewhere with its reason
    assert "BM3D" in md and md.count("n/a") >= 2
    again = _general(tmp_path, *args)
    assert again.exit_code == 0 and re.search(r"0 of (\d+) cells computed, \1 reused", again.output)
    assert (tmp_path / "reports" / "general.md").read_text() == md
    (tmp_path / "reports" / "general.md").write_text("stale")
    rebuilt = invoke(["report", "--results", str(tmp_path / "results"),
                      "--out", str(tmp_path / "reports")])  # fmt: skip
    assert rebuilt.exit_code == 0, rebuilt.output
    assert (tmp_path / "reports" / "general.md").read_text() == md
    assert not (tmp_path / "reports" / "table1.md").exists()  # no Table 1 run in this store
    from bench.runner import list_runs

    results = str(tmp_path / "results")
    (run_dir,) = list_runs(results)
    # another seed makes other runs: refused before anything is computed
    one_line_error(_general(tmp_path, *args, "--seed", "1"), "general.md was made from")
    assert list_runs(results) == [run_dir]
    # a general run is not Table 1's: refused by name, and as the only runs of a store
    one_line_error(
        invoke(["report", "--results", results, "--run", run_dir.name]), "general-table run"
    )
    other = str(tmp_path / "elsewhere")
    one_line_error(
        invoke(["report", "--results", results, "--out", other]), "only general-table runs"
    )


def test_general_table_paired_difference_is_the_per_image_mean(tmp_path):
    from bench import report
    from bench.runner import list_runs

    result = _general(tmp_path, "--tasks", "denoising", "--methods", "ours,bm3d")
    assert result.exit_code == 0, result.output
    (run_dir,) = list_runs(tmp_path / "results")
    data = report.load_run(run_dir)
    (row,) = report.paired_rows(data, ["ours", "bm3d"], ["denoising"])
    rows = data.rows[data.rows.stage == "test"]
    ours = rows[rows.method == "ours"].set_index("image").psnr
    bm3d = rows[rows.method == "bm3d"].set_index("image").psnr
    assert row["rival"] == "bm3d"
    assert math.isclose(row["psnr"]["mean"], float((ours - bm3d.loc[ours.index]).mean()))
    md = (tmp_path / "reports" / "general.md").read_text()
    assert f"{row['psnr']['mean']:+.2f} [" in md


def test_ood_images_are_restored_with_the_flow_of_another_dataset(tmp_path):
    root = celeba_root_or_none()
    if root is None:
        pytest.skip("the CelebA development copy is absent")
    result = _general(tmp_path, "--tasks", "sr-4", "--methods", "ours,measurement",
                      "--ood-dataset", "celeba", "--data-root", str(root))  # fmt: skip
    assert result.exit_code == 0, result.output
    md = (tmp_path / "reports" / "general.md").read_text()
    assert "## Out of distribution" in md and "Flow trained on**: builtin" in md
    assert (tmp_path / "reports" / "general" / "ood_sr-4.png").is_file()
    from bench.runner import list_runs, read_manifest

    mans = [read_manifest(d) for d in list_runs(tmp_path / "results")]
    ood = [m for m in mans if m["dataset"] == "celeba"]
    assert len(mans) == 2 and ood and ood[0]["flow_dataset"] == "builtin"
    assert ood[0]["key"]["flow_dataset"] == "builtin"
    assert (
        ood[0]["model"]["fingerprint"]
        == [m for m in mans if m is not ood[0]][0]["model"]["fingerprint"]
    )


def test_general_table_refusals_are_one_line(tmp_path):
    one_line_error(invoke(["run", "--table", "2"]), "--table 1 or --table general")
    one_line_error(
        invoke(["run", "--table", "1", "--ood-dataset", "celeba"]), "only used with --table general"
    )
