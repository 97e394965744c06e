"""Synthetic training data: sine targets, noise interferers, a manifest and a DCASE list."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from querysep.data.manifest import Clip, MixtureRow, write_manifest, write_mixture_list

SAMPLE_RATE = 8000
TINY_NETWORK: dict[str, Any] = {
    "type": "resunet",
    "config": {
        "sample_rate": SAMPLE_RATE,
        "n_fft": 256,
        "hop_length": 64,
        "channels": [8, 16, 16],
        "pre_channels": 8,
        "downsample": [[2, 2], [2, 2], [1, 2]],
    },
}


def write_sine_noise_data(root: Path, num_sines: int = 4, num_noises: int = 4) -> dict[str, Path]:
    """Sines (captioned targets) and white noises (uncaptioned interferers), 1 s each.

    Returns paths ``manifest``, ``audio_dir`` and ``mixtures`` (a 4-row DCASE list).
    """
    audio_dir = root / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    clips = []
    for i in range(num_sines):
        path = audio_dir / f"sine{i}.wav"
        sf.write(path, 0.5 * np.sin(2 * np.pi * (300 + 150 * i) * t), SAMPLE_RATE)
        clips.append(
            Clip(
                id=f"sine{i}",
                audio=str(path),
                captions=["a sine tone"],
                labels=["sine"],
                split=f"fold{i % 2 + 1}",
            )
        )
    for i in range(num_noises):
        path = audio_dir / f"noise{i}.wav"
        sf.write(path, rng.uniform(-0.3, 0.3, SAMPLE_RATE), SAMPLE_RATE)
        clips.append(Clip(id=f"noise{i}", audio=str(path), split=f"fold{i % 2 + 1}"))
    manifest = root / "train.jsonl"
    write_manifest(clips, manifest)
    rows = [
        MixtureRow(
            "a sine tone",
            source=f"sine{i % num_sines}",
            noise=f"noise{i % num_noises}",
            snr=float(i - 2),
        )
        for i in range(4)
    ]
    mixtures = root / "val.csv"
    write_mixture_list(rows, mixtures)
    return {"manifest": manifest, "audio_dir": audio_dir, "mixtures": mixtures}


def tiny_config(data: dict[str, Path], output_dir: Path, **trainer: Any) -> dict[str, Any]:
    """A config dict that trains the tiny network on the synthetic data in seconds."""
    return {
        "model": {"network": TINY_NETWORK, "text_encoder": {"kind": "hashing", "dim": 16}},
        "data": {
            "train": [{"manifest": str(data["manifest"])}],
            "validation": {"mixtures": str(data["mixtures"]), "audio_dir": str(data["audio_dir"])},
            "segment_seconds": 0.5,
            "batch_size": 4,
            "num_workers": 0,
        },
        "optim": {"lr": 3e-3, "warmup_steps": 0},
        "trainer": {
            "output_dir": str(output_dir),
            "max_steps": 30,
            "val_every_n_steps": 30,
            "checkpoint_every_n_steps": 10,
            "log_every_n_steps": 1,
            "accelerator": "cpu",
            "devices": 1,
            "precision": "32",  # the same on every CPU (auto picks bf16 where it is native)
            "progress_bar": False,
            **trainer,
        },
    }


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: bit-exact runs, and no spinning threads on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def sine_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_sine_noise_data(tmp_path_factory.mktemp("sine-data"))


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
