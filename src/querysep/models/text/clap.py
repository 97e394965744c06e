"""The text tower of a Hugging Face ``ClapModel`` (LAION CLAP in transformers format).

Loads only what text queries need (``text_model`` + ``text_projection``) from a local folder
or a hub id already in the local cache; nothing is downloaded here (``local_files_only``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import Field

from ...errors import ModelNotFoundError
from .base import TextEncoder, register_text_encoder

__all__ = ["ClapTextEncoder"]


@register_text_encoder("clap")
class ClapTextEncoder(TextEncoder):
    """CLAP text embeddings (512-d for LAION CLAP), frozen, L2-normalised.

    Args:
        path: Folder saved by ``ClapModel.save_pretrained`` (with its tokenizer), or the id of
            a model already in the local Hugging Face cache.
        max_length: Token limit; longer queries are truncated.
    """

    def __init__(self, path: str, max_length: Annotated[int, Field(ge=1)] = 77) -> None:
        super().__init__()
        from transformers import AutoTokenizer, ClapTextModelWithProjection

        self.path = str(path)
        self.max_length = int(max_length)
        local = Path(self.path).expanduser()
        source = str(local) if local.exists() else self.path
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            self.model = ClapTextModelWithProjection.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelNotFoundError(
                f"cannot load a CLAP text model from {self.path!r} (a local folder with "
                f"config.json, weights and tokenizer files is needed): {first}"
            ) from None
        self.model.eval()
        self.model.requires_grad_(False)
        self.dim = int(self.model.config.projection_dim)

    def embed_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Embeddings from token ids, for callers that tokenise themselves.

        Shape:
            - input_ids, attention_mask: ``(batch, tokens)``
            - output: ``(batch, dim)``
        """
        out = self.model(
            input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)
        )
        return torch.nn.functional.normalize(out.text_embeds.float(), dim=-1)

    def _encode(self, queries: list[str]) -> torch.Tensor:
        tok = self.tokenizer(
            queries,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return self.embed_tokens(tok["input_ids"], tok["attention_mask"])

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "max_length": self.max_length}
