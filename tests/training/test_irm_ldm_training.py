"""IRM-LDM and mel-VAE training: the shipped configs, a short run of each, export, resume."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import typer

from querysep.errors import CheckpointError, ConfigError, TrainingError
from querysep.pretrained import load_model
from querysep.testing.ldm import tiny_irm_ldm_config
from querysep.training import config_from_dict, load_config, train
from querysep.training.module import loss_function
from tests.ldm_support import TEXT_DIM

from .conftest import tiny_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_mse_loss_is_the_mean_squared_error() -> None:
    a, b = torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[0.0, 4.0]]])
    assert float(loss_function("mse")(a, b, None)) == pytest.approx(2.5)


def test_shipped_configs_validate() -> None:
    from querysep.training.melvae import MelVaeTrainConfig

    esc50 = load_config(CONFIGS / "irm-ldm-esc50.yaml")
    network = esc50.model.network or {}
    assert network["type"] == "irm-ldm"
    assert network["config"]["output"] == "phase-preserving"
    faithful = load_config(CONFIGS / "irm-ldm-audioldm.yaml").model.network or {}
    assert (faithful["config"]["output"], faithful["config"]["ldm_loss"]) == ("vocoder", "sds")
    vae = load_config(CONFIGS / "esc50-melvae.yaml", schema=MelVaeTrainConfig)
    assert vae.vae.factor == 2
    assert network["config"]["ldm"] == str(Path(vae.trainer.output_dir) / "model")


def test_bad_irm_ldm_key_in_a_config_names_it() -> None:
    with pytest.raises(ConfigError, match=r"model.network.config.mask_bound: must be > 0"):
        load_config(CONFIGS / "irm-ldm-esc50.yaml", ["model.network.config.mask_bound=0"])


def _irm_config(sine_data: dict[str, Path], tiny_ldm: Path, out: Path, **net: Any) -> Any:
    config = tiny_config(sine_data, out, max_steps=2, val_every_n_steps=2)
    config["model"] = {
        "network": {"type": "irm-ldm", "config": tiny_irm_ldm_config(tiny_ldm, **net)},
        "text_encoder": {"kind": "hashing", "dim": TEXT_DIM},
    }
    config["data"]["batch_size"] = 2
    config["optim"]["loss"] = "mse"
    return config_from_dict(config)


def test_training_exports_a_model_that_separates(
    sine_data: dict[str, Path], tiny_ldm: Path, tmp_path: Path
) -> None:
    config = _irm_config(
        sine_data, tiny_ldm, tmp_path / "run", ldm_loss="x0", output="phase-preserving"
    )
    result = train(config, echo=lambda _msg: None)
    assert result.step == 2 and result.exported is not None
    saved = json.loads((result.exported / "config.json").read_text(encoding="utf-8"))
    assert saved["network"]["config"]["ldm"] == str(tiny_ldm)
    log = (tmp_path / "run" / "logs" / "csv" / "metrics.csv").read_text(encoding="utf-8")
    assert "train/latent_loss" in log.splitlines()[0]
    # the checkpoint holds the mask network only, not the frozen AudioLDM parts
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(".vae." not in k and ".vocoder." not in k for k in ckpt["state_dict"])
    model = load_model(f"irm-ldm:{result.exported}")
    out = model(torch.randn(1, 1, 4000) * 0.1, ["a sine tone"])
    assert out.shape == (1, 1, 4000) and torch.isfinite(out).all()
    # resuming continues from last.ckpt
    again = train(
        config.model_copy(
            update={
                "trainer": config.trainer.model_copy(
                    update={"max_steps": 3, "val_every_n_steps": 3}
                )
            }
        ),
        echo=lambda _msg: None,
    )
    assert again.resumed_from == 2 and again.step == 3


def test_a_missing_ldm_folder_stops_training_before_anything_is_written(
    sine_data: dict[str, Path], tmp_path: Path
) -> None:
    config = _irm_config(sine_data, tmp_path / "nowhere", tmp_path / "run")
    with pytest.raises(Exception, match="was not found"):
        train(config, echo=lambda _msg: None)
    assert not (tmp_path / "run").exists()


def _tiny_vae_config(sine_data: dict[str, Path], out: Path, steps: int) -> Any:
    """A tiny mel-VAE run of ``steps`` steps, validated at the last one."""
    from querysep.training.melvae import MelVaeTrainConfig

    base = tiny_config(sine_data, out, max_steps=steps, val_every_n_steps=steps)
    return config_from_dict(
        {
            "vae": {"block_out_channels": [8, 8], "norm_num_groups": 4, "latent_channels": 4},
            "scale_batches": 1,
            "data": {**base["data"], "batch_size": 2},
            "optim": {"lr": 1e-3, "warmup_steps": 0},
            "trainer": base["trainer"],
        },
        schema=MelVaeTrainConfig,
    )


def test_mel_vae_training_exports_a_vae_irm_ldm_can_use(
    sine_data: dict[str, Path], tmp_path: Path
) -> None:
    from querysep.models.irm_ldm import IrmLdm, IrmLdmConfig
    from querysep.training.melvae import train_vae

    config = _tiny_vae_config(sine_data, tmp_path / "vae-run", steps=2)
    result = train_vae(config, echo=lambda _msg: None)
    assert result.exported is not None
    facts = json.loads((result.exported / "querysep_vae.json").read_text(encoding="utf-8"))
    assert facts["front_end"]["n_mels"] == 64 and facts["training"]["step"] == 2
    assert {"val/mel_l1", "val/sdri"} <= set(facts["training"]["validation"])
    vae_config = json.loads((result.exported / "vae" / "config.json").read_text("utf-8"))
    assert vae_config["scaling_factor"] == pytest.approx(1.0 / facts["latent_std"])
    net = IrmLdm(IrmLdmConfig.from_dict(tiny_irm_ldm_config(result.exported)))
    assert net.scaling_factor == pytest.approx(vae_config["scaling_factor"])
    assert net.output_label == "griffin-lim"  # a VAE-only folder has no vocoder
    # its last.ckpt resumes (the check before the run folder is touched accepts it) ...
    assert train_vae(config, echo=lambda _msg: None).step == 2
    # ... and one that is no checkpoint is refused in one line, before anything is written
    last = tmp_path / "vae-run" / "checkpoints" / "last.ckpt"
    last.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match=r"cannot resume: .*not a PyTorch checkpoint"):
        train_vae(config, echo=lambda _msg: None)


class _CtrlC(pl.Callback):
    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, idx: int) -> None:
        if trainer.global_step == 1:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_stops_vae_training_and_the_cli_exits_130(
    sine_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from querysep.cli import ldm as ldm_cli
    from querysep.training import config as config_module
    from querysep.training import melvae
    from querysep.training.melvae import train_vae

    config = _tiny_vae_config(sine_data, tmp_path / "vae-run", steps=20)
    result = train_vae(config, callbacks=[_CtrlC()], echo=lambda _msg: None)
    assert result.interrupted and result.step == 2 and result.exported is None
    assert (tmp_path / "vae-run" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "vae-run" / "model").exists()

    # the command turns the interruption into exit code 130
    monkeypatch.setattr(config_module, "load_config", lambda *a, **k: config)
    monkeypatch.setattr(melvae, "train_vae", lambda *a, **k: result)
    with pytest.raises(typer.Exit) as stop:
        ldm_cli.train_vae_cmd(config=tmp_path / "c.yaml", overrides=[], restart=False)
    assert stop.value.exit_code == 130


def test_a_mel_vae_run_is_not_resumed_with_another_front_end(
    sine_data: dict[str, Path], tmp_path: Path
) -> None:
    from querysep.training.melvae import MelVaeTrainConfig, train_vae

    config = _tiny_vae_config(sine_data, tmp_path / "vae-run", steps=1)
    assert train_vae(config, echo=lambda _msg: None).step == 1
    run = tmp_path / "vae-run"
    files = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    data = config.to_dict()
    data["trainer"]["max_steps"] = 2
    data["front_end"].update(n_mels=32, f_max=4000.0)
    other = config_from_dict(data, schema=MelVaeTrainConfig)
    with pytest.raises(ConfigError, match=r"front_end\.f_max, front_end\.n_mels; .*--restart"):
        train_vae(other, echo=lambda _msg: None)
    assert {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()} == files


def _nan_mels_at(monkeypatch: pytest.MonkeyPatch, steps: set[int] | None) -> None:
    """Make the mel VAE's training mels NaN at these steps (None: at every step)."""
    from querysep.training.melvae import MelVaeTask

    mels = MelVaeTask.mels

    def nan_mels(self: Any, mixture: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = mels(self, mixture, target)
        hit = self.training and (steps is None or self.global_step in steps)
        return x * float("nan") if hit else x

    monkeypatch.setattr(MelVaeTask, "mels", nan_mels)


def test_a_mel_vae_step_with_non_finite_gradients_is_skipped(
    sine_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file

    from querysep.training.melvae import train_vae

    _nan_mels_at(monkeypatch, {1})
    said: list[str] = []
    result = train_vae(_tiny_vae_config(sine_data, tmp_path / "run", steps=3), echo=said.append)
    assert "warning: step 1: non-finite gradients, update skipped (1 skipped so far)" in said
    assert result.exported is not None
    weights = load_file(result.exported / "vae" / "diffusion_pytorch_model.safetensors")
    assert weights and all(torch.isfinite(w).all() for w in weights.values())


def test_a_mel_vae_run_whose_every_step_was_skipped_exports_nothing(
    sine_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from querysep.training.melvae import train_vae

    _nan_mels_at(monkeypatch, None)
    config = _tiny_vae_config(sine_data, tmp_path / "run", steps=3)
    with pytest.raises(TrainingError, match="no step updated the weights: all 3 steps"):
        train_vae(config, echo=lambda _m: None)
    # run again, it resumes at its end: the export refuses the untrained checkpoint
    with pytest.raises(CheckpointError, match=r"\.ckpt: no step updated the weights: .*--restart"):
        train_vae(config, echo=lambda _m: None)
    assert not (tmp_path / "run" / "model").exists()
