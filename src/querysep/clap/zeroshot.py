"""Zero-shot classification and ATS separability of any audio-text model on ESC-50 folds.

``python -m querysep.clap.zeroshot --clap esc50-clap --fold 4`` prints:

- ``acc_labels``: zero-shot accuracy with the 50 label prompts (``"dog"``, ``"crying baby"``:
  the category with underscores as spaces); a clip is assigned the class whose prompt scores
  highest;
- ``acc_captions``: the same with querysep's held-out captions (two per class, never used in
  training) instead of labels; a class's score is the mean ATS of its captions;
- ``roc_auc``: ATS of matching vs mismatched (clip, caption) pairs, pooled over the fold:
  every clip is paired with every held-out caption of all 50 classes (a pair matches when
  the caption describes the clip's class: 2 matching and 98 mismatched pairs per clip), and
  one ROC-AUC is computed over all pairs together (a single global threshold).

Works for every model :func:`~querysep.clap.load_clap` loads.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.recipes.esc50 import builtin_captions
from ..errors import DataError
from .base import REFERENCE_RMS, AudioTextModel

__all__ = [
    "Esc50Split",
    "class_texts",
    "evaluate_zeroshot",
    "label_prompt",
    "load_esc50",
    "roc_auc",
    "zeroshot_scores",
]

DEFAULT_ROOT = "/work/shared/datasets/esc50-16k"


def label_prompt(category: str) -> str:
    """The label prompt of an ESC-50 category: ``crying_baby`` -> ``crying baby``."""
    return category.replace("_", " ")


def class_texts(category: str, paraphrases: int = 0) -> list[str]:
    """Training texts of a class: label variants, the 5 ``train`` captions, and paraphrases.

    Args:
        category: The ESC-50 category (``crying_baby``).
        paraphrases: How many offline paraphrases (:func:`querysep.captions.paraphrase`) of
            each ``train`` caption to add. A paraphrase that uses a word found only in the
            ``heldout`` captions (of any class) is dropped, so the held-out figures never
            reward vocabulary the lexicon shares with them.

    Never contains a ``heldout`` caption.
    """
    label = label_prompt(category)
    article = "an" if label[0] in "aeiou" else "a"
    variants = [label, f"{article} {label}", f"the sound of {article} {label}"]
    texts = variants + list(builtin_captions("train")[category])
    if paraphrases > 0:
        from ..captions.paraphrase import paraphrase

        banned = _heldout_only_words()
        for caption in builtin_captions("train")[category]:
            for text in paraphrase(caption, [label], paraphrases):
                if text not in texts and not banned & _words(text):
                    texts.append(text)
    return texts


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _heldout_only_words() -> set[str]:
    """Words of the ``heldout`` captions that no training text or label uses."""
    seen: set[str] = set()
    for category, captions in builtin_captions("train").items():
        seen |= _words(label_prompt(category)) | {"a", "an", "the", "sound", "of"}
        for caption in captions:
            seen |= _words(caption)
    held: set[str] = set()
    for captions in builtin_captions("heldout").values():
        for caption in captions:
            held |= _words(caption)
    return held - seen


@dataclass
class Esc50Split:
    """Clips of some ESC-50 folds, in memory.

    Attributes:
        audio: Level-normalised clips (RMS :data:`~querysep.clap.base.REFERENCE_RMS`),
            ``(num_clips, time)`` at ``sample_rate``.
        targets: Class index of each clip (ESC-50 ``target``).
        categories: The 50 category names, by class index.
    """

    audio: np.ndarray
    targets: np.ndarray
    categories: list[str]
    sample_rate: int
    filenames: list[str]


def load_esc50(root: str | os.PathLike[str], folds: list[int]) -> Esc50Split:
    """Read the clips of ``folds`` from an ESC-50 copy (``esc50.csv`` + ``audio/``).

    Raises:
        DataError: No ``esc50.csv``, or no clip in those folds.
    """
    import soundfile as sf

    root = Path(root)
    if not (root / "esc50.csv").is_file():
        raise DataError(f"no esc50.csv in {root}")
    with open(root / "esc50.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    names = {int(r["target"]): r["category"] for r in rows}
    categories = [names[i] for i in range(len(names))]
    chosen = sorted((r for r in rows if int(r["fold"]) in folds), key=lambda r: r["filename"])
    if not chosen:
        raise DataError(f"no ESC-50 clips in folds {folds} under {root}")
    clips, targets, rate = [], [], 0
    for r in chosen:
        audio, rate = sf.read(root / "audio" / r["filename"], dtype="float32", always_2d=True)
        clip = audio.mean(axis=1)
        rms = float(np.sqrt(np.mean(np.square(clip, dtype=np.float64))))
        clips.append(clip * (REFERENCE_RMS / rms) if rms > 1e-8 else clip)
        targets.append(int(r["target"]))
    length = max(len(c) for c in clips)
    audio = np.stack([np.pad(c, (0, length - len(c))) for c in clips]).astype(np.float32)
    return Esc50Split(
        audio, np.array(targets), categories, int(rate), [r["filename"] for r in chosen]
    )


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC-AUC (Mann-Whitney U, ties counted half) of ``scores`` for binary ``labels``."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        raise ValueError("ROC-AUC needs both matching and mismatched pairs")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def zeroshot_scores(
    audio_emb: torch.Tensor,
    targets: np.ndarray,
    label_emb: torch.Tensor,
    caption_emb: torch.Tensor,
    caption_class: np.ndarray,
) -> dict[str, float]:
    """The three figures from embeddings (see the module docstring).

    Shape:
        - audio_emb: ``(num_clips, dim)``, L2-normalised
        - label_emb: ``(num_classes, dim)``
        - caption_emb: ``(num_captions, dim)``; ``caption_class``: ``(num_captions,)``
    """
    targets = np.asarray(targets)
    caption_class = np.asarray(caption_class)
    num_classes = label_emb.shape[0]
    with torch.autocast("cpu", enabled=False):
        label_sim = (audio_emb.float() @ label_emb.float().T).numpy()
        cap_sim = (audio_emb.float() @ caption_emb.float().T).numpy()
    onehot = np.zeros((len(caption_class), num_classes))
    onehot[np.arange(len(caption_class)), caption_class] = 1.0
    class_sim = cap_sim @ onehot / onehot.sum(axis=0).clip(min=1)
    match = caption_class[None, :] == targets[:, None]
    return {
        "acc_labels": float((label_sim.argmax(1) == targets).mean()),
        "acc_captions": float((class_sim.argmax(1) == targets).mean()),
        "roc_auc": roc_auc(cap_sim, match),
        "num_clips": float(len(targets)),
    }


def evaluate_zeroshot(
    model: AudioTextModel, split: Esc50Split, *, batch_size: int = 32
) -> dict[str, float]:
    """Zero-shot accuracy (labels, held-out captions) and pooled ROC-AUC on ``split``."""
    heldout = builtin_captions("heldout")
    captions, caption_class = [], []
    for index, category in enumerate(split.categories):
        for caption in heldout[category]:
            captions.append(caption)
            caption_class.append(index)
    audio_emb = model.embed_audio(split.audio, split.sample_rate, batch_size=batch_size)
    label_emb = model.embed_text([label_prompt(c) for c in split.categories])
    caption_emb = model.embed_text(captions)
    return zeroshot_scores(
        audio_emb, split.targets, label_emb, caption_emb, np.array(caption_class)
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m querysep.clap.zeroshot --clap SPEC --fold 4``."""
    from .registry import load_clap

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clap", default=None, help="model name, folder or kind:path")
    parser.add_argument("--fold", type=int, nargs="+", default=[4])
    parser.add_argument("--data", default=DEFAULT_ROOT, help="ESC-50 folder (esc50.csv, audio/)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    model = load_clap(args.clap, args.device)
    split = load_esc50(args.data, args.fold)
    result = evaluate_zeroshot(model, split, batch_size=args.batch_size)
    print(json.dumps({"clap": args.clap or "default", "folds": args.fold, **result}, indent=2))


if __name__ == "__main__":
    main()
