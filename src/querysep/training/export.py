"""Lightning checkpoint -> model folder (``config.json`` + ``model.safetensors``).

Checkpoints are read with ``torch.load(weights_only=True)``: nothing is unpickled. The model
config stored in the checkpoint rebuilds the separator; the text encoder is not loaded (a
frozen encoder is described by its config only), so exporting needs no encoder weights.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ModelNotFoundError, QuerysepError
from ..models.resunet import load_state_dict_strict
from ..models.separator import TextQueriedSeparator
from ..models.text import NearestTextEncoder, TextEncoder, build_text_encoder
from ..safeload import load_weights_only
from .callbacks import BEST_CHECKPOINT, LAST_CHECKPOINT
from .module import CHECKPOINT_KEY, check_trained

__all__ = ["BEST_CHECKPOINT", "export_checkpoint", "find_export_checkpoint", "read_checkpoint"]

_NET_PREFIX = "model.net."


class _DescribedEncoder(TextEncoder):
    """Stands in for a text encoder that is only described, never run (export only)."""

    def __init__(self, config: Mapping[str, Any], dim: int) -> None:
        super().__init__()
        self._config = dict(config)
        self.kind = str(config.get("kind", ""))
        self.dim = int(dim)

    def _encode(self, queries: list[str]) -> torch.Tensor:  # pragma: no cover - never called
        raise RuntimeError("this text encoder is a placeholder used for export only")

    def to_config(self) -> dict[str, Any]:
        return dict(self._config)


def _export_encoder(config: Mapping[str, Any], dim: int) -> TextEncoder:
    """The text encoder written with an exported model: described only, except a bank of
    texts (``kind: nearest``), which is built so that the folder keeps the texts' embeddings
    and no process of the model computes them on its first query. Where its inner encoder
    cannot be built here, the folder goes without them (they are computed on first use)."""
    if config.get("kind") == NearestTextEncoder.kind:
        try:
            return build_text_encoder(config)
        except QuerysepError:
            pass
    return _DescribedEncoder(config, dim)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a Lightning checkpoint written by ``querysep train`` (``weights_only=True``).

    Raises:
        CheckpointError: Missing, unreadable, or not a querysep training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = load_weights_only(path, "training checkpoint")
    except ModelNotFoundError as exc:
        raise CheckpointError(str(exc)) from None
    if not isinstance(ckpt, dict) or CHECKPOINT_KEY not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint written by querysep train")
    state = ckpt["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{path} has a damaged state_dict (not names -> tensors)")
    return ckpt


def _plain(value: Any) -> bool:
    """Whether ``value`` is made of what ``config.json`` holds (no tensors)."""
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


def _separator_info(ckpt: Mapping[str, Any], path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """The checkpoint's querysep section, checked to describe a separator."""
    info = ckpt[CHECKPOINT_KEY]
    if not isinstance(info, Mapping) or "model_config" not in info:
        raise CheckpointError(
            f"{path} is not a separator checkpoint written by querysep train (a mel VAE "
            "checkpoint of querysep ldm train-vae is exported when that training ends)"
        )
    config = info["model_config"]
    network = config.get("network") if isinstance(config, Mapping) else None
    if (
        not isinstance(network, Mapping)
        or not isinstance(network.get("config"), Mapping)
        or not isinstance(config.get("text_encoder"), Mapping)
    ):
        raise CheckpointError(f"{path} has a damaged model config (network or text encoder)")
    return info


def find_export_checkpoint(checkpoint_dir: str | os.PathLike[str], *, best: bool = True) -> Path:
    """``best.ckpt`` (best validation SDRi) if there is one, else ``last.ckpt``.

    Args:
        checkpoint_dir: A run's ``checkpoints/`` folder.
        best: Consider ``best.ckpt``; ``False`` (a run without validation) takes
            ``last.ckpt``, the weights the run ended with.

    Raises:
        CheckpointError: Neither exists (``last.ckpt`` does not, when not ``best``).
    """
    folder = Path(checkpoint_dir)
    names = (BEST_CHECKPOINT, LAST_CHECKPOINT) if best else (LAST_CHECKPOINT,)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"no {' or '.join(names)} in {folder}")


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write the separator of a training checkpoint as a model folder.

    The folder loads with :func:`querysep.pretrained.load_model` and ``querysep separate
    --model``. Its metadata records the training config, the step, the validation scores
    of the checkpoint and where it came from.

    Args:
        checkpoint: ``best.ckpt`` / ``last.ckpt`` written by ``querysep train``.
        output_dir: The model folder to create (or update).
        metadata: Extra metadata entries (override the recorded ones).

    Returns:
        ``output_dir``.

    Raises:
        CheckpointError: Unreadable checkpoint, weights that do not fit, or a checkpoint whose
            text encoder was trained (model folders store the network weights only).
    """
    ckpt = read_checkpoint(checkpoint)
    info = _separator_info(ckpt, checkpoint)
    check_trained(info, checkpoint)
    if info.get("text_encoder_trained"):
        raise CheckpointError(
            f"{checkpoint} has a fine-tuned text encoder, which model folders cannot store yet "
            "(they keep the network weights only)"
        )
    model_config = dict(info["model_config"])
    dim = model_config["network"]["config"].get("condition_dim")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise CheckpointError(f"{checkpoint} has a damaged model config (network condition_dim)")
    encoder = _export_encoder(model_config["text_encoder"], dim)
    model = TextQueriedSeparator.from_config(
        model_config, text_encoder=encoder, source=f"the model config in {checkpoint}"
    )
    state = {
        k[len(_NET_PREFIX) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(_NET_PREFIX)
    }
    load_state_dict_strict(model.net, state, what=f"checkpoint {Path(checkpoint).name}")
    validation = info.get("validation") or {}
    train_config = info.get("train_config") or {}
    step = ckpt.get("global_step", 0)
    if (
        not isinstance(validation, Mapping)
        or not isinstance(train_config, Mapping)
        or isinstance(step, bool)
        or not isinstance(step, int)
        or not _plain(validation)
        or not _plain(train_config)
    ):
        raise CheckpointError(
            f"{checkpoint} has a damaged training record (validation, config or step)"
        )
    meta = dict(model_config.get("metadata") or {})
    meta.pop("path", None)
    meta.update(
        {
            "training": {
                "step": step,
                "checkpoint": Path(checkpoint).name,
                "validation": dict(validation),
                "config": dict(train_config),
                "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        }
    )
    meta.update(metadata or {})
    model.metadata = meta
    return model.save_pretrained(output_dir)
