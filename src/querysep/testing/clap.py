"""Tiny random CLAP models, offline tokenizers and LAION-shaped state dicts for tests.

Everything here is built in code in well under a second, with no download: a transformers
``ClapModel`` small enough to run on 10 s windows in tens of milliseconds but with the real
front end (48 kHz, 64 mel bins, HTSAT input 256), a byte-level BPE tokenizer saved as
RoBERTa's, a WordPiece one saved as BERT's, and the inverse of the LAION conversion (to make
original-format checkpoints from a transformers model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CAPTIONS",
    "laion_state_dict_from_clap",
    "tiny_bert_tokenizer",
    "tiny_clap_config",
    "tiny_clap_folder",
    "tiny_clap_model",
    "tiny_feature_extractor",
    "tiny_roberta_tokenizer",
]

CAPTIONS = (
    "a dog barking",
    "rain falling on a roof",
    "a church bell rings",
    "the cat meows loudly",
    "footsteps on a wooden floor",
)


def tiny_clap_config(*, fusion: bool = False, pad_token_id: int = 1, vocab_size: int = 320) -> Any:
    """A ``ClapConfig`` of a few hundred thousand parameters with LAION's input geometry.

    Text: RoBERTa-like, hidden 64 (one head, as the LAION converter assumes 64 per head),
    2 layers. Audio: HTSAT with patch width 8, depths (2, 1, 1, 1), window 8, 64 mel bins,
    spectrogram size 256 (what 10 s at 48 kHz becomes). Projection 16.
    """
    from transformers import ClapConfig

    text = {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 1,
        "intermediate_size": 128,
        "max_position_embeddings": 80,
        "layer_norm_eps": 1e-5,
        "pad_token_id": pad_token_id,
    }
    audio = {
        "hidden_size": 64,
        "patch_embeds_hidden_size": 8,
        "depths": [2, 1, 1, 1],
        "num_attention_heads": [1, 1, 2, 2],
        "window_size": 8,
        "spec_size": 256,
        "num_mel_bins": 64,
        "enable_fusion": fusion,
        "fusion_type": "aff_2d" if fusion else None,
    }
    return ClapConfig(text_config=text, audio_config=audio, projection_dim=16)


def tiny_clap_model(seed: int = 0, **config: Any) -> Any:
    """A random ``ClapModel`` from :func:`tiny_clap_config` (eval mode, seeded).

    Batch-norm statistics and the logit scales are randomised too, so a conversion that
    drops them is caught.
    """
    from transformers import ClapModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ClapModel(tiny_clap_config(**config)).eval()
        bn = model.audio_model.audio_encoder.batch_norm
        with torch.no_grad():
            bn.running_mean.normal_(0.0, 5.0).add_(-40.0)  # log-mel in dB is far from 0
            bn.running_var.uniform_(50.0, 150.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.1)
            model.logit_scale_a.fill_(3.0)
            model.logit_scale_t.fill_(2.5)
    return model


def tiny_feature_extractor(*, fusion: bool = False) -> Any:
    """The standard CLAP ``ClapFeatureExtractor`` (48 kHz, 10 s, 64 mels; fusion or not)."""
    from transformers import ClapFeatureExtractor

    return ClapFeatureExtractor(truncation="fusion" if fusion else "rand_trunc")


def tiny_roberta_tokenizer(folder: str | Path | None = None) -> Any:
    """A byte-level BPE tokenizer trained on :data:`CAPTIONS`, as a ``RobertaTokenizer``.

    Pads with id 1 like roberta-base. Saved to ``folder`` (``save_pretrained``) if given.
    """
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        list(CAPTIONS) * 5,
        vocab_size=300,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    vocab = bpe.get_vocab()
    tok = RobertaTokenizer(vocab=vocab, merges=_merges(bpe))
    if folder is not None:
        tok.save_pretrained(str(folder))
    return tok


def _merges(bpe: Any) -> list[tuple[str, str]]:
    import json

    model = json.loads(bpe.to_str())["model"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]


def tiny_bert_tokenizer(folder: str | Path | None = None) -> Any:
    """A WordPiece ``BertTokenizer`` over the words of :data:`CAPTIONS` (pads with id 0).

    It returns ``token_type_ids``, which must never reach a ``ClapModel``.
    """
    from transformers import BertTokenizer

    words = sorted({w for caption in CAPTIONS for w in caption.split()})
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, "##s", "##ing"]
    tok = BertTokenizer(vocab={t: i for i, t in enumerate(tokens)})
    if folder is not None:
        tok.save_pretrained(str(folder))
    return tok


def tiny_clap_folder(
    folder: str | Path, *, tokenizer: str | None = "roberta", fusion: bool = False, seed: int = 0
) -> Path:
    """Save a tiny ClapModel, its feature extractor and a tokenizer like a real model folder.

    Args:
        folder: Where to save.
        tokenizer: ``"roberta"``, ``"bert"`` or ``None`` (no tokenizer files).
        fusion: A feature-fusion model (4-channel input) and a ``fusion`` extractor.
        seed: Weight seed.
    """
    folder = Path(folder)
    pad = 0 if tokenizer == "bert" else 1
    tiny_clap_model(seed, fusion=fusion, pad_token_id=pad).save_pretrained(folder)
    tiny_feature_extractor(fusion=fusion).save_pretrained(folder)
    if tokenizer == "roberta":
        tiny_roberta_tokenizer(folder)
    elif tokenizer == "bert":
        tiny_bert_tokenizer(folder)
    elif tokenizer is not None:
        raise ValueError(f"unknown tokenizer kind {tokenizer!r}")
    return folder


def laion_state_dict_from_clap(model: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state dict an original LAION-CLAP ``CLAP_Module`` with ``model``'s weights has.

    The inverse of :func:`querysep.clap.laion.convert_laion_state_dict`, with the entries a
    real checkpoint also carries and the conversion must ignore: STFT/mel kernels (zeros),
    Swin attention masks, relative position indices, RoBERTa ``position_ids``, the HTSAT
    classification head and the training-only ``audio_transform``/``text_transform`` MLPs.
    """
    from ..clap.laion import _laion_name

    out: dict[str, torch.Tensor] = {}
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith(("embeddings.token_type_ids", "relative_position_index")):
            continue
        swin = key.startswith("audio_model.")
        if swin and (".attention.self.key." in key or ".attention.self.value." in key):
            continue
        if swin and ".attention.self.query." in key:
            parts = [state[key.replace(".query.", f".{n}.")] for n in ("query", "key", "value")]
            out[_laion_name(key)] = torch.cat(parts).clone()
            continue
        out[_laion_name(key)] = value.clone()
    audio = model.config.audio_config
    width = audio.patch_embeds_hidden_size
    blocks = [(i, j) for i, depth in enumerate(audio.depths) for j in range(depth) if j % 2 == 1]
    side = audio.spec_size // 4
    for i, j in blocks:
        windows = max(1, (side // 2**i // audio.window_size) ** 2)
        size = min(audio.window_size, side // 2**i) ** 2
        out[f"audio_branch.layers.{i}.blocks.{j}.attn_mask"] = torch.zeros(windows, size, size)
    for i, depth in enumerate(audio.depths):
        for j in range(depth):
            size = audio.window_size**2
            key = f"audio_branch.layers.{i}.blocks.{j}.attn.relative_position_index"
            out[key] = torch.zeros(size, size, dtype=torch.long)
    n_fft = 1024
    out["audio_branch.spectrogram_extractor.stft.conv_real.weight"] = torch.zeros(513, 1, n_fft)
    out["audio_branch.spectrogram_extractor.stft.conv_imag.weight"] = torch.zeros(513, 1, n_fft)
    out["audio_branch.logmel_extractor.melW"] = torch.zeros(513, audio.num_mel_bins)
    hidden = width * 2 ** (len(audio.depths) - 1)
    out["audio_branch.tscam_conv.weight"] = torch.zeros(audio.num_classes, hidden, 2, 3)
    out["audio_branch.tscam_conv.bias"] = torch.zeros(audio.num_classes)
    out["audio_branch.head.weight"] = torch.zeros(audio.num_classes, audio.num_classes)
    out["audio_branch.head.bias"] = torch.zeros(audio.num_classes)
    dim = model.config.projection_dim
    for tower in ("audio_transform", "text_transform"):
        for layer in ("0", "3"):
            out[f"{tower}.sequential.{layer}.weight"] = torch.zeros(dim, dim)
            out[f"{tower}.sequential.{layer}.bias"] = torch.zeros(dim)
    return {prefix + k: v for k, v in out.items()}
