"""The results store's layout: its format version, folder and file names, stages and the
columns of a cell's CSV (the store itself is described in `bench.runner`)."""

from __future__ import annotations

RUN_FORMAT = 1  # bump when the stored layout or the meaning of a cell changes
STAGES = ("select", "test")
RUNS_DIR = "runs"
CELLS_DIR = "cells"
INPUTS_DIR = "inputs"
MANIFEST = "run.json"
NO_FLOW = "none"  # the model fingerprint of a run none of whose methods needs a flow

CSV_COLUMNS = (
    "run_id",
    "stage",
    "partition",
    "method",
    "task",
    "weight_name",
    "weight",
    "image",
    "index",
    "seed",
    "image_seed",
    "psnr",
    "ssim",
    "mse5",
    "loss",
    "diverged",
    "iters",
    "seconds",
    "preset",
    "model",
    "dataset",
    "device",
)
