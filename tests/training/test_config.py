"""Training config: YAML binding, key=value overrides, errors that name the key and file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from querysep.errors import ConfigError
from querysep.training.config import TrainConfig, config_from_dict, load_config

from .conftest import tiny_config, write_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def config_file(tmp_path: Path, sine_data: dict[str, Path]) -> Path:
    return write_config(tmp_path / "run.yaml", tiny_config(sine_data, tmp_path / "run"))


def test_yaml_and_overrides(config_file: Path) -> None:
    cfg = load_config(
        config_file,
        [
            "optim.lr=1e-4",  # PyYAML reads this as text; the float field takes it
            "optim.loss=si_sdr",
            "data.gain_db=[-5, 5]",
            "data.train.0.splits=[fold1]",
            "trainer.precision=bf16-mixed",
            "trainer.devices=[0, 1]",
            "model.network.config.channels=[4, 8, 8]",
        ],
    )
    assert isinstance(cfg, TrainConfig)
    assert cfg.optim.lr == pytest.approx(1e-4) and cfg.optim.loss == "si_sdr"
    # YAML 1.1 would read 12:00:00 as the base-60 integer 43200; a time stays text
    assert load_config(config_file, ["trainer.max_time=12:00:00"]).trainer.max_time == "12:00:00"
    assert cfg.data.gain_db == [-5.0, 5.0]
    assert cfg.data.train[0].splits == ["fold1"]
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.devices == [0, 1]
    assert cfg.model.network is not None
    assert cfg.model.network["config"]["channels"] == [4, 8, 8]
    assert "condition_dim" not in cfg.model.network["config"]  # taken from the encoder
    assert cfg.trainer.max_steps == 30 and cfg.optim.warmup_steps == 0


def test_defaults_and_yaml_round_trip(config_file: Path, tmp_path: Path) -> None:
    cfg = load_config(config_file, ["trainer.precision=32"])
    assert cfg.optim.amsgrad is True and cfg.data.caption == "captions"
    again = config_from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


def test_unknown_key_in_file_names_key_file_and_line(tmp_path: Path, config_file: Path) -> None:
    text = config_file.read_text().replace("  lr: 0.003", "  lrr: 0.003")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    message = str(info.value)
    assert "optim.lrr" in message and str(bad) in message and "did you mean 'lr'" in message
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "lrr" in t)
    assert f"{bad}:{line}" in message


def test_unknown_override_names_the_override(config_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"override 'trainer.max_step=5'.*trainer.max_step"):
        load_config(config_file, ["trainer.max_step=5"])
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(config_file, ["trainer.max_steps"])
    with pytest.raises(ConfigError, match="not an item"):
        load_config(config_file, ["data.train.3.splits=[a]"])


def test_the_override_that_broke_a_section_is_the_one_blamed(config_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"^override 'trainer=1': trainer: expected a mapping"):
        load_config(config_file, ["trainer.max_steps=2", "trainer=1"])
    with pytest.raises(ConfigError, match=r"^override 'optim=\[1\]': optim"):
        load_config(config_file, ["optim.lr=0.01", "optim=[1]"])


def test_recursive_and_nested_yaml_aliases_fail_in_one_line(tmp_path: Path) -> None:
    loop = tmp_path / "loop.yaml"
    loop.write_text("model: &a\n  x: *a\n")
    with pytest.raises(ConfigError, match=rf"^{loop}:2: model.x: unknown key"):
        load_config(loop)
    nested = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]  # 10**8 paths if walked as a tree
    nested += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join([*nested, "model: {x: *a8}", ""]))
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(bomb)


def test_broken_yaml_reports_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("optim:\n  lr: 0.1\n  loss: [l1\ntrainer: {}\n")
    with pytest.raises(ConfigError, match=rf"{bad}:\d+:\d+: invalid YAML"):
        load_config(bad)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("optim.lr=fast", r"optim.lr: expected a number, got 'fast'"),
        ("optim.loss=l2", r"optim.loss: must be one of l1, mse, sdr, si_sdr, thresholded_sdr or"),
        ("trainer.max_steps=0", r"trainer.max_steps: must be >= 1, got 0"),
        ("trainer.precision=16", r"must be one of auto, 32 or bf16-mixed, got '16'"),
        ("trainer.accelerator=tpuu", r"trainer.accelerator: must be one of auto, cpu, .*'tpuu'"),
        ("trainer.devices=0", r"trainer.devices: devices must be auto, a count"),
        ("trainer.max_time=soon", r"trainer.max_time: max_time must be HH:MM:SS"),
        ("data.caption=words", r"must be one of captions, labels or both"),
        ("data.gain_db=[5, -5]", r"low <= high"),
        ("data.gain_db=[-15, 800]", r"data.gain_db.1: must be <= 100"),
        ("data.gain_db=[.nan, 5]", r"data.gain_db.0: "),
        ("model.network.config.hop_length=200", r"hop_length <= n_fft / 2, got 256/200"),
        ("data.speed_range=[1.1, 0.9]", r"data.speed_range: .*low <= high"),
        ("data.speed_range=[0.9, 3]", r"data.speed_range.1: must be <= 2"),
        ("data.segment_seconds=.nan", r"data.segment_seconds: expected a finite number"),
        ("data.sample_rate=16000", r"data.sample_rate: 16000 differs from the network's 8000 Hz"),
        ("model.init_from=test-tiny", r"override 'model.init_from=test-tiny': model: give either"),
        ("model.grow={blocks: 2}", r"model.grow: needs init_from"),
        ("model.network.config.chanels=[4]", r"model.network.config.chanels: unknown key"),
        (
            "model.network.config.n_fft=many",
            r"network.config.n_fft: expected an integer, got 'many'",
        ),
        (
            "model.network.config.channels=5",
            r"model.network.config.channels: expected a list, got 5",
        ),
        ("model.network.config.channels=[4, -8, 8]", r"network.config.channels.1: must be >= 1"),
        ("model.network.config.mask=soft", r"network.config.mask: must be one of complex or mag"),
        ("model.network.type=unet", r"model.network.type: unknown network type 'unet'"),
        ("model.network=5", r"model.network: expected a mapping, got 5"),
        ("model.text_encoder.dim=-3", r"model.text_encoder.dim: must be >= 1, got -3"),
        ("model.text_encoder.dim=wide", r"model.text_encoder.dim: expected an integer, got 'wide'"),
        ("model.text_encoder.kind=bert", r"model.text_encoder.kind: unknown text encoder kind"),
        ("model.text_encoder.size=3", r"model.text_encoder.size: unknown key"),
        ("data.train.0.prepare={recipe: esc50, root: x}", "exactly one of 'manifest' or 'prepare'"),
    ],
)
def test_invalid_values(config_file: Path, override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        load_config(config_file, [override])
    assert "\n" not in str(info.value)


def test_wrong_type_in_file_names_file_and_line(tmp_path: Path, config_file: Path) -> None:
    text = config_file.read_text().replace("n_fft: 256", "n_fft: many")
    assert "many" in text
    bad = tmp_path / "typed.yaml"
    bad.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "n_fft: many" in t)
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value) == (
        f"{bad}:{line}: model.network.config.n_fft: expected an integer, got 'many'"
    )


def test_config_that_is_not_utf8(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("optim:\n  lr: 0.1 # caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml is not UTF-8 text"):
        load_config(bad)


def test_shipped_configs_load() -> None:
    base = load_config(REPO / "configs" / "baseline-dcase.yaml")
    assert base.model.network is not None and base.model.text_encoder is not None
    net = base.model.network["config"]
    assert (net["sample_rate"], net["condition_dim"], net["channels"][-1]) == (16000, 512, 384)
    assert base.model.text_encoder["kind"] == "clap"
    assert (base.data.batch_size, base.data.segment_seconds, base.data.gain_db) == (
        16,
        10.0,
        [-10.0, 10.0],
    )
    assert (base.optim.lr, base.optim.warmup_steps, base.optim.loss) == (1e-3, 10000, "l1")
    smoke = load_config(REPO / "configs" / "tiny-smoke.yaml", ["trainer.max_steps=5"])
    assert smoke.trainer.max_steps == 5 and smoke.model.text_encoder == {
        "kind": "hashing",
        "dim": 32,
    }


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_steps=true", "trainer.max_steps: expected an integer, got True"),
        ("optim.lr=false", "optim.lr: expected a number, got False"),
        ("data.gain_db=[-5, true]", "data.gain_db.1: expected a number, got True"),
        ("model.network.config.channels=[4, true]", "channels.1: expected an integer, got True"),
    ],
)
def test_true_or_false_is_not_a_number(config_file: Path, override: str, message: str) -> None:
    """pydantic reads true as 1 where a number is expected; querysep refuses it, as any other
    wrong type (`max_steps: yes` would have trained one step)."""
    from querysep.training.run import build_model

    with pytest.raises(ConfigError) as info:
        build_model(load_config(config_file, [override]).model)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert load_config(config_file, ["trainer.progress_bar=true"]).trainer.progress_bar is True


def test_true_or_false_is_not_a_number_in_other_configs() -> None:
    from querysep.clap.train import load_train_config
    from querysep.models.text import build_text_encoder

    with pytest.raises(ConfigError, match=r"^members: expected an integer, got True$"):
        load_train_config(None, ["members=true"])
    with pytest.raises(ConfigError, match=r"members\[0\]\.epochs: expected an integer, got True"):
        load_train_config(None, ["members=[{epochs: true}]"])
    assert load_train_config(None, ["more_captions=true"]).more_captions is True
    with pytest.raises(ConfigError, match=r"dim: expected an integer, got True"):
        build_text_encoder({"kind": "hashing", "dim": True})


def test_a_bool_is_refused_only_where_no_alternative_takes_it() -> None:
    """In a union of two configs, a true that one of them takes as a bool is not refused
    (pydantic then picks that one); a plain number field still refuses it."""
    import dataclasses

    from querysep.schema import bool_for_number

    @dataclasses.dataclass
    class Counted:
        x: int = 0

    @dataclasses.dataclass
    class Switched:
        x: bool = False

    assert bool_for_number(Counted | Switched, {"x": True}) is None
    assert bool_for_number(Counted, {"x": True}) == ("x", "an integer")
    assert bool_for_number(list[float] | None, [1.0, False]) == ("1", "a number")
    assert bool_for_number(float | bool, True) is None


def test_an_empty_split_list_is_refused_naming_the_override(config_file: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config_file, ["data.train.0.splits=[]"])
    assert str(info.value) == (
        "override 'data.train.0.splits=[]': data.train.0.splits: name at least one split, "
        "or leave splits out (null) for all"
    )


def test_a_section_an_override_creates_is_blamed_on_that_override(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  validation: null\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["optim.lr=1e-4", "data.validation.max_items=5"])
    assert str(info.value) == (
        "override 'data.validation.max_items=5': data.validation.mixtures: is required"
    )
    with pytest.raises(ConfigError, match=r"^override 'trainer.seed=-1': trainer.seed"):
        load_config(path, ["trainer.seed=-1"])  # a section missing from the file: the same


def test_cudnn_search_is_refused_with_deterministic_training(config_file: Path) -> None:
    both = ["trainer.deterministic=true", "trainer.cudnn_benchmark=true"]
    with pytest.raises(ConfigError, match=r"trainer.cudnn_benchmark: cannot be true with deter"):
        load_config(config_file, both)
    assert load_config(config_file, both[:1]).trainer.deterministic
