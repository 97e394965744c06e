"""Step sampler, global-index dataset, clip loading, warm-up schedule and losses."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from querysep.data.effects import Effects
from querysep.errors import ConfigError, DataError
from querysep.training.config import OptimConfig, PrepareConfig, TrainSetConfig, config_from_dict
from querysep.training.datamodule import (
    GlobalIndexDataset,
    MixtureDataModule,
    StepSampler,
    load_training_clips,
    pad_collate,
)
from querysep.training.module import (
    SeparationTask,
    WarmupConstant,
    l1_loss,
    neg_sdr_loss,
    neg_si_sdr_loss,
    thresholded_sdr_loss,
    thresholded_sdr_si_sdr_loss,
)
from querysep.training.run import build_model

from .conftest import tiny_config


def _take(sampler: StepSampler, n: int) -> list[int]:
    return list(itertools.islice(iter(sampler), n))


def test_step_sampler_resumes_and_shards() -> None:
    full = _take(StepSampler(3), 30)
    assert full == list(range(30))
    assert _take(StepSampler(3, start_step=lambda: 4), 18) == full[12:]
    ranks = [_take(StepSampler(2, rank=r, world_size=3, start_step=5), 8) for r in range(3)]
    seen = sorted(itertools.chain.from_iterable(ranks))
    assert seen == list(range(30, 54))  # steps 5..8 of all ranks: disjoint and complete
    with pytest.raises(ConfigError):
        StepSampler(2, rank=3, world_size=3)


def test_speed_range_reaches_the_training_dataset(sine_data: dict[str, Path]) -> None:
    raw = tiny_config(sine_data, Path("unused"))
    plain = MixtureDataModule(config_from_dict(raw).data, 8000, seed=3)
    raw["data"]["speed_range"] = [0.8, 0.9]
    slowed = MixtureDataModule(config_from_dict(raw).data, 8000, seed=3)
    for dm in (plain, slowed):
        dm.setup("fit")
    assert plain.train_dataset.speed_range == (1.0, 1.0)
    assert slowed.train_dataset.speed_range == (0.8, 0.9)
    assert not torch.equal(plain.train_dataset[0]["target"], slowed.train_dataset[0]["target"])


def test_room_effects_and_three_sources_reach_the_training_dataset(
    sine_data: dict[str, Path],
) -> None:
    raw = tiny_config(sine_data, Path("unused"))
    plain = MixtureDataModule(config_from_dict(raw).data, 8000, seed=3)
    raw["data"].update(
        reverb_prob=0.5, reverb_rt60=[0.3, 0.4], reverb_drr_db=[2.0, 3.0], eq_prob=0.25
    )
    raw["data"].update(eq_db=4.0, three_source_prob=0.75)
    room = MixtureDataModule(config_from_dict(raw).data, 8000, seed=3)
    for dm in (plain, room):
        dm.setup("fit")
    assert plain.train_dataset.effects == Effects() and plain.train_dataset.three_source_prob == 0
    assert room.train_dataset.effects == Effects(
        reverb_prob=0.5, rt60=(0.3, 0.4), drr_db=(2.0, 3.0), eq_prob=0.25, eq_db=4.0
    )
    assert room.train_dataset.three_source_prob == 0.75
    for bad, match in (
        ({"reverb_rt60": [0.5, 0.2]}, "reverb_rt60"),
        ({"eq_db": 40}, "eq_db"),
        ({"three_source_prob": -0.1}, "three_source_prob"),
    ):
        broken = tiny_config(sine_data, Path("unused"))
        broken["data"].update(bad)
        with pytest.raises(ConfigError, match=match):
            config_from_dict(broken)


def test_examples_are_a_function_of_the_global_index(sine_data: dict[str, Path]) -> None:
    cfg = config_from_dict(tiny_config(sine_data, Path("unused")))
    dm = MixtureDataModule(cfg.data, 8000, seed=3)
    dm.setup("fit")
    ds = GlobalIndexDataset(dm.train_dataset)
    n = len(dm.train_dataset)
    later = ds[n + 1]  # epoch 1 first, then epoch 0: no hidden state
    early = ds[1]
    assert not torch.equal(early["mixture"], later["mixture"])
    again = MixtureDataModule(cfg.data, 8000, seed=3)
    again.setup("fit")
    torch.testing.assert_close(
        GlobalIndexDataset(again.train_dataset)[n + 1]["mixture"], later["mixture"]
    )

    # Forked workers see exactly what the main process sees.
    def batches(workers: int) -> list[torch.Tensor]:
        loader = DataLoader(
            ds, batch_size=4, sampler=StepSampler(4, start_step=2), num_workers=workers
        )
        return [b["mixture"] for b in itertools.islice(loader, 3)]

    for a, b in zip(batches(0), batches(2), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_training_clips_splits_and_errors(sine_data: dict[str, Path], tmp_path: Path) -> None:
    manifest = str(sine_data["manifest"])
    clips = load_training_clips([TrainSetConfig(manifest=manifest, splits=["fold1"])])
    assert clips and {c.split for c in clips} == {"fold1"}
    with pytest.raises(DataError, match=r"no clip in split.*the splits there are: fold1, fold2"):
        load_training_clips([TrainSetConfig(manifest=manifest, splits=["fold9"])])
    with pytest.raises(ConfigError, match="unknown recipe"):
        load_training_clips([TrainSetConfig(prepare=PrepareConfig(recipe="nope", root="x"))])
    with pytest.raises(DataError, match="manifest not found"):
        load_training_clips([TrainSetConfig(manifest=str(tmp_path / "missing.jsonl"))])


def test_pad_collate() -> None:
    items = [
        {"mixture": torch.ones(1, 5), "target": torch.ones(1, 5), "query": "a", "id": "x"},
        {"mixture": torch.ones(1, 3), "target": torch.ones(1, 3), "query": "b", "id": "y"},
    ]
    batch = pad_collate(items)
    assert batch["mixture"].shape == (2, 1, 5) and batch["length"].tolist() == [5, 3]
    assert batch["mixture"][1, 0, 3:].abs().sum() == 0 and batch["query"] == ["a", "b"]


def test_warmup_then_constant() -> None:
    factor = WarmupConstant(4)
    assert [factor(t) for t in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert WarmupConstant(0)(0) == 1.0
    cfg = config_from_dict(
        tiny_config(
            {"manifest": Path("m"), "mixtures": Path("v"), "audio_dir": Path(".")}, Path("o")
        )
    )
    task = SeparationTask(build_model(cfg.model), OptimConfig(lr=0.01, warmup_steps=4))
    conf = task.configure_optimizers()
    optimizer, scheduler = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01])
    assert optimizer.defaults["amsgrad"] is True
    assert all(p.requires_grad for group in optimizer.param_groups for p in group["params"])


@pytest.mark.parametrize(
    "loss",
    [l1_loss, neg_sdr_loss, neg_si_sdr_loss, thresholded_sdr_loss, thresholded_sdr_si_sdr_loss],
)
def test_losses_are_safe_on_silent_targets(loss) -> None:
    target = torch.zeros(2, 1, 800)
    target[0, 0] = torch.sin(torch.arange(800) * 0.1)  # item 1 stays silent
    estimate = (0.5 * target + 0.01 * torch.randn_like(target)).requires_grad_(True)
    mixture = target + 0.1 * torch.randn_like(target)
    value = loss(estimate, target, mixture)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(estimate.grad).all()
    # the silent item still trains towards silence: a step against the gradient shrinks it
    assert (estimate.grad[1] * estimate[1]).sum() > 0


def test_sdr_losses_values() -> None:
    target = torch.sin(torch.arange(1600) * 0.05).reshape(1, 1, -1)
    noisy = target + 0.1 * torch.randn_like(target)
    assert neg_sdr_loss(target, target) < -60 and l1_loss(target, target) == 0
    assert neg_sdr_loss(noisy, target) > neg_sdr_loss(target, target)
    torch.testing.assert_close(neg_si_sdr_loss(3.0 * noisy, target), neg_si_sdr_loss(noisy, target))


def test_thresholded_sdr_bounds_silent_targets_and_keeps_active_ones() -> None:
    torch.manual_seed(0)
    target = torch.sin(torch.arange(1600) * 0.05).reshape(1, 1, -1)
    noise = torch.randn_like(target)
    mixture = target + noise
    # an active target: the same ranking and, far from the floor, the plain SDR value
    rough, close = target + 0.8 * noise, target + 0.03 * noise
    loss_close = thresholded_sdr_loss(close, target, mixture)
    assert loss_close < thresholded_sdr_loss(rough, target, mixture)
    torch.testing.assert_close(
        thresholded_sdr_loss(rough, target, mixture), neg_sdr_loss(rough, target), atol=0.05, rtol=0
    )
    # a silent target: the plain SDR loss grows without bound as the estimate gets quieter
    # relative to eps; the thresholded loss is ~0 once the estimate is below the floor
    silent = torch.zeros_like(target)
    quiet = 1e-3 * mixture  # 60 dB below the mixture, 30 dB below the floor
    assert neg_sdr_loss(quiet, silent) > 40
    assert 0 <= thresholded_sdr_loss(quiet, silent, mixture) < 0.01
    loud = 0.5 * mixture
    assert thresholded_sdr_loss(loud, silent, mixture) == pytest.approx(
        10 * math.log10(0.25 / 1e-3 + 1), abs=1e-3
    )
    # a quiet active target: the floor is in the numerator too, so a perfect estimate of a
    # target 30 dB under the mixture scores 10 log10(2) = 3 dB, not the plain SDR's ~80 dB
    faint = target * (1e-3 * mixture.pow(2).sum() / target.pow(2).sum()).sqrt()
    perfect = thresholded_sdr_loss(faint, faint, mixture)
    assert perfect == pytest.approx(-10 * math.log10(2), abs=1e-3)
    with pytest.raises(ValueError, match="needs the mixture"):
        thresholded_sdr_loss(loud, silent)


def test_sdr_si_sdr_loss_does_not_reward_turning_down() -> None:
    torch.manual_seed(0)
    target = torch.sin(torch.arange(1600) * 0.05).reshape(1, 1, -1)
    noise = torch.randn_like(target)
    mixture = target + noise
    rough = target + 0.8 * noise
    # far from the floor: the mean of the plain SDR and SI-SDR losses
    both = thresholded_sdr_si_sdr_loss(rough, target, mixture)
    plain = 0.5 * (neg_sdr_loss(rough, target) + neg_si_sdr_loss(rough, target))
    torch.testing.assert_close(both, plain, atol=0.05, rtol=0)
    # for a target 15 dB under the interference, halving the mixture gains ~6 dB of SDR (the
    # error shrinks) but next to no SI-SDR (only the floor is not scaled with the estimate),
    # so the combined loss gains about half as much as the SDR loss alone
    quiet = target * (10 ** (-15 / 20) * noise.norm() / target.norm())
    mixture = quiet + noise
    gain_sdr = thresholded_sdr_loss(mixture, quiet, mixture) - thresholded_sdr_loss(
        0.5 * mixture, quiet, mixture
    )
    gain_both = thresholded_sdr_si_sdr_loss(mixture, quiet, mixture) - thresholded_sdr_si_sdr_loss(
        0.5 * mixture, quiet, mixture
    )
    assert gain_sdr > 5.0
    assert gain_sdr / 2 <= gain_both < gain_sdr / 2 + 0.25
    # a silent target: bounded, and ~0 once the estimate is far below the floor
    silent = torch.zeros_like(target)
    assert 0 <= thresholded_sdr_si_sdr_loss(1e-3 * mixture, silent, mixture) < 0.01
    assert thresholded_sdr_si_sdr_loss(0.5 * mixture, silent, mixture) < 30
    with pytest.raises(ValueError, match="needs the mixture"):
        thresholded_sdr_si_sdr_loss(mixture, silent)


def test_cosine_schedule_warms_up_then_decays_to_the_floor() -> None:
    from querysep.training.module import WarmupCosine

    f = WarmupCosine(warmup_steps=10, total_steps=110, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55)  # half way: 0.1 + 0.9 * 0.5
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    values = [f(s) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(values))
