"""IRM-LDM (System 3): front end, components, output paths, losses, persistence, loading."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from querysep.api import Separator
from querysep.errors import CheckpointError, ConfigError, ModelNotFoundError
from querysep.metrics import get_metrics
from querysep.models.irm_ldm import IrmLdmConfig, MelFrontEnd, peak_gain
from querysep.models.irm_ldm.mel import LOG_FLOOR, slaney_filterbank
from querysep.models.separator import TextQueriedSeparator
from querysep.pretrained import load_model
from querysep.testing.ldm import TEXT_DIM, tiny_audioldm_folder, tiny_vocoder
from tests.ldm_support import SR, build, separator, two_sources

# ----------------------------------------------------------------------------- front end


def _slaney_hz(mel: float) -> float:
    """Slaney's mel scale, inverted (linear below 1 kHz, logarithmic above)."""
    return 200.0 * mel / 3 if mel < 15 else 1000.0 * math.exp(math.log(6.4) / 27 * (mel - 15))


def test_filterbank_is_slaney_scale_and_slaney_normalised() -> None:
    bank = slaney_filterbank(SR, 1024, 64, 0.0, 8000.0)  # (513, 64)
    assert bank.shape == (513, 64)
    top = 15 + 27 * math.log(8000 / 1000) / math.log(6.4)  # 8 kHz on the Slaney scale
    edges = [_slaney_hz(top * k / 65) for k in range(66)]
    freqs = np.linspace(0, SR / 2, 513)
    for m in (0, 10, 30, 63):
        peak = freqs[int(bank[:, m].argmax())]
        assert abs(peak - edges[m + 1]) <= SR / 1024  # within one bin of the filter's centre
        height = 2.0 / (edges[m + 2] - edges[m])  # Slaney's area normalisation
        assert float(bank[:, m].max()) == pytest.approx(height, rel=0.25)


def test_log_mel_is_audioldm_definition() -> None:
    front = MelFrontEnd()
    silence = torch.zeros(1, 1600)
    spec = front.spectrogram(silence)
    assert spec.shape == (1, 1600 // 160 + 1, 513)  # centred frames
    assert torch.equal(front.log_mel(spec), torch.full((1, 11, 64), LOG_FLOOR))
    t = torch.arange(SR) / SR
    tone = 0.5 * torch.sin(2 * math.pi * 1000.0 * t)[None]
    mel = front.log_mel(front.spectrogram(tone))
    expected = (front.bank[round(1000 / (SR / 1024))]).argmax()  # the band 1 kHz peaks in
    assert int(mel[0, 50].argmax()) == int(expected)
    manual = torch.log((front.spectrogram(tone).abs() @ front.bank).clamp_min(1e-5))
    torch.testing.assert_close(mel, manual)


def test_peak_gain_scales_to_half_and_survives_silence() -> None:
    x = torch.tensor([[0.0, -0.2, 0.1], [0.0, 0.0, 0.0]])
    gain = peak_gain(x)
    assert float((x[0] * gain[0]).abs().max()) == pytest.approx(0.5)
    assert torch.isfinite(gain).all()


def test_equal_mels_give_a_unit_stft_mask_and_ratios_are_clamped() -> None:
    front = MelFrontEnd()
    mask = front.stft_mask(torch.zeros(2, 5, 64))
    torch.testing.assert_close(mask, torch.ones(2, 5, 513))
    assert float(front.stft_mask(torch.full((1, 1, 64), 3.0)).max()) == 1.0
    assert float(front.stft_mask(torch.full((1, 1, 64), -50.0)).max()) < 1e-20


# ----------------------------------------------------------------------------- components


def test_components_load_back_from_the_diffusers_layout(tiny_ldm: Path) -> None:
    from diffusers import AutoencoderKL

    net = build(tiny_ldm)
    saved = AutoencoderKL.from_pretrained(str(tiny_ldm), subfolder="vae")
    torch.testing.assert_close(net.vae.encoder.conv_in.weight, saved.encoder.conv_in.weight)
    assert net.has_vocoder and net.output_label == "vocoder"
    assert net.vae_factor == 2
    assert not any(p.requires_grad for p in net.vae.parameters())
    # The frozen parts stay out of the parameters and the state dict: only the mask network.
    assert all(k.startswith("mask_net.") for k in net.state_dict())
    assert sum(p.numel() for p in net.parameters()) == sum(
        p.numel() for p in net.mask_net.parameters()
    )


def test_missing_parts_give_one_line_errors(tmp_path: Path, tiny_ldm: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not found"):
        build(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError, match=r"no vae/config.json \(the mel VAE"):
        build(empty)
    vae_only = tiny_audioldm_folder(tmp_path / "vae-only", ["vae"])
    net = build(vae_only, ldm_loss="sds")
    assert net.output_label == "griffin-lim"  # vocoder asked for, no weights: said so
    with pytest.raises(ModelNotFoundError, match=r"no unet/config.json"):
        net.prepare_training()


def test_vocoder_for_another_front_end_is_refused(tmp_path: Path) -> None:
    folder = tiny_audioldm_folder(tmp_path / "ldm", ["vae"])
    vocoder = tiny_vocoder()
    vocoder.config.sampling_rate = 22050
    vocoder.save_pretrained(str(folder / "vocoder"))
    with pytest.raises(CheckpointError, match="22050 Hz audio"):
        build(folder)


def test_vae_trained_on_another_front_end_is_refused(tmp_path: Path) -> None:
    folder = tiny_audioldm_folder(tmp_path / "ldm", ["vae"])
    info = {"front_end": {"sample_rate": 16000, "hop_length": 256, "n_mels": 64}}
    (folder / "querysep_vae.json").write_text(json.dumps(info), encoding="utf-8")
    with pytest.raises(ConfigError, match="hop_length 256"):
        build(folder)


def test_missing_diffusers_names_the_gen_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from querysep.models.irm_ldm import require_diffusers

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "diffusers" else real(name)
    )
    with pytest.raises(ModelNotFoundError, match=r"querysep\[gen\]"):
        require_diffusers()


@pytest.mark.parametrize(
    ("field", "value", "expect"),
    [
        ("mask_activation", "relu", "mask_activation"),
        ("output", "hifigan", "output"),
        ("ldm_loss", "l2", "ldm_loss"),
        ("ldm", "", "ldm must name"),
        ("downsample", [[2, 2]], "1 downsample factors"),
        # front ends the mel filters cannot be built for (transformers raised ValueError, a
        # huge n_mels built a filterbank for minutes)
        ("f_min", 9000.0, r"^f_min: must satisfy 0 <= f_min < f_max <= sample_rate / 2"),
        ("f_max", 20000.0, r"^f_max: .*\(8000\), got f_min 0 and f_max 20000"),
        ("hop_length", 2000, r"^hop_length: 2000 is more than n_fft \(1024\)"),
        ("n_mels", 10000, r"^n_mels: 10000 is more than the 513 FFT bins of n_fft 1024"),
        ("n_fft", 160, r"^n_fft: 160 gives FFT bins 100 Hz apart, too coarse for 64 mel bands"),
        ("sample_rate", 1, r"^sample_rate: must be 8000\.\.384000 Hz, got 1"),
    ],
)
def test_bad_config_names_the_field(tiny_ldm: Path, field: str, value: object, expect: str):
    data = {"ldm": str(tiny_ldm), field: value}
    with pytest.raises(ConfigError, match=expect):
        IrmLdmConfig.from_dict(data)


# ----------------------------------------------------------------------------- output paths


def test_identity_mask_returns_the_mixture_through_the_phase_preserving_path(tiny_ldm: Path):
    net = build(tiny_ldm, output="phase-preserving", mask_activation="tanh", mask_bound=2.0)
    net.reset_mask_head()  # mask exactly 1: decoded(m * z) / decoded(z) = 1
    mixture = torch.from_numpy(np.sum(two_sources(0.5), axis=0))[None, None]
    with torch.no_grad():
        out = net(mixture, torch.randn(1, TEXT_DIM))
    torch.testing.assert_close(out, mixture, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("activation", "low", "high"), [("sigmoid", 0.0, 1.5), ("tanh", -1.5, 1.5)]
)
def test_mask_stays_in_its_bounds(tiny_ldm: Path, activation: str, low: float, high: float):
    net = build(tiny_ldm, mask_activation=activation, mask_bound=1.5)
    with torch.no_grad():
        net.mask_net.after_conv.weight.zero_()
        net.mask_net.after_conv.bias.fill_(40.0)
        top = net.mask_net(torch.randn(2, 4, 8, 32), torch.randn(2, TEXT_DIM))
        net.mask_net.after_conv.bias.fill_(-40.0)
        bottom = net.mask_net(torch.randn(2, 4, 8, 32), torch.randn(2, TEXT_DIM))
    assert float(top.max()) == pytest.approx(high) and float(bottom.min()) == pytest.approx(low)


def test_oracle_latent_mask_separates_through_the_phase_preserving_path(identity_ldm: Path):
    """With the target's own latent (an oracle mask), the phase-preserving output is close
    to the target; Griffin-Lim from the same mel is not (its phase is made up)."""
    target, noise = two_sources(1.0)
    mixture = target + noise
    net = build(identity_ldm, griffin_lim_iters=16)
    both = torch.from_numpy(np.stack([mixture, target]))[:, None]
    wave, length = net.prepare(both)
    gain = peak_gain(wave[:1])
    spec = net.front.spectrogram(wave * gain)
    with torch.no_grad():
        _, latent = net.encode(spec)  # the oracle mask turns latent[0] into latent[1]
        mels = net.decode(latent, spec.shape[1])
        results = {}
        for output in ("phase-preserving", "griffin-lim"):
            out = net.synthesize(mels[1:], spec[:1], length, mixture_mel=mels[:1], output=output)
            results[output] = get_metrics(mixture, target, (out / gain)[0].numpy())
    phase = results["phase-preserving"]
    assert phase["sdr"] > 15.0 and phase["sdri"] > 10.0 and phase["si_sdr"] > 15.0
    assert results["griffin-lim"]["si_sdr"] < phase["si_sdr"] - 20.0


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("loss", ["none", "x0", "sds"])
def test_forward_backward_with_each_latent_loss(tiny_ldm: Path, loss: str) -> None:
    torch.manual_seed(0)
    net = build(tiny_ldm, ldm_loss=loss, output="phase-preserving").train()
    net.prepare_training()
    mixture = torch.randn(2, 1, 4000) * 0.1
    target = mixture * 0.3
    estimate, terms = net.forward_train(mixture, torch.randn(2, TEXT_DIM), target)
    assert estimate.shape == mixture.shape
    total = (estimate - target).pow(2).mean() + sum(terms.values(), torch.tensor(0.0))
    total.backward()
    assert set(terms) == (set() if loss == "none" else {"latent_loss"})
    grads = [p.grad for p in net.mask_net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)
    for module in net._frozen.values():
        assert all(p.grad is None for p in module.parameters())


def test_sds_gradient_is_the_noise_residual(tiny_ldm: Path) -> None:
    """Score distillation: d loss / d latent is (predicted - true noise) / numel."""
    net = build(tiny_ldm, ldm_loss="sds")
    latent = torch.randn(1, 4, 8, 32, requires_grad=True)
    torch.manual_seed(3)
    loss = net._sds_loss(latent, torch.randn(1, TEXT_DIM))
    loss.backward()
    assert latent.grad is not None and float(latent.grad.abs().sum()) > 0
    expected = float((latent.grad * latent.numel()).pow(2).mean())
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-4)


def test_sds_needs_the_unets_condition_size(tiny_ldm: Path) -> None:
    net = build(tiny_ldm, ldm_loss="sds", condition_dim=TEXT_DIM + 1)
    with pytest.raises(ConfigError, match="CLAP embedding"):
        net.prepare_training()


def test_x0_loss_vanishes_when_the_mask_gives_the_target_latent(tiny_ldm: Path) -> None:
    net = build(tiny_ldm, ldm_loss="x0", mask_activation="tanh", mask_bound=2.0)
    net.reset_mask_head()  # estimate latent = mixture latent
    mixture = torch.randn(1, 1, 4000) * 0.1
    _, terms = net.forward_train(mixture, torch.randn(1, TEXT_DIM), mixture)
    assert float(terms["latent_loss"].detach()) < 1e-8


# ----------------------------------------------------------------------------- persistence


def test_save_load_round_trip_and_relative_ldm(tmp_path: Path, tiny_ldm: Path) -> None:
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_ldm, folder / "audioldm")
    model = separator(folder / "audioldm", output="griffin-lim")
    model.net.config.ldm = "audioldm"  # relative: found in the model folder itself
    model.save_pretrained(folder)
    loaded = TextQueriedSeparator.from_pretrained(folder)
    x = torch.randn(2, 1, 3000) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, ["a dog", "rain"]), model(x, ["a dog", "rain"]))


def test_batch_output_equals_single_items(tiny_ldm: Path) -> None:
    model = separator(tiny_ldm, output="phase-preserving")
    x = torch.randn(2, 1, 3000) * torch.tensor([0.05, 0.3])[:, None, None]
    with torch.no_grad():
        batch = model(x, ["a dog", "rain"])
        single = torch.cat([model(x[i : i + 1], [q]) for i, q in enumerate(["a dog", "rain"])])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-4)


def test_irm_ldm_kind_loads_a_folder_with_an_output(tmp_path: Path, tiny_ldm: Path) -> None:
    separator(tiny_ldm).save_pretrained(tmp_path / "model")
    model = load_model(f"irm-ldm:{tmp_path / 'model'}@phase-preserving")
    assert model.net.output_label == "phase-preserving"
    assert load_model(str(tmp_path / "model")).net.output_label == "vocoder"
    with pytest.raises(ModelNotFoundError, match="IRM-LDM model folder not found"):
        load_model(f"irm-ldm:{tmp_path / 'nowhere'}")
    load_model("test-tiny").save_pretrained(tmp_path / "resunet")
    with pytest.raises(ModelNotFoundError, match="'resunet' model, not an IRM-LDM one"):
        load_model(f"irm-ldm:{tmp_path / 'resunet'}")


def test_separator_segments_an_identity_model_back_to_the_mixture(tiny_ldm: Path) -> None:
    model = separator(tiny_ldm, output="phase-preserving", mask_activation="tanh", mask_bound=2.0)
    model.net.reset_mask_head()
    sep = Separator(model, segment_seconds=0.7, overlap_seconds=0.2)
    assert sep.model.net.alignment == 160 * 2 * 16
    mixture = np.sum(two_sources(2.0), axis=0)
    out = sep.separate_tensor(mixture, SR, "a tone")
    assert out.shape == (1, 1, mixture.size)
    np.testing.assert_allclose(out[0, 0].numpy(), mixture, atol=1e-4)


def _damage(path: Path, how: str) -> None:
    from safetensors.torch import load_file, save_file

    if how == "cut":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return
    state = load_file(str(path))
    if how == "missing":
        state.pop(sorted(state)[-1])
    else:  # "extra"
        state["bogus.weight"] = torch.zeros(2)
    save_file(state, str(path))


@pytest.mark.parametrize("how", ["cut", "missing", "extra"])
@pytest.mark.parametrize(
    "part", ["vae/diffusion_pytorch_model.safetensors", "vocoder/model.safetensors"]
)
def test_damaged_weights_are_refused_in_one_line_never_left_random(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], part: str, how: str
) -> None:
    """A cut file, a weight missing (which loading would leave at its random start) or one
    the part does not have: one CheckpointError line, and nothing else on the console."""
    folder = tiny_audioldm_folder(tmp_path / "ldm", ["vae", "vocoder"])
    _damage(folder / part, how)
    capfd.readouterr()
    with pytest.raises(CheckpointError) as info:
        build(folder)
    message = str(info.value)
    assert "\n" not in message and part.split("/")[0] in message
    assert {"cut": "cannot load", "missing": "missing", "extra": "unexpected"}[how] in message
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_missing_weights_file_is_one_line_on_the_console(tmp_path: Path) -> None:
    """diffusers logs a missing weights file as an error before raising it: the command line
    shows only querysep's line (in a fresh process, where the library's log handler lives)."""
    import subprocess
    import sys

    import soundfile as sf

    folder = tiny_audioldm_folder(tmp_path / "ldm", ["vae", "vocoder"])
    separator(folder).save_pretrained(tmp_path / "model")
    (folder / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    sf.write(tmp_path / "in.wav", 0.1 * np.random.default_rng(0).standard_normal(SR), SR)
    command = [sys.executable, "-m", "querysep", "separate", str(tmp_path / "in.wav")]
    command += ["-q", "a dog", "-m", f"irm-ldm:{tmp_path / 'model'}"]
    command += ["-o", str(tmp_path / "out.wav"), "--no-ats"]
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "safetensors weights are needed" in lines[0], run.stderr
    assert not (tmp_path / "out.wav").exists()


def test_a_resaved_model_still_finds_its_relative_ldm_and_keeps_its_output(
    tmp_path: Path, tiny_ldm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model whose ``ldm`` is relative, loaded with ``@OUTPUT`` and saved elsewhere (as a
    fine-tune's export does) loads again there, with the same output and the same answer."""
    import shutil

    shutil.copytree(tiny_ldm, tmp_path / "ldm")
    model = separator(tmp_path / "ldm")
    model.net.config.ldm = "../ldm"
    model.save_pretrained(tmp_path / "a")
    monkeypatch.chdir(tmp_path / "a")  # the relative path resolves from the model folder only
    loaded = load_model(f"irm-ldm:{tmp_path / 'a'}@phase-preserving")
    monkeypatch.chdir(tmp_path)
    loaded.save_pretrained(tmp_path / "deeper" / "b")  # "../ldm" means nothing from here
    again = load_model(str(tmp_path / "deeper" / "b"))
    assert again.net.output_label == "phase-preserving"
    assert json.loads((tmp_path / "deeper" / "b" / "config.json").read_text())["network"]["config"][
        "ldm"
    ] == str((tmp_path / "ldm").resolve())
    x = torch.randn(1, 1, 3000) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(again(x, ["a dog"]), loaded(x, ["a dog"]))
    # copied together with its AudioLDM folder inside it: the path from the model folder
    shutil.copytree(tmp_path / "ldm", tmp_path / "c" / "audioldm")
    inside = separator(tmp_path / "c" / "audioldm")
    inside.net.config.ldm = "audioldm"
    inside.save_pretrained(tmp_path / "c")
    saved = json.loads((tmp_path / "c" / "config.json").read_text())["network"]["config"]
    assert saved["ldm"] == "audioldm"
    shutil.copytree(tmp_path / "c", tmp_path / "moved")
    shutil.rmtree(tmp_path / "c")
    assert load_model(str(tmp_path / "moved")).net.folder.root.parent == tmp_path / "moved"


def test_a_broken_config_says_so_rather_than_naming_another_kind(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{bad", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"config.json is not valid JSON"):
        load_model(f"irm-ldm:{tmp_path / 'm'}")


def test_a_linked_ldm_inside_the_model_folder_stays_relative(
    tmp_path: Path, tiny_ldm: Path
) -> None:
    """``ldm`` naming a link inside the model folder (to a shared AudioLDM copy) is saved as
    that relative path, not as the link's target: the folder stays self-contained."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "audioldm").symlink_to(tiny_ldm, target_is_directory=True)
    model = separator(tmp_path / "model" / "audioldm")
    model.net.config.ldm = "audioldm"
    model.save_pretrained(tmp_path / "model")
    loaded = load_model(str(tmp_path / "model"))
    loaded.save_pretrained(tmp_path / "model")  # saved again in place
    saved = json.loads((tmp_path / "model" / "config.json").read_text())["network"]["config"]
    assert saved["ldm"] == "audioldm"
