"""The LightningModule: a :class:`TextQueriedSeparator` trained with one shared step.

Queries are embedded by the separator's own text encoder in the training process (its cache
makes repeated captions free); the network sees ``(mixture, embedding)``. Validation runs the
same step on fixed DCASE-protocol mixtures and logs ``val/sdr``, ``val/sdri`` and
``val/si_sdr`` (means over mixtures, computed by :mod:`querysep.metrics`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import MeanMetric

from ..errors import CheckpointError, ConfigError, TrainingError
from ..metrics import sdr, sdri, si_sdr
from ..models.separator import TextQueriedSeparator
from ..models.text import validate_queries
from .config import LossName, OptimConfig

__all__ = [
    "CHECKPOINT_KEY",
    "NonFiniteStepGuard",
    "SeparationTask",
    "SkippedStepWarning",
    "WarmupConstant",
    "apply_optim_config",
    "check_trained",
    "l1_loss",
    "loss_function",
    "make_optimizer",
    "mse_loss",
    "neg_sdr_loss",
    "neg_si_sdr_loss",
    "perturb_embeddings",
    "thresholded_sdr_loss",
    "thresholded_sdr_si_sdr_loss",
]

#: Key of the querysep section (model config, train config, metrics) in Lightning checkpoints.
CHECKPOINT_KEY = "querysep"
_TEXT_PREFIX = "model.text_encoder."
_EPS = 1e-8

#: ``loss(estimate, target, mixture)``; only the thresholded losses read the mixture.
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
#: Noise floor of :func:`thresholded_sdr_loss`, in dB below the mixture's energy.
SDR_FLOOR_DB = 30.0
#: Optimizer steps in a row whose gradients are not finite before training stops.
MAX_NONFINITE_STEPS = 25


class SkippedStepWarning(UserWarning):
    """A training step's gradients were not finite, so its update was skipped."""


class NonFiniteStepGuard:
    """Mixin for a LightningModule: a step whose gradients are not finite changes nothing.

    One NaN or infinite gradient would make every weight NaN for good (AdamW spreads it
    through its moments), and a forward pass that produced it has already moved the
    BatchNorm running statistics. So such a step keeps weights, optimizer state and those
    statistics as they were before it (its gradients are dropped and the statistics restored
    from a copy taken at the start of the step; the learning-rate schedule moves on) and is
    counted in ``train/skipped_steps``, with a :class:`SkippedStepWarning`. With DDP every
    rank sees the same reduced gradients, so all skip together. After ``MAX_NONFINITE_STEPS``
    such steps in a row training stops: the step ends as a stop step (so ``last.ckpt`` is
    saved by :func:`~querysep.training.run.train`'s checkpointing) and then
    :class:`~querysep.errors.TrainingError` is raised. The check is exact (large finite
    gradients pass) and costs one foreach norm and one device-to-host sync a step.
    """

    skipped_steps = 0
    #: Steps of the whole run (resumes included, stored in its checkpoints) that updated the
    #: weights; None when resumed from a checkpoint written before they were counted.
    updated_steps: int | None = 0
    _nonfinite_in_a_row = 0
    _diverged_at: int | None = None
    _norm_stats: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        stats = [
            b
            for m in self.modules()  # type: ignore[attr-defined]
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for b in m.buffers()
        ]
        known = [t for t, _ in self._norm_stats]
        if list(map(id, known)) != list(map(id, stats)):  # first step, or the model moved
            self._norm_stats = tuple((t, torch.empty_like(t)) for t in stats)
        for tensor, copy in self._norm_stats:
            copy.copy_(tensor)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Skip the step's update where its gradients are not finite."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if _all_finite([p.grad for p in params if p.grad is not None]):
            self._nonfinite_in_a_row = 0
            if self.updated_steps is not None:
                self.updated_steps += 1
            return
        for p in params:
            p.grad = None
        with torch.no_grad():
            for tensor, copy in self._norm_stats:
                tensor.copy_(copy)
        self.skipped_steps += 1
        self._nonfinite_in_a_row += 1
        step = self.global_step  # type: ignore[attr-defined]
        self.log(  # type: ignore[attr-defined]
            "train/skipped_steps", float(self.skipped_steps), on_step=True, batch_size=1
        )
        rank_zero_warn(
            f"step {step}: non-finite gradients, update skipped "
            f"({self.skipped_steps} skipped so far)",
            category=SkippedStepWarning,
        )
        if self._nonfinite_in_a_row >= MAX_NONFINITE_STEPS:
            self._diverged_at = step
            self.trainer.should_stop = True  # type: ignore[attr-defined]

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Raise once the stop step has ended (after the callbacks saved ``last.ckpt``).

        Raises:
            TrainingError: ``MAX_NONFINITE_STEPS`` steps in a row had non-finite gradients.
        """
        if self._diverged_at is not None:
            count, step = self._nonfinite_in_a_row, self._diverged_at
            self._diverged_at, self._nonfinite_in_a_row = None, 0  # a later fit starts afresh
            raise TrainingError(
                f"training diverged: {count} steps in a row up to step {step} had non-finite "
                "gradients (the weights were not updated by them); lower the learning rate or "
                "train in float32 (trainer.precision=32), and resume from the run's last.ckpt"
            )

    def on_train_end(self) -> None:
        """Refuse a run in which no step ever updated the weights (one shorter than
        ``MAX_NONFINITE_STEPS`` whose every step was skipped would export its start).

        Raises:
            TrainingError: Every step of the run, resumes included, had non-finite gradients.
        """
        steps = self.trainer.global_step  # type: ignore[attr-defined]
        if steps and self.updated_steps == 0:  # then every one of them was skipped
            raise TrainingError(untrained_message(steps))


def untrained_message(steps: int | None = None) -> str:
    """Why a run whose every step had non-finite gradients is neither finished nor exported."""
    which = f"all {steps} steps of this run" if steps else "every step of this run"
    return (
        f"no step updated the weights: {which} had non-finite gradients, so nothing was "
        "learned and nothing is exported; lower the learning rate or train in float32 "
        "(trainer.precision=32) and start again with --restart"
    )


def check_trained(info: Mapping[str, Any], checkpoint: str | os.PathLike[str]) -> None:
    """Refuse to export a checkpoint whose run never updated its weights.

    Args:
        info: The checkpoint's :data:`CHECKPOINT_KEY` record (``updated_steps``: absent in
            checkpoints written before it was counted, which are not refused).

    Raises:
        CheckpointError: The record says no step updated the weights.
    """
    if info.get("updated_steps") == 0:
        raise CheckpointError(f"{checkpoint}: {untrained_message()}")


def _all_finite(tensors: Sequence[torch.Tensor]) -> bool:
    """Whether every element of ``tensors`` is finite: each tensor's largest magnitude (which
    cannot overflow, and is NaN or inf where an element is), one foreach call per device."""
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for t in tensors:
        by_device.setdefault(t.device, []).append(t)
    return all(
        bool(
            torch.stack([n.float() for n in torch._foreach_norm(group, float("inf"))])
            .isfinite()
            .all()
        )
        for group in by_device.values()
    )


# ----------------------------------------------------------------------------- losses


def l1_loss(
    estimate: torch.Tensor, target: torch.Tensor, mixture: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean absolute waveform error (the DCASE baseline's loss); ``mixture`` is ignored.

    Shape:
        - estimate, target: ``(batch, channels, time)``
        - output: scalar
    """
    return (estimate.float() - target.float()).abs().mean()


def mse_loss(
    estimate: torch.Tensor, target: torch.Tensor, mixture: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared waveform error (IRM-LDM's waveform loss in the report); ``mixture`` is
    ignored.

    Shape:
        - estimate, target: ``(batch, channels, time)``
        - output: scalar
    """
    return (estimate.float() - target.float()).pow(2).mean()


def neg_sdr_loss(
    estimate: torch.Tensor, target: torch.Tensor, mixture: torch.Tensor | None = None
) -> torch.Tensor:
    """Negative SDR in dB, averaged over the batch; ``mixture`` is ignored.

    ``-10 log10((|s|^2 + eps) / (|s - e|^2 + eps))`` per signal: finite with a finite
    gradient for silent targets (where it asks for a silent estimate).

    Shape:
        - estimate, target: ``(batch, channels, time)``
        - output: scalar
    """
    return _neg_sdr_with_floor(estimate, target, _EPS)


def neg_si_sdr_loss(
    estimate: torch.Tensor, target: torch.Tensor, mixture: torch.Tensor | None = None
) -> torch.Tensor:
    """Negative scale-invariant SDR in dB, averaged over the batch; ``mixture`` is ignored.

    The target is scaled by ``<s, e> / (|s|^2 + eps)``; a silent target gives a zero
    projection, so the loss then asks for a silent estimate (finite, with finite gradient).

    Shape:
        - estimate, target: ``(batch, channels, time)``
        - output: scalar
    """
    return _neg_si_sdr_with_floor(estimate, target, _EPS)


def thresholded_sdr_loss(
    estimate: torch.Tensor, target: torch.Tensor, mixture: torch.Tensor | None = None
) -> torch.Tensor:
    """Negative SDR with a noise floor ``SDR_FLOOR_DB`` below the mixture, averaged.

    ``-10 log10((|s|^2 + t) / (|s - e|^2 + t))`` with ``t = 10^(-30/10) |x|^2 + eps`` per
    signal (the soft threshold of Wisdom et al., "Unsupervised sound separation using mixture
    invariant training", 2020). A target silent in its crop then costs at most the estimate's
    level relative to the floor and stops pulling once the estimate is below it, where the
    plain SDR loss keeps rewarding ever quieter output (with ``eps`` 1e-8 a quiet estimate of
    a silent target scores +60 dB, outweighing a whole batch). For an active target the score
    saturates at ``30 dB + 10 log10(|s|^2 / |x|^2)`` (15 dB for a target 15 dB under the
    mixture); it differs from the plain SDR by ``10 log10((1 + t/|s|^2) / (1 + t/|s - e|^2))``,
    under 0.5 dB while target and error are both more than 10 dB above the floor.

    Shape:
        - estimate, target, mixture: ``(batch, channels, time)``
        - output: scalar
    """
    return _neg_sdr_with_floor(estimate, target, _mixture_floor(mixture, "thresholded_sdr_loss"))


def thresholded_sdr_si_sdr_loss(
    estimate: torch.Tensor, target: torch.Tensor, mixture: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of :func:`thresholded_sdr_loss` and a negative SI-SDR with the same floor.

    The SDR half keeps the estimate at the target's level; the SI-SDR half gives nothing for
    turning the output down, only for getting the target's content right, which is what
    matters first on mixtures at -15..15 dB. The SI-SDR half projects the estimate on the
    target as :func:`neg_si_sdr_loss` does and adds the floor ``t`` (30 dB below the mixture)
    to both energies, so a target silent in its crop costs a bounded amount.

    Shape:
        - estimate, target, mixture: ``(batch, channels, time)``
        - output: scalar
    """
    floor = _mixture_floor(mixture, "thresholded_sdr_si_sdr_loss")
    sdr = _neg_sdr_with_floor(estimate, target, floor)
    return 0.5 * (sdr + _neg_si_sdr_with_floor(estimate, target, floor))


def _mixture_floor(mixture: torch.Tensor | None, loss: str) -> torch.Tensor:
    """``10^(-SDR_FLOOR_DB / 10) |x|^2 + eps`` per signal; ``loss`` names the caller."""
    if mixture is None:
        raise ValueError(f"{loss} needs the mixture")
    return mixture.float().flatten(1).pow(2).sum(-1) * 10.0 ** (-SDR_FLOOR_DB / 10.0) + _EPS


def _neg_si_sdr_with_floor(
    estimate: torch.Tensor, target: torch.Tensor, floor: torch.Tensor | float
) -> torch.Tensor:
    """``-10 log10((|a s|^2 + floor) / (|e - a s|^2 + floor))``, ``a = <s, e> / |s|^2``."""
    est, ref = estimate.float().flatten(1), target.float().flatten(1)
    alpha = (ref * est).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + _EPS)
    projection = alpha * ref
    residual = est - projection
    ratio = (projection.pow(2).sum(-1) + floor) / (residual.pow(2).sum(-1) + floor)
    return -(10.0 * torch.log10(ratio)).mean()


def _neg_sdr_with_floor(
    estimate: torch.Tensor, target: torch.Tensor, floor: torch.Tensor | float
) -> torch.Tensor:
    """``-10 log10((|s|^2 + floor) / (|s - e|^2 + floor))`` per signal, averaged."""
    est, ref = estimate.float().flatten(1), target.float().flatten(1)
    signal = ref.pow(2).sum(-1)
    error = (ref - est).pow(2).sum(-1)
    return -(10.0 * torch.log10((signal + floor) / (error + floor))).mean()


_LOSSES: dict[str, LossFn] = {
    "l1": l1_loss,
    "mse": mse_loss,
    "sdr": neg_sdr_loss,
    "si_sdr": neg_si_sdr_loss,
    "thresholded_sdr": thresholded_sdr_loss,
    "thresholded_sdr_si_sdr": thresholded_sdr_si_sdr_loss,
}


def loss_function(name: LossName) -> LossFn:
    """The loss called ``name`` (the choices are described at ``OptimConfig.loss``)."""
    if name not in _LOSSES:
        raise ConfigError(f"unknown loss {name!r}; known: {', '.join(_LOSSES)}")
    return _LOSSES[name]


# ----------------------------------------------------------------------------- schedule


class WarmupConstant:
    """Learning-rate factor: linear warm-up over ``warmup_steps`` steps, then 1.

    Step ``t`` (0-based, the ``t``-th optimizer step) gets ``min(1, (t + 1) / warmup_steps)``,
    so the first step already learns and step ``warmup_steps - 1`` uses the full rate.
    A class rather than a closure so that ``LambdaLR`` stores it in checkpoints as data.
    """

    def __init__(self, warmup_steps: int) -> None:
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step: int) -> float:
        if self.warmup_steps <= 0:
            return 1.0
        return min(1.0, (step + 1) / self.warmup_steps)


class WarmupCosine:
    """Linear warm-up as :class:`WarmupConstant`, then cosine decay to ``min_ratio`` at
    ``total_steps`` (held there afterwards)."""

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float) -> None:
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), self.warmup_steps + 1)
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(
    parameters: Sequence[nn.Parameter], cfg: OptimConfig, total_steps: int | None
) -> dict[str, Any]:
    """AdamW and its per-step schedule, as Lightning's ``configure_optimizers`` returns them.

    Args:
        parameters: What to optimise.
        cfg: The optimizer section.
        total_steps: Steps of the run (the cosine schedule ends there); ``None`` without a
            trainer.
    """
    optimizer = torch.optim.AdamW(
        parameters,
        lr=cfg.lr,
        betas=(cfg.betas[0], cfg.betas[1]),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        amsgrad=cfg.amsgrad,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg, total_steps))
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
    }


def _schedule(cfg: OptimConfig, total_steps: int | None) -> WarmupConstant | WarmupCosine:
    if cfg.schedule == "cosine":
        return WarmupCosine(cfg.warmup_steps, total_steps or cfg.warmup_steps, cfg.min_lr_ratio)
    return WarmupConstant(cfg.warmup_steps)


def apply_optim_config(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    cfg: OptimConfig,
    total_steps: int | None,
) -> None:
    """Give an optimizer and schedule made by :func:`make_optimizer` the settings of ``cfg``,
    keeping their state: the moments and the step count.

    A resumed run calls this once its checkpoint is loaded, which restores the settings the
    checkpoint was trained with (learning rate, betas, eps, weight decay, AMSGrad, warm-up,
    schedule and its ``total_steps``): the run's own config applies from the resumed step on,
    as it is recorded. The next step's learning rate is ``cfg.lr`` times the new schedule's
    factor at the current step; AMSGrad switched on starts its running maximum from the
    current second moment.

    Args:
        optimizer: The AdamW optimizer.
        scheduler: Its per-step ``LambdaLR``.
        cfg: The optimizer section to apply.
        total_steps: Steps of the run (the cosine schedule ends there).
    """
    for group in optimizer.param_groups:
        group.update(
            initial_lr=cfg.lr,
            betas=(cfg.betas[0], cfg.betas[1]),
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            amsgrad=cfg.amsgrad,
        )
        for param in group["params"]:
            state = optimizer.state.get(param)
            if not state:
                continue
            if not cfg.amsgrad:
                state.pop("max_exp_avg_sq", None)
            elif "max_exp_avg_sq" not in state and "exp_avg_sq" in state:
                state["max_exp_avg_sq"] = state["exp_avg_sq"].clone()
    factor = _schedule(cfg, total_steps)
    scheduler.base_lrs = [cfg.lr] * len(optimizer.param_groups)
    scheduler.lr_lambdas = [factor] * len(optimizer.param_groups)
    for group, base, f in zip(
        optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
    ):
        group["lr"] = base * f(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def reapply_optim_config(task: pl.LightningModule, cfg: OptimConfig) -> None:
    """:func:`apply_optim_config` on a task's optimizer and schedule, with the trainer's
    ``max_steps`` (from ``on_train_start``, which runs after a checkpoint is loaded)."""
    scheduler = task.lr_schedulers()
    assert isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR)
    optimizer = task.optimizers()
    inner = getattr(optimizer, "optimizer", optimizer)  # Lightning wraps it
    apply_optim_config(inner, scheduler, cfg, task.trainer.max_steps)


# ----------------------------------------------------------------------------- queries


def perturb_embeddings(
    embeddings: torch.Tensor, noise: float, generator: torch.Generator
) -> torch.Tensor:
    """Each row plus isotropic Gaussian noise of expected norm ``noise * |row|``, scaled
    back to ``|row|``: a random neighbour of the query on its sphere (``optim.text_noise``).

    Shape:
        - embeddings: ``(batch, dim)``
        - output: ``(batch, dim)``, same dtype and device
    """
    x = embeddings.float()
    norm = x.norm(dim=-1, keepdim=True)
    z = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device)
    y = x + z * (noise / math.sqrt(x.shape[-1])) * norm
    return (y * (norm / y.norm(dim=-1, keepdim=True).clamp_min(_EPS))).to(embeddings.dtype)


def mix_embeddings(first: torch.Tensor, second: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Row ``i``: ``w * first[i] + (1 - w) * second[i]`` with ``w = weight[i]``, scaled to
    the same mix of the two rows' norms (``data.query_mix_prob``): a point between two
    phrasings, not shrunk towards the origin when they point apart.

    Shape:
        - first, second: ``(batch, dim)``
        - weight: ``(batch,)``
        - output: ``(batch, dim)``, ``first``'s dtype and device
    """
    a, b = first.float(), second.to(first.device).float()
    w = weight.to(device=first.device, dtype=torch.float32).unsqueeze(-1)
    y = w * a + (1 - w) * b
    norm = w * a.norm(dim=-1, keepdim=True) + (1 - w) * b.norm(dim=-1, keepdim=True)
    return (y * (norm / y.norm(dim=-1, keepdim=True).clamp_min(_EPS))).to(first.dtype)


def _step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """A CPU generator determined by ``(seed, step, rank)``: a resumed run draws the same."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(step), int(rank)])
    return torch.Generator().manual_seed(int(state.generate_state(1, np.uint64)[0]))


# ----------------------------------------------------------------------------- module


class SeparationTask(NonFiniteStepGuard, pl.LightningModule):
    """Trains a :class:`TextQueriedSeparator` on ``{mixture, target, query}`` batches.

    Args:
        model: The separator (network + text encoder).
        optim: Optimizer, schedule and loss settings.
        train_text_encoder: Also train the text encoder (frozen otherwise: kept in eval
            mode, left out of checkpoints, queries embedded through its cache).
        checkpoint_info: JSON-serialisable facts stored in every checkpoint under
            :data:`CHECKPOINT_KEY` (e.g. the training config).
        seed: Seeds the query noise of ``optim.text_noise`` (with the step and rank).
        channels_last: Train the network in channels-last memory layout (``model.net`` is
            converted in place).
    """

    def __init__(
        self,
        model: TextQueriedSeparator,
        optim: OptimConfig | None = None,
        *,
        train_text_encoder: bool = False,
        checkpoint_info: Mapping[str, Any] | None = None,
        seed: int = 0,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        if channels_last:
            model.net.to(memory_format=torch.channels_last)
        self.optim_config = optim or OptimConfig()
        self.loss_fn = loss_function(self.optim_config.loss)
        self.train_text_encoder = train_text_encoder
        self.checkpoint_info = dict(checkpoint_info or {})
        self.seed = int(seed)
        self.model.text_encoder.requires_grad_(train_text_encoder)
        # a NaN score makes the mean NaN (torchmetrics would drop it and average the rest)
        self.val_sdr = MeanMetric(nan_strategy="disable")
        self.val_sdri = MeanMetric(nan_strategy="disable")
        self.val_si_sdr = MeanMetric(nan_strategy="disable")
        #: Validation means of the latest validation run and its step.
        self.last_validation: dict[str, Any] = {}

    # ------------------------------------------------------------------ forward
    def forward(self, mixture: torch.Tensor, queries: Sequence[str] | torch.Tensor) -> torch.Tensor:
        """Separate; see :meth:`TextQueriedSeparator.forward`.

        Shape:
            - mixture: ``(batch, 1, time)``
            - output: ``(batch, 1, time)``
        """
        return self.model(mixture, queries)

    def embed(self, queries: Sequence[str]) -> torch.Tensor:
        """Query embeddings on this module's device (with gradients if the encoder trains).

        Shape:
            - output: ``(len(queries), condition_dim)``
        """
        encoder = self.model.text_encoder
        if self.train_text_encoder and self.training:
            emb = encoder._encode(validate_queries(list(queries)))
            if not emb.requires_grad:
                raise ConfigError(
                    f"the {encoder.kind} text encoder computes embeddings without gradients, "
                    "so it cannot be trained: set model.train_text_encoder=false"
                )
            return emb.to(self.device)
        return self.model.encode(list(queries)).to(self.device)

    def on_fit_start(self) -> None:
        """Training mode for the whole network, whatever mode the model came in.

        A pretrained model (``model.init_from``) arrives from ``load_model`` in eval mode,
        and Lightning keeps the modules' modes as it finds them: without this, fine-tuning
        would run with BatchNorm on its running statistics (never updated) and dropout off.
        A frozen text encoder keeps the mode it came in (MiniLM and CLAP: eval).
        """
        encoder_mode = self.model.text_encoder.training
        self.model.train()
        if not self.train_text_encoder:
            self.model.text_encoder.train(encoder_mode)

    def train(self, mode: bool = True) -> SeparationTask:
        super().train(mode)
        if not self.train_text_encoder:
            self.model.text_encoder.eval()  # no dropout in a frozen encoder (and its cache)
        return self

    def _step(self, batch: Mapping[str, Any], stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The shared step: separate the batch, return ``(loss, estimate)``.

        A network with ``forward_train(mixture, condition, target) -> (estimate, terms)``
        (IRM-LDM: its latent loss) adds its terms to the training loss; each is logged as
        ``train/<name>``. Validation scores the waveform loss only.
        """
        mixture, target = batch["mixture"], batch["target"]
        condition = self.embed(batch["query"])
        if stage == "train" and "query_mix" in batch:
            weight = torch.as_tensor(batch["query_weight"])
            condition = mix_embeddings(condition, self.embed(batch["query_mix"]), weight)
        if stage == "train" and self.optim_config.text_noise > 0:
            generator = _step_generator(self.seed, self.global_step, self.global_rank)
            condition = perturb_embeddings(condition, self.optim_config.text_noise, generator)
        forward_train = getattr(self.model.net, "forward_train", None)
        extra: dict[str, torch.Tensor] = {}
        if stage == "train" and callable(forward_train):
            estimate, extra = forward_train(mixture, condition.to(mixture.device), target)
        else:
            estimate = self.model(mixture, condition)
        lengths = batch.get("length")
        if lengths is None:
            loss = self.loss_fn(estimate, target, mixture)
        else:  # padded validation batch: each item over its own length
            losses = [
                self.loss_fn(
                    estimate[i : i + 1, :, :n], target[i : i + 1, :, :n], mixture[i : i + 1, :, :n]
                )
                for i, n in enumerate(lengths.tolist())
            ]
            loss = torch.stack(losses).mean()
        for name, term in extra.items():
            self.log(f"{stage}/{name}", term.detach(), on_step=True, batch_size=mixture.shape[0])
            loss = loss + term
        self.log(
            f"{stage}/loss",
            loss.detach(),
            on_step=stage == "train",
            on_epoch=stage != "train",
            prog_bar=True,
            batch_size=mixture.shape[0],
            sync_dist=stage != "train",
        )
        return loss, estimate

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        loss, _ = self._step(batch, "train")
        self.log("train/lr", self.lr_schedulers().get_last_lr()[0], on_step=True, batch_size=1)
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        _, estimate = self._step(batch, "val")
        lengths = batch.get("length")
        sizes = (
            lengths.tolist() if lengths is not None else [batch["target"].shape[-1]] * len(estimate)
        )
        for i, n in enumerate(sizes):
            ref = batch["target"][i, :, :n].float()
            est = estimate[i, :, :n].detach().float()
            mix = batch["mixture"][i, :, :n].float()
            self.val_sdr.update(sdr(ref, est).mean())
            self.val_sdri.update(sdri(ref, est, mix).mean())
            self.val_si_sdr.update(si_sdr(ref, est).mean())

    def on_validation_epoch_end(self) -> None:
        scores = {}
        for name, metric in (
            ("val/sdr", self.val_sdr),
            ("val/sdri", self.val_sdri),
            ("val/si_sdr", self.val_si_sdr),
        ):
            if metric.update_count == 0:
                continue
            value = metric.compute()
            scores[name] = float(value)
            self.log(name, value, prog_bar=name == "val/sdri", sync_dist=True)  # already global
            metric.reset()
        if scores and not self.trainer.sanity_checking:
            self.last_validation = {"step": int(self.global_step), **scores}

    # ------------------------------------------------------------------ optimizer
    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def configure_optimizers(self) -> dict[str, Any]:
        total = self.trainer.max_steps if self._trainer is not None else None
        return make_optimizer(self.trainable_parameters(), self.optim_config, total)

    def on_train_start(self) -> None:
        """After a checkpoint is loaded: this run's optim settings and ``max_steps``."""
        reapply_optim_config(self, self.optim_config)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if not self.train_text_encoder:  # frozen: rebuilt from its config, not stored
            state = checkpoint["state_dict"]
            for key in [k for k in state if k.startswith(_TEXT_PREFIX)]:
                del state[key]
        checkpoint[CHECKPOINT_KEY] = {
            **self.checkpoint_info,
            "model_config": self.model.config_dict(),
            "text_encoder_trained": self.train_text_encoder,
            "validation": dict(self.last_validation),
            "updated_steps": self.updated_steps,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        if not any(k.startswith(_TEXT_PREFIX) for k in state):
            for key, value in self.model.text_encoder.state_dict(prefix=_TEXT_PREFIX).items():
                state[key] = value
        info = checkpoint.get(CHECKPOINT_KEY, {})
        self.last_validation = dict(info.get("validation", {}))
        self.updated_steps = info.get("updated_steps")
