"""Resume proof: a run SIGKILLed after a checkpoint and re-run ends exactly like an unbroken run.

The killed run is a real ``querysep train`` process. The uninterrupted reference runs in this
process meanwhile (one thread each, float32, no DataLoader workers); it keeps a copy of every
checkpoint, so the killed run's ``last.ckpt`` is compared with the reference's state at the
same step (weights, optimizer, learning-rate schedule), then the resumed run's final state and
per-step losses (which depend on the batches it saw) with the reference's.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from typer.testing import CliRunner

from querysep.cli import app
from querysep.training.config import config_from_dict, load_config
from querysep.training.export import read_checkpoint
from querysep.training.run import train

from .conftest import tiny_config, write_config

MAX_STEPS = 40
EVERY = 4


def _kill_after_first_checkpoint(proc: subprocess.Popen, last: Path, result: dict[str, Any]):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if last.is_file():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    result["returncode"] = proc.wait()


def _losses(run: Path) -> dict[int, float]:
    rows = csv.DictReader((run / "logs" / "csv" / "metrics.csv").open())
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}


def _assert_same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["global_step"] == b["global_step"]
    for key, value in b["state_dict"].items():
        torch.testing.assert_close(a["state_dict"][key], value, rtol=0, atol=0, msg=key)
    opt_a, opt_b = a["optimizer_states"][0], b["optimizer_states"][0]
    assert opt_a["param_groups"] == opt_b["param_groups"]
    for index, state in opt_b["state"].items():
        for name, value in state.items():
            torch.testing.assert_close(opt_a["state"][index][name], value, rtol=0, atol=0)
    assert a["lr_schedulers"] == b["lr_schedulers"]


def test_sigkill_then_rerun_matches_uninterrupted_run(
    tmp_path: Path, sine_data: dict[str, Path]
) -> None:
    settings = {
        "max_steps": MAX_STEPS,
        "checkpoint_every_n_steps": EVERY,
        "val_every_n_steps": 1000,
        "export": False,
    }
    config = tiny_config(sine_data, tmp_path / "run", **settings)
    config["data"]["validation"] = None
    config["optim"]["warmup_steps"] = 10  # the schedule must resume mid-warm-up too
    config_path = write_config(tmp_path / "run.yaml", config)
    command = [
        sys.executable,
        "-c",
        "from querysep.cli import main; main()",
        "train",
        str(config_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    # 1. Start the run that will be killed, and kill it once last.ckpt appears.
    run = tmp_path / "run"
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed: dict[str, Any] = {}
    killer = threading.Thread(
        target=_kill_after_first_checkpoint, args=(proc, run / "checkpoints" / "last.ckpt", killed)
    )
    killer.start()

    # 2. Meanwhile, the uninterrupted reference, keeping every checkpoint (one thread, as
    #    the subprocess: see conftest).
    try:
        reference = tmp_path / "reference"
        ref_cfg = load_config(
            config_path, [f"trainer.output_dir={reference}", "trainer.keep_step_checkpoints=true"]
        )
        assert train(ref_cfg, echo=lambda _m: None).step == MAX_STEPS
        killer.join()
        stderr = proc.stderr.read().decode() if proc.stderr else ""
        assert killed["returncode"] == -signal.SIGKILL, stderr[-2000:]

        # 3. The killed run's last.ckpt holds exactly the reference's state at that step.
        saved = read_checkpoint(run / "checkpoints" / "last.ckpt")
        step = saved["global_step"]
        assert 0 < step < MAX_STEPS and step % EVERY == 0
        _assert_same_state(
            saved, read_checkpoint(reference / "checkpoints" / f"step-{step:08d}.ckpt")
        )

        # 4. The same command again continues from that step to the end.
        result = CliRunner().invoke(app, ["train", str(config_path)])
        assert result.exit_code == 0, result.output
        assert f"resumed from {run / 'checkpoints' / 'last.ckpt'} at step {step}" in result.output
    finally:
        if proc.poll() is None:
            proc.kill()

    # 5. Same final weights, optimizer state and schedule; same loss at every resumed step.
    final = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert final["global_step"] == MAX_STEPS
    _assert_same_state(final, read_checkpoint(reference / "checkpoints" / "last.ckpt"))
    assert final["lr_schedulers"][0]["_last_lr"] == [config["optim"]["lr"]]
    resumed, uninterrupted = _losses(run), _losses(reference)
    after = [s for s in resumed if s >= step]
    assert len(after) >= MAX_STEPS - step - 1
    assert {s: resumed[s] for s in after} == {s: uninterrupted[s] for s in after}


class _SlowStep(pl.Callback):
    """Makes step ``step`` take over a second, so a one-second time limit stops the run there."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step - 1:
            time.sleep(1.1)


@pytest.mark.parametrize("validate", [False, True], ids=["no-validation", "validation"])
def test_a_time_limit_saves_its_step_and_the_same_command_trains_on_exactly(
    tmp_path: Path, sine_data: dict[str, Path], validate: bool
) -> None:
    settings = {"max_steps": 12, "checkpoint_every_n_steps": 100, "export": False}
    config = tiny_config(sine_data, tmp_path / "run", **settings, max_time="00:00:01")
    if not validate:
        config["data"]["validation"] = None
    config["optim"]["warmup_steps"] = 4
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    messages: list[str] = []

    # The limit stops the run at step 3 and saves it there (not only at the 100-step period).
    first = train(config_from_dict(config), callbacks=[_SlowStep(3)], echo=messages.append)
    assert first.step == 3 and read_checkpoint(last)["global_step"] == 3
    if validate:  # saved after step 3 was scored: a resumed run knows that best score
        states = read_checkpoint(last)["callbacks"]
        best = next(v for k, v in states.items() if k.startswith("ModelCheckpoint"))
        assert best["best_model_score"] is not None and best["best_model_path"].endswith(
            "best.ckpt"
        )
    assert any(m.startswith("time limit 0:00:01 reached at step 3") for m in messages), messages

    # The same config again resumes at step 3 and gets the whole limit again (a timer restored
    # from the checkpoint would stop it after one step).
    second = train(config_from_dict(config), callbacks=[_SlowStep(7)], echo=lambda _m: None)
    assert (second.resumed_from, second.step) == (3, 7)

    # Stopping twice changed nothing: the state at step 7 is the unbroken run's.
    reference = tmp_path / "reference"
    unbroken = {**config, "trainer": {**config["trainer"], "output_dir": str(reference)}}
    unbroken["trainer"].update(
        max_time=None, checkpoint_every_n_steps=7, keep_step_checkpoints=True
    )
    assert train(config_from_dict(unbroken), echo=lambda _m: None).step == 12
    _assert_same_state(
        read_checkpoint(last), read_checkpoint(reference / "checkpoints" / "step-00000007.ckpt")
    )


def _logged_lr(run: Path) -> dict[int, float]:
    rows = csv.DictReader((run / "logs" / "csv" / "metrics.csv").open())
    return {int(r["step"]): float(r["train/lr"]) for r in rows if r.get("train/lr")}


def test_a_changed_learning_rate_applies_when_resuming_and_is_recorded(
    tmp_path: Path, sine_data: dict[str, Path]
) -> None:
    run = tmp_path / "run"
    config = tiny_config(sine_data, run, max_steps=2)
    config["data"]["validation"] = None
    assert train(config_from_dict(config), echo=lambda _m: None).step == 2
    assert list(_logged_lr(run).values()) == pytest.approx([3e-3, 3e-3])

    config["optim"]["lr"] = 1e-5
    config["trainer"]["max_steps"] = 4
    messages: list[str] = []
    assert train(config_from_dict(config), echo=messages.append).resumed_from == 2
    logged = _logged_lr(run)  # the resumed steps' log
    assert sorted(logged) == [2, 3] and list(logged.values()) == pytest.approx([1e-5, 1e-5])
    saved = read_checkpoint(run / "checkpoints" / "last.ckpt")
    group = saved["optimizer_states"][0]["param_groups"][0]
    assert (group["lr"], group["initial_lr"]) == (1e-5, 1e-5)
    assert saved["lr_schedulers"][0]["base_lrs"] == [1e-5]
    exported = json.loads((run / "model" / "config.json").read_text())["metadata"]["training"]
    assert exported["config"]["optim"]["lr"] == 1e-5  # what the last steps trained with
    assert any(
        "differs from the saved config.yaml in: optim.lr, trainer.max_steps; the resumed run "
        "trains with the new values" in m
        for m in messages
    ), messages


def test_a_cosine_schedule_stretches_to_a_raised_max_steps_on_resume(
    tmp_path: Path, sine_data: dict[str, Path]
) -> None:
    run = tmp_path / "run"
    config = tiny_config(sine_data, run, max_steps=2, export=False)
    config["data"]["validation"] = None
    config["optim"].update(schedule="cosine", min_lr_ratio=0.0)
    train(config_from_dict(config), echo=lambda _m: None)
    config["trainer"]["max_steps"] = 4
    train(config_from_dict(config), echo=lambda _m: None)
    saved = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert saved["lr_schedulers"][0]["lr_lambdas"][0]["total_steps"] == 4
    logged = _logged_lr(run)  # half way through a 4-step cosine, not at its end
    assert logged[2] == pytest.approx(0.5 * 3e-3) and logged[3] == pytest.approx(
        0.5 * (1 + math.cos(math.pi * 3 / 4)) * 3e-3
    )


class _BarTotals(pl.Callback):
    """Records the training bar's (n, total) after each step."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int | None]] = []

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        bar = trainer.progress_bar_callback.train_progress_bar  # type: ignore[union-attr]
        self.seen.append((bar.n, bar.total))


def test_a_resumed_runs_progress_bar_counts_to_max_steps(
    tmp_path: Path, sine_data: dict[str, Path]
) -> None:
    config = tiny_config(sine_data, tmp_path / "run", max_steps=2, progress_bar=True)
    config["data"]["validation"] = None
    config["trainer"]["export"] = False
    train(config_from_dict(config), echo=lambda _m: None)
    config["trainer"]["max_steps"] = 4
    bars = _BarTotals()
    train(config_from_dict(config), callbacks=[bars], echo=lambda _m: None)
    assert bars.seen and all(total == 4 for _, total in bars.seen), bars.seen
    assert bars.seen[-1][0] == 4


def test_a_seeded_fine_tune_repeats_bit_for_bit(tmp_path: Path, sine_data: dict[str, Path]) -> None:
    """Two runs of one fine-tuning config (model.init_from, the same seed) export the same
    weights, as two runs from scratch do: stage 2 of the default model is such a run."""
    from safetensors.torch import load_file

    start = tiny_config(sine_data, tmp_path / "start", max_steps=3, val_every_n_steps=3)
    first = train(config_from_dict(start), echo=lambda _m: None).exported
    weights = []
    for name in ("a", "b"):
        raw = tiny_config(sine_data, tmp_path / name, max_steps=3, val_every_n_steps=3)
        raw["model"] = {"init_from": str(first)}
        out = train(config_from_dict(raw), echo=lambda _m: None).exported
        weights.append(load_file(str(out / "model.safetensors")))
    start_weights = load_file(str(first / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys() == start_weights.keys()
    moved = [k for k in start_weights if not torch.equal(weights[0][k], start_weights[k])]
    assert moved  # the fine-tune trained
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[1][key], value, rtol=0, atol=0, msg=key)
