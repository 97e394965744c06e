"""IRM-LDM (the report's System 3): ratio masking in the latent space of AudioLDM.

The mixture's log-mel spectrogram (:mod:`.mel`) is encoded by AudioLDM's VAE to a latent
``z_mix`` (the posterior's mode times the VAE's scaling factor: no sampling noise); the
:class:`~.masknet.LatentMaskNet`, conditioned on the query, predicts a ratio mask ``m``; the
target's latent estimate is ``m * z_mix``. Back to audio by one of three output paths:

- ``vocoder`` (the report's): VAE decoder -> mel -> HiFi-GAN vocoder. Without vocoder weights
  (a VAE-only folder) Griffin-Lim stands in, and :attr:`IrmLdm.output_label` says so.
- ``griffin-lim``: VAE decoder -> mel -> magnitude -> fast Griffin-Lim.
- ``phase-preserving``: decode both the masked and the mixture latents, take the ratio of
  the two mel spectrograms, spread it over the STFT bins through the mel filter bank and
  apply it to the mixture's STFT, keeping the mixture's phase; no vocoder. Resynthesis
  through a vocoder or Griffin-Lim is far below 0 dB SI-SDR even from a perfect mel, so this
  path removes that ceiling; what bounds it instead is a 64-band ratio mask.

Every signal is scaled to AudioLDM's peak of 0.5 first (the target by the mixture's gain),
and the estimate scaled back. Training adds a latent loss (``ldm_loss``): ``x0`` (the MSE
between the masked latent and the target's latent), ``sds`` (AudioLDM's UNet's
noise-prediction error on the noised masked latent, text-conditioned, as score distillation:
its gradient reaches the mask network without back-propagating through the UNet) or
``none``; see :meth:`IrmLdm.forward_train`.

The AudioLDM components are frozen and are not part of the network's parameters or state
dict: a model folder stores the mask network only, and its ``config.json`` names the folder
the components come from (``ldm``), which must be at hand to load it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ...errors import ConfigError, ModelNotFoundError
from ...schema import validate_dataclass
from .components import (
    VAE_INFO_NAME,
    LdmFolder,
    load_scheduler,
    load_unet,
    load_vae,
    load_vocoder,
    require_diffusers,
    vae_factor,
)
from .masknet import LatentMaskNet, MaskActivation
from .mel import MelFrontEnd, check_front_end, pad_frames, peak_gain

__all__ = ["OUTPUTS", "IrmLdm", "IrmLdmConfig", "LdmLoss", "OutputPath", "resolve_ldm"]

OutputPath = Literal["vocoder", "griffin-lim", "phase-preserving"]
LdmLoss = Literal["none", "x0", "sds"]
OUTPUTS: tuple[str, ...] = ("vocoder", "griffin-lim", "phase-preserving")
PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


@dataclass
class IrmLdmConfig:
    """Constructor arguments of :class:`IrmLdm`.

    Attributes:
        ldm: Where the frozen components come from: a diffusers AudioLDM folder (``vae/``,
            ``vocoder/``, ``unet/``, ``scheduler/``...), a folder with ``vae/`` only, or the
            name of a VAE bundled in ``querysep/weights/``. A relative path is looked up
            first in the model folder being loaded, then among the bundled VAEs, then from
            the working directory (:func:`resolve_ldm`).
        sample_rate: Audio rate (AudioLDM: 16000).
        n_fft: STFT size and window (AudioLDM: 1024).
        hop_length: STFT hop (AudioLDM: 160).
        n_mels: Mel bands (AudioLDM: 64).
        f_min: Lowest mel filter edge in Hz (AudioLDM: 0).
        f_max: Highest mel filter edge in Hz (AudioLDM: 8000).
        peak: Each mixture is scaled to this peak before the front end (AudioLDM: 0.5).
        condition_dim: Size of the query embedding.
        channels: Channels of the mask network's encoder levels.
        downsample: (time, freq) pooling after each level, planned for the latent's size.
        kernel_size: Kernel of the mask network's convolutions.
        momentum: Batch-norm momentum of the mask network.
        mask_activation: ``sigmoid`` (``[0, mask_bound]``, the report's with bound 1) or
            ``tanh`` (``[-mask_bound, mask_bound]``, signed like the latent).
        mask_bound: Largest mask magnitude.
        output: ``vocoder``, ``griffin-lim`` or ``phase-preserving`` (see the module).
        stft_mask_max: Upper clamp of the phase-preserving STFT mask.
        griffin_lim_iters: Iterations of Griffin-Lim.
        ldm_loss: Latent loss added in training: ``none``, ``x0`` or ``sds``.
        ldm_loss_weight: Its weight (lambda).
        sds_timesteps: Range of the diffusion time drawn for ``sds``, as fractions of the
            schedule's length.
    """

    ldm: str = ""
    sample_rate: PositiveInt = 16000
    n_fft: PositiveInt = 1024
    hop_length: PositiveInt = 160
    n_mels: PositiveInt = 64
    f_min: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    f_max: PositiveFloat = 8000.0
    peak: Annotated[float, Field(gt=0, le=1)] = 0.5
    condition_dim: PositiveInt = 512
    channels: Sequence[PositiveInt] = (32, 64, 128, 128, 128)
    downsample: Sequence[Sequence[PositiveInt]] = ((2, 2), (2, 2), (2, 2), (2, 2), (1, 1))
    kernel_size: PositiveInt = 3
    momentum: Annotated[float, Field(gt=0, le=1)] = 0.01
    mask_activation: MaskActivation = "sigmoid"
    mask_bound: PositiveFloat = 1.0
    output: OutputPath = "vocoder"
    stft_mask_max: PositiveFloat = 1.0
    griffin_lim_iters: PositiveInt = 32
    ldm_loss: LdmLoss = "none"
    ldm_loss_weight: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1.0
    sds_timesteps: Sequence[Annotated[float, Field(ge=0, le=1)]] = (0.02, 0.98)

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        self.downsample = tuple(tuple(int(v) for v in d) for d in self.downsample)
        self.sds_timesteps = tuple(float(t) for t in self.sds_timesteps)
        if not str(self.ldm).strip():
            raise ConfigError(
                "IrmLdmConfig: ldm must name the AudioLDM folder, a VAE folder or a bundled VAE"
            )
        if len(self.channels) != len(self.downsample):
            raise ConfigError(
                f"IrmLdmConfig: {len(self.channels)} channel levels but "
                f"{len(self.downsample)} downsample factors; give one factor per level"
            )
        if any(len(d) != 2 for d in self.downsample):
            raise ConfigError("IrmLdmConfig: each downsample factor is a (time, freq) pair")
        if self.kernel_size % 2 != 1:
            raise ConfigError("IrmLdmConfig: kernel_size must be odd")
        check_front_end(
            self.sample_rate, self.n_fft, self.hop_length, self.n_mels, self.f_min, self.f_max
        )
        if len(self.sds_timesteps) != 2 or self.sds_timesteps[0] > self.sds_timesteps[1]:
            raise ConfigError("IrmLdmConfig: sds_timesteps is [low, high] with low <= high")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["channels"] = list(self.channels)
        out["downsample"] = [list(d) for d in self.downsample]
        out["sds_timesteps"] = list(self.sds_timesteps)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IrmLdmConfig:
        """Build from plain data, checking every field's type and range.

        Raises:
            ConfigError: Naming the field, the value and what was expected.
        """
        return validate_dataclass(cls, data)


def resolve_ldm(spec: str, base: Path | None = None) -> LdmFolder:
    """The folder an :attr:`IrmLdmConfig.ldm` value names.

    Args:
        spec: A bundled VAE name, or a folder (absolute, or relative to ``base``, then a
            bundled VAE of that name, then the working directory: a bundled model's VAE is
            never replaced by a folder of the same name where the command runs).
        base: The model folder being loaded, if any.

    Raises:
        ModelNotFoundError: Nothing found (naming every place looked at), or no ``vae/``.
    """
    from importlib import resources

    bundled = Path(str(resources.files("querysep") / "weights")) / spec
    path = Path(spec).expanduser()
    tried = [path] if path.is_absolute() else [*([base / path] if base else []), bundled, path]
    for candidate in tried:
        if candidate.is_dir():
            return LdmFolder.find(candidate)
    raise ModelNotFoundError(
        f"the AudioLDM (or mel VAE) folder {spec!r} the model names was not found "
        f"(looked in: {', '.join(str(p) for p in dict.fromkeys(tried))})"
    )


def _is_bundled_vae(spec: str, root: Path) -> bool:
    from importlib import resources

    bundled = Path(str(resources.files("querysep") / "weights")) / spec
    return bundled.is_dir() and LdmFolder.find(bundled).root.resolve() == root.resolve()


class IrmLdm(nn.Module):
    """Query-conditioned ratio masking in a VAE latent, with three ways back to audio.

    Args:
        config: See :class:`IrmLdmConfig`.

    Raises:
        ModelNotFoundError: diffusers missing, or the ``ldm`` folder or a needed part of it.
        CheckpointError: Components that cannot be read or do not fit the front end.
    """

    def __init__(self, config: IrmLdmConfig) -> None:
        super().__init__()
        require_diffusers()
        from ..separator import loading_folder

        self.config = config
        self.folder = resolve_ldm(config.ldm, loading_folder())
        vae_config = self.folder.config("vae")
        self.vae_factor = vae_factor(vae_config)
        if config.n_mels % self.vae_factor:
            raise ConfigError(
                f"the VAE of {self.folder.root} halves the mel axis "
                f"{int(math.log2(self.vae_factor))} times, so n_mels must be a multiple of "
                f"{self.vae_factor}, got {config.n_mels}"
            )
        trained_on = self.folder.front_end()
        if trained_on is not None:
            mine = {k: getattr(config, k) for k in trained_on if hasattr(config, k)}
            differ = sorted(k for k, v in mine.items() if float(v) != float(trained_on[k]))
            if differ:
                raise ConfigError(
                    f"the VAE of {self.folder.root} was trained on another front end: "
                    + ", ".join(f"{k} {trained_on[k]} (here {mine[k]})" for k in differ)
                )
        self.front = MelFrontEnd(
            config.sample_rate,
            config.n_fft,
            config.hop_length,
            config.n_mels,
            config.f_min,
            config.f_max,
        )
        self.mask_net = LatentMaskNet(
            int(vae_config.get("latent_channels", 4)),
            config.channels,
            config.downsample,
            config.condition_dim,
            kernel_size=config.kernel_size,
            momentum=config.momentum,
            activation=config.mask_activation,
            bound=config.mask_bound,
        )
        # Frozen components: outside the parameters and the state dict (see _apply).
        self._frozen: dict[str, Any] = {"vae": load_vae(self.folder)}
        self._scheduler: Any = None
        self.output: str = config.output
        self.set_output(config.output)

    # ------------------------------------------------------------------ components
    def _apply(self, fn: Any, recurse: bool = True) -> IrmLdm:
        super()._apply(fn, recurse)
        for module in self._frozen.values():  # .to(), .float()... reach the frozen parts too
            module._apply(fn)
        return self

    @property
    def device(self) -> torch.device:
        return self.mask_net.after_conv.weight.device

    @property
    def vae(self) -> Any:
        return self._frozen["vae"]

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def has_vocoder(self) -> bool:
        """Whether vocoder weights are loaded (the ``vocoder`` path uses them)."""
        return "vocoder" in self._frozen

    @property
    def output_label(self) -> str:
        """What the current output path really does: ``vocoder``, ``griffin-lim`` (also when
        the vocoder path has no vocoder weights) or ``phase-preserving``."""
        if self.output == "vocoder" and not self.has_vocoder:
            return "griffin-lim"
        return self.output

    #: An evaluation row's name says which output path produced it.
    row_label = output_label

    @property
    def source_files(self) -> list[Path]:
        """The files of the frozen parts its output depends on (the VAE, the VAE's
        front-end record, and the vocoder when the output is the vocoder's), for
        :meth:`~querysep.models.separator.TextQueriedSeparator.weights_digest`."""
        info = self.folder.root / VAE_INFO_NAME
        files = [info] if info.is_file() else []
        files += self.folder.files("vae")
        if self.output_label == "vocoder":  # loaded, and used
            files += self.folder.files("vocoder")
        return files

    def set_output(self, output: str) -> None:
        """Switch the output path (loading the vocoder when it is asked for and exists).

        Raises:
            ConfigError: Not one of :data:`OUTPUTS`.
        """
        if output not in OUTPUTS:
            raise ConfigError(f"unknown IRM-LDM output {output!r}; known: {', '.join(OUTPUTS)}")
        if output == "vocoder" and not self.has_vocoder and self.folder.has("vocoder"):
            vocoder = load_vocoder(
                self.folder,
                sample_rate=self.config.sample_rate,
                hop_length=self.config.hop_length,
                n_mels=self.config.n_mels,
            )
            self._frozen["vocoder"] = vocoder.to(self.device)
        self.output = output
        self.config.output = output  # a model saved now keeps the output it runs with

    def config_for(self, folder: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """The config to save with a model written to ``folder``: :attr:`config`, with an
        ``ldm`` that still finds its folder from there.

        A bundled VAE's name and an absolute path are kept. A relative path (found next to
        the folder the model was loaded from, or in the working directory) becomes the path
        from ``folder`` when its AudioLDM folder lies inside ``folder`` (a model copied with
        it), else the absolute path of the folder it was found in.
        """
        out = self.config.to_dict()
        spec = str(self.config.ldm)
        if Path(spec).expanduser().is_absolute() or _is_bundled_vae(spec, self.folder.root):
            return out
        # "inside" by the paths as written (a link inside the folder stays a relative path)
        root = Path(os.path.abspath(self.folder.root))
        target = None if folder is None else Path(os.path.abspath(folder))
        if target is not None and (root == target or target in root.parents):
            out["ldm"] = os.path.relpath(root, target)
        else:
            out["ldm"] = str(self.folder.root.resolve())
        return out

    def reset_mask_head(self) -> None:
        """Start from the identity mask (see :meth:`LatentMaskNet.reset_mask_head`): the
        phase-preserving output is then exactly the mixture."""
        self.mask_net.reset_mask_head()

    def prepare_training(self) -> None:
        """Load what the latent loss needs (the UNet and its schedule for ``sds``) now, so a
        missing part fails before training starts."""
        if self.config.ldm_loss == "sds":
            self._unet()

    def _unet(self) -> tuple[Any, Any]:
        if "unet" not in self._frozen:
            unet = load_unet(self.folder)
            scheduler = load_scheduler(self.folder)
            wanted = unet.config.projection_class_embeddings_input_dim
            if wanted != self.config.condition_dim:
                raise ConfigError(
                    f"ldm_loss sds conditions AudioLDM's UNet on the query's CLAP embedding "
                    f"({wanted}-d), but the text encoder gives {self.config.condition_dim}-d: "
                    f"use text_encoder {{kind: clap, path: {self.folder.root}}}"
                )
            if scheduler.config.prediction_type != "epsilon":
                raise ConfigError(
                    f"ldm_loss sds needs a noise-predicting UNet, but {self.folder.root} "
                    f"predicts {scheduler.config.prediction_type!r}"
                )
            self._frozen["unet"] = unet.to(self.device)
            self._scheduler = scheduler
        return self._frozen["unet"], self._scheduler

    # ------------------------------------------------------------------ pieces
    @property
    def alignment(self) -> int:
        """Samples per step of the pooling grid: segments should start on multiples of it."""
        return self.config.hop_length * self.vae_factor * self.mask_net.time_ratio

    def encode(self, spectrogram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel spectrogram and scaled latent (posterior mode) of a complex STFT.

        Shape:
            - spectrogram: ``(batch, frames, bins)`` complex
            - output: ``(batch, frames, n_mels)`` and
              ``(batch, latent_channels, ceil(frames / f), n_mels / f)``, ``f`` the VAE's factor
        """
        log_mel = self.front.log_mel(spectrogram)
        padded = pad_frames(log_mel, self.vae_factor)
        with torch.no_grad():
            posterior = self.vae.encode(padded[:, None].float()).latent_dist
            latent = posterior.mode() * self.scaling_factor
        return log_mel, latent

    def decode(self, latent: torch.Tensor, frames: int) -> torch.Tensor:
        """The VAE decoder's log-mel spectrogram of a scaled latent, cut to ``frames``.

        Shape:
            - latent: ``(batch, latent_channels, time, freq)``
            - output: ``(batch, frames, n_mels)``
        """
        mel = self.vae.decode(latent / self.scaling_factor).sample
        return mel[:, 0, :frames, :].float()

    def synthesize(
        self,
        estimate_mel: torch.Tensor,
        spectrogram: torch.Tensor,
        length: int,
        *,
        mixture_mel: torch.Tensor | None = None,
        output: str | None = None,
    ) -> torch.Tensor:
        """Audio from an estimated log-mel spectrogram, by one output path.

        Args:
            estimate_mel: The estimate (decoded from its latent).
            spectrogram: The (scaled) mixture's STFT: masked for ``phase-preserving``.
            length: Samples to return.
            mixture_mel: The mixture's log-mel, the denominator of the ``phase-preserving``
                ratio (for IRM-LDM: the mixture's latent decoded, so the decoder's own
                errors cancel in the ratio).
            output: The path (default: the current one); ``vocoder`` without vocoder
                weights runs Griffin-Lim.

        Shape:
            - estimate_mel, mixture_mel: ``(batch, frames, n_mels)``
            - spectrogram: ``(batch, frames, bins)`` complex
            - output: ``(batch, length)``
        """
        output = output or self.output
        if output == "phase-preserving":
            if mixture_mel is None:
                raise ValueError("the phase-preserving output needs the mixture's mel")
            return self.front.phase_preserving(
                estimate_mel, mixture_mel, spectrogram, length, self.config.stft_mask_max
            )
        if output == "vocoder" and self.has_vocoder:
            wave = self._frozen["vocoder"](estimate_mel.float())
            return F.pad(wave, (0, max(0, length - wave.shape[-1])))[..., :length]
        magnitude = self.front.magnitude(estimate_mel)
        return self.front.griffin_lim(magnitude, length, self.config.griffin_lim_iters)

    def prepare(self, waveform: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Mono signals as the front end needs them: float32, padded to more than
        ``n_fft / 2`` samples (reflect padding); also returns the original length.

        Shape:
            - waveform: ``(batch, 1, time)``
            - output: ``(batch, time')``
        """
        return self.front.pad_short(waveform[:, 0].float()), waveform.shape[-1]

    # ------------------------------------------------------------------ forward
    def _check(self, mixture: torch.Tensor, condition: torch.Tensor) -> None:
        if mixture.dim() != 3 or mixture.shape[1] != 1:
            raise ValueError(f"mixture must be (batch, 1, time), got {tuple(mixture.shape)}")
        if condition.dim() != 2 or condition.shape[0] != mixture.shape[0]:
            raise ValueError(
                f"condition must be (batch={mixture.shape[0]}, dim), got {tuple(condition.shape)}"
            )

    def _run(
        self, mixture: torch.Tensor, condition: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Separate; also return the intermediate tensors the latent losses need."""
        self._check(mixture, condition)
        wave, length = self.prepare(mixture)
        gain = peak_gain(wave, self.config.peak)
        spec = self.front.spectrogram(wave * gain)
        _, latent = self.encode(spec)
        mask = self.mask_net(latent, condition.float())
        estimate_latent = mask * latent
        frames = spec.shape[1]
        estimate_mel = self.decode(estimate_latent, frames)
        mixture_mel = None
        if self.output == "phase-preserving":
            with torch.no_grad():
                mixture_mel = self.decode(latent, frames)
        out = self.synthesize(estimate_mel, spec, wave.shape[-1], mixture_mel=mixture_mel)
        estimate = (out / gain)[:, None, :length]
        return estimate, {"gain": gain, "latent": latent, "estimate_latent": estimate_latent}

    def forward(self, mixture: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Separate the source each condition describes.

        Shape:
            - mixture: ``(batch, 1, time)``
            - condition: ``(batch, condition_dim)``
            - output: ``(batch, 1, time)``
        """
        return self._run(mixture, condition)[0]

    def forward_train(
        self, mixture: torch.Tensor, condition: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Separate, and compute the weighted latent loss (training's extra term).

        ``x0``: mean squared error between the masked latent and the target's latent (the
        target scaled by the mixture's gain). ``sds``: the noised masked latent
        ``sqrt(a_t) z + sqrt(1 - a_t) e`` at a random time ``t`` goes through AudioLDM's
        UNet with the query's embedding; the value is the noise-prediction MSE, and the
        gradient reaching the masked latent is ``(e_hat - e)`` per element (the UNet's
        Jacobian left out, as in score distillation), so the frozen UNet is never
        back-propagated through.

        Returns:
            The estimate and ``{"latent_loss": lambda * L_LDM}`` (empty for ``none``).

        Shape:
            - mixture, target: ``(batch, 1, time)``
            - condition: ``(batch, condition_dim)``
        """
        estimate, parts = self._run(mixture, condition)
        kind = self.config.ldm_loss
        if kind == "none":
            return estimate, {}
        z = parts["estimate_latent"]
        if kind == "x0":
            wave, _ = self.prepare(target)
            _, target_latent = self.encode(self.front.spectrogram(wave * parts["gain"]))
            loss = F.mse_loss(z, target_latent)
        else:
            loss = self._sds_loss(z, condition)
        return estimate, {"latent_loss": self.config.ldm_loss_weight * loss}

    def _sds_loss(self, latent: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        unet, scheduler = self._unet()
        steps = int(scheduler.config.num_train_timesteps)
        lo, hi = (round(f * (steps - 1)) for f in self.config.sds_timesteps)
        t = torch.randint(lo, hi + 1, (latent.shape[0],), device=latent.device)
        alpha = scheduler.alphas_cumprod.to(latent.device)[t].view(-1, 1, 1, 1)
        noise = torch.randn_like(latent)
        noised = alpha.sqrt() * latent.detach() + (1 - alpha).sqrt() * noise
        factor = 2 ** (len(unet.config.block_out_channels) - 1)
        frames, bins = noised.shape[-2:]
        padded = F.pad(noised, (0, -bins % factor, 0, -frames % factor))
        with torch.no_grad():
            predicted = unet(padded, t, encoder_hidden_states=None, class_labels=condition).sample
        residual = predicted[..., :frames, :bins].float() - noise
        value = residual.pow(2).mean()
        surrogate = (latent * residual.detach()).mean()  # its gradient: residual / numel
        return value.detach() + surrogate - surrogate.detach()
