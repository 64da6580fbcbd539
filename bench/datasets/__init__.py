"""Datasets (PROTOCOL §1): the :class:`Dataset` type, the registry ``--dataset`` chooses from,
and the built-in ``celeba`` and ``builtin`` sets. :func:`bench.data.load_images` loads one.

Add one by subclassing :class:`Dataset` and registering it: ``DATASETS.add(MyImages)``."""

from bench.datasets.base import DATASETS, Dataset

# importing registers the built-ins, in the order of config.DATASETS (messages list them so)
# isort: off
from bench.datasets import celeba  # noqa: F401, E402
from bench.datasets import builtin  # noqa: F401, E402

# isort: on

__all__ = ["DATASETS", "Dataset", "get_dataset"]


def get_dataset(name: str) -> Dataset:
    """The registered dataset called `name`; BenchError naming the choices."""
    return DATASETS.get(name)
