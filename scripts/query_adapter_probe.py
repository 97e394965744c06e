"""Score a separator with its queries pulled towards their class (a design experiment, #17).

    python scripts/query_adapter_probe.py esc50-minilm --penalty 1 \
        --mixtures benchmarks/esc50-fold4-captions.csv -o runs/eval/qadapt-1-captions

An unseen phrasing costs the default model 1-2 dB SDRi against the class label, though its
MiniLM embedding is nearest the right class for most held-out captions. This probe asks
whether moving an embedding towards its class helps: a linear map ``A`` is fitted from the
MiniLM embedding of every training text of the esc50 recipe (each class's label and its
``train`` captions) to the unit mean of its class's training-text embeddings, by least
squares with a penalty ``penalty * |A - I|^2`` (bias included, shrunk to zero), so a large
penalty leaves queries as they are and a small one pulls every query onto a class mean. At
evaluation each query embedding becomes ``normalize([q, 1] A)``; nothing is retrained and
no held-out caption is used in the fit. The esc50-minilm model card ("Levers for v2") shows
its output.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F
from _probe import add_list_arguments, score

from querysep.data.recipes.esc50 import builtin_captions
from querysep.evaluation.systems import ModelSystem
from querysep.models.text import TextEncoder, plain_encoder


def training_texts() -> tuple[list[str], torch.Tensor]:
    """The esc50 recipe's query texts (``captions: builtin``) and each one's class index."""
    captions = builtin_captions("train")
    texts, owners = [], []
    for index, category in enumerate(sorted(captions)):
        for text in [category.replace("_", " "), *captions[category]]:
            texts.append(text)
            owners.append(index)
    return texts, torch.tensor(owners)


def fit_adapter(encoder: TextEncoder, penalty: float) -> torch.Tensor:
    """The ``(dim + 1, dim)`` map (last row: bias) described in the module docstring."""
    texts, owners = training_texts()
    emb = encoder.encode(texts).double().cpu()
    means = torch.zeros(int(owners.max()) + 1, emb.shape[1], dtype=torch.float64)
    means = F.normalize(means.index_add_(0, owners, emb), dim=-1)
    x = torch.cat([emb, torch.ones(len(emb), 1, dtype=torch.float64)], dim=1)
    prior = torch.cat([torch.eye(emb.shape[1]), torch.zeros(1, emb.shape[1])]).double()
    gram = x.T @ x + penalty * torch.eye(x.shape[1], dtype=torch.float64)
    return torch.linalg.solve(gram, x.T @ means[owners] + penalty * prior)


class AdaptedEncoder(TextEncoder):
    """``inner``'s embeddings passed through a fitted adapter (see :func:`fit_adapter`)."""

    kind = "adapted"

    def __init__(self, inner: TextEncoder, adapter: torch.Tensor) -> None:
        super().__init__()
        self.inner = inner
        self.dim = inner.dim
        self.register_buffer("adapter", adapter.float())

    def _encode(self, queries: list[str]) -> torch.Tensor:
        emb = self.inner.encode(queries).float()
        ones = torch.ones(len(emb), 1, device=emb.device)
        return F.normalize(torch.cat([emb, ones], dim=1) @ self.adapter.to(emb.device), dim=-1)

    def to_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "inner": self.inner.to_config()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a separator: name, folder or kind:path")
    parser.add_argument("--penalty", type=float, required=True, help="pull towards identity")
    add_list_arguments(parser)
    args = parser.parse_args()
    if not args.penalty > 0:
        parser.error("--penalty must be positive")
    system = ModelSystem(args.model, name=f"{args.model} + adapter {args.penalty:g}")
    model = system.separator.model
    inner = plain_encoder(model.text_encoder)  # the adapter works on the query's own embedding
    adapter = fit_adapter(inner, args.penalty)
    model.text_encoder = AdaptedEncoder(inner, adapter)
    score(args, [system], baselines=True)


if __name__ == "__main__":
    main()
