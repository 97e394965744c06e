"""Audio input/output: loading, saving, resampling and streaming of sound files."""

from __future__ import annotations

from .io import (
    MAX_CHANNELS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    RESAMPLE_QUALITY,
    SILENT_PEAK,
    AudioInfo,
    StreamResampler,
    audio_info,
    iter_audio_blocks,
    load_audio,
    resample,
)
from .writer import AudioWriter, commit_writers, save_audio, supported_save_extensions

__all__ = [
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "RESAMPLE_QUALITY",
    "SILENT_PEAK",
    "AudioInfo",
    "AudioWriter",
    "StreamResampler",
    "audio_info",
    "commit_writers",
    "iter_audio_blocks",
    "load_audio",
    "resample",
    "save_audio",
    "supported_save_extensions",
]
