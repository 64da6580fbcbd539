"""Every number of the protocol (docs/PROTOCOL.md) in one place, and the named presets.

Presets change only size knobs (hidden width, epochs, training images, test images,
iterations, weight grid, and for `gpu` the training batch); everything else is the paper's
protocol and is shared by all presets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

# ---- PROTOCOL §1: data ---------------------------------------------------------------------------
IMAGE_SIZE = 32
CHANNELS = 3
N_BITS = 5  # model space: x5 = floor(x255 / 8) in 0..31
N_BINS = 2**N_BITS
DIM = CHANNELS * IMAGE_SIZE * IMAGE_SIZE  # 3072
CELEBA_PARTITIONS = {"train": 0, "valid": 1, "test": 2}
# official filename ranges (inclusive), used when list_eval_partition.txt is missing
CELEBA_RANGES = {"train": (1, 162770), "valid": (162771, 182637), "test": (182638, 202599)}
DATASETS = ("celeba", "builtin")  # --dataset: the built-ins of bench.datasets.DATASETS, in order
EVAL_IMAGES = 192  # first 192 test images, 6 batches of 32
EVAL_BATCH = 32

# ---- PROTOCOL §2: the paper's coupling flow ------------------------------------------------------
HIDDEN = 512
COUPLING_LEVELS = 5
COUPLING_STEPS = (2, 2, 2, 4, 4)  # K = 2, doubled at 2x2 and 1x1: 14 steps
COUPLING_SPLITS = (False, False, True, True, False)  # split after the 4x4 and 2x2 scales
COUPLING_PARAMS_AT_512 = 32_736_864
SIGMOID_SHIFT = 2.0  # h' = h * sigmoid(s + 2) + t
LOG_SCALE_FACTOR = 3.0  # NN output multiplied by exp(3 * log_scale)

# ---- PROTOCOL §3: the ablation glow flow ---------------------------------------------------------
GLOW_LEVELS = 3
GLOW_STEPS = (4, 4, 6)
GLOW_SPLITS = (False, False, False)
GLOW_PARAMS_AT_512 = 33_780_096

# ---- PROTOCOL §2: training -----------------------------------------------------------------------
TRAIN_LR = 1e-4
TRAIN_BETAS = (0.5, 0.999)
TRAIN_BATCH = 32
TRAIN_EPOCHS = 100

# ---- PROTOCOL §4: tasks --------------------------------------------------------------------------
NOISE_STD_FRACTION = 0.1  # of the dynamic range: 25.5 on 0..255, 0.2 in model space [-1, 1]
BLUR_KERNEL = 3
INPAINT_LO, INPAINT_HI = 0.3, 0.7  # rows/cols floor(0.3*32)=9 .. floor(0.7*32)=22 (exclusive)

# ---- PROTOCOL §9: the general table's tasks (beyond the paper) -----------------------------------
DENOISING_LEVELS = (0.05, 0.2)  # more noise std fractions of the range (0.1 stays `denoising`)
CS_RATIOS = (0.1, 0.25)  # m = round(r * 3072) Gaussian measurements
CS_MATRIX_SEED = 20190531  # the one generator seed of every ratio's matrix (any image, run)
CS_NOISE_NORM = 0.1  # eta ~ N(0, (0.1 / sqrt(m))^2 I): ||eta|| ~ 0.1 (CSGM's, GlowIP's setting)
SR_FACTORS = (2, 4)  # k x k average pooling, stride k
RANDOM_INPAINT_KEEP = 0.3  # fraction of pixels observed (all three channels), mask per image

# ---- PROTOCOL §5: methods ------------------------------------------------------------------------
SOLVER_ITERS = 1500
SOLVER_LR = 5e-3
SOLVER_BETAS = (0.9, 0.999)
MAP_BETA = 0.5
MAP_LR = 1.5e-3
MAP_SIGMA = 2 * NOISE_STD_FRACTION  # noise std in model space
LATENT_INIT_STD = 0.1  # z0 ~ N(0, 0.1^2 I) for MAP and the paper's solver
BM3D_SIGMA = NOISE_STD_FRACTION  # on 0..1 images; the released code passed 25/255
PAPER_WEIGHTS = {
    "csgm": {"denoising": 0.1, "deblurring": 0.01, "inpainting": 0.01, "colorization": 0.01},
    "glowip": {"denoising": 0.1, "deblurring": 0.0, "inpainting": 0.0, "colorization": 0.0},
    "ours": {"denoising": 0.05, "deblurring": 0.02, "inpainting": 0.002, "colorization": 0.02},
}
# log-spaced grids containing the paper's chosen values (0 included where the paper chose it)
GAMMA_GRID = (0.0, 0.001, 0.01, 0.1, 1.0)
ALPHA_GRID = (0.0005, 0.002, 0.005, 0.02, 0.05, 0.2)

# ---- PROTOCOL §6: reports ------------------------------------------------------------------------
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
SAMPLE_STDS = (0.0, 0.25, 0.5, 0.75, 0.8, 1.0, 1.2)
SAMPLES_PER_ROW = 16
PUBLISHED_TABLE1 = {  # paper convention (PROTOCOL §6): (PSNR, SSIM)
    "csgm": {
        "denoising": (37.41, 0.897),
        "deblurring": (37.17, 0.883),
        "inpainting": (36.39, 0.839),
        "colorization": (34.71, 0.897),
    },
    "glowip": {
        "denoising": (37.21, 0.894),
        "deblurring": (35.82, 0.867),
        "inpainting": (37.81, 0.903),
        "colorization": (35.79, 0.937),
    },
    "map": {"denoising": (37.35, 0.898)},
    "bm3d": {"denoising": (37.65, 0.905)},
    "ours": {
        "denoising": (37.72, 0.918),
        "deblurring": (39.72, 0.963),
        "inpainting": (37.97, 0.913),
        "colorization": (35.72, 0.940),
    },
}
PUBLISHED_TABLE2 = {  # GTX 750 Ti, 1500 iterations, 128 samples
    "glow": {"ms": 10.86, "std": 0.18, "params": 33_800_000},
    "coupling": {"ms": 4.46, "std": 0.03, "params": 32_700_000},
}
TIMING_ITERS = 1500
TIMING_BATCH = 128


@dataclass(frozen=True)
class Preset:
    """Size knobs only; the protocol above is the same for every preset.

    `gamma_grid` and `alpha_grid` are the grids of the methods that declare them as their
    `grid_field` (CSGM and GlowIP; the paper's solver); `grids` overrides any method's grid by
    the method's name (plugins included), e.g. ``grids={"tikhonov": (0.01, 0.1)}``."""

    name: str
    hidden: int
    epochs: int
    train_images: int | None  # None: every training image present
    valid_images: int  # for validation bits/dim and for weight selection
    test_images: int
    iters: int
    select_images: int  # valid images used for the weight grid search
    gamma_grid: tuple[float, ...] = GAMMA_GRID
    alpha_grid: tuple[float, ...] = ALPHA_GRID
    extra: dict = field(default_factory=dict)
    grids: dict = field(default_factory=dict)
    # images per training batch; None: the paper's TRAIN_BATCH (see `batch_size`)
    train_batch: int | None = None

    @property
    def batch_size(self) -> int:
        """The training batch of this preset: its own `train_batch`, else the paper's 32."""
        return self.train_batch or TRAIN_BATCH

    def to_dict(self) -> dict:
        """The preset as stored in runs and checkpoints (an empty `grids` and a None
        `train_batch` are left out, so a preset without them keeps the identity it had before
        they existed: no run id or checkpoint identity changes)."""
        d = asdict(self)
        if not d["grids"]:
            del d["grids"]
        if d["train_batch"] is None:
            del d["train_batch"]
        return d

    def with_(self, **kw) -> Preset:
        return replace(self, **kw)


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        hidden=HIDDEN,
        epochs=TRAIN_EPOCHS,
        train_images=None,
        valid_images=1000,
        test_images=EVAL_IMAGES,
        iters=SOLVER_ITERS,
        select_images=EVAL_IMAGES,
    ),
    "cpu": Preset(
        name="cpu",
        hidden=128,
        epochs=24,
        train_images=None,
        valid_images=512,
        test_images=EVAL_IMAGES,
        iters=300,
        select_images=32,
    ),
    "smoke": Preset(
        name="smoke",
        hidden=16,
        epochs=1,
        train_images=256,
        valid_images=64,
        test_images=4,
        iters=10,
        select_images=4,
        gamma_grid=(0.0, 0.01, 0.1),
        alpha_grid=(0.002, 0.02),
    ),
    # one H200-class GPU, the whole pipeline in about 10 minutes (scripts/gpu_table.sh); not
    # yet run on a GPU. The paper's flow (width 512), solver (1500 iterations) and grids; the
    # paper's 192 test images; weights chosen on 32 valid images. Training at batch 512 (the
    # paper's 32 would leave the GPU mostly idle) with the paper's Adam lr 1e-4 unchanged (not
    # scaled with the batch). Sizing: a training step of the width-512 coupling flow costs
    # ~0.9 GFLOP forward, ~2.7 GFLOP forward+backward per image; at an assumed 5,000-10,000
    # images/s at batch 512 on one H200, an epoch of the development copy's 15,000 training
    # images (29 full batches: 14,848 images) takes 1.5-3.0 s, plus ~0.4-1 s to save the
    # checkpoint (~390 MB with Adam's state) and validate: 64 epochs (950,272 images, 1,856
    # steps) take 2-4.2 min, plus ~30 s to start and load the images: 2.5-4.7 min, inside
    # the script's 300 s. With the full CelebA (162,770 training images) an epoch is ~11x
    # longer: lower `epochs` or set `train_images` here to stay in budget (`bench train
    # --epochs` alone would not do: `bench run` finishes the preset's epochs first).
    # Table 1 at these sizes is ~4,540 solves x 1500 iterations = 6.8M solver row-iterations
    # (~2/3 of a training step's cost each): ~8-15 min at the same rate, more than the
    # script gives it; it stops partway and a rerun resumes (scripts/gpu_table.sh's header).
    "gpu": Preset(
        name="gpu",
        hidden=HIDDEN,
        epochs=64,
        train_images=None,
        valid_images=512,
        test_images=EVAL_IMAGES,
        iters=SOLVER_ITERS,
        select_images=32,
        train_batch=512,
    ),
}
# `bench run --table general` (PROTOCOL §9): the preset's flow (same name, width, epochs, training
# images: the same checkpoint), with these test sizes, so that the whole general table (11
# tasks, every method, two test sets) fits a CPU budget: about 90 minutes on 2 cores for `cpu`.
# A preset without an entry runs the general table at its own sizes.
GENERAL_SIZES: dict[str, dict] = {
    "cpu": {
        "test_images": 48,
        "select_images": 8,
        "iters": 300,
        "gamma_grid": (0.0, 0.01, 0.1),
        "alpha_grid": (0.002, 0.02, 0.05),
    },
}
GENERAL_OOD_DATASET = "builtin"  # the out-of-distribution test images of the general table
GENERAL_TABLE = "general"  # Preset.extra['table'] of a general-table run's preset


def general_preset(preset: Preset | str) -> Preset:
    """The preset a general-table run uses: `preset` with its GENERAL_SIZES (if any), marked
    ``extra={'table': 'general'}`` so its runs never share an id with Table 1's."""
    p = get_preset(preset) if isinstance(preset, str) else preset
    return p.with_(**GENERAL_SIZES.get(p.name, {}), extra={**p.extra, "table": GENERAL_TABLE})


def is_general_preset(preset: dict) -> bool:
    """Whether a stored preset (`Preset.to_dict`, as a run's manifest holds it) is a
    general-table run's (`general_preset`)."""
    return isinstance(preset, dict) and (preset.get("extra") or {}).get("table") == GENERAL_TABLE


# the preset of every command run without --preset: sized for a CPU (`paper`, the full
# protocol, is GPU work and is only ever run when asked for by name)
DEFAULT_PRESET = "cpu"


def get_preset(name: str) -> Preset:
    """The named preset, or a ValueError naming the choices."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}") from None
