"""The one interface every audio-text (CLAP-style) model implements.

An :class:`AudioTextModel` maps audio and text into one embedding space:
:meth:`~AudioTextModel.embed_audio` and :meth:`~AudioTextModel.embed_text` both return
L2-normalised ``(batch, dim)`` float32 tensors on the CPU, so the audio-text similarity
score (ATS) of a pair is the dot product of their embeddings.

Audio handling is shared here and identical for every source:

- any input rate is resampled with soxr to the model's :attr:`~AudioTextModel.sample_rate`
  (never fed at the wrong rate);
- channels are averaged to mono;
- the level is normalised (RMS to :data:`REFERENCE_RMS`) unless ``normalize_level=False``,
  so a score does not change with the gain of the clip; digital silence stays silence;
- a clip shorter than the model's window is repeat-padded (whole repeats, then zeros, as
  LAION CLAP and transformers' ``ClapFeatureExtractor`` do); a longer one is cut into
  evenly spaced, overlapping windows covering all of it, and the window embeddings are
  averaged (upstream crops at random instead; scores here are deterministic).

Subclasses implement :meth:`~AudioTextModel._embed_windows` and
:meth:`~AudioTextModel._embed_texts` and set ``sample_rate``, ``window_samples`` and ``dim``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..audio.io import check_sample_rate, resample
from ..errors import AudioError, CheckpointError, QueryError
from ..models.text.base import validate_queries
from ..schema import check_count

__all__ = [
    "REFERENCE_RMS",
    "AudioInput",
    "AudioTextModel",
    "check_batch_size",
    "repeat_pad",
    "window_starts",
]

REFERENCE_RMS = 0.1
"""RMS every clip is scaled to before embedding (-20 dBFS), unless level normalisation is off."""

_SILENCE_RMS = 1e-8

AudioInput = np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor]


def repeat_pad(clip: np.ndarray, length: int) -> np.ndarray:
    """Repeat ``clip`` whole as many times as fit in ``length``, then pad with zeros.

    Shape:
        - clip: ``(time,)`` with ``0 < time <= length``
        - output: ``(length,)``
    """
    n = clip.shape[-1]
    if n >= length:
        return clip[:length]
    tiled = np.tile(clip, length // n)
    return np.pad(tiled, (0, length - tiled.shape[-1]))


def check_batch_size(batch_size: Any) -> int:
    """``batch_size`` as an ``int``.

    Raises:
        ConfigError: It is not a whole number >= 1 (a bool, a float, zero or negative).
    """
    return check_count("batch_size", batch_size)


def window_starts(num_samples: int, window: int) -> list[int]:
    """Starts of the fewest ``window``-long windows, evenly spaced, that cover the signal.

    A signal no longer than one window gets one window at 0 (it is padded later).
    """
    if num_samples <= window:
        return [0]
    count = math.ceil(num_samples / window)
    last = num_samples - window
    return [round(i * last / (count - 1)) for i in range(count)]


def _as_mono_list(waveform: AudioInput) -> list[np.ndarray]:
    """Every item as a float32 mono ``(time,)`` numpy array."""
    if isinstance(waveform, np.ndarray | torch.Tensor):
        arr = _to_numpy(waveform)
        if arr.ndim == 1:
            items = [arr]
        elif arr.ndim == 2:
            items = list(arr)
        elif arr.ndim == 3:
            items = list(arr.mean(axis=1))
        else:
            raise AudioError(
                f"expected audio shaped (time,), (batch, time) or (batch, channels, time), "
                f"got {tuple(arr.shape)}"
            )
    else:
        items = []
        for item in waveform:
            arr = _to_numpy(item)
            if arr.ndim == 2:
                arr = arr.mean(axis=0)
            if arr.ndim != 1:
                raise AudioError(
                    f"each clip must be shaped (time,) or (channels, time), got {arr.shape}"
                )
            items.append(arr)
    if not items:
        raise AudioError("no audio given")
    return [np.ascontiguousarray(x, dtype=np.float32) for x in items]


def _to_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x, dtype=np.float32)


class AudioTextModel(nn.Module, abc.ABC):
    """An audio tower and a text tower sharing one embedding space.

    Attributes:
        name: Shown in tables next to ATS values (scores compare only within one model).
        weights_sha256: SHA-256 of the weights file, where the loader knows it ("" if not).
        sample_rate: Rate the audio tower takes, in Hz.
        window_samples: Audio samples per embedding window at :attr:`sample_rate`.
        dim: Embedding size.
        audio_views: Views of each clip whose window embeddings are summed: view ``k`` is the
            clip circularly shifted by ``k / audio_views`` of its length (1 = the clip only).
    """

    kind: ClassVar[str] = ""
    name: str = ""
    weights_sha256: str = ""
    sample_rate: int
    window_samples: int
    dim: int
    audio_views: int = 1

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    @abc.abstractmethod
    def _embed_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """Embed a batch of windows already at :attr:`sample_rate` (not yet normalised).

        Shape:
            - windows: ``(batch, window_samples)``, on :attr:`device`
            - output: ``(batch, dim)``
        """

    @abc.abstractmethod
    def _embed_texts(self, texts: list[str]) -> torch.Tensor:
        """Embed validated texts (not yet normalised).

        Shape:
            - output: ``(len(texts), dim)``
        """

    def describe(self) -> dict[str, Any]:
        """What to record next to a score so it can be reproduced.

        Includes the SHA-256 of the weights file (first 16 hex digits) where the loader set
        :attr:`weights_sha256`, so a model retrained under the same name does not compare
        equal to its earlier version.
        """
        out: dict[str, Any] = {"kind": self.kind, "name": self.name, "dim": self.dim}
        if self.weights_sha256:
            out["weights_sha256"] = self.weights_sha256[:16]
        return out

    def prepare_windows(
        self, waveform: AudioInput, sample_rate: float, *, normalize_level: bool = True
    ) -> tuple[np.ndarray, list[int]]:
        """Resample, mix to mono, level-normalise and cut the clips (each of their
        :attr:`audio_views`) into windows.

        Returns:
            The windows, and for each window the index of the clip it came from.

        Shape:
            - output: ``(num_windows, window_samples)``

        Raises:
            AudioError: No audio, an empty clip, NaN or infinite samples, a rate that is not
                a whole number of Hz (``16000.0`` is one) or is out of range.
        """
        sample_rate = check_sample_rate(sample_rate)
        windows: list[np.ndarray] = []
        owners: list[int] = []
        for index, clip in enumerate(_as_mono_list(waveform)):
            if clip.shape[-1] == 0:
                raise AudioError("cannot embed an empty clip (0 samples)")
            if not np.isfinite(clip).all():
                raise AudioError("cannot embed audio with NaN or infinite samples")
            clip = resample(clip, sample_rate, self.sample_rate)
            if clip.shape[-1] == 0:
                raise AudioError("the clip is too short to resample (under one sample)")
            if normalize_level:
                rms = float(np.sqrt(np.mean(np.square(clip, dtype=np.float64))))
                if rms > _SILENCE_RMS:
                    clip = (clip * (REFERENCE_RMS / rms)).astype(np.float32)
            length, size = clip.shape[-1], self.window_samples
            for view in range(self.audio_views):
                shifted = np.roll(clip, view * length // self.audio_views) if view else clip
                for start in window_starts(length, size):
                    windows.append(repeat_pad(shifted[start : start + size], size))
                    owners.append(index)
        return np.stack(windows).astype(np.float32, copy=False), owners

    def embed_audio(
        self,
        waveform: AudioInput,
        sample_rate: float,
        *,
        batch_size: int = 16,
        normalize_level: bool = True,
    ) -> torch.Tensor:
        """L2-normalised audio embeddings, one per clip.

        Args:
            waveform: One clip ``(time,)``, a batch ``(batch, time)`` or
                ``(batch, channels, time)``, or a list of clips of any lengths.
            sample_rate: Rate of ``waveform`` in Hz, a whole number (``16000`` or ``16000.0``);
                it is resampled as needed.
            batch_size: Windows per forward pass, at least 1.
            normalize_level: Scale each clip to :data:`REFERENCE_RMS` first.

        Returns:
            float32 on the CPU.

        Raises:
            AudioError: See :meth:`prepare_windows`.
            ConfigError: ``batch_size`` is not a whole number >= 1.

        Shape:
            - output: ``(batch, dim)``
        """
        check_batch_size(batch_size)
        windows, owners = self.prepare_windows(
            waveform, sample_rate, normalize_level=normalize_level
        )
        emb = self.embed_windows(windows, batch_size=batch_size)
        owner = torch.tensor(owners)
        count = int(owner.max()) + 1
        total = torch.zeros(count, emb.shape[-1]).index_add_(0, owner, emb)
        return nn.functional.normalize(total, dim=-1)

    def embed_windows(self, windows: np.ndarray, *, batch_size: int = 16) -> torch.Tensor:
        """L2-normalised embeddings of prepared windows (see :meth:`prepare_windows`), batched.

        Raises:
            ConfigError: ``batch_size`` is not a whole number >= 1.

        Shape:
            - windows: ``(num_windows, window_samples)`` at :attr:`sample_rate`
            - output: ``(num_windows, dim)``, float32 on the CPU
        """
        parts = []
        step = check_batch_size(batch_size)
        with torch.inference_mode():
            for start in range(0, len(windows), step):
                chunk = np.ascontiguousarray(windows[start : start + step])
                emb = self._embed_windows(torch.from_numpy(chunk).to(self.device)).float()
                self._check_finite(emb, "audio")
                parts.append(nn.functional.normalize(emb, dim=-1).cpu())
        return torch.cat(parts)

    def _check_finite(self, emb: torch.Tensor, what: str) -> None:
        """Never score with NaN: a broken model would pass for one that finds no match."""
        if not torch.isfinite(emb).all():
            raise CheckpointError(
                f"{self.name or 'the audio-text model'} gave NaN or infinite {what} embeddings "
                "from finite input: its weights are broken (a diverged training run, or a "
                "damaged file)"
            )

    def embed_text(self, texts: str | Sequence[str], *, batch_size: int = 64) -> torch.Tensor:
        """L2-normalised text embeddings, one per text.

        Raises:
            QueryError: No text, or an empty or overlong one.
            ConfigError: ``batch_size`` is not a whole number >= 1.

        Shape:
            - output: ``(len(texts), dim)``
        """
        step = check_batch_size(batch_size)
        items = validate_queries(texts)
        parts = []
        with torch.inference_mode():
            for start in range(0, len(items), step):
                emb = self._embed_texts(items[start : start + step]).float()
                self._check_finite(emb, "text")
                parts.append(nn.functional.normalize(emb, dim=-1).cpu())
        if not parts:  # pragma: no cover - validate_queries refuses empty lists
            raise QueryError("no text given")
        return torch.cat(parts)

    def score(
        self,
        waveform: AudioInput,
        sample_rate: float,
        texts: str | Sequence[str],
        **audio_options: Any,
    ) -> torch.Tensor:
        """ATS of every (clip, text) pair: the cosine of their embeddings.

        Shape:
            - output: ``(num_clips, num_texts)``
        """
        audio = self.embed_audio(waveform, sample_rate, **audio_options)
        text = self.embed_text(texts)
        return audio @ text.T
