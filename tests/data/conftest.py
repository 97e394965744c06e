"""Fixtures of the data tests: tiny audio files written in the real dataset layouts."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from querysep.data import Clip

SR = 8000


def tone(freq: float, seconds: float = 0.5, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def write_audio() -> Callable[..., Path]:
    """Write a short tone (or given samples) to ``path``; returns the path."""

    def write(
        path: Path,
        freq: float = 440.0,
        seconds: float = 0.5,
        sr: int = SR,
        samples: np.ndarray | None = None,
    ) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = tone(freq, seconds, sr) if samples is None else samples
        sf.write(path, data, sr)
        return path

    return write


@pytest.fixture
def write_csv() -> Callable[[Path, Sequence[str], Sequence[Sequence[object]]], Path]:
    def write(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
        return path

    return write


@pytest.fixture
def labelled_clips(tmp_path: Path, write_audio: Callable[..., Path]) -> list[Clip]:
    """Twelve clips of 0.3-1.2 s in four classes (three each), each class its own pitch."""
    clips = []
    for c, label in enumerate(["dog", "rain", "siren", "chirping_birds"]):
        for k in range(3):
            seconds = 0.3 + 0.3 * k + 0.05 * c
            path = write_audio(
                tmp_path / "audio" / f"{label}_{k}.wav", freq=200.0 * (c + 1), seconds=seconds
            )
            clips.append(
                Clip(
                    id=path.stem,
                    audio=str(path),
                    duration=seconds,
                    sample_rate=SR,
                    captions=[f"a {label.replace('_', ' ')} sound", f"{label} number {k}"],
                    labels=[label],
                    source="test",
                    split="train" if k < 2 else "validation",
                )
            )
    return clips
