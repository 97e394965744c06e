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

import itertools
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.recipes.esc50 import DEFAULT_ROOT, builtin_captions
from ..errors import ConfigError, DataError
from .base import REFERENCE_RMS, AudioTextModel

__all__ = [
    "DEFAULT_ROOT",
    "Esc50Split",
    "Paraphraser",
    "check_paraphraser",
    "class_texts",
    "evaluate_zeroshot",
    "label_prompt",
    "load_esc50",
    "roc_auc",
    "seen_folds",
    "zeroshot_scores",
]


def label_prompt(category: str) -> str:
    """The label prompt of an ESC-50 category: ``crying_baby`` -> ``crying baby``."""
    return category.replace("_", " ")


#: ``paraphrase(caption, keywords, n)``: up to ``n`` rewrites of ``caption`` (the offline
#: paraphraser, :func:`querysep.captions.paraphrase.paraphrase`, has this signature).
Paraphraser = Callable[[str, Sequence[str], int], list[str]]


def check_paraphraser(paraphrases: int, paraphrase: Paraphraser | None) -> None:
    """Raise :class:`ConfigError` when ``paraphrases > 0`` comes without a paraphraser."""
    if paraphrases > 0 and paraphrase is None:
        raise ConfigError(
            f"paraphrases: {paraphrases} needs the offline paraphraser: train with "
            "`querysep clap train`, or pass paraphrase=querysep.captions.paraphrase.paraphrase"
        )


def class_texts(
    category: str,
    paraphrases: int = 0,
    paraphrase: Paraphraser | None = None,
    *,
    more_captions: bool = False,
) -> list[str]:
    """Training texts of a class: label variants, the 5 ``train`` captions, optionally the
    ``more`` captions, and paraphrases of the ``train`` captions.

    Args:
        category: The ESC-50 category (``crying_baby``).
        paraphrases: How many paraphrases of each ``train`` caption to add. A paraphrase
            that uses a word found only in the ``heldout`` captions (of any class) is
            dropped, so the held-out figures never reward vocabulary the paraphraser shares
            with them.
        paraphrase: The paraphraser, needed when ``paraphrases > 0`` (the caller passes
            :func:`querysep.captions.paraphrase.paraphrase`: this room does not import the
            captions room).
        more_captions: Also the class's ``more`` captions (2-9 further phrasings, stored
            without any held-out-only word, by a crude stem, and without any run of three
            words of a held-out caption), after the ``train`` ones and before any
            paraphrase.

    Never contains a ``heldout`` caption.

    Raises:
        ConfigError: ``paraphrases > 0`` without a ``paraphrase``.
        DataError: ``category`` is not one of the 50 ESC-50 categories (only they have
            captions).
    """
    train_captions = builtin_captions("train")
    if category not in train_captions:
        raise DataError(
            f"no training captions for the category {category!r}: CLAP training knows the 50 "
            "ESC-50 categories (esc50.csv's category column, e.g. crying_baby)"
        )
    label = label_prompt(category)
    article = "an" if label[0] in "aeiou" else "a"
    variants = [label, f"{article} {label}", f"the sound of {article} {label}"]
    texts = variants + list(train_captions[category])
    if more_captions:
        texts += [t for t in builtin_captions("more")[category] if t not in texts]
    if paraphrases > 0:
        check_paraphraser(paraphrases, paraphrase)
        banned = _heldout_only_words()
        for caption in builtin_captions("train")[category]:
            for text in paraphrase(caption, [label], paraphrases):
                if text not in texts and not banned & _words(text):
                    texts.append(text)
    return texts


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _heldout_only_words(words: Callable[[str], set[str]] = _words) -> set[str]:
    """Words of the ``heldout`` captions that no training text or label uses.

    Args:
        words: A text's words, as compared (default: lower-case words as written; the
            ``more`` captions' test passes crude stems).
    """
    seen = words("a an the sound of")
    for category, captions in builtin_captions("train").items():
        seen |= words(label_prompt(category))
        for caption in captions:
            seen |= words(caption)
    held: set[str] = set()
    for captions in builtin_captions("heldout").values():
        for caption in captions:
            held |= words(caption)
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
        DataError: No ``esc50.csv`` (the message names the folder and ``--data``), one
            without the ``filename``, ``fold``, ``target`` and ``category`` columns or with
            a non-integer fold or target, a target under two category names, a row left
            short or a clip listed twice, no clip in those folds, or clips at two rates.
        AudioError: A clip that is missing, cannot be read, is shorter than
            :data:`~querysep.audio.io.MIN_SECONDS` or silent.
    """
    from ..audio.io import check_audible, check_duration, load_audio
    from ..data.recipes._common import read_csv

    root = Path(root)
    if not (root / "esc50.csv").is_file():
        raise DataError(f"no esc50.csv in {root} (give the ESC-50 folder with --data)")
    columns = ("filename", "fold", "target", "category")
    rows = read_csv(root / "esc50.csv", columns, filled=columns)
    try:
        names = {int(r["target"]): r["category"] for r in rows}
        chosen = sorted((r for r in rows if int(r["fold"]) in folds), key=lambda r: r["filename"])
    except (TypeError, ValueError) as exc:
        raise DataError(f"{root / 'esc50.csv'}: a fold or target is not an integer") from exc
    for r in rows:  # one name per target: a second would silently relabel the first's clips
        if names[int(r["target"])] != r["category"]:
            raise DataError(
                f"{root / 'esc50.csv'}: target {r['target']} is both "
                f"{r['category']!r} and {names[int(r['target'])]!r}"
            )
    if names and (min(names) < 0 or max(names) >= len(names)):
        raise DataError(
            f"{root / 'esc50.csv'}: the targets must number the {len(names)} categories "
            f"0..{len(names) - 1}, found {min(names)}..{max(names)}"
        )
    categories = [names[i] for i in range(len(names))]
    if not chosen:
        raise DataError(f"no ESC-50 clips in folds {folds} under {root}")
    present = {int(r["fold"]) for r in chosen}
    absent = next((fold for fold in folds if fold not in present), None)
    if absent is not None:  # the figures (or a refit) would claim a fold they never saw
        raise DataError(f"no ESC-50 clips in fold {absent} under {root} (folds {folds} asked)")
    names = [r["filename"] for r in chosen]
    twice = next((a for a, b in itertools.pairwise(names) if a == b), None)
    if twice is not None:  # it would count twice in every figure
        raise DataError(f"{root / 'esc50.csv'}: {twice} is listed twice")
    clips, targets, rate = [], [], 0
    for r in chosen:
        path = root / "audio" / r["filename"]
        audio, clip_rate = load_audio(path, mono=True)
        # as ats refuses them: a clip with no sound or too short to hear has no score
        check_duration(audio.shape[-1], clip_rate, path, "too short to score")
        check_audible(float(np.abs(audio).max()), path, "it has no audio-text score")
        if rate and clip_rate != rate:
            raise DataError(f"{r['filename']}: {clip_rate} Hz, but the first clip is {rate} Hz")
        rate, clip = clip_rate, audio[0]
        rms = float(np.sqrt(np.mean(np.square(clip, dtype=np.float64))))
        clips.append(clip * (REFERENCE_RMS / rms) if rms > 1e-8 else clip)
        targets.append(int(r["target"]))
    length = max(len(c) for c in clips)
    audio = np.stack([np.pad(c, (0, length - len(c))) for c in clips]).astype(np.float32)
    return Esc50Split(audio, np.array(targets), categories, int(rate), names)


def seen_folds(model: object) -> set[int]:
    """The ESC-50 folds a model's metadata says it was trained on (``train_folds``) or its
    text head refitted on (``text_head_refit``'s ``folds``); scores on them are not
    held-out. Models without such metadata (another CLAP) give an empty set."""
    found: set[int] = set()

    def walk(node: object, in_refit: bool = False) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                named = key == "train_folds" or (key == "folds" and in_refit)
                if named and isinstance(value, list):
                    found.update(v for v in value if isinstance(v, int))
                walk(value, in_refit or key == "text_head_refit")
        elif isinstance(node, list):
            for value in node:
                walk(value, in_refit)

    for meta in (
        getattr(model, "metadata", None),
        getattr(getattr(model, "config", None), "metadata", None),
    ):
        walk(meta)
    return found


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
    unknown = [c for c in split.categories if c not in heldout]
    if unknown:
        raise DataError(
            f"category {unknown[0]!r} is not an ESC-50 class: the held-out captions cover "
            "the 50 ESC-50 categories only"
        )
    if len(set(split.targets.tolist())) < 2:
        raise DataError(
            "the chosen clips are all of one class: the ROC-AUC needs clips of two classes "
            "or more (choose more folds)"
        )
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


if __name__ == "__main__":  # the same command as `querysep clap zeroshot ARGS`
    import sys

    from querysep.cli import app

    app(["clap", "zeroshot", *sys.argv[1:]], prog_name="python -m querysep.clap.zeroshot")
