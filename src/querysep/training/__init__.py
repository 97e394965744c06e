"""Training: config, LightningModule, DataModule, callbacks, run, export.

>>> from querysep.training import load_config, train
>>> config = load_config("configs/tiny-smoke.yaml", ["trainer.max_steps=10"])
>>> result = train(config)  # doctest: +SKIP

Names are imported lazily, so that reading a config does not import Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "MixtureDataModule",
    "SeparationTask",
    "TrainConfig",
    "TrainResult",
    "TrainingInterruptedError",
    "config_from_dict",
    "export_checkpoint",
    "load_config",
    "train",
]

_WHERE = {
    "TrainConfig": "config",
    "config_from_dict": "config",
    "load_config": "config",
    "SeparationTask": "module",
    "MixtureDataModule": "datamodule",
    "TrainingInterruptedError": "callbacks",
    "export_checkpoint": "export",
    "TrainResult": "run",
    "train": "run",
}

if TYPE_CHECKING:
    from .callbacks import TrainingInterruptedError
    from .config import TrainConfig, config_from_dict, load_config
    from .datamodule import MixtureDataModule
    from .export import export_checkpoint
    from .module import SeparationTask
    from .run import TrainResult, train


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'querysep.training' has no attribute {name!r}")
