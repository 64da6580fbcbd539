"""The task contract (PROTOCOL §4): :class:`Task`, the per-image random streams, and the tasks
registry. Each task is one module that registers itself (``bench.register``): the paper's four in
``bench/tasks/``, plugins anywhere.

Every task maps a clean uint8 test image to a measurement `y` in model space ([-1, 1),
PROTOCOL §1). Randomness is per image, never per batch: image ``name`` with base ``seed`` has the
seed ``s = data.image_seed(name, seed)``. The measurement noise ``n`` is drawn from a
``torch.Generator`` seeded with ``s`` (stream :data:`NOISE_STREAM`), the dequantization noise
``u`` (shared by :meth:`Task.clean` and :meth:`Task.measure`) with ``s + 1``
(:data:`DEQUANT_STREAM`), and the solvers' initial latents with ``s + 2``
(:data:`LATENT_STREAM`, see ``bench.methods``). So every method sees the same ``y`` for an image
whatever batch it is in, and a rerun gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bench import config, data
from bench.registry import Registry

# ---- per-image random streams ------------------------------------------------------------------
NOISE_STREAM = 0  # measurement noise n (denoising)
DEQUANT_STREAM = 1  # dequantization u of the clean image and of y
LATENT_STREAM = 2  # the solvers' z0 (bench.methods)
MASK_STREAM = 3  # a mask drawn per image (random inpainting)
_SEED_MOD = 2**63

# noise std of the denoising task on 0..255 pixels (25.5) and in model space [-1, 1) (0.2)
NOISE_STD_PIXELS = config.NOISE_STD_FRACTION * 255
NOISE_STD_MODEL = config.MAP_SIGMA


def image_seeds(names: Sequence[str], seed: int = 0) -> list[int]:
    """One base seed per image, ``data.image_seed(name, seed)``: what `Method.restore` takes."""
    return [data.image_seed(n, seed) for n in names]


def stream_seed(image_seed: int, stream: int) -> int:
    """The seed of one random stream (NOISE_STREAM, DEQUANT_STREAM, LATENT_STREAM) of an image,
    ``image_seed + stream`` (mod 2**63): distinct streams of the same image never share a seed."""
    return (int(image_seed) + int(stream)) % _SEED_MOD


def stream_seeds(seeds: Sequence[int], stream: int) -> list[int]:
    """The seeds of one random stream for a batch of images' base seeds (`stream_seed`)."""
    return [stream_seed(s, stream) for s in seeds]


def as_uint8_batch(x255, names: Sequence[str]) -> torch.Tensor:
    x = torch.as_tensor(x255).detach().cpu()
    if x.dtype != torch.uint8:
        raise TypeError(f"clean images must be uint8 0..255, got {x.dtype}")
    if x.ndim != 4 or x.shape[1] != config.CHANNELS:
        raise ValueError(f"clean images must have shape (B, 3, H, W), got {tuple(x.shape)}")
    if len(names) != x.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {len(names)} names")
    return x


class Task:
    """One inverse problem: forward operator `A`, its adjoint, measurement synthesis and display.

    `A(x)` works on batched model-space tensors (B, 3, H, W) on any device and returns the
    measurement's shape (any (B, ...)); `measure` and `clean` take the clean uint8 images
    (B, 3, H, W) with their file names and return CPU float32 tensors.

    Declarations (class attributes; everything the rest of bench reads about a task):

    - `name`: registry key, `label`: display name; `linear`: whether A is linear (an adjoint);
    - `noise_std`: std of the measurement noise in model space (0: noiseless);
    - `figure`: the paper's figure number for this task (None for tasks the paper did not run);
    - `default`: whether it runs without --tasks (Table 1's tasks);
    - `display_label`: what :meth:`display` shows (the measurement, or e.g. the adjoint image);
    - `family`: the kind of problem, shared by the levels of one operator ('denoising' for
      every noise level, 'inpainting' for both masks): a method's `tasks` may name a family.

    A task whose operator differs per image (a random mask drawn per image) returns, from
    :meth:`for_images`, the task bound to a batch's image seeds; `A` and `adjoint` of the
    bound task act on that batch. `Method.check` binds the task for every method."""

    name: str = ""
    label: str = ""
    linear: bool = True
    noise_std: float = 0.0
    figure: int | None = None
    default: bool = False
    display_label: str = "measurement"
    family: str = ""

    def for_images(self, seeds: Sequence[int]) -> Task:
        """The task bound to a batch's per-image base seeds (`image_seeds`): itself for a task
        whose operator is the same for every image (all built-ins but random inpainting)."""
        return self

    @property
    def kind(self) -> str:
        """The family, or the name for a task that declares none."""
        return self.family or self.name

    # -- operator --------------------------------------------------------------------------------
    def A(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """A^T y (linear tasks only)."""
        raise NotImplementedError(f"{self.name} has no adjoint")

    # -- data ------------------------------------------------------------------------------------
    def dequant_noise(self, names: Sequence[str], seed: int = 0, size=None) -> torch.Tensor:
        """The per-image dequantization noise u ~ U[0, 1), (B, 3, size, size)."""
        size = config.IMAGE_SIZE if size is None else size
        seeds = stream_seeds(image_seeds(names, seed), DEQUANT_STREAM)
        return data.seeded_uniform(seeds, (config.CHANNELS, size, size))

    def clean(self, x255, names: Sequence[str], seed: int = 0) -> torch.Tensor:
        """The dequantized clean target in model space, with the same u as `measure` uses."""
        x = as_uint8_batch(x255, names)
        return data.to_model(x, u=self.dequant_noise(names, seed, x.shape[-1]))

    def measure(self, x255, names: Sequence[str], seed: int = 0) -> torch.Tensor:
        """y in model space, computed from the clean uint8 images (noiseless tasks: A(clean),
        with A bound to the images, :meth:`for_images`)."""
        return self.for_images(image_seeds(names, seed)).A(self.clean(x255, names, seed))

    def figure_file(self) -> str:
        """The file name of its figure: 'fig3_denoising.png', or 'fig_<name>.png'."""
        return figure_name(self.name, self.figure)

    def describe(self) -> dict:
        """What a stored run records about the task, so its reports render without the module
        (or plugin) that defined it."""
        return {
            "label": self.label or self.name,
            "figure": self.figure,
            "display_label": self.display_label,
            "default": self.default,
            "family": self.kind,
        }

    def display(self, y: torch.Tensor) -> torch.Tensor:
        """The measurement as uint8 (B, 3, H, W) pixels for figures (a one-channel y is shown as
        gray; override for measurements that are not images)."""
        y = y.detach().cpu()
        if y.shape[1] == 1:
            y = y.expand(-1, config.CHANNELS, -1, -1)
        return data.to_pixels(y)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"


def figure_name(task: str, figure: int | None) -> str:
    """'fig3_denoising.png' for a task with a paper figure number, else 'fig_<task>.png'."""
    return f"fig{figure}_{task}.png" if figure is not None else f"fig_{task}.png"


TASKS: Registry[Task] = Registry("task", Task, "--tasks")


def get_task(name: str | Task) -> Task:
    """The task called `name` (a Task is returned as is); BenchError naming the choices."""
    return TASKS.get(name)
