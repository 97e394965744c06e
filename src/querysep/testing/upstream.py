"""Upstream-format (AudioSep / DCASE baseline) Lightning checkpoints built in code, for tests.

The weights follow the parity fixtures' rule (:func:`querysep.testing.weights.rule_weight`),
so a checkpoint built here reproduces ``tests/fixtures/resunet30/fixture_{16k,32k}.npz`` and
the ``text_embed`` of ``tests/fixtures/laion_clap/fixture_htsat_base_roberta.npz``. Entries
the loader must ignore (convolution STFT kernels, the CLAP audio tower, analytic buffers) are
zeros broadcast from one element: right shapes, almost no memory or disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from .weights import rule_weight

__all__ = ["read_key_list", "upstream_checkpoint_state"]


def read_key_list(path: str | Path) -> Iterator[tuple[str, tuple[int, ...], str, str]]:
    """``(key, shape, dtype, rule)`` of each line of a fixture's ``keys_*.tsv``.

    ``rule`` is ``rule`` or ``analytic`` (the ResUNet30 lists have no such column: their
    STFT kernels count as analytic).
    """
    for line in Path(path).read_text().splitlines():
        key, shape_txt, dtype, *rest = line.split("\t")
        shape = tuple(int(v) for v in shape_txt.strip("()").split(",") if v.strip())
        rule = rest[0] if rest else ("analytic" if "stft." in key else "rule")
        yield key, shape, dtype, rule


def _zeros(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros((), dtype=dtype).expand(shape)


def upstream_checkpoint_state(
    resunet_keys: str | Path,
    laion_keys: str | Path | None = None,
    *,
    text_weights: bool = True,
    position_ids: bool = True,
) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of an upstream ``AudioSep`` Lightning module.

    Args:
        resunet_keys: ``keys_16k.tsv`` or ``keys_32k.tsv`` (entries become ``ss_model.*``).
        laion_keys: ``keys_htsat_base_roberta.tsv`` (entries become
            ``query_encoder.model.*``), or ``None`` for a checkpoint without query encoder.
        text_weights: Fill the text tower with the rule's weights (else zeros: cheap, for
            tests that do not compare embeddings).
        position_ids: Add ``text_branch.embeddings.position_ids``, as older checkpoints have.
    """
    state: dict[str, torch.Tensor] = {}
    for key, shape, dtype, rule in read_key_list(resunet_keys):
        kind = torch.int64 if dtype == "int64" else torch.float32
        if rule == "analytic" or dtype == "int64":
            state["ss_model." + key] = _zeros(shape, kind)
        else:
            state["ss_model." + key] = rule_weight(key, shape)
    if laion_keys is None:
        return state
    prefix = "query_encoder.model."
    for key, shape, dtype, rule in read_key_list(laion_keys):
        kind = torch.int64 if dtype == "int64" else torch.float32
        text = key.startswith(("text_branch.", "text_projection."))
        if text and text_weights and rule == "rule" and dtype != "int64":
            state[prefix + key] = rule_weight(key, shape)
        else:
            state[prefix + key] = _zeros(shape, kind)
    if position_ids:
        positions = state[prefix + "text_branch.embeddings.position_embeddings.weight"].shape[0]
        state[prefix + "text_branch.embeddings.position_ids"] = torch.arange(positions)[None]
    return state
