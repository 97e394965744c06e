"""Callbacks of the training loop: resumable checkpoints, Ctrl-C, progress, data-wait timing."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, TQDMProgressBar

from ..errors import QuerysepError
from ..fileio import AtomicFile, remove_stale_temp_files

__all__ = [
    "BEST_CHECKPOINT",
    "LAST_CHECKPOINT",
    "AtomicCheckpointIO",
    "DataWaitTimer",
    "GracefulInterrupt",
    "LastCheckpoint",
    "StepProgressBar",
    "TimeLimit",
    "TrainingInterruptedError",
    "ValidateAtStop",
]

LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT = "best.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, with every file written through
    :class:`~querysep.fileio.AtomicFile`: ``best.ckpt`` (written by ``ModelCheckpoint``) is
    replaced whole or not at all, like ``last.ckpt``."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        with AtomicFile(Path(path)) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class TrainingInterruptedError(Exception):
    """Training stopped on Ctrl-C after saving ``last.ckpt`` at :attr:`step`."""

    def __init__(self, step: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted at step {step}; saved {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint


class LastCheckpoint(Callback):
    """Writes ``last.ckpt`` every ``every_n_steps`` steps and at the last step, atomically.

    The file is written next to its final name and renamed over it (through
    :class:`~querysep.fileio.AtomicFile`), so a run killed at any moment leaves the previous
    complete ``last.ckpt``; temporary files such a kill leaves are removed when training
    starts again. Saves happen at the end of a training
    step, after the optimizer and learning-rate scheduler stepped, which is where Lightning
    resumes from.

    Args:
        dirpath: The checkpoint folder.
        every_n_steps: Save period in optimizer steps.
        keep_step_checkpoints: Also keep ``step-<N>.ckpt`` (a hard link when possible).
        echo: Prints messages (on global rank 0 only).
    """

    def __init__(
        self,
        dirpath: str | os.PathLike[str],
        every_n_steps: int,
        *,
        keep_step_checkpoints: bool = False,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_steps = int(every_n_steps)
        self.keep_step_checkpoints = keep_step_checkpoints
        self.echo = echo
        self.saved_step: int | None = None
        #: Step training resumed from (``None``: it started fresh).
        self.resumed_from: int | None = None

    @property
    def path(self) -> Path:
        return self.dirpath / LAST_CHECKPOINT

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:  # temporary files of saves cut short by a kill
            for name in (LAST_CHECKPOINT, BEST_CHECKPOINT):
                remove_stale_temp_files(self.dirpath / name)
        if trainer.ckpt_path:
            self.resumed_from = trainer.global_step
            if trainer.is_global_zero:
                self.echo(f"resumed from {trainer.ckpt_path} at step {trainer.global_step}")

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        step = trainer.global_step
        max_steps = trainer.max_steps if trainer.max_steps >= 0 else None
        due = step % self.every_n_steps == 0 or (max_steps is not None and step >= max_steps)
        if due or trainer.should_stop:
            self.save(trainer)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Keep the steps done before a data error (a clip that cannot be read, met mid-run
        when clips are not preloaded): save ``last.ckpt`` at the last completed step, then
        let the error stop the run. Only a single-process run saves here: a save is
        collective, and the other processes are not in this handler."""
        if not isinstance(exception, QuerysepError) or trainer.world_size != 1:
            return
        done = max(self.saved_step or 0, self.resumed_from or 0)
        if trainer.global_step <= done:
            return
        try:
            path = self.save(trainer)
        except Exception as exc:  # the data error is what to report; this is a note
            self.echo(f"could not save last.ckpt before stopping: {exc}")
            return
        self.echo(
            f"saved {path} at step {trainer.global_step} before stopping: fix the data and "
            "rerun the command to resume"
        )

    def save(self, trainer: pl.Trainer, *, again: bool = False) -> Path:
        """Save now (once per step, unless ``again``); every rank must call this."""
        step = trainer.global_step
        if self.saved_step == step and not again:
            return self.path
        with contextlib.ExitStack() as stack:
            # Rank 0 writes through an atomic temporary file; every rank must call
            # save_checkpoint (it holds a barrier), so all of them are given its name.
            tmp = stack.enter_context(AtomicFile(self.path)) if trainer.is_global_zero else None
            tmp = trainer.strategy.broadcast(tmp, src=0)
            trainer.save_checkpoint(tmp, weights_only=False)  # written by global rank 0 only
        if trainer.is_global_zero and self.keep_step_checkpoints:
            kept = self.dirpath / f"step-{step:08d}.ckpt"
            kept.unlink(missing_ok=True)
            try:
                os.link(self.path, kept)
            except OSError:
                with AtomicFile(kept) as tmp:
                    shutil.copyfile(self.path, tmp)
        trainer.strategy.barrier("querysep_last_checkpoint")
        self.saved_step = step
        return self.path


class TimeLimit(Callback):
    """Stops training once this run of the command has trained for ``limit`` (wall time).

    It stops the way ``max_steps`` does: ``last.ckpt`` is saved at the stop step (through
    ``last``), then Lightning validates that step and training ends. Unlike Lightning's
    ``Trainer(max_time=...)``, whose timer is restored from the checkpoint (so the same command
    run again would stop after one step), the limit counts each run on its own: a resumed run
    trains for up to ``limit`` more, which is what a training recipe that spans several
    sessions needs. The decision is rank 0's, shared by every rank.

    Args:
        limit: Training wall time allowed to one run (from the start of training, sanity
            validation excluded; validation during training counts).
        last: The callback that writes ``last.ckpt`` (``None``: nothing is saved here).
        echo: Prints messages (pass a no-op on ranks other than 0).
    """

    def __init__(
        self,
        limit: timedelta,
        last: LastCheckpoint | None = None,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.limit = limit
        self.last = last
        self.echo = echo
        self._start: float | None = None
        #: Step at which the limit stopped training (``None``: it did not).
        self.stopped_at: int | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.monotonic()
        self.stopped_at = None

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._start is None:
            return
        over = time.monotonic() - self._start >= self.limit.total_seconds()
        if not trainer.strategy.broadcast(over, src=0):
            return
        if self.stopped_at is None:
            self.stopped_at = trainer.global_step
            self.echo(
                f"time limit {self.limit} reached at step {trainer.global_step}: stopping "
                "(the same command again resumes here and trains for up to that long again)"
            )
        trainer.should_stop = True
        if self.last is not None:
            self.last.save(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning validates the stop step after the save above; save again, so that a
        # resumed run knows that score (its best.ckpt bookkeeping) as an unbroken run does.
        stopped = self.stopped_at is not None and self.stopped_at == trainer.global_step
        if stopped and self.last is not None and not trainer.sanity_checking:
            self.last.save(trainer, again=True)


class ValidateAtStop(Callback):
    """Validate on the step where training ends, so the exported model has been validated.

    Lightning validates every ``val_check_interval`` steps, and also on a step where
    something asks to stop (``trainer.should_stop``: :class:`TimeLimit`, early stopping).
    This asks to stop on the ``max_steps`` step when that is not itself a validation step,
    so the last steps are never trained without being scored.
    """

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True


class GracefulInterrupt(Callback):
    """First Ctrl-C (or SIGTERM): finish the current step, save ``last.ckpt``, stop. Second:
    abort.

    The decision is shared across ranks (any rank interrupted stops all of them at the same
    step). Stopping raises :class:`TrainingInterruptedError` out of ``Trainer.fit``.

    Args:
        last: The callback that writes ``last.ckpt``.
        echo: Prints messages.
    """

    def __init__(self, last: LastCheckpoint, echo: Callable[[str], None] = print) -> None:
        self.last = last
        self.echo = echo
        self.requested = False
        self._previous: Any = None
        self._previous_term: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = True
        # The second signal aborts, even where the process started with SIGINT ignored or at
        # SIG_DFL (background jobs): only a Python-level handler is put back for SIGINT.
        again = self._previous if callable(self._previous) else signal.default_int_handler
        signal.signal(signal.SIGINT, again)
        if self._previous_term is not None:  # a second SIGTERM: what it did before
            signal.signal(signal.SIGTERM, self._previous_term)
        self.echo("\nstopping after this step and saving last.ckpt (Ctrl-C again to abort)")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            # SIGTERM (kill PID) stops the same way; a kill of the whole process group
            # also reaches DataLoader workers, which torch does not shield from it
            self._previous_term = signal.signal(signal.SIGTERM, self._handler)

    def _restore(self) -> None:
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signal.SIGINT, self._previous)
                if self._previous_term is not None:
                    signal.signal(signal.SIGTERM, self._previous_term)
            self._previous = None
            self._previous_term = None

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        stop = trainer.strategy.reduce_boolean_decision(self.requested, all=False)
        if stop:
            path = self.last.save(trainer)
            self._restore()
            raise TrainingInterruptedError(trainer.global_step, path)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore()


class StepProgressBar(TQDMProgressBar):
    """The training bar counts optimizer steps up to ``max_steps`` and shows steps/s."""

    def init_train_tqdm(self) -> Any:
        bar = super().init_train_tqdm()
        bar.unit = "step"
        return bar

    def on_train_start(self, trainer: pl.Trainer, *args: Any) -> None:
        super().on_train_start(trainer, *args)
        self._start(trainer)  # a run resumed mid-epoch gets no on_train_epoch_start

    def on_train_epoch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        self._start(trainer)

    def _start(self, trainer: pl.Trainer) -> None:
        """Count from the current step up to ``max_steps``."""
        bar = self.train_progress_bar
        total = trainer.max_steps if trainer.max_steps > 0 else None
        bar.reset(total=total)
        bar.initial = trainer.global_step
        bar.n = trainer.global_step
        bar.last_print_n = trainer.global_step
        bar.set_description("train")

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        bar = self.train_progress_bar
        step = trainer.global_step
        if self._should_update(step, bar.total) and step > bar.n:
            bar.update(step - bar.n)
            bar.set_postfix(self.get_metrics(trainer, pl_module))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.train_progress_bar.disable:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


class DataWaitTimer(Callback):
    """Measures, per training step, compute time and the wait for the next batch.

    *Compute* is the time from ``on_train_batch_start`` to ``on_train_batch_end`` (forward,
    backward, optimizer; CUDA synchronised at both ends). *Wait* is the time from one step's
    end to the next step's start: fetching the batch from the DataLoader, moving it to the
    device and the loop's own bookkeeping. The first ``skip`` steps (worker start-up,
    allocator warm-up) are left out.

    Args:
        skip: Steps to ignore at the start.
    """

    def __init__(self, skip: int = 2) -> None:
        self.skip = skip
        self.compute: list[float] = []
        self.wait: list[float] = []
        self._start = 0.0
        self._end: float | None = None
        self._seen = 0

    @staticmethod
    def _now(pl_module: pl.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._start = self._now(pl_module)
        if self._end is not None and self._seen >= self.skip:
            self.wait.append(self._start - self._end)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._end = self._now(pl_module)
        self._seen += 1
        if self._seen > self.skip:
            self.compute.append(self._end - self._start)

    def summary(self) -> dict[str, float]:
        """Totals and rates of the measured steps.

        Returns:
            ``steps``, ``compute_s``, ``wait_s``, ``steps_per_s``, ``wait_fraction`` (of
            wall time) and ``wait_ratio`` (wait / compute).
        """
        compute, wait = sum(self.compute), sum(self.wait)
        steps = len(self.compute)
        wall = compute + wait
        return {
            "steps": float(steps),
            "compute_s": compute,
            "wait_s": wait,
            "steps_per_s": steps / wall if wall > 0 else float("nan"),
            "wait_fraction": wait / wall if wall > 0 else float("nan"),
            "wait_ratio": wait / compute if compute > 0 else float("nan"),
        }
