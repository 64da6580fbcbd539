"""The training loop (PROTOCOL §2): epochs of Adam steps on the mean NLL of dequantized
batches, validation bits/dim after each epoch, atomic checkpoints, and a stop on the first
non-finite loss, gradient, weight or validation score (nothing non-finite is ever saved)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench import config
from bench import provenance as P
from bench.atomic import atomic_write
from bench.config import Preset
from bench.data import ImageSet, to_model
from bench.errors import BenchError, CheckpointError
from bench.flows import MultiScaleFlow
from bench.progress import bar as progress_bar
from bench.train_checkpoint import CHECKPOINT_VERSION, model_fingerprint, nonfinite_tensors
from bench.train_history import write_history

SAVE_EVERY_S = 120.0  # mid-epoch checkpoint interval, so an interruption loses little
VALID_SEED = 1234  # fixed dequantization noise for comparable validation bits/dim


class TrainingDiverged(BenchError):
    """A non-finite loss, gradient, weight or validation score during training."""


def _batches(n: int, batch: int, epoch: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    perm = torch.randperm(n, generator=g)
    return [perm[i : i + batch] for i in range(0, n - batch + 1, batch)]  # drop last partial


@torch.no_grad()
def evaluate_bpd(flow: MultiScaleFlow, x255: torch.Tensor, device: str, batch: int = 128) -> float:
    """Mean validation bits/dim with fixed dequantization noise."""
    flow.eval()
    g = torch.Generator().manual_seed(VALID_SEED)
    total, n = 0.0, 0
    for i in range(0, len(x255), batch):
        xb = to_model(x255[i : i + batch], generator=g).to(device)
        total += flow.bits_per_dim(xb).sum().item()
        n += len(xb)
    return total / max(n, 1)


def _grad_norm(params) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())


def kept_epoch_path(checkpoint: str | Path, epoch: int) -> Path:
    """Where `bench train --keep-epochs` keeps the checkpoint after `epoch`:
    <name>.epochNN.pt beside `checkpoint`."""
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}.epoch{epoch:02d}{path.suffix or '.pt'}")


def check_enough_images(n: int, batch: int = config.TRAIN_BATCH) -> None:
    """CheckpointError unless there are `n` >= one training batch (`batch`: the preset's
    `Preset.batch_size`) of training images."""
    if n < batch:
        raise CheckpointError(f"only {n} training images: need at least {batch}")


@dataclass
class Training:
    """One training of `flow` with `opt` towards the checkpoint `path`: the data, the settings
    that the checkpoint records, and where it stands (`epoch` done, `step` batches into the
    next one, the per-epoch `history`)."""

    flow: MultiScaleFlow
    opt: torch.optim.Optimizer
    path: Path
    preset: Preset
    dataset: str
    train_set: ImageSet
    valid_set: ImageSet
    seed: int
    batches_per_epoch: int | None
    source: P.Source  # of the history file
    device: str
    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)
    last_save: float = 0.0
    keep_epochs: frozenset[int] = frozenset()  # epochs whose checkpoint is also kept apart
    max_seconds: float | None = None  # time budget of this call's epochs (None: no budget)

    def n_batches(self) -> int:
        """Batches per epoch: full batches of the training images, at most
        `batches_per_epoch`."""
        n = len(self.train_set.images) // self.preset.batch_size
        return n if self.batches_per_epoch is None else min(n, self.batches_per_epoch)

    def checkpoint(self, model: dict, optim: dict, complete: bool) -> dict:
        """What a checkpoint of this training holds (`bench.train_checkpoint` reads it)."""
        return {
            "version": CHECKPOINT_VERSION,
            "arch_config": self.flow.arch_config,
            "model": model,
            "optimizer": optim,
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "preset": self.preset.to_dict(),
            "dataset": self.dataset,
            "dataset_label": self.train_set.label,
            "train_images": len(self.train_set),
            "train_fingerprint": self.train_set.fingerprint,
            "valid_images": len(self.valid_set),
            "seed": self.seed,
            "batches_per_epoch": self.batches_per_epoch,
            "batch_size": self.preset.batch_size,
            "lr": config.TRAIN_LR,
            "betas": list(config.TRAIN_BETAS),
            "fingerprint": model_fingerprint(self.flow),
            "complete": complete,
            "torch": str(torch.__version__),  # a plain str: loadable with weights_only=True
        }

    def save(self, complete: bool = False) -> None:
        """Write the checkpoint atomically; TrainingDiverged (nothing written) when a weight
        or optimizer state is not finite."""
        model, optim = self.flow.state_dict(), self.opt.state_dict()
        bad = nonfinite_tensors(model) + nonfinite_tensors(optim, "optimizer.")
        if bad:  # never replace the last good checkpoint with a diverged model
            raise TrainingDiverged(
                f"training diverged by epoch {self.epoch + 1}, batch {self.step}: {bad[0]} holds "
                f"NaN or inf; nothing was saved and {self.path} keeps the last good state"
            )
        ckpt = self.checkpoint(model, optim, complete)
        atomic_write(self.path, lambda f: torch.save(ckpt, f))

    def keep(self) -> Path:
        """Copy the finished epoch's checkpoint to `kept_epoch_path(path, epoch)` as a finished
        training of that many epochs (its preset's epochs set to it: the flow `bench train
        --epochs N` would have written, resumable with more epochs)."""
        preset = self.preset
        try:
            self.preset = preset.with_(epochs=self.epoch)
            ckpt = self.checkpoint(self.flow.state_dict(), self.opt.state_dict(), True)
        finally:
            self.preset = preset
        target = kept_epoch_path(self.path, self.epoch)
        atomic_write(target, lambda f: torch.save(ckpt, f))
        return target

    def diverged(self, what: str, batch: int) -> TrainingDiverged:
        """The one-line error for a non-finite `what` at `batch` of the current epoch."""
        good = (
            f"{self.path} keeps the last good state (resuming it repeats the same batches and "
            "likely diverges again): retrain with --force and another --seed"
            if self.path.exists()
            else "nothing was saved: rerun with another --seed"
        )
        return TrainingDiverged(
            f"training diverged at epoch {self.epoch + 1}, batch {batch}: {what}; {good}"
        )

    def initialize(self) -> None:
        """Data-dependent initialisation of a fresh flow from the first batch of epoch 0 (a
        resumed flow keeps its own)."""
        if self.epoch == 0 and self.step == 0:
            x_all = self.train_set.images
            g = torch.Generator().manual_seed(self.seed)
            first = _batches(len(x_all), self.preset.batch_size, 0, self.seed)[0]
            self.flow.initialize(to_model(x_all[first], generator=g).to(self.device))

    def run(self, progress: bool, log) -> None:
        """Train until `preset.epochs` are done, saving after every epoch and every
        SAVE_EVERY_S seconds; on Ctrl-C save, say how to resume, and re-raise."""
        params = [p for p in self.flow.parameters() if p.requires_grad]
        self.last_save = started = time.time()
        try:
            while self.epoch < self.preset.epochs:
                t0 = time.time()
                bpd, seen, seconds = self._epoch(params, progress)
                val = evaluate_bpd(self.flow, self.valid_set.images, self.device)
                if not math.isfinite(val):
                    raise self.diverged(f"validation bits/dim is {val}", self.step)
                self.epoch, self.step = self.epoch + 1, 0
                self._record(bpd, val, seconds, seen, log)
                self._stop_if_over_budget(time.time() - started, time.time() - t0, log)
                self.save(complete=self.epoch >= self.preset.epochs)
                write_history(self.history, self.path, self.source)
                if self.epoch in self.keep_epochs:
                    log(f"kept epoch {self.epoch}: {self.keep()}")
                self.last_save = time.time()
        except KeyboardInterrupt:
            self.save()
            log(f"interrupted: checkpoint saved to {self.path}; rerun the same command to resume")
            raise

    def _stop_if_over_budget(self, elapsed: float, last_epoch: float, log) -> None:
        """With a time budget (`max_seconds`), end the training at this epoch when another
        epoch as long as the last would overrun it: the preset's epochs become the epochs done,
        so the checkpoint is a finished training of that many epochs."""
        budget = self.max_seconds
        if budget is None or self.epoch >= self.preset.epochs or elapsed + last_epoch <= budget:
            return
        log(
            f"time budget of {budget / 60:.0f} min: stopping after epoch {self.epoch} "
            f"({elapsed / 60:.1f} min; another epoch takes ~{last_epoch / 60:.1f} min)"
        )
        self.preset = self.preset.with_(epochs=self.epoch)

    def _epoch(self, params: list, progress: bool) -> tuple[float, int, float]:
        """The rest of the current epoch from batch `step`: (last train bits/dim, images seen,
        seconds)."""
        x_all = self.train_set.images
        n_batches = self.n_batches()
        self.flow.train()
        batch = self.preset.batch_size  # the paper's 32 unless the preset sets its own
        batches = _batches(len(x_all), batch, self.epoch, self.seed)
        g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        for _ in range(self.step):  # keep the dequantization stream aligned on resume
            torch.rand((batch, *x_all.shape[1:]), generator=g)
        bar = progress_bar(
            total=n_batches,
            progress=progress,
            initial=self.step,
            desc=f"epoch {self.epoch + 1}/{self.preset.epochs}",
            unit="batch",
        )
        t0, seen = time.time(), 0
        while self.step < n_batches:
            xb = to_model(x_all[batches[self.step]], generator=g).to(self.device)
            loss_value = self._train_step(xb, params)
            seen += len(xb)
            dim = self.flow.dim
            bpd = (loss_value + dim * math.log(config.N_BINS / 2)) / (dim * math.log(2))
            bar.set_postfix(loss=f"{loss_value:.1f}", bpd=f"{bpd:.3f}")
            bar.update(1)
            if time.time() - self.last_save > SAVE_EVERY_S:
                self.save()
                self.last_save = time.time()
        bar.close()
        return bpd, seen, time.time() - t0

    def _train_step(self, xb: torch.Tensor, params: list) -> float:
        """One Adam step on the mean NLL of `xb` (model space); the loss in nats per image."""
        loss = -self.flow.log_prob(xb).mean()
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise self.diverged(f"the loss is {loss_value}", self.step + 1)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(_grad_norm(params))
        if not math.isfinite(grad_norm):
            raise self.diverged(f"the gradient norm is {grad_norm}", self.step + 1)
        self.opt.step()
        self.step += 1
        return loss_value

    def _record(self, bpd: float, val: float, seconds: float, seen: int, log) -> None:
        """Append the finished epoch to the history and log it."""
        self.history.append(
            {
                "epoch": self.epoch,
                "train_bpd": bpd,
                "val_bpd": val,
                "seconds": seconds,
                "images_per_s": seen / max(seconds, 1e-9),
            }
        )
        log(
            f"epoch {self.epoch}: train {bpd:.3f} bits/dim, valid {val:.3f} bits/dim, "
            f"{seconds:.0f} s, {seen / max(seconds, 1e-9):.0f} images/s"
        )
