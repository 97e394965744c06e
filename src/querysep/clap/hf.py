"""A transformers ``ClapModel`` folder (LAION CLAP in Hugging Face format) as an audio-text model.

``load_clap("path/to/folder")``, ``load_clap("hf:path/to/folder")`` or ``load_clap("hf:org/name")``
for a hub id already in the local Hugging Face cache. Nothing is downloaded here: every
``from_pretrained`` call is ``local_files_only``.

The audio front end is :class:`ClapFrontEnd`, a batched torch re-implementation of the
folder's own ``ClapFeatureExtractor`` (same parameters, same mel filters, same numbers to
float rounding): the extractor itself is numpy, one clip and one frame at a time. Text goes
through the tokenizer alone and only ``input_ids`` and ``attention_mask`` reach the model;
the ``ClapProcessor`` is never used, because in transformers 5 its text keyword arguments
(``max_length``, ``truncation``) also reach the feature extractor, which then crops or
refuses the audio.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, ModelNotFoundError
from ..hub import resolve_hf_folder
from ..models.text.clap import quiet_transformers, refuse_random_weights
from ..models.text.laion import ROBERTA_TOKENIZER_FILES, check_vocabulary, has_tokenizer_files
from .base import AudioTextModel
from .registry import register_clap_loader, register_folder_loader

__all__ = [
    "ClapFrontEnd",
    "HFClap",
    "check_clap_folder",
    "is_hf_clap_folder",
    "load_hf_clap",
    "quiet_transformers",
    "resolve_hf_folder",
]

#: LAION CLAP's text context: captions were tokenised to 77 tokens in training.
TEXT_MAX_LENGTH = 77

_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_FEATURE_EXTRACTOR_FILE = "preprocessor_config.json"

CONVERSION_FILE = "querysep_clap.json"
"""Written beside the weights by ``querysep clap convert`` (source checkpoint and sha256)."""


class ClapFrontEnd(nn.Module):
    """``ClapFeatureExtractor`` in torch: waveform windows to the model's log-mel input.

    Power spectrogram with a periodic Hann window, centred frames with reflect padding
    (as the extractor's numpy ``spectrogram()``), the extractor's own mel filters (its
    Slaney-normalised ones unless its ``truncation`` is ``"fusion"``, then the HTK ones),
    then ``10 * log10(max(mel, 1e-10))``. Computed in float64 like the extractor; returned
    as float32.

    Args:
        n_fft: FFT and window size (``fft_window_size``).
        hop_length: Hop between frames.
        mel_filters: ``(n_fft // 2 + 1, num_mels)`` filter bank.
        channels: 1, or 4 for fusion models (the same mel four times: no window is longer
            than the model's clip, so nothing is fused).

    Shape:
        - input: ``(batch, time)``
        - output: ``(batch, channels, frames, num_mels)``, ``frames = 1 + time // hop_length``
    """

    def __init__(
        self, n_fft: int, hop_length: int, mel_filters: np.ndarray, channels: int = 1
    ) -> None:
        super().__init__()
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.channels = int(channels)
        mel = torch.as_tensor(np.asarray(mel_filters, dtype=np.float64))
        if mel.ndim != 2 or mel.shape[0] != self.n_fft // 2 + 1:
            raise ValueError(f"mel filters shaped {tuple(mel.shape)} do not fit n_fft {n_fft}")
        self.register_buffer("mel_filters", mel, persistent=False)
        window = torch.hann_window(self.n_fft, periodic=True, dtype=torch.float64)
        self.register_buffer("window", window, persistent=False)

    @classmethod
    def from_feature_extractor(cls, extractor: Any, *, fusion: bool = False) -> ClapFrontEnd:
        """The front end that computes what ``extractor`` computes for one clip."""
        mel = (
            extractor.mel_filters
            if extractor.truncation == "fusion"
            else extractor.mel_filters_slaney
        )
        return cls(extractor.fft_window_size, extractor.hop_length, mel, 4 if fusion else 1)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        # float64 like the extractor (MPS has none: float32 there)
        dtype = torch.float32 if windows.device.type == "mps" else torch.float64
        x = windows.to(dtype)
        spec = torch.stft(
            x,
            self.n_fft,
            self.hop_length,
            window=self.window.to(dtype),
            center=True,
            pad_mode="reflect",
            onesided=True,
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # (batch, freq, frames)
        mel = torch.einsum("bft,fm->btm", power, self.mel_filters.to(dtype))
        logmel = 10.0 * torch.log10(mel.clamp_min(1e-10))
        out = logmel.float().unsqueeze(1)
        return out.expand(-1, self.channels, -1, -1).contiguous() if self.channels > 1 else out


def _pooled(output: Any) -> torch.Tensor:
    """``get_*_features`` gives a tensor (transformers 4) or an output object (5)."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:  # pragma: no cover - a transformers we do not know
        raise TypeError(f"unexpected output of ClapModel: {type(output).__name__}")
    return pooled


class HFClap(AudioTextModel):
    """A transformers ``ClapModel`` with its feature extractor and tokenizer.

    Args:
        model: The ``ClapModel``.
        feature_extractor: Its ``ClapFeatureExtractor`` (parameters read once, not called).
        tokenizer: Its tokenizer, or ``None`` for a model that only embeds audio and token ids
            (:meth:`embed_text` then raises :class:`ModelNotFoundError` with ``missing_tokenizer``).
        name: Shown next to scores.
        max_length: Token limit for text; longer texts are truncated.
        missing_tokenizer: The message when text is embedded without a tokenizer.
    """

    kind = "hf"

    def __init__(
        self,
        model: nn.Module,
        feature_extractor: Any,
        tokenizer: Any | None,
        *,
        name: str = "",
        max_length: int = TEXT_MAX_LENGTH,
        missing_tokenizer: str | None = None,
    ) -> None:
        super().__init__()
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        config = model.config
        self.fusion = bool(getattr(config.audio_config, "enable_fusion", False))
        self.front_end = ClapFrontEnd.from_feature_extractor(feature_extractor, fusion=self.fusion)
        self.sample_rate = int(feature_extractor.sampling_rate)
        self.window_samples = int(feature_extractor.nb_max_samples)
        self.dim = int(config.projection_dim)
        positions = int(config.text_config.max_position_embeddings) - 2  # RoBERTa offset
        self.max_length = max(1, min(int(max_length), positions))
        self.missing_tokenizer = missing_tokenizer or f"{name or 'this model'} has no tokenizer"
        self.source: dict[str, Any] = {}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self.source}

    def features(self, windows: torch.Tensor) -> torch.Tensor:
        """The model's ``input_features`` for windows of exactly :attr:`window_samples`.

        Shape:
            - windows: ``(batch, window_samples)``
            - output: ``(batch, channels, frames, num_mels)``
        """
        return self.front_end(windows.to(self.device))

    def _embed_windows(self, windows: torch.Tensor) -> torch.Tensor:
        feats = self.features(windows)
        kwargs: dict[str, Any] = {}
        if self.fusion:  # nothing is longer than one clip: use the global mel only
            kwargs["is_longer"] = torch.zeros(
                feats.shape[0], 1, dtype=torch.bool, device=feats.device
            )
        return _pooled(self.model.get_audio_features(input_features=feats, **kwargs))

    def _text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # only these two: BERT-style tokenizers also return token_type_ids, which must not
        # reach the model
        out = self.model.get_text_features(
            input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)
        )
        return _pooled(out)

    def embed_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """L2-normalised text embeddings from token ids, for callers that tokenise themselves.

        Shape:
            - input_ids, attention_mask: ``(batch, tokens)``
            - output: ``(batch, dim)``, float32 on the CPU
        """
        with torch.inference_mode():
            emb = self._text_features(input_ids, attention_mask).float()
        return nn.functional.normalize(emb, dim=-1).cpu()

    def _embed_texts(self, texts: list[str]) -> torch.Tensor:
        if self.tokenizer is None:
            raise ModelNotFoundError(self.missing_tokenizer)
        tok = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return self._text_features(tok["input_ids"], tok["attention_mask"])


def _read_config(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_hf_clap_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a transformers CLAP model (``config.json`` model_type clap)."""
    config = _read_config(Path(folder))
    return config is not None and config.get("model_type") == "clap"


def tokenizer_hint(folder: Path) -> str:
    """The one-line message for a CLAP folder without tokenizer files."""
    if (folder / CONVERSION_FILE).is_file():
        return (
            f"{folder} has no tokenizer files: copy roberta-base's {ROBERTA_TOKENIZER_FILES} "
            "into it (or convert again with --tokenizer DIR)"
        )
    return (
        f"{folder} has no tokenizer files (tokenizer.json, or vocab.json and merges.txt, "
        "or vocab.txt)"
    )


def check_clap_folder(folder: Path, *, need_tokenizer: bool = True) -> None:
    """Check that ``folder`` has what :func:`load_hf_clap` needs, naming what is missing.

    Raises:
        ModelNotFoundError: No folder, no ``config.json`` or not a CLAP one, no weights, no
            feature extractor, or (with ``need_tokenizer``) no tokenizer files.
    """
    if not folder.is_dir():
        raise ModelNotFoundError(f"CLAP model folder not found: {folder}")
    config = _read_config(folder)
    if config is None:
        raise ModelNotFoundError(f"{folder} has no readable config.json: not a CLAP model folder")
    if config.get("model_type") != "clap":
        found = config.get("model_type") or "none"
        raise ModelNotFoundError(
            f"{folder} is not a CLAP model folder (config.json model_type is {found}, not clap)"
        )
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        raise ModelNotFoundError(
            f"{folder} has no weights (model.safetensors or pytorch_model.bin)"
        )
    if not (folder / _FEATURE_EXTRACTOR_FILE).is_file():
        raise ModelNotFoundError(
            f"{folder} has no feature extractor ({_FEATURE_EXTRACTOR_FILE}); save the "
            "model's ClapFeatureExtractor into it"
        )
    if need_tokenizer and not has_tokenizer_files(folder):
        raise ModelNotFoundError(tokenizer_hint(folder))


def _needs_pickled_code(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps: older transformers put torch's error inside an
    OSError) is torch refusing a file that needs pickled code."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain, not a cycle
        if seen is None:
            return False
        if "weights_only" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_hf_clap(path: str, device: str | torch.device = "cpu") -> HFClap:
    """Load a ``ClapModel`` folder (or a cached hub id) with its extractor and tokenizer.

    Raises:
        ModelNotFoundError: Missing folder, weights, feature extractor or tokenizer files,
            or not a CLAP folder; the message names what is missing.
    """
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

    folder = resolve_hf_folder(path)
    check_clap_folder(folder)
    try:
        with quiet_transformers():
            extractor = ClapFeatureExtractor.from_pretrained(folder, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model, info = ClapModel.from_pretrained(
                folder,
                local_files_only=True,
                output_loading_info=True,
                ignore_mismatched_sizes=True,
            )
    except Exception as exc:
        if _needs_pickled_code(exc):  # torch's advice would be to run the pickled code
            raise CheckpointError(
                f"the CLAP weights in {folder} need pickled code to load, which is refused "
                "for safety and never run; only plain weight files are read (save the model "
                "as model.safetensors where you trust its code)"
            ) from None
        if isinstance(exc, (OSError, ValueError, KeyError)):
            raise ModelNotFoundError(
                f"cannot load the CLAP model in {folder}: {_first_line(exc)}"
            ) from None
        # a cut weights file, a shape the config does not fit, ...
        raise CheckpointError(
            f"cannot load the CLAP model in {folder}: {_first_line(exc)}"
        ) from None
    refuse_random_weights(f"the CLAP weights in {folder}", info)
    check_vocabulary(tokenizer, int(model.config.text_config.vocab_size), f"CLAP model {folder}")
    clap = HFClap(model, extractor, tokenizer, name=str(path))
    clap.source = {"path": str(path)}
    conversion = folder / CONVERSION_FILE
    if conversion.is_file():
        try:
            info = json.loads(conversion.read_text(encoding="utf-8"))
            clap.source["converted_from"] = info.get("source", {})
        except (OSError, ValueError):
            pass
    return clap.to(device).eval()


register_clap_loader("hf", load_hf_clap)
register_folder_loader(is_hf_clap_folder, load_hf_clap)
