"""Systems: the registry, the oracle IRM and systems that run at their own rate."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

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

from .conftest import SR, ValSet, ref_irm, ref_irm_mask


def test_registry_and_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(systems_module, "_REGISTRY", dict(systems_module._REGISTRY))
    seen = []

    def factory(argument, options):
        seen.append(argument)
        return MixtureSystem(name=f"const-{argument}")

    register_system("const-test", factory)
    assert make_system("const-test:3").name == "const-3"
    assert seen == ["3"]
    mixture_system = make_system("mixture")
    assert isinstance(mixture_system, System)
    x = np.random.default_rng(0).standard_normal(3000).astype(np.float32)
    np.testing.assert_array_equal(mixture_system.separate(x, SR, "q", target=None), x)
    model = make_system("model:test-tiny")
    assert isinstance(model, ModelSystem) and model.name == "test-tiny" and model.is_test_model
    estimate = model.separate(x, SR, "a dog", target=np.zeros_like(x))  # target ignored
    assert estimate.dtype == np.float32 and estimate.shape == x.shape
    want = model.separator.separate_tensor(x, SR, "a dog")[0, 0].numpy()
    np.testing.assert_allclose(estimate, want, rtol=0, atol=1e-7)
    assert np.abs(estimate - x).max() > 1e-3  # the model did something
    assert make_system("test-tiny").sample_rate == 16000
    with pytest.raises(ModelNotFoundError):
        make_system("no-such-model")
    with pytest.raises(ConfigError, match="named 'mixture'"):
        resolve_systems(["mixture", MixtureSystem()])
    names = [s.name for s in resolve_systems([MixtureSystem("x")])]
    assert names == ["mixture", "x", "oracle-irm"]
    for spec in ("mixture:", " mixture", "oracle-irm "):  # spelled otherwise, one row each
        names = [s.name for s in resolve_systems([spec, "test-tiny"], reference=True)]
        assert sorted(names) == ["mixture", "oracle-irm", "reference", "test-tiny"], spec


def _tone_and_noise(length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(mixture, target): a 440 Hz tone plus a noise burst fading in and out, in white noise.

    Target and interference overlap in time and frequency, so the mask takes values all over
    ``[0, 1]``, where the IRM definitions differ.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(length) / SR
    envelope = np.sin(np.pi * np.arange(length) / length) ** 2
    target = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.3 * envelope * rng.standard_normal(length)
    noise = 0.2 * rng.standard_normal(length)
    return (target + noise).astype(np.float32), target.astype(np.float32)


def test_oracle_irm_is_the_documented_mask() -> None:
    # OracleIRM documents M = sqrt(|S|^2 / (|S|^2 + |N|^2)) applied to the mixture's STFT;
    # the reference is written out with torch.stft / torch.istft in conftest.ref_irm.
    mixture, target = _tone_and_noise(4001)
    for oracle, (n_fft, hop) in [
        (OracleIRM.from_model("test-tiny"), (256, 64)),
        (OracleIRM(512, 128), (512, 128)),
    ]:
        assert (oracle.stft.n_fft, oracle.stft.hop_length) == (n_fft, hop)
        want_mask = ref_irm_mask(target, mixture, n_fft, hop).T  # (frames, bins)
        tgt = torch.from_numpy(target)
        mask = oracle.mask(tgt, torch.from_numpy(mixture) - tgt).numpy()
        np.testing.assert_allclose(mask, want_mask, atol=2e-5)  # float32 STFT
        assert mask.min() >= 0.0 and mask.max() <= 1.0
        assert np.mean((mask > 0.1) & (mask < 0.9)) > 0.3  # mostly neither pass nor stop
        estimate = oracle.separate(mixture, SR, "q", target=target)
        assert estimate.dtype == np.float32 and estimate.shape == mixture.shape
        want = ref_irm(target, mixture, n_fft, hop)
        np.testing.assert_allclose(estimate, want, atol=2e-6)
        # The other common definitions differ from it by far more than the tolerance above.
        x = torch.stft(
            torch.from_numpy(mixture.astype(np.float64)),
            n_fft,
            hop,
            window=torch.hann_window(n_fft, periodic=True, dtype=torch.float64),
            return_complex=True,
        )
        power = want_mask.T**2  # |S|^2 / (|S|^2 + |N|^2), without the square root
        for other in (power, np.sqrt(power) / (np.sqrt(power) + np.sqrt(1 - power) + 1e-12)):
            alt = torch.istft(
                torch.from_numpy(other) * x,
                n_fft,
                hop,
                window=torch.hann_window(n_fft, periodic=True, dtype=torch.float64),
                length=len(mixture),
            ).numpy()
            assert np.abs(alt - want).max() > 0.02


def test_oracle_irm_bounds() -> None:
    rng = np.random.default_rng(0)
    mixture = (0.3 * rng.standard_normal(4000)).astype(np.float32)
    oracle = OracleIRM.from_model("test-tiny")
    assert (oracle.stft.n_fft, oracle.stft.hop_length, oracle.sample_rate) == (256, 64, 16000)
    whole = oracle.separate(mixture, SR, "q", target=mixture)  # mask 1 everywhere
    np.testing.assert_allclose(whole, mixture, atol=1e-5)
    none = oracle.separate(mixture, SR, "q", target=np.zeros_like(mixture))  # mask 0
    np.testing.assert_allclose(none, 0.0, atol=1e-7)
    with pytest.raises(ConfigError):
        oracle.separate(mixture, SR, "q", target=None)
    with pytest.raises(ConfigError, match=r"1 <= hop <= n_fft / 2, got 256/192"):
        OracleIRM(256, 192)  # the inverse STFT would divide by a near-zero window overlap


@pytest.mark.parametrize("length", [1, 50, 128])
def test_oracle_irm_on_clips_shorter_than_half_a_frame(length: int) -> None:
    # Documented: clips too short for reflect padding (<= n_fft / 2 = 128 samples here) are
    # zero-padded, masked, and cut back, so a target equal to the mixture passes it unchanged.
    oracle = OracleIRM.from_model("test-tiny")
    mixture, target = _tone_and_noise(4000, seed=length)
    mixture, target = mixture[1000 : 1000 + length], target[1000 : 1000 + length]
    same = oracle.separate(mixture, SR, "q", target=mixture)
    assert same.shape == (length,)
    np.testing.assert_allclose(same, mixture, atol=1e-6)
    part = oracle.separate(mixture, SR, "q", target=target)
    np.testing.assert_allclose(part, ref_irm(target, mixture, 256, 64), atol=2e-6)


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


def test_a_bundled_models_digest_reuses_the_checked_sha256(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hashlib

    import querysep.models.separator as separator_module
    from querysep.pretrained import list_models

    info = next(m for m in list_models() if m.name == "esc50-minilm")
    config = Path(str(resources.files("querysep") / "weights" / "esc50-minilm" / "config.json"))
    hashed: list[str] = []
    real = separator_module.sha256_file

    def counted(path: Path) -> str:
        hashed.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(separator_module, "sha256_file", counted)
    system = ModelSystem("esc50-minilm")
    assert hashed == []  # the weights and config.json were checked on loading: not read again
    both = sorted([info.sha256, hashlib.sha256(config.read_bytes()).hexdigest()])
    expected = hashlib.sha256("\n".join(both).encode()).hexdigest()[:16]
    assert system.settings["weights_sha256"] == expected
