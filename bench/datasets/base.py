"""What a dataset is (README "Add your own method, task, dataset or flow"), and the registry of
datasets that ``--dataset`` chooses from."""

from __future__ import annotations

from pathlib import Path

from bench.data import ImageSet
from bench.registry import Registry


class Dataset:
    """A source of 32×32 RGB images split into the partitions 'train', 'valid' and 'test'.

    Class attributes:

    - `name`: what ``--dataset`` and checkpoints call it (``ImageSet.dataset``);
    - `label`: one line saying what the images are, for reports and ``bench info``;
    - `needs_root`: whether it reads a folder given by ``--data-root`` (else the root is
      ignored).

    :meth:`load` returns an :class:`~bench.data.ImageSet` whose ``images`` is a uint8 tensor of
    shape (N, 3, 32, 32), pixel values 0..255, with N = len(names) >= 1, one unique name per
    image (its source file, or what it was made from), ``dataset`` == `name`, ``partition`` as
    asked, a one-line ``label`` (counts included), ``root`` (the folder read, or None),
    ``skipped`` (sources that could not be read) and ``fingerprint``
    (:func:`bench.data.content_fingerprint` of names and pixels: the set's identity).

    Determinism: the same partition, `limit` and source files give the same names, pixels and
    fingerprint in the same order, on any machine and in any process; `limit` keeps the first
    `limit` images of the full partition, in its order. The partitions are disjoint.

    Errors: a problem the user can fix (missing or wrongly laid out files, no readable image)
    raises :class:`~bench.errors.DataError` with one line naming it and the fix; something the
    user should know that does not stop the run warns with :class:`~bench.data.DataWarning`.
    Register an instance (or the class) with ``DATASETS.add``; :func:`bench.data.load_images`
    checks the dataset name, the partition and `limit` before calling :meth:`load`.
    """

    name: str = ""
    label: str = ""
    needs_root: bool = False

    def load(
        self, partition: str, root: str | Path | None, limit: int | None, progress: bool
    ) -> ImageSet:
        """The images of `partition` ('train', 'valid' or 'test'): the first `limit` (None:
        all); `root` is the --data-root folder (None: the dataset's default); `progress` shows
        a progress bar and a summary line on stderr for long work."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<dataset {self.name!r}: {self.label}>"


DATASETS: Registry[Dataset] = Registry("dataset", Dataset, "--dataset")
