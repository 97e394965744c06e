"""The LightningModule on a trivially learnable task; validation metrics; export round trip."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from querysep.data.datasets import FixedMixtureDataset
from querysep.data.manifest import read_mixture_list
from querysep.errors import CheckpointError, ConfigError, OutputError, TrainingError
from querysep.fileio import locked_folder
from querysep.pretrained import load_model
from querysep.training.config import config_from_dict
from querysep.training.datamodule import MixtureDataModule
from querysep.training.export import export_checkpoint, read_checkpoint
from querysep.training.module import (
    SeparationTask,
    _step_generator,
    mix_embeddings,
    perturb_embeddings,
)
from querysep.training.run import TrainResult, _export, build_model, build_trainer

from .conftest import tiny_config


class LossRecorder(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, idx: int):
        self.losses.append(float(outputs["loss"]))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory, sine_data: dict[str, Path]):
    """30 steps on 'the target is a sine, the interferer is noise', validated at step 30."""
    out = tmp_path_factory.mktemp("fit")
    cfg = config_from_dict(tiny_config(sine_data, out / "run"))
    pl.seed_everything(0, verbose=False)
    task = SeparationTask(
        build_model(cfg.model), cfg.optim, checkpoint_info={"train_config": cfg.to_dict()}
    )
    dm = MixtureDataModule(cfg.data, 8000, seed=0)
    recorder = LossRecorder()
    trainer = build_trainer(cfg, callbacks=[recorder], loggers=False)
    trainer.fit(task, datamodule=dm, weights_only=True)
    return {
        "task": task,
        "trainer": trainer,
        "losses": recorder.losses,
        "out": out / "run",
        "data": sine_data,
    }


def test_loss_decreases(fitted: dict[str, Any]) -> None:
    losses = fitted["losses"]
    assert len(losses) == 30
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.75 * first, (first, last)


def test_validation_and_checkpoints(fitted: dict[str, Any]) -> None:
    metrics = fitted["trainer"].callback_metrics
    for name in ("val/sdr", "val/sdri", "val/si_sdr", "val/loss"):
        assert torch.isfinite(metrics[name]), name
    assert float(metrics["val/sdri"]) > 0.0  # it learned something about sines
    # The logged means equal scores computed here from the model at step 30 (the last step).
    model = fitted["task"].model.eval()
    rows = read_mixture_list(fitted["data"]["mixtures"])
    scores: dict[str, list[float]] = {"val/sdr": [], "val/sdri": [], "val/si_sdr": []}
    for item in FixedMixtureDataset(rows, fitted["data"]["audio_dir"], 8000):
        with torch.no_grad():
            est = model(item["mixture"][None], [item["query"]])[0, 0].double()
        s, x = item["target"][0].double(), item["mixture"][0].double()
        scores["val/sdr"].append(_sdr_db(s, est))
        scores["val/sdri"].append(_sdr_db(s, est) - _sdr_db(s, x))
        scores["val/si_sdr"].append(_sdr_db((s @ est) / (s @ s) * s, est))
    assert len(scores["val/sdr"]) == 4
    for name, values in scores.items():
        assert float(metrics[name]) == pytest.approx(sum(values) / 4, abs=2e-3), name
    checkpoints = fitted["out"] / "checkpoints"
    assert {p.name for p in checkpoints.iterdir()} == {"last.ckpt", "best.ckpt"}
    last = read_checkpoint(checkpoints / "last.ckpt")  # weights_only=True
    assert last["global_step"] == 30
    assert not any(k.startswith("model.text_encoder.") for k in last["state_dict"])
    best = read_checkpoint(checkpoints / "best.ckpt")  # written after validation at step 30
    assert best["querysep"]["validation"]["step"] == 30
    assert best["querysep"]["validation"]["val/sdri"] == pytest.approx(float(metrics["val/sdri"]))


def test_export_round_trip(fitted: dict[str, Any], tmp_path: Path) -> None:
    folder = export_checkpoint(fitted["out"] / "checkpoints" / "best.ckpt", tmp_path / "model")
    loaded = load_model(str(folder))
    assert loaded.metadata["training"]["step"] == 30
    assert loaded.metadata["training"]["config"]["optim"]["lr"] == pytest.approx(3e-3)
    assert set(loaded.metadata["training"]["validation"]) >= {"val/sdr", "val/sdri", "val/si_sdr"}
    model = fitted["task"].model.eval()
    mixture = torch.randn(2, 1, 3000) * 0.1
    queries = ["a sine tone", "noise"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(mixture, queries), model(mixture, queries))


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda c: c["querysep"].pop("model_config"), "not a separator checkpoint"),  # a mel VAE's
        (lambda c: c.update(querysep=["not", "a", "dict"]), "not a separator checkpoint"),
        (lambda c: c["querysep"].update(model_config=[1]), "damaged model config"),
        (lambda c: c["querysep"]["model_config"].pop("network"), "damaged model config"),
        (
            lambda c: c["querysep"]["model_config"]["network"]["config"].pop("condition_dim"),
            "condition_dim",
        ),
        (lambda c: c["querysep"].update(validation=[3.0]), "damaged training record"),
        (lambda c: c.update(global_step="7"), "damaged training record"),
        (lambda c: c.update(state_dict=5), "damaged state_dict"),
        (lambda c: c["querysep"]["validation"].update(x=torch.ones(2)), "damaged training record"),
    ],
)
def test_export_refuses_a_damaged_or_foreign_checkpoint_in_one_error(
    fitted: dict[str, Any], tmp_path: Path, damage: Any, says: str
) -> None:
    ckpt = torch.load(fitted["out"] / "checkpoints" / "best.ckpt", weights_only=True)
    damage(ckpt)
    path = tmp_path / "odd.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=says):
        export_checkpoint(path, tmp_path / "model")
    assert not (tmp_path / "model" / "model.safetensors").exists()


def test_the_export_at_the_end_of_training_takes_the_model_folders_lock(
    fitted: dict[str, Any], tmp_path: Path
) -> None:
    """`querysep train export RUN -o RUN/model` meanwhile would clear its temporary files."""
    run = tmp_path / "run"
    shutil.copytree(fitted["out"] / "checkpoints", run / "checkpoints")
    result = TrainResult(output_dir=run, step=30)
    with (
        locked_folder(run / "model", "train export"),
        pytest.raises(OutputError, match="in use by another running querysep train export"),
    ):
        _export(run, result, print)
    _export(run, result, print)
    assert load_model(str(result.exported)).metadata["training"]["step"] == 30


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_one_step_is_an_adamw_step_down_the_gradient(
    sine_data: dict[str, Path], tmp_path: Path
) -> None:
    """The first AdamW step moves each weight by ``lr * g / (|g| + eps)`` against its gradient
    (plus decoupled weight decay), at the warm-up's first rate, and lowers the batch's loss."""
    config = tiny_config(sine_data, tmp_path / "run")
    config["optim"].update(lr=4e-4, warmup_steps=4, weight_decay=0.1, loss="sdr")
    cfg = config_from_dict(config)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    with torch.no_grad():  # move off the neutral head so every layer gets a gradient
        model.net.base.after_conv.weight.normal_(0.0, 0.1)
    task = SeparationTask(model, cfg.optim).train()
    optimizer = task.configure_optimizers()["optimizer"]
    dm = MixtureDataModule(cfg.data, 8000, seed=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))

    names = {p: n for n, p in task.named_parameters()}
    trained = task.trainable_parameters()
    before = {names[p]: p.detach().clone() for p in trained}
    loss, estimate = task._step(batch, "train")
    # the 'sdr' loss is the negative SDR in dB, averaged over the batch
    assert loss.item() == pytest.approx(-_mean_sdr(batch["target"], estimate), abs=1e-3)
    optimizer.zero_grad()
    loss.backward()
    grads = {names[p]: p.grad.detach().clone() for p in trained}
    assert sum(int(g.count_nonzero()) for g in grads.values()) > 0.9 * sum(
        g.numel() for g in grads.values()
    )
    optimizer.step()

    lr = 4e-4 / 4  # warm-up step 0 of 4: lr * (0 + 1) / 4
    for p in trained:
        name = names[p]
        g = grads[name]
        want = before[name] * (1 - lr * 0.1) - lr * g / (g.abs() + cfg.optim.eps)
        torch.testing.assert_close(p.detach(), want, rtol=1e-5, atol=1e-9, msg=name)
    with torch.no_grad():
        after, estimate = task._step(batch, "train")
    gain = _mean_sdr(batch["target"], estimate) + loss.item()
    assert gain > 0.01, gain  # the batch's SDR went up: measured +0.084 dB
    assert after.item() == pytest.approx(loss.item() - gain, abs=1e-3)


def _sdr_db(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    return float(10 * torch.log10(reference.square().sum() / (reference - estimate).square().sum()))


def _mean_sdr(target: torch.Tensor, estimate: torch.Tensor) -> float:
    s, e = target.double().flatten(1), estimate.detach().double().flatten(1)
    return float((10 * torch.log10(s.square().sum(1) / (s - e).square().sum(1))).mean())


@pytest.mark.parametrize("loss", ["sdr", "thresholded_sdr", "thresholded_sdr_si_sdr"])
def test_fast_dev_run(sine_data: dict[str, Path], tmp_path: Path, loss: str) -> None:
    """One training and one validation batch through Lightning, with bf16 autocast on CPU."""
    cfg = config_from_dict(
        tiny_config(sine_data, tmp_path / "run", precision="bf16-mixed"),
        [f"optim.loss={loss}"],
    )
    task = SeparationTask(build_model(cfg.model), cfg.optim)
    trainer = pl.Trainer(
        fast_dev_run=True,
        accelerator="cpu",
        precision="bf16-mixed",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    trainer.fit(task, datamodule=MixtureDataModule(cfg.data, 8000))
    assert trainer.global_step == 1
    assert torch.isfinite(trainer.callback_metrics["val/sdri"])


def test_a_fresh_model_starts_from_the_neutral_mask(
    sine_data: dict[str, Path], tmp_path: Path
) -> None:
    cfg = config_from_dict(tiny_config(sine_data, tmp_path / "run"))
    model = build_model(cfg.model).eval()
    mix = torch.randn(1, 1, 4000)
    with torch.no_grad():
        a, b = model(mix, ["a sine"]), model(mix, ["white noise"])
    torch.testing.assert_close(a, b)  # no query preference before training
    assert float(model.net.base.after_conv.weight.detach().abs().max()) == 0.0


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_text_noise_moves_training_queries_on_their_sphere_and_repeats_per_step(
    sine_data: dict[str, Path], tmp_path: Path
) -> None:
    """``optim.text_noise`` perturbs the training condition (same norm, expected distance),
    draws the same noise again at the same step (exact resume), other noise at another step,
    and leaves validation queries alone."""
    config = tiny_config(sine_data, tmp_path / "run")
    config["optim"].update(text_noise=0.5)
    cfg = config_from_dict(config)
    task = SeparationTask(build_model(cfg.model), cfg.optim, seed=7).train()
    seen: list[torch.Tensor] = []
    task.model.net.register_forward_pre_hook(lambda _m, args: seen.append(args[1].detach()))
    dm = MixtureDataModule(cfg.data, 8000, seed=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    clean = task.embed(batch["query"]).float()

    with torch.no_grad():
        task._step(batch, "train")
        task._step(batch, "train")
        task._step(batch, "val")
    first, again, val = (t.float() for t in seen)
    torch.testing.assert_close(first, again)  # same (seed, step, rank): the same draw
    torch.testing.assert_close(val, clean)  # validation: no noise
    torch.testing.assert_close(first.norm(dim=-1), clean.norm(dim=-1))
    dist = (first - clean).norm(dim=-1) / clean.norm(dim=-1)
    # noise of expected norm 0.5, then back onto the sphere: about 0.5 / sqrt(1 + 0.25) = 0.45
    # in 16 dimensions each row's distance scatters around that
    assert 0.2 < float(dist.mean()) < 0.7, dist

    seen.clear()
    other = SeparationTask(build_model(cfg.model), cfg.optim, seed=8).train()
    other.model.net.register_forward_pre_hook(lambda _m, args: seen.append(args[1].detach()))
    with torch.no_grad():
        other._step(batch, "train")
    assert not torch.allclose(seen[0].float(), first)  # another seed, another draw

    quiet = SeparationTask(build_model(config_from_dict(tiny_config(sine_data, tmp_path)).model))
    seen.clear()
    quiet.model.net.register_forward_pre_hook(lambda _m, args: seen.append(args[1].detach()))
    with torch.no_grad():
        quiet.train()._step(batch, "train")
    torch.testing.assert_close(seen[0].float(), clean)  # text_noise 0: the embedding itself

    draws = [
        perturb_embeddings(clean, 0.5, _step_generator(7, step, rank))
        for step, rank in ((0, 0), (0, 0), (1, 0), (0, 1))
    ]
    torch.testing.assert_close(draws[0], first)
    torch.testing.assert_close(draws[1], draws[0])
    assert not torch.allclose(draws[2], draws[0])  # the next step draws other noise
    assert not torch.allclose(draws[3], draws[0])  # so does another DDP rank


def test_mix_embeddings_weighs_two_rows_and_keeps_their_norm() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 16, generator=gen), 3 * torch.randn(4, 16, generator=gen)
    w = torch.tensor([1.0, 0.0, 0.5, 0.25], dtype=torch.float64)  # as the loader collates
    out = mix_embeddings(a, b, w)
    torch.testing.assert_close(out[0], a[0])
    torch.testing.assert_close(out[1], b[1])
    for i in (2, 3):  # on the line between the two rows, at the mixed norm
        direction = float(w[i]) * a[i] + (1 - float(w[i])) * b[i]
        cosine = torch.nn.functional.cosine_similarity(out[i], direction, dim=0)
        torch.testing.assert_close(cosine, torch.tensor(1.0))
        norm = float(w[i]) * a[i].norm() + (1 - float(w[i])) * b[i].norm()
        torch.testing.assert_close(out[i].norm(), norm)
    half = mix_embeddings(a.bfloat16(), b, w)
    assert half.dtype == torch.bfloat16
    opposite = mix_embeddings(a[:1], -a[:1], torch.tensor([0.5]))  # no division by zero
    assert torch.isfinite(opposite).all()


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_query_mix_conditions_training_steps_on_the_mixed_embedding(
    sine_data: dict[str, Path], tmp_path: Path
) -> None:
    """``data.query_mix_prob`` reaches the training step as the weighted mix of the two
    texts' embeddings; validation queries stay as they are."""
    config = tiny_config(sine_data, tmp_path / "run")
    config["data"].update(query_mix_prob=1.0, caption="both")
    cfg = config_from_dict(config)
    task = SeparationTask(build_model(cfg.model), cfg.optim).train()
    seen: list[torch.Tensor] = []
    task.model.net.register_forward_pre_hook(lambda _m, args: seen.append(args[1].detach()))
    dm = MixtureDataModule(cfg.data, 8000, seed=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert any(m != q for m, q in zip(batch["query_mix"], batch["query"], strict=True))
    first, second = task.embed(batch["query"]).float(), task.embed(batch["query_mix"]).float()
    with torch.no_grad():
        task._step(batch, "train")
        task._step(batch, "val")
    expected = mix_embeddings(first, second, batch["query_weight"])
    torch.testing.assert_close(seen[0].float(), expected)
    assert not torch.allclose(seen[0].float(), first)
    torch.testing.assert_close(seen[1].float(), first)  # validation: the query itself


class ModeRecorder(pl.Callback):
    def __init__(self) -> None:
        self.modes: list[tuple[bool, bool]] = []

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, idx: int) -> None:
        norms = [m for m in pl_module.model.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        self.modes.append((pl_module.model.net.training, all(m.training for m in norms)))


@pytest.mark.filterwarnings("ignore:Found 1 module\\(s\\) in eval mode")  # the frozen encoder
def test_fine_tuning_a_loaded_model_trains_its_batchnorm(
    fitted: dict[str, Any], tmp_path: Path
) -> None:
    """``model.init_from`` loads a model in eval mode; its training steps still run in
    training mode (BatchNorm statistics move), before and after a validation."""
    folder = export_checkpoint(fitted["out"] / "checkpoints" / "best.ckpt", tmp_path / "model")
    config = tiny_config(fitted["data"], tmp_path / "run", max_steps=4, val_every_n_steps=2)
    config["model"] = {"init_from": str(folder)}
    cfg = config_from_dict(config)
    model = build_model(cfg.model)
    assert not model.net.training  # as load_model returns it
    before = {k: v.clone() for k, v in model.net.state_dict().items() if "running_mean" in k}
    task = SeparationTask(model, cfg.optim)
    recorder = ModeRecorder()
    trainer = build_trainer(cfg, callbacks=[recorder], loggers=False)
    trainer.fit(task, datamodule=MixtureDataModule(cfg.data, 8000, seed=0), weights_only=True)
    assert recorder.modes == [(True, True)] * 4  # steps 1-2, validation, steps 3-4
    assert task.model.training and not task.model.text_encoder.training
    after = model.net.state_dict()
    assert before and all(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.filterwarnings("ignore:Found 1 module\\(s\\) in eval mode")  # the frozen encoder
def test_grow_deepens_a_loaded_model_without_changing_what_it_does(
    fitted: dict[str, Any], tmp_path: Path
) -> None:
    """``model.grow`` adds residual blocks to an ``init_from`` model: the same output at the
    start, new weights that training moves, and an export that reloads with the new depth."""
    folder = export_checkpoint(fitted["out"] / "checkpoints" / "best.ckpt", tmp_path / "model")
    config = tiny_config(fitted["data"], tmp_path / "run", max_steps=3, val_every_n_steps=3)
    config["model"] = {"init_from": str(folder), "grow": {"blocks": 2}}
    cfg = config_from_dict(config)
    plain, model = load_model(str(folder)), build_model(cfg.model)
    levels = len(plain.net.config.channels)
    assert model.net.config.level_blocks() == (2,) * levels
    assert model.metadata["grown"] == {"blocks": 2}
    mixture, queries = torch.randn(2, 1, 4000), ["a sine tone", "noise"]
    with torch.no_grad():
        torch.testing.assert_close(model(mixture, queries), plain(mixture, queries), rtol=0, atol=0)
    task = SeparationTask(model, cfg.optim)
    trainer = build_trainer(cfg, loggers=False)
    trainer.fit(task, datamodule=MixtureDataModule(cfg.data, 8000, seed=0), weights_only=True)
    new = [k for k in model.net.state_dict() if ".extra1.conv2." in k]
    assert new and all(model.net.state_dict()[k].abs().sum() > 0 for k in new)
    saved = load_model(str(model.eval().save_pretrained(tmp_path / "grown")))
    assert saved.net.config.level_blocks() == (2,) * levels
    with torch.no_grad():
        torch.testing.assert_close(saved(mixture, queries), model(mixture, queries))
        assert (saved(mixture, queries) - plain(mixture, queries)).abs().max() > 1e-5
    with pytest.raises(ConfigError, match=r"grow.depth: unknown key \(known: blocks\)"):
        config_from_dict({**config, "model": {"init_from": str(folder), "grow": {"depth": 2}}})


class WeightRecorder(pl.Callback):
    """A copy of every trainable weight after each step."""

    def __init__(self) -> None:
        self.after: list[list[torch.Tensor]] = []

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, idx: int):
        self.after.append([p.detach().clone() for p in pl_module.trainable_parameters()])


def _nan_loss_at(task: SeparationTask, steps: set[int] | None) -> None:
    """Make ``task``'s loss NaN at the given steps (every step: ``None``)."""
    loss_fn = task.loss_fn

    def loss(estimate: torch.Tensor, target: torch.Tensor, mixture: Any) -> torch.Tensor:
        value = loss_fn(estimate, target, mixture)
        if steps is None or task.global_step in steps:
            return value * float("nan")
        return value

    task.loss_fn = loss


def _fresh_task(
    sine_data: dict[str, Path], out: Path, **trainer: Any
) -> tuple[Any, SeparationTask]:
    """A tiny run's config and its freshly seeded task."""
    cfg = config_from_dict(tiny_config(sine_data, out, **trainer))
    pl.seed_everything(0, verbose=False)
    return cfg, SeparationTask(build_model(cfg.model), cfg.optim)


def test_a_step_with_non_finite_gradients_leaves_the_weights_alone(
    tmp_path: Path, sine_data: dict[str, Path]
) -> None:
    cfg, task = _fresh_task(sine_data, tmp_path / "run", max_steps=6, val_every_n_steps=6)
    _nan_loss_at(task, {2, 3})
    weights = WeightRecorder()
    trainer = build_trainer(cfg, callbacks=[weights], checkpoints=False, loggers=False)
    with pytest.warns(UserWarning, match=r"non-finite gradients, update skipped") as seen:
        trainer.fit(task, datamodule=MixtureDataModule(cfg.data, 8000, seed=0))
    skipped = [str(w.message).split(":")[0] for w in seen if "non-finite" in str(w.message)]
    assert skipped == ["step 2", "step 3"]
    assert task.skipped_steps == 2 and trainer.global_step == 6
    assert all(torch.isfinite(p).all() for p in task.trainable_parameters())
    changed = [
        any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
        for before, after in zip(weights.after, weights.after[1:], strict=False)
    ]
    assert changed == [True, False, False, True, True]  # steps 1..5; 2 and 3 were skipped
    optimizer = trainer.optimizers[0]
    assert {int(s["step"]) for s in optimizer.state.values()} == {4}  # AdamW's own count
    assert torch.isfinite(trainer.callback_metrics["val/sdri"])


def test_training_stops_with_one_line_when_gradients_stay_non_finite(
    tmp_path: Path, sine_data: dict[str, Path]
) -> None:
    cfg, task = _fresh_task(sine_data, tmp_path / "run", max_steps=40)
    loss_fn = task.loss_fn
    _nan_loss_at(task, None)
    trainer = build_trainer(cfg, checkpoints=False, loggers=False)
    with (
        pytest.warns(UserWarning, match="non-finite gradients"),
        pytest.raises(TrainingError, match=r"^training diverged: 25 steps in a row up to step 24"),
    ):
        trainer.fit(task, datamodule=MixtureDataModule(cfg.data, 8000, seed=0))
    assert all(torch.isfinite(p).all() for p in task.trainable_parameters())
    task.loss_fn = loss_fn  # the same task trains on once the loss is finite again
    again = config_from_dict(tiny_config(sine_data, tmp_path / "again", max_steps=2))
    build_trainer(again, checkpoints=False, loggers=False).fit(
        task, datamodule=MixtureDataModule(cfg.data, 8000, seed=0)
    )


def test_a_nan_forward_leaves_the_batchnorm_statistics_as_they_were(
    tmp_path: Path, sine_data: dict[str, Path]
) -> None:
    cfg, task = _fresh_task(sine_data, tmp_path / "run", max_steps=4, val_every_n_steps=4)
    net = task.model.net
    forward = net.forward

    def nan_at_step_2(mixture: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        if net.training and task.global_step == 2:
            mixture = mixture * float("nan")
        return forward(mixture, condition)

    net.forward = nan_at_step_2
    stats: list[dict[str, torch.Tensor]] = []

    class Stats(pl.Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            stats.append({k: v.clone() for k, v in net.state_dict().items() if "running" in k})

    trainer = build_trainer(cfg, callbacks=[Stats()], checkpoints=False, loggers=False)
    with pytest.warns(UserWarning, match="step 2: non-finite gradients"):
        trainer.fit(task, datamodule=MixtureDataModule(cfg.data, 8000, seed=0))
    assert task.skipped_steps == 1 and stats[0]
    assert all(torch.equal(stats[2][k], stats[1][k]) for k in stats[1])  # step 2 undone
    assert any(not torch.equal(stats[3][k], stats[2][k]) for k in stats[2])  # step 3 moved
    assert all(torch.isfinite(b).all() for b in net.buffers() if b.is_floating_point())
    assert torch.isfinite(trainer.callback_metrics["val/sdri"])


def test_a_nan_validation_score_makes_the_mean_nan(sine_data: dict[str, Path]) -> None:
    task = SeparationTask(build_model(config_from_dict(tiny_config(sine_data, Path("x"))).model))
    task.val_sdri.update(torch.tensor([10.0, float("nan"), 20.0]))
    assert torch.isnan(task.val_sdri.compute())


def test_only_non_finite_gradients_count_as_non_finite() -> None:
    from querysep.training.module import _all_finite

    huge = [torch.full((1000,), 1e36), torch.randn(3, dtype=torch.bfloat16)]
    assert _all_finite(huge)  # a norm of these would overflow; AdamW takes them
    assert torch.equal(huge[0], torch.full((1000,), 1e36))  # left as they were
    for bad in (float("nan"), float("inf"), -float("inf")):
        assert not _all_finite([*huge, torch.tensor([0.0, bad])])
    assert _all_finite([])


def test_several_machines_without_a_launcher_are_refused_before_training(
    tmp_path: Path, sine_data: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started alone, a num_nodes=2 run used to wait for the other machine forever."""
    import os

    for name in list(os.environ):
        if name.startswith(("SLURM_", "LSB_", "OMPI_", "PMI_", "KUBERNETES_")) or name in (
            "MASTER_ADDR",
            "NODE_RANK",
            "TORCHELASTIC_RUN_ID",
            "GROUP_RANK",
            "LOCAL_RANK",
        ):
            monkeypatch.delenv(name)
    cfg = config_from_dict(tiny_config(sine_data, tmp_path / "run", num_nodes=2))
    with pytest.raises(
        ConfigError, match=r"^trainer.num_nodes=2: this process was not started"
    ) as info:
        build_trainer(cfg, loggers=False)
    assert "\n" not in str(info.value)
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")  # the hand-made launch: each machine sets both
    with pytest.raises(ConfigError, match="not both set"):
        build_trainer(cfg, loggers=False)
    # node rank 0: a Trainer made as another rank would leave Lightning's process-wide
    # rank_zero_only.rank at that rank, and later runs in this process would log nothing
    for rank in ("NODE_RANK", "GROUP_RANK"):  # Lightning reads the node rank from either
        with monkeypatch.context() as env:
            env.setenv(rank, "0")
            assert build_trainer(cfg, loggers=False).num_nodes == 2
