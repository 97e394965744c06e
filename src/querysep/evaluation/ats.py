"""The ATS column of an evaluation: CLAP similarity between each output and its query.

ATS (audio-text similarity, the fourth metric of the DCASE 2024 Task 9 report) is the cosine
between the audio embedding of a system's output and the text embedding of the query. It
needs no reference, so the ``reference`` row (the clean target scored like an output) shows
what a perfect separation gets. Values compare only within one audio-text model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..audio.io import silent_rows
from ..clap import AudioTextModel, load_clap

__all__ = ["ATS_COLUMN", "ATSHook"]

ATS_COLUMN = "ats"


class ATSHook:
    """A :class:`~querysep.evaluation.runner.MetricHook` adding the ``ats`` column.

    Args:
        model: An audio-text model, or a spec for :func:`~querysep.clap.load_clap`
            (``None`` = the bundled default).
        device: Where to run it when a spec is given.
    """

    columns: Mapping[str, str] = {ATS_COLUMN: "ATS"}

    def __init__(
        self, model: AudioTextModel | str | None = None, *, device: str | torch.device = "cpu"
    ) -> None:
        self.model = model if isinstance(model, AudioTextModel) else load_clap(model, device)
        self.spec = model if isinstance(model, str) else None
        self._texts: dict[str, torch.Tensor] = {}

    @property
    def label(self) -> str:
        """The model's name, as tables print it."""
        return self.model.name or self.spec or type(self.model).__name__

    @property
    def note(self) -> str:
        """The line printed under the table."""
        return (
            f"ATS: cosine similarity of {self.label} embeddings of each output and its query "
            "(compare ATS only within one audio-text model); the reference row scores the "
            "clean target."
        )

    def describe(self) -> dict[str, Any]:
        """What identifies the scores: ATS values compare only within one model."""
        return {**self.model.describe(), "name": self.label}

    def text_embedding(self, query: str) -> torch.Tensor:
        """The query's embedding, computed once per distinct query."""
        if query not in self._texts:
            self._texts[query] = self.model.embed_text([query])[0]
        return self._texts[query]

    def __call__(
        self,
        *,
        mixture: np.ndarray,
        target: np.ndarray,
        estimate: np.ndarray,
        query: str,
        sample_rate: int,
    ) -> dict[str, float]:
        """``{"ats": cosine(audio(estimate), text(query))}``; NaN for a silent estimate.

        Silence has no ATS (``querysep separate`` and ``querysep ats`` print n/a for it): its
        embedding would be that of the model's input floor, not of a sound.

        Shape:
            - mixture, target, estimate: ``(time,)``
        """
        if silent_rows(estimate, 1)[0]:
            return {ATS_COLUMN: math.nan}
        audio = self.model.embed_audio(estimate, sample_rate)[0]
        return {ATS_COLUMN: float(audio @ self.text_embedding(query))}
