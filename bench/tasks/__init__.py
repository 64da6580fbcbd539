"""Inverse problems: the task contract and registry (`base`), one module per task.

The paper's four (PROTOCOL §4) are ``denoising``, ``deblurring``, ``inpainting`` and
``colorization``; PROTOCOL §9 adds ``denoising-0.05``, ``denoising-0.2``, ``inpainting-random``,
``sr-2``, ``sr-4``, ``cs-0.1`` and ``cs-0.25`` (and builds ``denoising-F``, ``sr-K`` and
``cs-R`` for other levels on demand); plugins add more (README, "Add your own method, task,
dataset or flow").
Importing this package does not load the tasks: reading the registry (:data:`TASKS`,
:func:`get_task`) does, with every built-in and plugin (`bench.plugins.ensure_loaded`).
"""

from bench.lazy import lazy_names
from bench.tasks.base import (
    DEQUANT_STREAM,
    LATENT_STREAM,
    NOISE_STD_MODEL,
    NOISE_STD_PIXELS,
    NOISE_STREAM,
    TASKS,
    Task,
    as_uint8_batch,
    figure_name,
    get_task,
    image_seeds,
    stream_seed,
    stream_seeds,
)

# the built-in task classes and the mask, importable from bench.tasks as before
__getattr__ = lazy_names(
    __name__,
    {
        "Denoising": "bench.tasks.denoising",
        "Deblurring": "bench.tasks.deblurring",
        "Inpainting": "bench.tasks.inpainting",
        "inpainting_mask": "bench.tasks.inpainting",
        "Colorization": "bench.tasks.colorization",
        "RandomInpainting": "bench.tasks.inpainting_random",
        "SuperResolution": "bench.tasks.super_resolution",
        "CompressedSensing": "bench.tasks.compressed_sensing",
    },
)


__all__ = [
    "DEQUANT_STREAM",
    "LATENT_STREAM",
    "NOISE_STD_MODEL",
    "NOISE_STD_PIXELS",
    "NOISE_STREAM",
    "TASKS",
    "Task",
    "as_uint8_batch",
    "figure_name",
    "get_task",
    "image_seeds",
    "stream_seed",
    "stream_seeds",
]
