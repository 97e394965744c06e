"""Train a small mel VAE (a diffusers ``AutoencoderKL``) on AudioLDM's log-mel front end.

IRM-LDM needs a VAE over AudioLDM's 64-bin log-mel spectrogram. Without AudioLDM's weights
(or to run on a CPU) ``querysep ldm train-vae CONFIG`` trains a small one of the same class
on the clips of a training config's ``data`` section: every step encodes and decodes the
log-mels of on-the-fly training mixtures and of their targets (the target scaled by the
mixture's gain, as IRM-LDM sees them), with an L1 reconstruction loss plus a small KL term
(the latent-diffusion autoencoder's objective without its adversarial and perceptual
parts). Validation, on the fixed mixtures of ``data.validation``, reports

- ``val/mel_l1``: the mean absolute log-mel reconstruction error of mixtures and targets;
- ``val/sdr``, ``val/sdri``, ``val/si_sdr``: the phase-preserving oracle through this VAE
  (the target's decoded mel over the mixture's, as an STFT mask on the mixture), the best
  an IRM-LDM on this VAE can do; the best checkpoint is the one with the highest
  ``val/sdri``.

The run folder is laid out as ``querysep train``'s (``config.yaml``, ``checkpoints/``,
``logs/``; resumable, but not with another ``vae`` or ``front_end`` section), and ``model/``
holds ``vae/`` in the diffusers layout (its ``scaling_factor`` set to one over the standard
deviation of the training latents, as AudioLDM's ``scale_by_std``) and
``querysep_vae.json`` (front end, figures, provenance).
The ``ldm`` of an IRM-LDM config names that ``model/`` folder.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from pydantic import Field, model_validator
from torch.utils.data import default_collate

from ..errors import ConfigError
from ..fileio import write_text
from ..metrics import sdr, sdri, si_sdr
from ..models.irm_ldm.components import VAE_INFO_NAME, require_diffusers
from ..models.irm_ldm.mel import MelFrontEnd, check_front_end, pad_frames, peak_gain
from ..precision import describe_choice
from ..schema import ConfigModel, config_error, nested
from .callbacks import LAST_CHECKPOINT
from .config import DataConfig, OptimConfig, RunSections, TrainerConfig
from .datamodule import MixtureDataModule
from .export import find_export_checkpoint, read_checkpoint
from .module import (
    CHECKPOINT_KEY,
    NonFiniteStepGuard,
    check_trained,
    make_optimizer,
    reapply_optim_config,
)
from .run import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    MODEL_DIR,
    TrainResult,
    _check_output_dir,
    _check_same_model,
    build_trainer,
    check_resumable,
    check_validation_share,
    fit,
    fit_warnings_filtered,
    open_run_folder,
)

__all__ = [
    "VAE_INFO_NAME",
    "FrontEndConfig",
    "MelVaeTask",
    "MelVaeTrainConfig",
    "VaeArchitecture",
    "export_vae",
    "train_vae",
]

PositiveInt = Annotated[int, Field(ge=1)]


class VaeArchitecture(ConfigModel):
    """``AutoencoderKL`` arguments of the mel VAE (one input channel: time x mel bins).

    Attributes:
        block_out_channels: Channels of each level; the VAE halves time and mel axes
            ``len - 1`` times (AudioLDM: ``[128, 256, 512]``, factor 4).
        layers_per_block: Residual blocks per level (AudioLDM: 2).
        latent_channels: Channels of the latent (AudioLDM: 8).
        norm_num_groups: Group-norm groups; must divide every level's channels.
        mid_block_add_attention: Self-attention in the middle block (AudioLDM: yes; costly
            on long spectrograms).
    """

    block_out_channels: list[PositiveInt] = Field(default_factory=lambda: [32, 64])
    layers_per_block: PositiveInt = 1
    latent_channels: PositiveInt = 8
    norm_num_groups: PositiveInt = 16
    mid_block_add_attention: bool = False

    @model_validator(mode="after")
    def _groups(self) -> VaeArchitecture:
        if not self.block_out_channels:
            raise ValueError("block_out_channels needs at least one level")
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(
                f"norm_num_groups {self.norm_num_groups} must divide every level's channels, "
                f"not {bad[0]}"
            )
        return self

    @property
    def factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    def build(self) -> Any:
        """A fresh ``AutoencoderKL`` with these arguments (diffusers needed)."""
        require_diffusers()
        from diffusers import AutoencoderKL

        levels = len(self.block_out_channels)
        return AutoencoderKL(
            in_channels=1,
            out_channels=1,
            down_block_types=("DownEncoderBlock2D",) * levels,
            up_block_types=("UpDecoderBlock2D",) * levels,
            block_out_channels=tuple(self.block_out_channels),
            layers_per_block=self.layers_per_block,
            latent_channels=self.latent_channels,
            norm_num_groups=self.norm_num_groups,
            mid_block_add_attention=self.mid_block_add_attention,
            scaling_factor=1.0,
        )


class FrontEndConfig(ConfigModel):
    """The log-mel front end (AudioLDM's by default; IRM-LDM's config must match it)."""

    sample_rate: PositiveInt = 16000
    n_fft: PositiveInt = 1024
    hop_length: PositiveInt = 160
    n_mels: PositiveInt = 64
    f_min: Annotated[float, Field(ge=0)] = 0.0
    f_max: Annotated[float, Field(gt=0)] = 8000.0
    peak: Annotated[float, Field(gt=0, le=1)] = 0.5

    @model_validator(mode="after")
    def _usable(self) -> FrontEndConfig:
        try:
            check_front_end(
                self.sample_rate, self.n_fft, self.hop_length, self.n_mels, self.f_min, self.f_max
            )
        except ConfigError as exc:
            raise nested(exc) from None
        return self

    def build(self) -> MelFrontEnd:
        args = self.model_dump()
        args.pop("peak")
        return MelFrontEnd(**args)


class MelVaeTrainConfig(RunSections):
    """A mel VAE training run: ``vae``, ``front_end``, loss, ``data``, ``optim``, ``trainer``.

    Attributes:
        kl_weight: Weight of the KL term, per log-mel value (latent-diffusion VAEs: 1e-6).
        scale_batches: Training batches whose latents set the exported ``scaling_factor``.
        metadata: Free-form facts copied into ``querysep_vae.json``.
    """

    vae: VaeArchitecture = Field(default_factory=VaeArchitecture)
    front_end: FrontEndConfig = Field(default_factory=FrontEndConfig)
    kl_weight: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1e-6
    scale_batches: PositiveInt = 16
    metadata: dict[str, Any] = Field(default_factory=dict)
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    trainer: TrainerConfig = Field(default_factory=lambda: TrainerConfig(output_dir="runs/melvae"))

    @model_validator(mode="after")
    def _same_rate(self) -> MelVaeTrainConfig:
        rate = self.data.sample_rate
        if rate is not None and rate != self.front_end.sample_rate:
            raise nested(
                config_error(
                    "data.sample_rate",
                    f"{rate} differs from front_end.sample_rate {self.front_end.sample_rate}",
                )
            )
        if self.front_end.n_mels % self.vae.factor:
            raise nested(
                config_error(
                    "front_end.n_mels",
                    f"must be a multiple of the VAE's factor {self.vae.factor}",
                )
            )
        return self


class MelVaeTask(NonFiniteStepGuard, pl.LightningModule):
    """Trains the mel VAE on mixtures and targets; validates the phase-preserving oracle.

    Args:
        config: The run's config.
    """

    def __init__(self, config: MelVaeTrainConfig) -> None:
        super().__init__()
        self.config = config
        self.vae = config.vae.build()
        if config.trainer.channels_last:
            self.vae.to(memory_format=torch.channels_last)
        self.front = config.front_end.build()
        self.last_validation: dict[str, Any] = {}
        self._sums: dict[str, float] = {}
        self._count = 0

    def mels(self, mixture: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Log-mels of mixtures then targets (both scaled by the mixture's gain), padded.

        Shape:
            - mixture, target: ``(batch, 1, time)``
            - output: ``(2 * batch, 1, frames', n_mels)``
        """
        gain = peak_gain(mixture[:, 0].float(), self.config.front_end.peak)
        waves = torch.cat([mixture[:, 0], target[:, 0]]).float() * gain.repeat(2, 1)
        log_mel = self.front.log_mel(self.front.spectrogram(self.front.pad_short(waves)))
        return pad_frames(log_mel, self.config.vae.factor)[:, None]

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        x = self.mels(batch["mixture"], batch["target"])
        posterior = self.vae.encode(x).latent_dist
        rebuilt = self.vae.decode(posterior.sample()).sample
        l1 = (rebuilt.float() - x).abs().mean()
        kl = posterior.kl().float().mean() / x[0].numel()
        loss = l1 + self.config.kl_weight * kl
        size = x.shape[0]
        self.log("train/loss", loss.detach(), on_step=True, prog_bar=True, batch_size=size)
        self.log("train/mel_l1", l1.detach(), on_step=True, batch_size=size)
        self.log("train/kl", kl.detach(), on_step=True, batch_size=size)
        self.log("train/lr", self.lr_schedulers().get_last_lr()[0], on_step=True, batch_size=1)
        return loss

    @torch.no_grad()
    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        for i, n in enumerate(batch["length"].tolist()):
            mixture = batch["mixture"][i : i + 1, :, :n].float()
            target = batch["target"][i : i + 1, :, :n].float()
            x = self.mels(mixture, target)
            frames = self.front.num_frames(max(n, self.front.min_length))
            latent = self.vae.encode(x).latent_dist.mode()
            rebuilt = self.vae.decode(latent).sample.float()[:, 0, :frames]
            estimate = self._phase_preserving(mixture, rebuilt, n)
            ref, mix = target[0], mixture[0]
            scores = {
                "val/mel_l1": (rebuilt - x[:, 0, :frames]).abs().mean(),
                "val/sdr": sdr(ref, estimate).mean(),
                "val/sdri": sdri(ref, estimate, mix).mean(),
                "val/si_sdr": si_sdr(ref, estimate).mean(),
            }
            for name, value in scores.items():
                self._sums[name] = self._sums.get(name, 0.0) + float(value)
            self._count += 1

    def on_validation_epoch_start(self) -> None:
        self._sums, self._count = {}, 0

    def _phase_preserving(
        self, mixture: torch.Tensor, rebuilt: torch.Tensor, n: int
    ) -> torch.Tensor:
        """The decoded target mel over the decoded mixture mel, as an STFT mask on the mixture."""
        wave = self.front.pad_short(mixture[:, 0])
        spec = self.front.spectrogram(wave)
        return self.front.phase_preserving(rebuilt[1:], rebuilt[:1], spec, wave.shape[-1])[:, :n]

    def on_validation_epoch_end(self) -> None:
        if not self._count:
            return
        scores = {k: v / self._count for k, v in self._sums.items()}
        for name, value in scores.items():
            self.log(name, value, prog_bar=name == "val/sdri", sync_dist=True)
        if not self.trainer.sanity_checking:
            self.last_validation = {"step": int(self.global_step), **scores}

    def configure_optimizers(self) -> dict[str, Any]:
        total = self.trainer.max_steps if self._trainer is not None else None
        return make_optimizer(list(self.vae.parameters()), self.config.optim, total)

    def on_train_start(self) -> None:
        """After a checkpoint is loaded: this run's optim settings and ``max_steps``."""
        reapply_optim_config(self, self.config.optim)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "train_config": self.config.to_dict(),
            "validation": dict(self.last_validation),
            "updated_steps": self.updated_steps,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        info = checkpoint.get(CHECKPOINT_KEY, {})
        self.last_validation = dict(info.get("validation", {}))
        self.updated_steps = info.get("updated_steps")


@torch.no_grad()
def latent_std(task: MelVaeTask, datamodule: MixtureDataModule, num_batches: int) -> float:
    """Standard deviation of the latents (posterior modes) of the first training batches."""
    dataset = datamodule.train_dataset
    assert dataset is not None
    size = datamodule.config.batch_size
    values = []
    for b in range(num_batches):
        items = [dataset[(b * size + k) % len(dataset)] for k in range(size)]
        batch = default_collate([{k: it[k] for k in ("mixture", "target")} for it in items])
        x = task.mels(batch["mixture"].to(task.device), batch["target"].to(task.device))
        values.append(task.vae.encode(x).latent_dist.mode().float().flatten().cpu())
    return float(torch.cat(values).std())


def export_vae(
    checkpoint: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    datamodule: MixtureDataModule,
) -> Path:
    """Write a mel VAE training checkpoint as ``output_dir/vae/`` + ``querysep_vae.json``.

    Raises:
        CheckpointError: Unreadable checkpoint or weights that do not fit.
    """
    from ..models.resunet import load_state_dict_strict
    from .config import config_from_dict

    ckpt = read_checkpoint(checkpoint)
    info = ckpt[CHECKPOINT_KEY]
    check_trained(info, checkpoint)
    config = config_from_dict(info["train_config"], schema=MelVaeTrainConfig)
    task = MelVaeTask(config)
    state = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("vae.")}
    load_state_dict_strict(task.vae, state, what=f"checkpoint {Path(checkpoint).name}")
    task.eval()
    std = latent_std(task, datamodule, config.scale_batches)
    task.vae.register_to_config(scaling_factor=1.0 / max(std, 1e-6))
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = out / "vae.partial"
    shutil.rmtree(staging, ignore_errors=True)
    task.vae.save_pretrained(str(staging), safe_serialization=True)
    shutil.rmtree(out / "vae", ignore_errors=True)
    os.replace(staging, out / "vae")
    facts = {
        "format": "querysep-mel-vae",
        "front_end": config.front_end.model_dump(mode="json"),
        "latent_std": std,
        "metadata": dict(config.metadata),
        "training": {
            "step": int(ckpt.get("global_step", 0)),
            "checkpoint": Path(checkpoint).name,
            "validation": dict(info.get("validation", {})),
            "config": info["train_config"],
        },
    }
    write_text(out / VAE_INFO_NAME, json.dumps(facts, indent=2) + "\n")
    return out


def train_vae(
    config: MelVaeTrainConfig,
    *,
    restart: bool = False,
    callbacks: Sequence[pl.Callback] = (),
    echo: Any = print,
    on_checked: Callable[[], None] | None = None,
) -> TrainResult:
    """Train (or resume) a mel VAE as ``config`` says, then export the best checkpoint
    (without validation: the last).

    A first Ctrl-C stops after the current step with ``last.ckpt`` saved and nothing
    exported (``TrainResult.interrupted``); rerunning resumes. Resuming a run whose saved
    ``config.yaml`` has another ``vae`` or ``front_end`` section is refused.
    ``on_checked`` is called (on the global rank 0 process) once everything is checked,
    just before the run folder is touched: ``querysep ldm train-vae`` prints the resolved
    config there, so that a config that fails a check prints one line only.

    Raises:
        ConfigError, DataError, ModelNotFoundError, CheckpointError: Bad config or inputs
            (a changed ``vae`` or ``front_end`` on resume is a ConfigError).
    """
    require_diffusers()
    is_zero = rank_zero_only.rank == 0
    say = echo if is_zero else (lambda _msg: None)
    out = config.output_dir
    _check_output_dir(out, config)
    last = out / CHECKPOINT_DIR / LAST_CHECKPOINT
    resume = last.is_file() and not restart
    if resume:
        # the front end fixes what the VAE's weights mean (mel bins, band): part of the model
        _check_same_model(config, out / CONFIG_FILE, sections=("vae", "front_end"))
        check_resumable(last)
    say(describe_choice(config.trainer.precision, config.trainer.accelerator))
    pl.seed_everything(config.trainer.seed, workers=False, verbose=False)
    task = MelVaeTask(config)
    datamodule = MixtureDataModule(config.data, config.front_end.sample_rate, config.trainer.seed)
    datamodule.setup("fit")
    datamodule.check_train_audio()
    size = sum(p.numel() for p in task.vae.parameters())
    say(f"mel VAE: {size / 1e6:.2f} M parameters, factor {config.vae.factor}")
    trainer = build_trainer(config, callbacks=callbacks, echo=say)
    check_validation_share(datamodule, trainer)
    if on_checked is not None and is_zero:  # every check passed: the CLI prints the config
        on_checked()
    with (
        open_run_folder(config, restart=restart, resume=resume, echo=say),
        fit_warnings_filtered(say),
    ):
        result = fit(trainer, task, datamodule, out=out, resume=resume, echo=say)
        if not result.interrupted and config.trainer.export and trainer.is_global_zero:
            validated = config.data.validation is not None
            source = find_export_checkpoint(out / CHECKPOINT_DIR, best=validated)
            result.exported = export_vae(source, out / MODEL_DIR, datamodule)
            facts = json.loads((result.exported / VAE_INFO_NAME).read_text(encoding="utf-8"))
            scores = facts["training"]["validation"]
            shown = ", ".join(f"{k} {v:.2f}" for k, v in scores.items() if k.startswith("val/"))
            say(f"exported {source.name} ({shown or 'not validated'}) to {result.exported}")
    return result
