"""Inverse problems: the task contract and registry (`base`), one module per task.

The paper's four (PROTOCOL §4) are ``denoising``, ``deblurring``, ``inpainting`` and
``colorization``; plugins add more (README, "Add your own method, task, dataset or flow").
Importing this package does not load the tasks: reading the registry (:data:`TASKS`,
:func:`get_task`) does, with every built-in and plugin (`bench.plugins.ensure_loaded`).
"""

from bench.tasks.base import (
    DEQUANT_STREAM,
    LATENT_STREAM,
    NOISE_STD_MODEL,
    NOISE_STD_PIXELS,
    NOISE_STREAM,
    TASKS,
    Task,
    as_uint8_batch,
    figure_file,
    get_task,
    image_seeds,
    stream_seed,
)


def __getattr__(name: str):
    # the built-in task classes and the mask, importable from bench.tasks as before
    import importlib

    homes = {
        "Denoising": "denoising",
        "Deblurring": "deblurring",
        "Inpainting": "inpainting",
        "inpainting_mask": "inpainting",
        "Colorization": "colorization",
    }
    if name in homes:
        return getattr(importlib.import_module(f"bench.tasks.{homes[name]}"), name)
    raise AttributeError(f"module 'bench.tasks' has no attribute {name!r}")


__all__ = [
    "DEQUANT_STREAM",
    "LATENT_STREAM",
    "NOISE_STD_MODEL",
    "NOISE_STD_PIXELS",
    "NOISE_STREAM",
    "TASKS",
    "Task",
    "as_uint8_batch",
    "figure_file",
    "get_task",
    "image_seeds",
    "stream_seed",
]
