"""The bundled System 3 model ``irm-ldm-esc50``: checked on load, and it separates by query."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")

from querysep import Separator, pretrained
from querysep.app.service import AppConfig
from querysep.errors import CheckpointError, ModelNotFoundError
from querysep.metrics import sdr, si_sdr
from querysep.models.irm_ldm.loader import component_network
from tests.test_default_model import dog_and_rain

FIXTURES = Path(__file__).parent / "fixtures" / "esc50"
NAME = "irm-ldm-esc50"


@pytest.fixture(scope="module")
def system3() -> Separator:
    return Separator(NAME)


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return dog_and_rain()


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


def test_its_bundled_vae_wins_over_a_folder_of_the_same_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = Path(str(resources.files("querysep") / "weights" / "esc50-melvae")).resolve()
    decoy = tmp_path / "esc50-melvae"
    shutil.copytree(bundled, decoy)
    monkeypatch.chdir(tmp_path)
    for spec in (NAME, f"irm-ldm:{NAME}"):
        net = pretrained.load_model(spec).net
        assert net.folder.root.resolve() == bundled
    oracle = component_network(NAME)
    assert oracle.folder.root.resolve() == bundled


def test_a_missing_bundled_file_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    info = pretrained._MODELS[NAME]
    broken = dataclasses.replace(info, extra_files=(("esc50-melvae/vae/gone.bin", "0" * 64),))
    monkeypatch.setitem(pretrained._MODELS, NAME, broken)
    with pytest.raises(CheckpointError, match=r"incomplete: esc50-melvae/vae/gone.bin is missing"):
        pretrained.load_model(NAME)


def test_without_diffusers_it_is_named_but_not_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "diffusers" else real(name, *a),
    )
    assert pretrained._MODELS[NAME].missing == ["diffusers"]
    with pytest.raises(ModelNotFoundError, match=r"needs diffusers.*querysep\[gen\]"):
        pretrained.load_model(NAME)
    assert NAME not in AppConfig().model_choices
    assert "esc50-minilm" in AppConfig().model_choices
