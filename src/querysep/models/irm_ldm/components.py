"""AudioLDM's components from a local diffusers-format folder (the ``gen`` extra: diffusers).

A diffusers AudioLDM folder (e.g. ``cvssp/audioldm-s-full-v2`` downloaded by the user) holds

- ``vae/``: ``AutoencoderKL`` over log-mel spectrograms (1 channel, time x 64 mel bins);
- ``vocoder/``: transformers ``SpeechT5HifiGan`` (64-bin log-mel -> 16 kHz waveform);
- ``unet/``: ``UNet2DConditionModel``, the latent denoiser, conditioned through its class
  embedding on the L2-normalised CLAP text embedding;
- ``scheduler/``: the noise schedule the UNet was trained with;
- ``text_encoder/`` + ``tokenizer/``: the CLAP text tower
  (:class:`~querysep.models.text.ClapTextEncoder` loads it from the folder itself).

IRM-LDM needs ``vae/`` always, ``vocoder/`` for its vocoder output path (Griffin-Lim stands in
where there is none), and ``unet/`` + ``scheduler/`` only to train with the ``sds`` latent
loss. A folder with ``vae/`` alone (the small mel VAE ``querysep ldm train-vae`` writes) is a
valid source too. Weights are read from safetensors files only, with ``local_files_only``:
nothing is downloaded and nothing is unpickled. diffusers is imported on first use, so
``import querysep`` and the command line work without it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import CheckpointError, ConfigError, ModelNotFoundError

__all__ = [
    "PARTS",
    "VAE_INFO_NAME",
    "LdmFolder",
    "load_scheduler",
    "load_unet",
    "load_vae",
    "load_vocoder",
    "require_diffusers",
    "vae_factor",
]

#: Sub-folder -> what it is, for messages.
PARTS: dict[str, str] = {
    "vae": "the mel VAE (AutoencoderKL)",
    "vocoder": "the HiFi-GAN vocoder (SpeechT5HifiGan)",
    "unet": "the latent diffusion UNet (UNet2DConditionModel)",
    "scheduler": "the noise scheduler",
    "text_encoder": "the CLAP text tower",
    "tokenizer": "the CLAP tokenizer",
}
_CONFIG_FILES = {"scheduler": "scheduler_config.json"}
#: Written next to ``vae/`` by ``querysep ldm train-vae``.
VAE_INFO_NAME = "querysep_vae.json"
_LAYOUT = (
    "a diffusers AudioLDM folder has vae/, vocoder/, unet/, scheduler/, text_encoder/, tokenizer/"
)


def require_diffusers() -> None:
    """Fail with one line when diffusers (the ``gen`` extra) is not installed.

    Raises:
        ModelNotFoundError: diffusers cannot be imported.
    """
    if importlib.util.find_spec("diffusers") is None:
        raise ModelNotFoundError(
            "IRM-LDM needs diffusers, which is not installed: pip install 'querysep[gen]'"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {_first_line(exc)}") from None


@dataclass(frozen=True)
class LdmFolder:
    """A local folder holding some of AudioLDM's components in the diffusers layout.

    Args:
        root: The folder.
    """

    root: Path

    @classmethod
    def find(cls, path: str | Path) -> LdmFolder:
        """The folder ``path`` names, checked to hold at least ``vae/``.

        Raises:
            ModelNotFoundError: No such folder, or it has no ``vae/config.json``.
        """
        root = Path(path).expanduser()
        if not root.is_dir():
            raise ModelNotFoundError(f"AudioLDM folder not found: {root}")
        folder = cls(root)
        folder.require("vae")
        return folder

    def has(self, part: str) -> bool:
        """Whether ``part/`` is there with its config file."""
        return (self.root / part / _CONFIG_FILES.get(part, "config.json")).is_file()

    def require(self, part: str) -> Path:
        """``root/part``, which must be there.

        Raises:
            ModelNotFoundError: Naming the missing part and what it is.
        """
        if not self.has(part):
            name = _CONFIG_FILES.get(part, "config.json")
            raise ModelNotFoundError(
                f"{self.root}: no {part}/{name} ({PARTS.get(part, part)}); {_LAYOUT}"
            )
        return self.root / part

    def files(self, part: str) -> list[Path]:
        """The files ``part/`` loads from, sorted: its ``config.json`` and the weights that
        diffusers / transformers read without a variant (``diffusion_pytorch_model`` or
        ``model``, ``.safetensors``, or its shards and their index); not other files, such
        as the ``.fp16.safetensors`` variants of a hub download."""
        folder = self.root / part
        if not folder.is_dir():
            return []
        stems = ("diffusion_pytorch_model", "model")
        names = {"config.json"}
        names |= {f"{s}.safetensors" for s in stems} | {
            f"{s}.safetensors.index.json" for s in stems
        }
        return sorted(
            p
            for p in folder.iterdir()
            if p.is_file()
            and (
                p.name in names
                or any(re.fullmatch(rf"{s}-\d+-of-\d+\.safetensors", p.name) for s in stems)
            )
        )

    def front_end(self) -> dict[str, Any] | None:
        """The front end a VAE trained by ``querysep ldm train-vae`` was trained on (from
        its ``querysep_vae.json``); ``None`` for other folders (AudioLDM's own)."""
        path = self.root / VAE_INFO_NAME
        if not path.is_file():
            return None
        data = _read_json(path)
        front = data.get("front_end") if isinstance(data, dict) else None
        return dict(front) if isinstance(front, dict) else None

    def config(self, part: str) -> dict[str, Any]:
        """The parsed config file of ``part`` (no weights are read).

        Raises:
            ModelNotFoundError: The part is missing.
            ConfigError: Its config is not a JSON object.
        """
        path = self.require(part) / _CONFIG_FILES.get(part, "config.json")
        data = _read_json(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path} is not a JSON object")
        return data


def vae_factor(config: dict[str, Any]) -> int:
    """How many mel frames (and bins) one latent step covers: ``2 ** (levels - 1)``."""
    return 2 ** (len(config.get("block_out_channels", [64])) - 1)


def _from_pretrained(cls: Any, folder: LdmFolder, part: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained(root, subfolder=part)``: safetensors only, nothing downloaded,
    every weight of the model in the file and nothing else (no part left random).

    Raises:
        CheckpointError: The weights cannot be read, or do not fit the part's config.
    """
    folder.require(part)
    if cls.__module__.startswith("diffusers"):
        kwargs.setdefault("low_cpu_mem_usage", False)  # no accelerate: say so, quietly
    try:
        with _quiet_loading():
            model, info = cls.from_pretrained(
                str(folder.root),
                subfolder=part,
                local_files_only=True,
                use_safetensors=True,
                output_loading_info=True,
                **kwargs,
            )
    except Exception as exc:  # a cut file, a config the weights do not fit, ...
        raise CheckpointError(
            f"cannot load {part}/ of {folder.root} ({PARTS.get(part, part)}; safetensors "
            f"weights are needed): {_first_line(exc)}"
        ) from None
    problems = [
        f"{len(keys)} {what} (e.g. {_key_name(keys[0])})"
        for what, keys in (
            ("weight(s) missing", sorted(info.get("missing_keys") or (), key=str)),
            ("unexpected weight(s)", sorted(info.get("unexpected_keys") or (), key=str)),
            ("weight(s) of another shape", sorted(info.get("mismatched_keys") or (), key=str)),
        )
        if keys
    ]
    if problems:
        raise CheckpointError(
            f"the weights in {folder.root}/{part} do not fit its config ({PARTS.get(part, part)}): "
            + "; ".join(problems)
        )
    return model.eval().requires_grad_(False)


def _key_name(key: Any) -> str:
    return str(key[0] if isinstance(key, tuple) else key)


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Silence diffusers' and transformers' loading chatter (progress bars, warnings about
    missing weights, "an error occurred while trying to fetch"): what matters becomes the
    one-line error of :func:`_from_pretrained`."""
    from transformers.utils import logging as hf_logging

    with _QUIET:  # the levels are global: two loads at once would restore each other's
        yield from _quieted(hf_logging)


_QUIET = threading.Lock()


def _quieted(hf_logging: Any) -> Iterator[None]:
    loggers = [hf_logging]
    if importlib.util.find_spec("diffusers") is not None:
        from diffusers.utils import logging as df_logging

        loggers.append(df_logging)
    levels = [each.get_verbosity() for each in loggers]
    bar = hf_logging.is_progress_bar_enabled()
    for each in loggers:  # diffusers logs a missing file as an error, then raises it
        each.set_verbosity(logging.CRITICAL)
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        for each, level in zip(loggers, levels, strict=True):
            each.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


def load_vae(folder: LdmFolder) -> Any:
    """The frozen ``AutoencoderKL`` of ``vae/`` (1 input channel, time x mel bins).

    Raises:
        ModelNotFoundError: No ``vae/``, or diffusers is missing.
        CheckpointError: Unreadable weights, or not a one-channel VAE.
    """
    require_diffusers()
    from diffusers import AutoencoderKL

    vae = _from_pretrained(AutoencoderKL, folder, "vae")
    if vae.config.in_channels != 1 or vae.config.out_channels != 1:
        raise CheckpointError(
            f"{folder.root}/vae is a {vae.config.in_channels}-channel VAE; a mel VAE has one"
        )
    return vae


def load_vocoder(folder: LdmFolder, *, sample_rate: int, hop_length: int, n_mels: int) -> Any:
    """The frozen ``SpeechT5HifiGan`` of ``vocoder/``, checked against the mel front end.

    Raises:
        ModelNotFoundError: No ``vocoder/``.
        CheckpointError: Unreadable weights, or a vocoder for another rate, hop or mel size.
    """
    from transformers import SpeechT5HifiGan

    vocoder = _from_pretrained(SpeechT5HifiGan, folder, "vocoder")
    cfg = vocoder.config
    upsample = math.prod(cfg.upsample_rates)
    if (cfg.sampling_rate, upsample, cfg.model_in_dim) != (sample_rate, hop_length, n_mels):
        raise CheckpointError(
            f"{folder.root}/vocoder turns {cfg.model_in_dim}-bin mels with hop {upsample} into "
            f"{cfg.sampling_rate} Hz audio, but the front end has {n_mels} bins, hop "
            f"{hop_length}, {sample_rate} Hz"
        )
    return vocoder


def load_unet(folder: LdmFolder) -> Any:
    """The frozen ``UNet2DConditionModel`` of ``unet/`` (for the ``sds`` latent loss).

    Raises:
        ModelNotFoundError: No ``unet/``, or diffusers is missing.
        CheckpointError: Unreadable weights, or a UNet without AudioLDM's class conditioning.
    """
    require_diffusers()
    from diffusers import UNet2DConditionModel

    unet = _from_pretrained(UNet2DConditionModel, folder, "unet")
    if unet.config.class_embed_type != "simple_projection":
        raise CheckpointError(
            f"{folder.root}/unet is not conditioned like AudioLDM's (class_embed_type "
            f"simple_projection, the CLAP text embedding), got {unet.config.class_embed_type!r}"
        )
    return unet


def load_scheduler(folder: LdmFolder) -> Any:
    """A ``DDPMScheduler`` with the noise schedule of ``scheduler/`` (any scheduler class).

    Raises:
        ModelNotFoundError: No ``scheduler/``, or diffusers is missing.
        ConfigError: A schedule diffusers cannot build.
    """
    require_diffusers()
    from diffusers import DDPMScheduler

    config = folder.config("scheduler")
    keep = {
        k: v
        for k, v in config.items()
        if k
        in (
            "num_train_timesteps",
            "beta_start",
            "beta_end",
            "beta_schedule",
            "trained_betas",
            "prediction_type",
        )
    }
    try:
        return DDPMScheduler(**keep)
    except (ValueError, NotImplementedError, TypeError) as exc:
        raise ConfigError(f"{folder.root}/scheduler: {_first_line(exc)}") from None
