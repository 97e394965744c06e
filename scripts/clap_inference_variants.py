"""Score inference-time variants of a small CLAP on ESC-50 folds (a design experiment).

    python scripts/clap_inference_variants.py runs/design-f12/model --fold 3 --train-folds 1 2

Prints labels / held-out captions / pooled ROC-AUC (as ``querysep.clap.zeroshot``) for: one
window per clip, the mean of 4 s crops, a two-prompt text ensemble, and embeddings centred on
the means of the training folds; then two oracle diagnostics of the ROC-AUC (each caption's
or each clip's scores centred over the test fold) and the captions with the lowest ROC-AUC.
Use it on a model trained without the scored fold (the model card's second design round).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from querysep.clap import load_clap
from querysep.clap.zeroshot import (
    DEFAULT_ROOT,
    class_texts,
    label_prompt,
    load_esc50,
    roc_auc,
    zeroshot_scores,
)
from querysep.data.recipes.esc50 import builtin_captions


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("clap", help="a small-CLAP folder or name")
    parser.add_argument("--fold", type=int, default=3)
    parser.add_argument("--train-folds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--data", default=DEFAULT_ROOT)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = load_clap(args.clap, "cpu").eval()
    split = load_esc50(args.data, [args.fold])
    heldout = builtin_captions("heldout")
    captions = [c for cat in split.categories for c in heldout[cat]]
    owner = np.array([i for i, cat in enumerate(split.categories) for _ in heldout[cat]])
    labels = [label_prompt(c) for c in split.categories]
    window = model.window_samples

    def audio(clips: np.ndarray) -> torch.Tensor:
        return model.embed_windows(np.ascontiguousarray(clips), batch_size=64).float()

    def text(texts: list[str]) -> torch.Tensor:
        return model.embed_text(texts).float()

    def report(name: str, a: torch.Tensor, lab: torch.Tensor, cap: torch.Tensor) -> None:
        r = zeroshot_scores(_unit(a), split.targets, _unit(lab), _unit(cap), owner)
        print(
            f"{name:44s} labels {r['acc_labels']:.4f}  captions {r['acc_captions']:.4f}  "
            f"auc {r['roc_auc']:.4f}",
            flush=True,
        )

    clips = split.audio[:, :window]
    one = audio(clips)
    crop, step = 4 * split.sample_rate, split.sample_rate // 4
    crops = [_unit(audio(clips[:, o : o + crop])) for o in range(0, window - crop + 1, step)]
    lab, cap = text(labels), text(captions)
    report("one window", one, lab, cap)
    report("mean of 4 s crops", torch.stack(crops).mean(0), lab, cap)
    report("4 s crops and the window", torch.stack([*crops, _unit(one)]).mean(0), lab, cap)
    lab2 = _unit(lab) + _unit(text([f"the sound of {t}" for t in labels]))
    cap2 = _unit(cap) + _unit(text([f"the sound of {t}" for t in captions]))
    report("text: q and 'the sound of q'", one, lab2, cap2)
    train = load_esc50(args.data, args.train_folds)
    audio_mean = _unit(audio(train.audio[:, :window])).mean(0)
    text_mean = _unit(text([t for c in train.categories for t in class_texts(c)])).mean(0)
    report("centred audio and text", _unit(one) - audio_mean, _unit(lab) - text_mean,
           _unit(cap) - text_mean)  # fmt: skip
    report("centred text", one, _unit(lab) - text_mean, _unit(cap) - text_mean)
    report("centred audio", _unit(one) - audio_mean, lab, cap)

    scores = (_unit(one) @ _unit(cap).T).numpy()
    match = owner[None, :] == split.targets[:, None]
    by_caption = roc_auc(scores - scores.mean(0), match)
    by_clip = roc_auc(scores - scores.mean(1, keepdims=True), match)
    print(f"oracle, each caption centred over the clips: auc {by_caption:.4f}")
    print(f"oracle, each clip centred over the captions: auc {by_clip:.4f}")
    per_caption = np.array([roc_auc(scores[:, j], match[:, j]) for j in range(len(captions))])
    for j in np.argsort(per_caption)[:8]:
        print(f"  {per_caption[j]:.3f}  {captions[j]}  ({split.categories[owner[j]]})")


if __name__ == "__main__":
    main()
