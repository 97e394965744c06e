"""Systems: the registry, the oracle IRM and systems that run at their own rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from querysep.errors import ConfigError, ModelNotFoundError
from querysep.evaluation import (
    MixtureSystem,
    ModelSystem,
    OracleIRM,
    System,
    evaluate,
    make_system,
    register_system,
    resolve_systems,
)
from querysep.evaluation import systems as systems_module

from .conftest import SR, ValSet


def test_registry_and_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(systems_module, "_REGISTRY", dict(systems_module._REGISTRY))
    seen = []

    def factory(argument, options):
        seen.append(argument)
        return MixtureSystem(name=f"const-{argument}")

    register_system("const-test", factory)
    assert make_system("const-test:3").name == "const-3"
    assert seen == ["3"]
    assert isinstance(make_system("mixture"), System)
    model = make_system("model:test-tiny")
    assert isinstance(model, ModelSystem) and model.name == "test-tiny" and model.is_test_model
    assert make_system("test-tiny").sample_rate == 16000
    with pytest.raises(ModelNotFoundError):
        make_system("no-such-model")
    with pytest.raises(ConfigError, match="named 'mixture'"):
        resolve_systems(["mixture", MixtureSystem()])
    names = [s.name for s in resolve_systems([MixtureSystem("x")])]
    assert names == ["mixture", "x", "oracle-irm"]


def test_oracle_irm_bounds() -> None:
    rng = np.random.default_rng(0)
    mixture = (0.3 * rng.standard_normal(4000)).astype(np.float32)
    oracle = OracleIRM.from_model("test-tiny")
    assert (oracle.stft.n_fft, oracle.stft.hop_length, oracle.sample_rate) == (256, 64, 16000)
    whole = oracle.separate(mixture, SR, "q", target=mixture)  # mask 1 everywhere
    np.testing.assert_allclose(whole, mixture, atol=1e-5)
    none = oracle.separate(mixture, SR, "q", target=np.zeros_like(mixture))  # mask 0
    np.testing.assert_allclose(none, 0.0, atol=1e-7)
    short = oracle.separate(mixture[:50], SR, "q", target=mixture[:50])  # < n_fft / 2
    assert short.shape == (50,)
    with pytest.raises(ConfigError):
        oracle.separate(mixture, SR, "q", target=None)


def test_system_at_its_own_rate(valset: ValSet, tmp_path: Path) -> None:
    class Narrow:
        name = "narrow"
        sample_rate = 8000

        def __init__(self) -> None:
            self.rates: set[int] = set()

        def separate(self, mixture, sample_rate, query, *, target):
            self.rates.add(sample_rate)
            assert target is not None and target.shape == mixture.shape
            return target

    system = Narrow()
    summary = evaluate(
        valset.mixture_list,
        valset.audio_dir,
        [system],
        tmp_path / "out",
        progress=False,
        baselines=False,
    )
    assert system.rates == {8000}
    assert summary.scores["narrow"]["n"] == 4
    assert summary.scores["narrow"]["sdri"] > 5.0  # band-limited target, still far above mixture
