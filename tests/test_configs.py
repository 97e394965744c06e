"""Every config shipped in configs/ loads with the schema of the command it is written for."""

from __future__ import annotations

from pathlib import Path

import pytest

from querysep.clap.train import ClapTrainConfig, load_train_config
from querysep.training import load_config
from querysep.training.config import TrainConfig
from querysep.training.melvae import MelVaeTrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
#: Configs for a command other than ``querysep train`` (separators), by file name.
OTHER_SCHEMAS = {
    "esc50-clap.yaml": ClapTrainConfig,
    "esc50-clap-finetune.yaml": ClapTrainConfig,
    "esc50-melvae.yaml": MelVaeTrainConfig,
}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_config_loads(path: Path) -> None:
    schema = OTHER_SCHEMAS.get(path.name, TrainConfig)
    if schema is ClapTrainConfig:
        config = load_train_config(str(path))
    else:
        config = load_config(path, schema=schema)
    assert isinstance(config, schema)
    if isinstance(config, TrainConfig) and config.model.init_from is not None:
        # the default model's stage 2 starts from the stage-1 weights, not from the bundled
        # model (which is its own output); the config says where they come from
        assert config.model.init_from == "runs/esc50-minilm-stage1"
        how = (CONFIGS / "default-esc50-finetune.yaml").read_text()
        assert (
            "git show 2f48dd2:src/querysep/weights/esc50-minilm/$f > runs/esc50-minilm-stage1"
            in how
        )
    if isinstance(config, ClapTrainConfig) and config.init_from is not None:
        # the CLAP fine-tune (history) starts from the five bundled on 2026-12-02, not from
        # the bundled model; the config says how to get them back from git
        assert config.init_from == "runs/esc50-clap-5d26"
        how = (CONFIGS / "esc50-clap-finetune.yaml").read_text()
        assert (
            "git show fe76dba:src/querysep/weights/esc50-clap/$f > runs/esc50-clap-5d26/$f" in how
        )


def test_every_other_schema_names_a_shipped_config() -> None:
    assert all((CONFIGS / name).is_file() for name in OTHER_SCHEMAS)
