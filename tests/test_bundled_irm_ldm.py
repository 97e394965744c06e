"""The bundled System 3 model ``irm-ldm-esc50``: checked on load, and it separates by query."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")

from querysep import Separator, pretrained
from querysep.audio import load_audio
from querysep.data.mixing import make_dcase_mixture
from querysep.errors import CheckpointError
from querysep.metrics import sdr, si_sdr

FIXTURES = Path(__file__).parent / "fixtures" / "esc50"
NAME = "irm-ldm-esc50"


@pytest.fixture(scope="module")
def system3() -> Separator:
    return Separator(NAME)


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dog, _ = load_audio(FIXTURES / "4-182395-A-0.flac", 16000, mono=True)
    rain, _ = load_audio(FIXTURES / "4-160999-A-10.flac", 16000, mono=True)
    mixture, dog_scaled = make_dcase_mixture(dog[0], rain[0], 0)
    return mixture, dog_scaled, mixture - dog_scaled


def test_listed_and_loaded_with_its_bundled_vae(system3: Separator) -> None:
    assert NAME in [m.name for m in pretrained.list_models()]
    net = system3.model.net
    assert system3.model.metadata["name"] == NAME
    assert net.config.ldm == "esc50-melvae"  # the bundled VAE, by name, not a path
    assert net.config.output == "phase-preserving"
    assert system3.sample_rate == 16000


def test_query_selects_the_source(system3: Separator, scene) -> None:
    mixture, dog, rain = scene
    est = system3.separate_tensor(mixture, 16000, ["a dog barking", "rain falling"]).numpy()
    est = est[:, 0]
    # each query improves its own source (SDR and SI-SDR: it separates, not just turns the
    # volume down), and the wrong query does not give the other source
    assert sdr(dog, est[0]) - sdr(dog, mixture) > 2.0
    assert si_sdr(dog, est[0]) > si_sdr(dog, mixture) + 2.0
    assert sdr(rain, est[1]) - sdr(rain, mixture) > 2.0
    assert sdr(dog, est[1]) < sdr(dog, est[0]) - 4.0


@pytest.mark.parametrize("part", ["weights", "vae"])
def test_corrupt_bundled_files_are_refused(monkeypatch: pytest.MonkeyPatch, part: str) -> None:
    info = pretrained._MODELS[NAME]
    if part == "weights":
        broken = dataclasses.replace(info, sha256="0" * 64)
    else:
        broken = dataclasses.replace(
            info, extra_files=tuple((path, "0" * 64) for path, _ in info.extra_files)
        )
    monkeypatch.setitem(pretrained._MODELS, NAME, broken)
    with pytest.raises(CheckpointError, match="corrupt"):
        pretrained.load_model(NAME)
