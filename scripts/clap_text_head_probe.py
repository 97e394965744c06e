"""Fit new text heads on a small CLAP's frozen audio embeddings (a design experiment).

    python scripts/clap_text_head_probe.py runs/design-f12/model --fold 3 --train-folds 1 2

The held-out captions stay out of it: per class, the label variants and ``train`` captions
1-3 are the fitting texts, ``train`` captions 4-5 the validation texts. Each head maps frozen
MiniLM embeddings to the model's 256-d space and is scored on the clips of ``--fold``
(class accuracy with the validation texts / pooled ROC-AUC of clip x validation-text pairs):
the model's own head (trained on all 8 texts: a ceiling), heads fitted by the training
loss (InfoNCE against the unit audio embeddings of ``--train-folds``) with several text-noise
levels and two seeds, and ridge regressions onto the unit class centroids of those
embeddings (several penalties, with and without offline paraphrases of the fitting
captions). The esc50-clap model card's fourth design round shows its output.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
import torch.nn.functional as F

from querysep.captions.paraphrase import paraphrase
from querysep.clap import load_clap
from querysep.clap.small import SmallClap
from querysep.clap.zeroshot import DEFAULT_ROOT, label_prompt, load_esc50, roc_auc
from querysep.clap.zeroshot import _heldout_only_words as heldout_only_words
from querysep.clap.zeroshot import _words as words
from querysep.data.recipes.esc50 import builtin_captions


def split_texts(
    categories: list[str], paraphrases: int = 0
) -> tuple[list, np.ndarray, list, np.ndarray]:
    """Fitting texts (label variants, captions 1-3, their paraphrases) and validation texts
    (captions 4-5), each with its class index."""
    captions = builtin_captions("train")
    banned = heldout_only_words()
    fit, fit_class, val, val_class = [], [], [], []
    for index, category in enumerate(categories):
        label = label_prompt(category)
        article = "an" if label[0] in "aeiou" else "a"
        base = [label, f"{article} {label}", f"the sound of {article} {label}"]
        base += list(captions[category][:3])
        extra: list[str] = []
        for caption in captions[category][:3] if paraphrases else []:
            for text in paraphrase(caption, [label], paraphrases):
                if text not in base and text not in extra and not banned & words(text):
                    extra.append(text)
        fit += base + extra
        fit_class += [index] * (len(base) + len(extra))
        val += list(captions[category][3:5])
        val_class += [index] * 2
    return fit, np.array(fit_class), val, np.array(val_class)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("clap", help="a small-CLAP folder (trained without --fold)")
    parser.add_argument("--fold", type=int, default=3)
    parser.add_argument("--train-folds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--data", default=DEFAULT_ROOT)
    parser.add_argument("--steps", type=int, default=3000, help="steps of each InfoNCE fit")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_clap(args.clap)
    if not isinstance(model, SmallClap):  # e.g. the bundled esc50-clap, a ClapEnsemble
        raise SystemExit(
            f"{args.clap} is a {type(model).__name__}; this probe fits a text head for one "
            "small CLAP (save one ensemble member, or train with members=1)"
        )
    model = model.float()
    train = load_esc50(args.data, args.train_folds)
    test = load_esc50(args.data, [args.fold])
    with torch.inference_mode():
        train_audio = model.embed_audio(train.audio, train.sample_rate, batch_size=32).float()
        test_audio = model.embed_audio(test.audio, test.sample_rate, batch_size=32).float()
    train_audio, test_audio = train_audio.clone(), test_audio.clone()
    encoder = model.text_encoder()

    def encode(texts: list[str]) -> torch.Tensor:
        with torch.inference_mode():
            return encoder.encode(texts).float().clone()

    def score(text_emb: torch.Tensor, text_class: np.ndarray) -> tuple[float, float]:
        sim = (test_audio @ F.normalize(text_emb, dim=-1).T).numpy()
        onehot = np.zeros((len(text_class), len(test.categories)))
        onehot[np.arange(len(text_class)), text_class] = 1
        accuracy = float(((sim @ onehot).argmax(1) == test.targets).mean())
        return accuracy, roc_auc(sim, test.targets[:, None] == text_class[None])

    fit_texts, fit_class, val_texts, val_class = split_texts(train.categories)
    fit_emb, val_emb = encode(fit_texts), encode(val_texts)
    with torch.inference_mode():
        acc, auc = score(model.text_features(val_emb), val_class)
        print(f"own head (saw the validation texts): acc {acc:.4f} auc {auc:.4f}")

    def infonce_head(noise: float, seed: int) -> tuple[float, float]:
        gen = torch.Generator().manual_seed(seed)
        head = torch.nn.Linear(fit_emb.shape[1], train_audio.shape[1])
        torch.manual_seed(seed)
        head.reset_parameters()
        scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        opt = torch.optim.AdamW([*head.parameters(), scale], lr=3e-3, weight_decay=0.0)
        by_class = [np.flatnonzero(fit_class == k) for k in range(len(train.categories))]
        targets = torch.as_tensor(train.targets)
        for _ in range(args.steps):
            idx = torch.randint(0, len(train_audio), (32,), generator=gen)
            pick = [
                int(rows[torch.randint(0, len(rows), (1,), generator=gen)]) for rows in by_class
            ]
            sent = fit_emb[pick]
            if noise > 0:
                sent = sent + torch.randn(sent.shape, generator=gen) * noise / math.sqrt(
                    sent.shape[1]
                )
                sent = F.normalize(sent, dim=-1)
            logits = (
                scale.exp().clamp(max=100) * train_audio[idx] @ F.normalize(head(sent), dim=-1).T
            )
            y = targets[idx]
            present = torch.unique(y)
            want = (y[None, :] == present[:, None]).float()
            want = want / want.sum(1, keepdim=True)
            text_loss = -(F.log_softmax(logits.T[present], dim=1) * want).sum(1).mean()
            loss = (F.cross_entropy(logits, y) + text_loss) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.inference_mode():
            return score(head(val_emb), val_class)

    for noise in (0.0, 0.3, 0.5, 0.8, 1.2):
        runs = [infonce_head(noise, seed) for seed in (0, 1)]
        print(
            f"infonce noise {noise:.1f}: acc {runs[0][0]:.4f} / {runs[1][0]:.4f} "
            f"auc {runs[0][1]:.4f} / {runs[1][1]:.4f}",
            flush=True,
        )

    centroids = torch.stack(
        [
            train_audio[torch.as_tensor(train.targets == k)].mean(0)
            for k in range(len(train.categories))
        ]
    )
    centroids = F.normalize(centroids, dim=-1)
    for paraphrases, penalties in ((0, (0.01, 0.1, 0.3, 1.0, 3.0)), (5, (0.3,))):
        texts, owner, _, _ = split_texts(train.categories, paraphrases)
        x = torch.cat([encode(texts), torch.ones(len(texts), 1)], 1)
        x_val = torch.cat([val_emb, torch.ones(len(val_texts), 1)], 1)
        for penalty in penalties:
            w = torch.linalg.solve(
                x.T @ x + penalty * torch.eye(x.shape[1]), x.T @ centroids[torch.as_tensor(owner)]
            )
            acc, auc = score(x_val @ w, val_class)
            print(
                f"ridge, {paraphrases} paraphrases ({len(texts)} texts), penalty {penalty:g}: "
                f"acc {acc:.4f} auc {auc:.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
