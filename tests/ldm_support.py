"""Shared pieces of the IRM-LDM tests: tiny AudioLDM folders and a two-source mixture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("diffusers")

from querysep.models import HashingTextEncoder, TextQueriedSeparator
from querysep.models.irm_ldm import IrmLdm, IrmLdmConfig
from querysep.testing.ldm import (
    TEXT_DIM,
    identity_vae,
    tiny_audioldm_folder,
    tiny_irm_ldm_config,
)

SR = 16000


@pytest.fixture(scope="session")
def tiny_ldm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every AudioLDM part, tiny and random, in the diffusers layout."""
    return tiny_audioldm_folder(tmp_path_factory.mktemp("audioldm") / "tiny")


@pytest.fixture(scope="session")
def identity_ldm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``vae/`` only: the hand-set identity VAE."""
    folder = tmp_path_factory.mktemp("audioldm") / "identity"
    return tiny_audioldm_folder(folder, ["vae"], vae=identity_vae())


def build(ldm: Path, **overrides: Any) -> IrmLdm:
    """An IRM-LDM network on ``ldm`` (tiny mask network)."""
    return IrmLdm(IrmLdmConfig.from_dict(tiny_irm_ldm_config(ldm, **overrides))).eval()


def separator(ldm: Path, **overrides: Any) -> TextQueriedSeparator:
    return TextQueriedSeparator(build(ldm, **overrides), HashingTextEncoder(TEXT_DIM)).eval()


def two_sources(seconds: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A low tone (the target) and high-passed noise (the interference), in separate bands."""
    t = np.arange(round(seconds * SR)) / SR
    target = 0.4 * np.sin(2 * np.pi * 330.0 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t))
    rng = np.random.default_rng(0)
    white = rng.standard_normal(t.size)
    noise = 0.2 * np.diff(np.diff(white, prepend=0.0), prepend=0.0)  # tilted to high bands
    return target.astype(np.float32), noise.astype(np.float32)
