"""``train`` checks everything before it writes, and always exports a validated model."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

from querysep.cli import app
from querysep.errors import OutputError
from querysep.pretrained import load_model
from querysep.training.callbacks import AtomicCheckpointIO
from querysep.training.config import config_from_dict
from querysep.training.export import read_checkpoint
from querysep.training.run import build_trainer, train

from .conftest import tiny_config, write_config


def _one_line_error(result: Any) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("querysep: error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    "breakage",
    ["missing manifest", "missing validation list", "empty yaml", "bad network"],
)
def test_a_failed_start_leaves_no_run_folder(
    tmp_path: Path, sine_data: dict[str, Path], breakage: str
) -> None:
    run = tmp_path / "run"
    config = copy.deepcopy(tiny_config(sine_data, run))
    if breakage == "missing manifest":
        config["data"]["train"][0]["manifest"] = str(tmp_path / "nope.jsonl")
    elif breakage == "missing validation list":
        config["data"]["validation"]["mixtures"] = str(tmp_path / "nope.csv")
    elif breakage == "bad network":
        config["model"]["network"]["config"]["n_fft"] = "many"
    path = write_config(tmp_path / "run.yaml", config)
    if breakage == "empty yaml":
        path.write_text("", encoding="utf-8")
    argv = ["train", str(path)]
    if breakage == "empty yaml":
        argv.append(f"trainer.output_dir={run}")
    line = _one_line_error(CliRunner().invoke(app, argv))
    assert not run.exists(), line


@pytest.mark.parametrize("under", [False, True])
def test_output_dir_that_is_a_file(tmp_path: Path, sine_data: dict[str, Path], under: bool) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    out = blocker / "run" if under else blocker
    path = write_config(tmp_path / "run.yaml", tiny_config(sine_data, out))
    line = _one_line_error(CliRunner().invoke(app, ["train", str(path)]))
    assert f"trainer.output_dir: cannot write to {out}: {blocker} is a file, not a folder" in line
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize(
    ("saved", "match"),
    [("model: [unclosed\n", "is not valid YAML"), ("- a list\n", "has no model section")],
)
def test_resume_with_a_corrupt_saved_config_stops(
    tmp_path: Path, sine_data: dict[str, Path], saved: str, match: str
) -> None:
    run = tmp_path / "run"
    path = write_config(tmp_path / "run.yaml", tiny_config(sine_data, run, max_steps=2))
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(path)]).exit_code == 0
    (run / "config.yaml").write_text(saved)
    before = read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"]
    line = _one_line_error(runner.invoke(app, ["train", str(path), "trainer.max_steps=4"]))
    assert f"cannot resume {run}" in line and match in line and "--restart" in line
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == before
    assert (run / "config.yaml").read_text() == saved


def test_a_run_saved_before_a_setting_existed_resumes(
    tmp_path: Path, sine_data: dict[str, Path]
) -> None:
    """A saved config.yaml without model.query_bank or data.query_mix_prob (written before
    they existed) meant their defaults: the run resumes; another value is still refused."""
    run = tmp_path / "run"
    path = write_config(tmp_path / "run.yaml", tiny_config(sine_data, run, max_steps=2))
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(path)]).exit_code == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"].pop("query_bank") is False
    assert saved["data"].pop("query_mix_prob") == 0.0
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    result = runner.invoke(app, ["train", str(path), "trainer.max_steps=3"])
    assert result.exit_code == 0, result.output
    assert "saved config.yaml in: trainer.max_steps;" in result.output  # that key alone
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 3
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    other = runner.invoke(app, ["train", str(path), "trainer.max_steps=4", "model.query_bank=true"])
    assert "the model differs" in _one_line_error(other) and "model.query_bank" in other.output


class _ValidationSteps(pl.Callback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.steps.append(trainer.global_step)


def test_the_last_step_is_validated_when_off_the_validation_grid(
    tmp_path: Path, sine_data: dict[str, Path]
) -> None:
    seen = _ValidationSteps()
    cfg = config_from_dict(
        tiny_config(sine_data, tmp_path / "run", max_steps=5, val_every_n_steps=3)
    )
    result = train(cfg, callbacks=[seen], echo=lambda _m: None)
    assert result.step == 5 and seen.steps == [3, 5]
    assert result.exported is not None


class _SlowStep(pl.Callback):
    """Makes step 2 take over a second, so a one-second time limit ends the run there."""

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == 2:
            time.sleep(1.1)


def test_a_time_limit_stops_with_a_validated_export(
    tmp_path: Path, sine_data: dict[str, Path]
) -> None:
    seen = _ValidationSteps()
    messages: list[str] = []
    cfg = config_from_dict(
        tiny_config(
            sine_data, tmp_path / "run", max_steps=1000, val_every_n_steps=500, max_time="00:00:01"
        )
    )
    result = train(cfg, callbacks=[_SlowStep(), seen], echo=messages.append)
    assert 2 <= result.step <= 3 and seen.steps == [result.step]
    assert result.exported is not None
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")
    assert ckpt["global_step"] == result.step
    assert any(m.startswith("exported best.ckpt") and "val/sdri" in m for m in messages)
    assert any(m.startswith("precision 32 (as configured; CPU capability") for m in messages)


def test_a_resumed_run_keeps_the_earlier_training_log(
    tmp_path: Path, sine_data: dict[str, Path]
) -> None:
    run = tmp_path / "run"
    path = write_config(tmp_path / "run.yaml", tiny_config(sine_data, run, max_steps=2))
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(path)]).exit_code == 0
    logs = run / "logs" / "csv"
    first = (logs / "metrics.csv").read_text()
    assert runner.invoke(app, ["train", str(path), "trainer.max_steps=4"]).exit_code == 0
    assert (logs / "metrics.1.csv").read_text() == first
    later = (logs / "metrics.csv").read_text().splitlines()
    header = later[0].split(",")
    logged = {int(float(row.split(",")[header.index("step")])) for row in later[1:]}
    assert logged and min(logged) >= 2 and max(logged) >= 3, logged


def test_checkpoints_are_written_whole_or_not_at_all(
    tmp_path: Path, sine_data: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = build_trainer(config_from_dict(tiny_config(sine_data, tmp_path / "run")))
    io = trainer.strategy.checkpoint_io
    assert isinstance(io, AtomicCheckpointIO)  # best.ckpt (ModelCheckpoint) goes through it too
    path = tmp_path / "best.ckpt"
    io.save_checkpoint({"w": torch.ones(3)}, path)
    before = path.read_bytes()

    def disk_full(checkpoint: Any, target: Any) -> None:
        Path(target).write_bytes(b"torn")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("lightning.fabric.plugins.io.torch_io._atomic_save", disk_full)
    with pytest.raises(OutputError, match=r"best\.ckpt: No space left on device"):
        io.save_checkpoint({"w": torch.zeros(3)}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt"]


@pytest.mark.parametrize("restart", [False, True])
def test_a_run_folder_another_training_holds_is_left_alone(
    tmp_path: Path, sine_data: dict[str, Path], restart: bool
) -> None:
    from querysep.fileio import locked_folder

    run = tmp_path / "run"
    path = write_config(tmp_path / "run.yaml", tiny_config(sine_data, run, max_steps=2))
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(path)]).exit_code == 0
    files = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    argv = ["train", str(path), "trainer.max_steps=4", *(["--restart"] if restart else [])]
    with locked_folder(run, "training"):
        line = _one_line_error(runner.invoke(app, argv))
    assert f"{run} is in use by another running querysep training" in line
    assert {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()} == files
    assert runner.invoke(app, argv).exit_code == 0  # free again: it goes on
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 4


def test_a_checkpoint_that_appears_while_starting_is_not_overwritten(
    tmp_path: Path, sine_data: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import querysep.training.run as run_module

    run = tmp_path / "run"
    path = write_config(tmp_path / "run.yaml", tiny_config(sine_data, run, max_steps=2))
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(path)]).exit_code == 0
    last = run / "checkpoints" / "last.ckpt"
    saved = last.read_bytes()
    hidden = last.with_name("hidden")
    real = run_module.build_trainer

    def build_trainer(*args: Any, **kwargs: Any) -> Any:  # another run's last.ckpt lands now
        hidden.rename(last)
        return real(*args, **kwargs)

    last.rename(hidden)  # as if no run had started when this command looked
    monkeypatch.setattr(run_module, "build_trainer", build_trainer)
    line = _one_line_error(runner.invoke(app, ["train", str(path), "trainer.max_steps=4"]))
    assert "last.ckpt appeared while this command was starting" in line
    assert last.read_bytes() == saved


def _exported_training(run: Path) -> dict[str, Any]:
    return json.loads((run / "model" / "config.json").read_text())["metadata"]["training"]


def test_a_fresh_run_never_exports_an_earlier_runs_best_ckpt(
    tmp_path: Path, sine_data: dict[str, Path]
) -> None:
    run = tmp_path / "run"
    first = tiny_config(sine_data, run, max_steps=2, val_every_n_steps=2)
    assert train(config_from_dict(first), echo=lambda _m: None).exported is not None
    old_best = (run / "checkpoints" / "best.ckpt").read_bytes()
    (run / "checkpoints" / "last.ckpt").unlink()  # nothing to resume: the next run starts afresh

    other = copy.deepcopy(first)  # another architecture, no validation
    other["model"]["network"]["config"].update(channels=[4, 8, 8], pre_channels=4)
    other["data"]["validation"] = None
    messages: list[str] = []
    result = train(config_from_dict(other), echo=messages.append)
    assert result.resumed_from is None and result.step == 2
    meta = _exported_training(run)
    assert meta["checkpoint"] == "last.ckpt"
    assert meta["config"]["model"]["network"]["config"]["channels"] == [4, 8, 8]
    assert not (run / "checkpoints" / "best.ckpt").exists()  # kept aside, not exported
    assert (run / "checkpoints" / "best.1.ckpt").read_bytes() == old_best
    assert any("kept as best.1.ckpt" in m for m in messages), messages
    exported = CliRunner().invoke(app, ["train", "export", str(run), "-o", str(tmp_path / "m")])
    assert exported.exit_code == 0, exported.output
    assert (
        json.loads((tmp_path / "m" / "config.json").read_text())["metadata"]["training"][
            "checkpoint"
        ]
        == "last.ckpt"
    )


def test_a_run_resumed_without_validation_exports_where_it_ended(
    tmp_path: Path, sine_data: dict[str, Path]
) -> None:
    run = tmp_path / "run"
    config = tiny_config(sine_data, run, max_steps=2, val_every_n_steps=2)
    train(config_from_dict(config), echo=lambda _m: None)
    assert _exported_training(run)["checkpoint"] == "best.ckpt"
    config["data"]["validation"] = None
    config["trainer"]["max_steps"] = 4
    (run / "checkpoints" / "best.3.ckpt").write_bytes(b"set aside before")
    messages: list[str] = []
    result = train(config_from_dict(config), echo=messages.append)
    assert (result.resumed_from, result.step) == (2, 4)
    meta = _exported_training(run)
    assert (meta["checkpoint"], meta["step"]) == ("last.ckpt", 4)
    # and `train export RUN` exports the same: the validated best.ckpt is set aside, above
    # the highest one there
    assert not (run / "checkpoints" / "best.ckpt").exists()
    assert (run / "checkpoints" / "best.4.ckpt").is_file()
    assert any("kept as best.4.ckpt, not exported: this run resumes" in m for m in messages)
    res = CliRunner().invoke(app, ["train", "export", str(run), "-o", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    assert load_model(str(tmp_path / "m")).metadata["training"]["step"] == 4


@pytest.mark.parametrize("restart", [False, True], ids=["new-folder", "restart"])
def test_unreadable_audio_stops_a_streaming_run_before_its_folder_is_touched(
    tmp_path: Path, sine_data: dict[str, Path], restart: bool
) -> None:
    run = tmp_path / "run"
    config = tiny_config(sine_data, run, max_steps=2)
    config["data"]["preload"] = False  # decoded on first use: only the headers are read first
    path = write_config(tmp_path / "run.yaml", config)
    runner = CliRunner()
    if restart:
        assert runner.invoke(app, ["train", str(path)]).exit_code == 0
    files = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    text = Path(sine_data["manifest"]).read_text()
    (tmp_path / "audio").symlink_to(sine_data["audio_dir"])  # the manifest's paths are relative
    broken = tmp_path / "broken.jsonl"  # two clips' files are gone
    broken.write_text(text.replace("noise1.wav", "gone1.wav").replace("sine2.wav", "gone2.wav"))
    argv = ["train", str(path), f"data.train.0.manifest={broken}"]
    line = _one_line_error(runner.invoke(app, argv + (["--restart"] if restart else [])))
    assert run.exists() == restart
    assert {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()} == files
    assert "2 of 8 training audio files cannot be read" in line
    assert "clip 'sine2': audio file not found" in line and "gone2.wav" in line


@pytest.mark.parametrize("value", [True, False])
def test_cudnn_benchmark_is_set_as_configured_and_left_alone_by_default(
    tmp_path: Path, sine_data: dict[str, Path], value: bool
) -> None:
    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = not value
        build_trainer(
            config_from_dict(tiny_config(sine_data, tmp_path / "a", cudnn_benchmark=value)),
            checkpoints=False,
            loggers=False,
        )
        assert torch.backends.cudnn.benchmark is value
        build_trainer(
            config_from_dict(tiny_config(sine_data, tmp_path / "b")),
            checkpoints=False,
            loggers=False,
        )
        assert torch.backends.cudnn.benchmark is value  # None: PyTorch's setting is kept
    finally:
        torch.backends.cudnn.benchmark = before


def test_channels_last_training_trains_that_layout_and_exports_the_same_weights(
    tmp_path: Path, sine_data: dict[str, Path]
) -> None:
    seen: list[bool] = []

    class Layout(pl.Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            weight = pl_module.model.net.base.encoder_block1.conv_block1.conv1.weight
            seen.append(weight.is_contiguous(memory_format=torch.channels_last))

    config = tiny_config(sine_data, tmp_path / "run", max_steps=3, channels_last=True)
    result = train(config_from_dict(config), callbacks=[Layout()], echo=lambda _m: None)
    assert seen == [True] * 3
    assert result.exported is not None
    state = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["state_dict"]
    exported = load_model(str(result.exported)).net.state_dict()
    for key, value in exported.items():
        assert torch.equal(value, state[f"model.net.{key}"]), key


def test_a_diverging_run_stops_with_one_line_and_keeps_its_checkpoint(
    tmp_path: Path, sine_data: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from querysep.training import module

    def nan_loss(estimate: torch.Tensor, target: torch.Tensor, mixture: Any) -> torch.Tensor:
        return (estimate - target).abs().mean() * float("nan")

    monkeypatch.setitem(module._LOSSES, "l1", nan_loss)
    run = tmp_path / "run"
    config = tiny_config(sine_data, run, max_steps=40, checkpoint_every_n_steps=100)
    config["optim"]["loss"] = "l1"
    result = CliRunner().invoke(app, ["train", str(write_config(tmp_path / "run.yaml", config))])
    line = _one_line_error(result)
    assert "error: training diverged: 25 steps in a row up to step 24" in line, line
    notes = [n for n in result.stdout.splitlines() if n.startswith("warning: step ")]
    assert notes[0] == "warning: step 0: non-finite gradients, update skipped (1 skipped so far)"
    assert len(notes) == 25
    saved = read_checkpoint(run / "checkpoints" / "last.ckpt")  # saved at the stop step
    assert saved["global_step"] == 25
    state = saved["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert not (run / "model").exists()


def test_a_run_whose_every_step_was_skipped_exports_nothing(
    tmp_path: Path, sine_data: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shorter than the divergence guard's 25 steps, every update skipped: the weights are
    the random start, so nothing is exported as if it were trained, not even by running the
    command again (which resumes at the end); a run that did learn and then skipped its last
    steps still exports."""
    from querysep.training import module

    def nan_loss(estimate: torch.Tensor, target: torch.Tensor, mixture: Any) -> torch.Tensor:
        return (estimate - target).abs().mean() * float("nan")

    run = tmp_path / "run"
    config = tiny_config(sine_data, run, max_steps=6, checkpoint_every_n_steps=100)
    config["optim"]["loss"] = "l1"
    path = write_config(tmp_path / "run.yaml", config)
    with monkeypatch.context() as patch:
        patch.setitem(module._LOSSES, "l1", nan_loss)
        for _ in range(2):  # the run, then the same command again
            line = _one_line_error(CliRunner().invoke(app, ["train", str(path)]))
            assert "no step updated the weights: " in line, line
            assert "--restart" in line, line
            assert not (run / "model").exists()
    saved = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert saved["global_step"] == 6 and saved["querysep"]["updated_steps"] == 0
    # trained for 6 steps, then 4 more that are all skipped: the learned weights export
    trained = tmp_path / "trained"
    config = tiny_config(sine_data, trained, max_steps=6, checkpoint_every_n_steps=100)
    config["optim"]["loss"] = "l1"
    path = write_config(tmp_path / "trained.yaml", config)
    assert CliRunner().invoke(app, ["train", str(path)]).exit_code == 0
    monkeypatch.setitem(module._LOSSES, "l1", nan_loss)
    result = CliRunner().invoke(app, ["train", str(path), "trainer.max_steps=10"])
    assert result.exit_code == 0, result.output
    saved = read_checkpoint(trained / "checkpoints" / "last.ckpt")
    assert saved["global_step"] == 10 and saved["querysep"]["updated_steps"] == 6
    assert (trained / "model" / "model.safetensors").is_file()


def test_an_absurd_learning_rate_is_refused_in_one_line(
    tmp_path: Path, sine_data: dict[str, Path]
) -> None:
    path = write_config(tmp_path / "run.yaml", tiny_config(sine_data, tmp_path / "run"))
    line = _one_line_error(CliRunner().invoke(app, ["train", str(path), "optim.lr=1e38"]))
    assert "optim.lr: must be <= 1.0, got '1e38'" in line, line
    assert not (tmp_path / "run").exists()


def test_fewer_validation_mixtures_than_processes_is_one_line(
    tmp_path: Path, sine_data: dict[str, Path]
) -> None:
    """Each process validates a share of the list; one with none failed inside Lightning
    with a traceback per process and left a run folder."""
    run = tmp_path / "run"
    config = copy.deepcopy(tiny_config(sine_data, run, devices=2))
    config["data"]["validation"]["max_items"] = 1
    line = _one_line_error(
        CliRunner().invoke(app, ["train", str(write_config(tmp_path / "r.yaml", config))])
    )
    assert "1 mixtures for 2 processes" in line
    assert not run.exists()


def test_files_a_recipe_skips_are_named_not_dropped_in_silence(
    tmp_path: Path, sine_data: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from querysep.training.config import TrainSetConfig
    from querysep.training.datamodule import load_training_clips

    folder = tmp_path / "clips"
    folder.mkdir()
    sf.write(folder / "a.wav", np.full(8000, 0.1, np.float32), 16000)
    (folder / "b.wav").write_bytes(b"")  # unreadable
    (folder / "a.txt").write_text("a hum", encoding="utf-8")
    (folder / "b.txt").write_text("a buzz", encoding="utf-8")
    entry = TrainSetConfig.model_validate({"prepare": {"recipe": "folder", "root": str(folder)}})
    clips = load_training_clips([entry])
    assert [clip.id for clip in clips] == ["a"]
    err = capsys.readouterr().err
    assert "data.train.0 (folder recipe on" in err and "skipped 1 missing/unreadable files" in err
