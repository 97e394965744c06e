"""``querysep train`` end to end: errors, export, resume, --restart, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from querysep.cli import app
from querysep.pretrained import load_model
from querysep.training.config import load_config
from querysep.training.export import read_checkpoint
from querysep.training.run import train

from .conftest import tiny_config, write_config


@pytest.fixture()
def config_path(tmp_path: Path, sine_data: dict[str, Path]) -> Path:
    config = tiny_config(
        sine_data, tmp_path / "run", max_steps=3, val_every_n_steps=3, checkpoint_every_n_steps=2
    )
    return write_config(tmp_path / "run.yaml", config)


def test_config_errors_are_one_line(config_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", str(config_path), "optim.lrr=1"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("querysep: error: override 'optim.lrr=1'")
    result = CliRunner().invoke(app, ["train", str(config_path.with_name("nope.yaml"))])
    assert result.exit_code == 2 and "config file not found" in result.stderr


def test_train_resume_restart_export_separate(config_path: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    run = tmp_path / "run"
    first = runner.invoke(app, ["train", str(config_path)])
    assert first.exit_code == 0, first.output
    assert "resolved config" in first.output and "resumed" not in first.output
    assert (run / "config.yaml").is_file() and (run / "logs" / "csv" / "metrics.csv").is_file()
    meta = json.loads((run / "model" / "config.json").read_text())["metadata"]["training"]
    assert meta["step"] == 3 and meta["checkpoint"] == "best.ckpt"
    assert np.isfinite(meta["validation"]["val/sdri"])

    longer = runner.invoke(app, ["train", str(config_path), "trainer.max_steps=5"])
    assert longer.exit_code == 0, longer.output
    assert "resumed from" in longer.output and "at step 3" in longer.output
    assert "differs from the saved config.yaml in: trainer.max_steps" in longer.output
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 5

    again = runner.invoke(app, ["train", str(config_path), "--restart"])
    assert again.exit_code == 0, again.output
    assert "--restart: removed" in again.output and "resumed" not in again.output
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 3

    exported = runner.invoke(app, ["train", "export", str(run), "-o", str(tmp_path / "m")])
    assert exported.exit_code == 0, exported.output
    assert load_model(str(tmp_path / "m")).metadata["training"]["step"] == 3
    stale = tmp_path / "m" / ".model.safetensors.0123abcd.part.safetensors"  # a killed export's
    stale.write_bytes(b"half a file")
    again = runner.invoke(app, ["train", "export", str(run), "-o", str(tmp_path / "m")])
    assert again.exit_code == 0, again.output  # an earlier export is updated in place
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    (tmp_path / "m" / "notes.txt").write_text("mine")
    refused = runner.invoke(app, ["train", "export", str(run), "-o", str(tmp_path / "m")])
    assert refused.exit_code == 2 and "holds other files" in refused.stderr
    (tmp_path / "m" / "notes.txt").unlink()
    mix = tmp_path / "mix.wav"
    sf.write(mix, 0.1 * np.random.default_rng(0).standard_normal(8000), 8000)
    separated = runner.invoke(
        app,
        [
            "separate",
            str(mix),
            "-q",
            "a sine tone",
            "--model",
            str(tmp_path / "m"),
            "-o",
            str(tmp_path / "out.wav"),
        ],
    )
    assert separated.exit_code == 0, separated.output
    assert sf.info(str(tmp_path / "out.wav")).frames == 8000
    bad = runner.invoke(app, ["train", "export", str(tmp_path / "m" / "config.json"), "-o", "x"])
    assert bad.exit_code == 2 and "config.json: not a PyTorch checkpoint" in bad.stderr


class _CtrlC(pl.Callback):
    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = signum

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, idx: int) -> None:
        if trainer.global_step == 2:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_after_the_step_and_keeps_last_ckpt(config_path: Path, signum: int) -> None:
    cfg = load_config(config_path, ["trainer.max_steps=50", "trainer.checkpoint_every_n_steps=100"])
    messages: list[str] = []
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the tests run as a background job
    before_term = signal.getsignal(signal.SIGTERM)
    result = train(cfg, callbacks=[_CtrlC(signum)], echo=messages.append)
    assert result.interrupted and result.step == 3
    assert read_checkpoint(cfg.output_dir / "checkpoints" / "last.ckpt")["global_step"] == 3
    assert any("Ctrl-C again to abort" in m for m in messages)
    assert signal.getsignal(signal.SIGINT) == before  # the handler in place before training
    assert signal.getsignal(signal.SIGTERM) == before_term
    assert not (cfg.output_dir / "model").exists()


def test_a_clip_that_breaks_mid_run_keeps_the_steps_done(
    config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from querysep.data.datasets import MixtureTrainingDataset
    from querysep.errors import DataError

    cfg = load_config(config_path, ["trainer.max_steps=50", "trainer.checkpoint_every_n_steps=100"])
    calls = {"n": 0}
    plain = MixtureTrainingDataset.__getitem__

    def breaks(self: MixtureTrainingDataset, index: int) -> Any:
        calls["n"] += 1
        if calls["n"] > 4 * cfg.data.batch_size:  # the fifth batch meets a broken clip
            raise DataError("clip 'x' has no samples: x.wav")
        return plain(self, index)

    monkeypatch.setattr(MixtureTrainingDataset, "__getitem__", breaks)
    messages: list[str] = []
    with pytest.raises(DataError, match="has no samples"):
        train(cfg, echo=messages.append)
    last = cfg.output_dir / "checkpoints" / "last.ckpt"
    # batches are fetched one step ahead: the fifth is fetched when step 3 has finished
    assert read_checkpoint(last)["global_step"] == 3  # the steps done are kept
    assert any("at step 3 before stopping" in m for m in messages)
    monkeypatch.setattr(MixtureTrainingDataset, "__getitem__", plain)
    result = train(load_config(config_path, ["trainer.max_steps=6"]), echo=messages.append)
    assert result.step == 6 and result.resumed_from == 3


class _TermAll(pl.Callback):
    """At step 2, SIGTERM to this process and its DataLoader workers, as ``pkill -f`` or a
    service manager stopping the whole group sends it."""

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, idx: int) -> None:
        if trainer.global_step == 2:
            children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
            workers = [int(pid) for pid in children.read_text().split()]
            assert workers, "no DataLoader worker to stop"
            # sent by another process: a worker exits quietly when its parent sends it
            subprocess.run(["kill", "-TERM", *map(str, workers)], check=True)
            time.sleep(1.0)  # a killed worker is noticed by now (torch's SIGCHLD handler)
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_sigterm_to_the_workers_too_stops_as_cleanly(config_path: Path) -> None:
    cfg = load_config(
        config_path,
        ["trainer.max_steps=50", "trainer.checkpoint_every_n_steps=100", "data.num_workers=1"],
    )
    result = train(cfg, callbacks=[_TermAll()], echo=lambda _m: None)
    assert result.interrupted and result.step == 3
    assert read_checkpoint(cfg.output_dir / "checkpoints" / "last.ckpt")["global_step"] == 3


def test_export_does_not_overwrite_a_config_json_of_something_else(
    config_path: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(config_path), "trainer.max_steps=1"]).exit_code == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"my": "settings"}')
    argv = ["train", "export", str(tmp_path / "run"), "-o", str(other)]
    refused = runner.invoke(app, argv)
    assert (other / "config.json").read_text() == '{"my": "settings"}'
    assert refused.exit_code == 2, refused.output
    assert "holds other files than an earlier export's (config.json); use --overwrite" in (
        refused.stderr
    )
    assert sorted(p.name for p in other.iterdir()) == ["config.json"]
    assert runner.invoke(app, [*argv, "--overwrite"]).exit_code == 0  # asked for: replaced
    assert load_model(str(other)).metadata["training"]["step"] == 1
    assert runner.invoke(app, argv).exit_code == 0  # now an earlier export's: updated

    # a banked model's folder holds query_bank.safetensors too: an export's own file
    from querysep.models.separator import TextQueriedSeparator
    from querysep.models.text import BANK_NAME, NearestTextEncoder

    tiny = load_model("test-tiny")
    bank = NearestTextEncoder(tiny.text_encoder, ["a dog", "rain"])
    TextQueriedSeparator(tiny.net, bank, tiny.metadata).save_pretrained(tmp_path / "banked")
    assert (tmp_path / "banked" / BANK_NAME).is_file()
    argv = ["train", "export", str(tmp_path / "run"), "-o", str(tmp_path / "banked")]
    assert runner.invoke(app, argv).exit_code == 0
    assert not (tmp_path / "banked" / BANK_NAME).exists()  # this model has no bank


@pytest.mark.parametrize("other", ["clap", "clap ensemble", "vae"])
def test_another_commands_run_folder_is_refused_before_restart_deletes_it(
    config_path: Path, tmp_path: Path, other: str
) -> None:
    """A --restart removed the model/ of a 'clap train' or 'ldm train-vae' run given as
    trainer.output_dir (and without it, the export went into that model/)."""
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    if other.startswith("clap"):
        where = run / "member0" if other == "clap ensemble" else run
        where.mkdir(exist_ok=True)
        (where / "checkpoint.pt").write_bytes(b"")
        said = "holds a 'querysep clap train' run (checkpoint.pt)"
    else:
        (run / "config.yaml").write_text("vae:\n  latent_channels: 4\ntrainer: {}\n")
        said = "holds the run of a mel VAE (ldm train-vae), and this config trains a separator"
    result = CliRunner().invoke(app, ["train", str(config_path), "--restart"])
    assert result.exit_code == 2 and said in result.stderr
    assert (run / "model" / "config.json").is_file()
    # the config is printed only once every check has passed: one line, not a page and a line
    assert "resolved config" not in result.stdout
