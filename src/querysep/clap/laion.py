"""Original LAION-CLAP checkpoints (HTSAT audio tower + RoBERTa text tower) in transformers form.

LAION's ``CLAP_Module`` checkpoints (``630k-audioset-best.pt`` with HTSAT-tiny,
``music_speech_audioset_epoch_15_esc_89.98.pt`` with HTSAT-base; both unfused) and the CLAP
inside AudioSep's Lightning checkpoint (keys under ``query_encoder.model.``) become a
transformers ``ClapModel`` plus a ``ClapFeatureExtractor`` set to LAION's front end:

- :func:`load_laion_state_dict` reads a checkpoint without running any pickled code
  (``torch.load(weights_only=True)``) and finds the CLAP keys in it;
- :func:`convert_text_branch` and :func:`convert_audio_branch` map each tower on its own
  (AudioSep's query encoder needs only the text one, so the text half, with the checkpoint
  reader and the tokenizer, lives in :mod:`querysep.models.text.laion`; it is re-exported
  here);
- :func:`laion_clap_model` builds the ``ClapModel`` and checks every key and shape;
- :func:`laion_feature_extractor` is LAION's front end as a ``ClapFeatureExtractor``: LAION
  computes its log-mel inside the audio tower (torchlibrosa STFT, n_fft 1024, hop 480, Hann,
  centred with reflect padding, power; librosa Slaney mel, 64 bins, 50-14000 Hz; power to dB
  with ref 1, amin 1e-10, no top_db), which is exactly the extractor's ``rand_trunc`` path
  with those frequencies; :class:`~querysep.clap.hf.ClapFrontEnd` computes it;
- :func:`load_laion_clap` (``load_clap("laion:ckpt.pt")``) converts in memory, and
  :mod:`querysep.clap.convert` writes a model folder (``querysep clap convert``).

What is not copied: the analytic buffers, recomputed by transformers or the front end (STFT
kernels, ``melW``, Swin attention masks and ``relative_position_index``, RoBERTa
``position_ids``), the HTSAT classification head (``tscam_conv``, ``head``) and the MLPs used
only by the training loss (``audio_transform``, ``text_transform``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ModelNotFoundError
from ..models.text.laion import (
    RECOMPUTED_KEYS,
    ROBERTA_HUB_IDS,
    ROBERTA_TOKENIZER_FILES,
    TEXT_DROPPED,
    branch_items,
    check_vocabulary,
    convert_text_branch,
    few_keys,
    find_roberta_tokenizer,
    get_key,
    laion_key_name,
    laion_text_model,
    load_laion_state_dict,
    load_roberta_tokenizer,
    map_projection,
    skip_weight_init,
    strip_laion_prefix,
)
from .hf import HFClap
from .registry import register_clap_loader

__all__ = [
    "ROBERTA_HUB_IDS",
    "LaionConversion",
    "convert_audio_branch",
    "convert_laion_state_dict",
    "convert_text_branch",
    "find_roberta_tokenizer",
    "laion_clap_model",
    "laion_feature_extractor",
    "laion_text_model",
    "load_laion_clap",
    "load_laion_state_dict",
    "load_roberta_tokenizer",
    "strip_laion_prefix",
]

_TOP_LEVEL = ("audio_branch.", "text_branch.", "audio_projection.", "text_projection.")
_TOP_LEVEL_DROPPED = ("audio_transform.", "text_transform.")

# LAION names -> transformers names, inside one Swin block / the HTSAT encoder
_AUDIO_RENAMES = (
    (".norm1.", ".layernorm_before."),
    (".norm2.", ".layernorm_after."),
    (".attn.proj.", ".attention.output.dense."),
    (".attn.relative_position_bias_table", ".attention.self.relative_position_bias_table"),
    (".mlp.fc1.", ".intermediate.dense."),
    (".mlp.fc2.", ".output.dense."),
)
# analytic buffers (recomputed) and the unused HTSAT classification head
_AUDIO_DROPPED = re.compile(
    r"^(spectrogram_extractor\.|logmel_extractor\.|tscam_conv\.|head\."
    r"|layers\.\d+\.blocks\.\d+\.(attn_mask|attn\.relative_position_index)$)"
)


# ---------------------------------------------------------------------------------------
# the two towers


def _swin_key(rest: str, value: torch.Tensor, out: dict[str, torch.Tensor]) -> None:
    """One HTSAT key (without ``audio_branch.``) into ``out`` in transformers' names."""
    base = "audio_model.audio_encoder."
    if rest.startswith("bn0."):
        out[base + "batch_norm." + rest[4:]] = value
        return
    if ".attn.qkv." in rest:  # rows: query, key, value
        head, _, param = rest.partition(".attn.qkv.")
        if value.dim() == 0 or value.shape[0] % 3:
            raise CheckpointError(f"wrong shape {tuple(value.shape)} for audio_branch.{rest}")
        for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True):
            out[f"{base}{head}.attention.self.{name}.{param}"] = part.contiguous()
        return
    for old, new in _AUDIO_RENAMES:
        rest = rest.replace(old, new)
    out[base + rest] = value


def convert_audio_branch(
    state: Mapping[str, torch.Tensor], prefix: str = ""
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Map LAION's HTSAT audio tower and ``audio_projection`` to transformers' CLAP names.

    The HTSAT size is read from the shapes: patch width 96 and depths (2, 2, 6, 2) is
    HTSAT-tiny, 128 and (2, 2, 12, 2) HTSAT-base (heads from the relative-position tables,
    the window from their size).

    Returns:
        A ``ClapAudioConfig`` keyword dict (``"variant"`` added: ``HTSAT-tiny``,
        ``HTSAT-base`` or a description of other sizes) and the mapped state dict.

    Raises:
        CheckpointError: Missing keys, or a fused (feature-fusion) checkpoint.
    """
    branch = f"{prefix}audio_branch."
    fused = [k for k in state if k.startswith(branch + "patch_embed.") and "fusion" in k]
    fused += [k for k in state if k.startswith(branch + "patch_embed.mel_conv")]
    if fused:
        raise CheckpointError(
            "feature-fusion LAION-CLAP checkpoints are not supported "
            f"(found {few_keys(fused, 2)}); use an unfused one"
        )
    patch = get_key(state, branch + "patch_embed.proj.weight", 4)
    width, in_chans, patch_size = int(patch.shape[0]), int(patch.shape[1]), int(patch.shape[2])
    if in_chans != 1:
        raise CheckpointError(
            f"wrong shape {tuple(patch.shape)} for {branch}patch_embed.proj.weight"
        )
    depths: list[int] = []
    heads: list[int] = []
    window = 0
    while any(k.startswith(f"{branch}layers.{len(depths)}.") for k in state):
        i = len(depths)
        blocks = {
            int(m.group(1))
            for k in state
            if (m := re.match(re.escape(f"{branch}layers.{i}.blocks.") + r"(\d+)\.", k))
        }
        table = get_key(state, f"{branch}layers.{i}.blocks.0.attn.relative_position_bias_table", 2)
        depths.append(max(blocks) + 1 if blocks else 0)
        heads.append(int(table.shape[1]))
        window = (math.isqrt(int(table.shape[0])) + 1) // 2
    if not depths or 0 in depths:
        raise CheckpointError(
            f"missing keys in the LAION-CLAP checkpoint: {branch}layers.*.blocks.*"
        )
    fc1 = get_key(state, f"{branch}layers.0.blocks.0.mlp.fc1.weight", 2)
    mel_bins = int(get_key(state, branch + "bn0.weight", 1).shape[0])
    proj = get_key(state, f"{prefix}audio_projection.0.weight", 2)
    hidden = width * 2 ** (len(depths) - 1)
    if (width, tuple(depths)) == (96, (2, 2, 6, 2)):
        variant = "HTSAT-tiny"
    elif (width, tuple(depths)) == (128, (2, 2, 12, 2)):
        variant = "HTSAT-base"
    else:
        variant = f"HTSAT (width {width}, depths {tuple(depths)})"
    config = {
        "variant": variant,
        "window_size": window,
        "num_mel_bins": mel_bins,
        "spec_size": 256,
        "patch_size": patch_size,
        "patch_stride": [4, 4],
        "hidden_size": hidden,
        "patch_embeds_hidden_size": width,
        "depths": depths,
        "num_attention_heads": heads,
        "num_hidden_layers": len(depths),
        "mlp_ratio": float(fc1.shape[0]) / width,
        "enable_fusion": False,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "projection_dim": int(proj.shape[0]),
        "projection_hidden_act": "relu",
    }
    out: dict[str, torch.Tensor] = {}
    for rest, value in branch_items(state, branch):
        if not _AUDIO_DROPPED.match(rest):
            _swin_key(rest, value, out)
    map_projection(state, f"{prefix}audio_projection.", "audio_projection.", out)
    return config, out


# ---------------------------------------------------------------------------------------
# the whole model


@dataclass
class LaionConversion:
    """What :func:`convert_laion_state_dict` found.

    Attributes:
        config: The ``ClapConfig``.
        state_dict: Weights in transformers' names (analytic buffers left out).
        audio: ``HTSAT-tiny``, ``HTSAT-base`` or a description of another size.
        text: A description of the text tower.
        ignored: Checkpoint keys deliberately not copied.
    """

    config: Any
    state_dict: dict[str, torch.Tensor]
    audio: str
    text: str
    ignored: list[str] = field(default_factory=list)


def _laion_name(hf_key: str) -> str:
    """The LAION key a transformers CLAP key comes from (for messages)."""
    if not hf_key.startswith("audio_model.audio_encoder."):
        return laion_key_name(hf_key)  # the text tower, the projections, the logit scales
    key = hf_key[len("audio_model.audio_encoder.") :]
    key = re.sub(r"\.attention\.self\.(query|key|value)\.", ".attn.qkv.", key)
    for old, new in reversed(_AUDIO_RENAMES):
        key = key.replace(new, old)
    key = re.sub(r"^batch_norm\.", "bn0.", key)
    return "audio_branch." + key


def convert_laion_state_dict(state: Mapping[str, torch.Tensor]) -> LaionConversion:
    """Map a whole unprefixed LAION-CLAP state dict (see :func:`strip_laion_prefix`).

    Raises:
        CheckpointError: Missing keys, keys the conversion does not know, or towers that
            do not fit together (different projection sizes).
    """
    from transformers import ClapConfig

    unknown = [
        k
        for k in state
        if not k.startswith(_TOP_LEVEL + _TOP_LEVEL_DROPPED)
        and k not in ("logit_scale_a", "logit_scale_t")
    ]
    if unknown:
        raise CheckpointError(f"unexpected keys in the LAION-CLAP checkpoint: {few_keys(unknown)}")
    text_config, text_state = convert_text_branch(state)
    audio_config, audio_state = convert_audio_branch(state)
    variant = audio_config.pop("variant")
    if text_config["projection_dim"] != audio_config["projection_dim"]:
        raise CheckpointError(
            f"the text and audio projections differ in size ({text_config['projection_dim']} "
            f"vs {audio_config['projection_dim']}): not one LAION-CLAP model"
        )
    mapped = {**text_state, **audio_state}
    for name in ("logit_scale_a", "logit_scale_t"):
        mapped[name] = get_key(state, name).reshape(())
    config = ClapConfig(
        text_config=text_config,
        audio_config=audio_config,
        projection_dim=text_config["projection_dim"],
        projection_hidden_act="relu",
    )
    ignored = sorted(
        k
        for k in state
        if k.startswith(_TOP_LEVEL_DROPPED)
        or (k.startswith("audio_branch.") and _AUDIO_DROPPED.match(k[len("audio_branch.") :]))
        or k in {"text_branch." + name for name in TEXT_DROPPED}
    )
    text = (
        f"RoBERTa ({text_config['num_hidden_layers']} layers, hidden {text_config['hidden_size']})"
    )
    return LaionConversion(config, mapped, variant, text, ignored)


def laion_clap_model(state: Mapping[str, torch.Tensor]) -> tuple[Any, LaionConversion]:
    """A transformers ``ClapModel`` (eval mode) with the weights of a LAION-CLAP state dict.

    Every key and shape is checked (strictly, apart from the buffers transformers
    recomputes); a mismatch names a few keys in LAION's names.

    Raises:
        CheckpointError: Missing, unexpected or wrong-shape keys.
    """
    from transformers import ClapModel

    try:  # the config is read off key names and shapes: a malformed file breaks it oddly
        conv = convert_laion_state_dict(state)
        with skip_weight_init():  # every parameter is loaded below (checked first)
            model = ClapModel(conv.config)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError, RuntimeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"not a LAION-CLAP checkpoint that can be converted (its weights do not fit the "
            f"HTSAT + RoBERTa layout: {type(exc).__name__}: {detail})"
        ) from None
    expected = model.state_dict()
    missing = [k for k in expected if k not in conv.state_dict and not RECOMPUTED_KEYS.search(k)]
    unexpected = [k for k in conv.state_dict if k not in expected]
    wrong = [
        k
        for k, v in conv.state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append("missing keys: " + few_keys({_laion_name(k) for k in missing}))
    if unexpected:
        problems.append("unexpected keys: " + few_keys({_laion_name(k) for k in unexpected}))
    if wrong:
        problems.append(
            "wrong shapes: "
            + few_keys(
                f"{_laion_name(k)} {tuple(conv.state_dict[k].shape)} (expected "
                f"{tuple(expected[k].shape)})"
                for k in wrong
            )
        )
    if problems:
        raise CheckpointError(
            f"the LAION-CLAP checkpoint ({conv.audio} + {conv.text}) does not fit: "
            + "; ".join(problems)
        )
    broken = [
        k for k, v in conv.state_dict.items() if v.is_floating_point() and not v.isfinite().all()
    ]
    if broken:
        names = few_keys({_laion_name(k) for k in broken})
        raise CheckpointError(
            f"the LAION-CLAP checkpoint holds NaN or infinite weights ({names}): the file is "
            "damaged, or its training diverged"
        )
    weights = {k: v.to(expected[k].dtype).contiguous() for k, v in conv.state_dict.items()}
    model.load_state_dict(weights, strict=False, assign=True)  # no copy of ~1 GB
    return model.eval(), conv


def laion_feature_extractor() -> Any:
    """LAION-CLAP's audio front end (unfused) as a transformers ``ClapFeatureExtractor``."""
    from transformers import ClapFeatureExtractor

    return ClapFeatureExtractor(
        feature_size=64,
        sampling_rate=48000,
        hop_length=480,
        max_length_s=10,
        fft_window_size=1024,
        padding_value=0.0,
        return_attention_mask=False,
        frequency_min=50,
        frequency_max=14000,
        top_db=None,
        truncation="rand_trunc",
        padding="repeatpad",
    )


_NO_TOKENIZER = (
    "LAION-CLAP needs the roberta-base tokenizer to embed text, and none is in the local "
    f"Hugging Face cache: give a folder with its {ROBERTA_TOKENIZER_FILES} "
    "(QUERYSEP_TEXT_TOKENIZER=DIR, or --text-tokenizer DIR where a command has it), or "
    "convert the checkpoint once with 'querysep clap convert CKPT OUT --tokenizer DIR' "
    "and use OUT"
)


def load_laion_clap(
    checkpoint: str | Path,
    device: str | torch.device = "cpu",
    *,
    tokenizer: str | Path | None = None,
) -> HFClap:
    """Convert a LAION-CLAP checkpoint in memory (``load_clap("laion:ckpt.pt")``).

    Args:
        checkpoint: The ``.pt`` file.
        device: Where to put the model.
        tokenizer: Folder of the roberta-base tokenizer; by default the local Hugging Face
            cache is searched (nothing is downloaded).

    Raises:
        ModelNotFoundError: No such checkpoint, or no tokenizer given or cached.
        CheckpointError: Not a LAION-CLAP checkpoint, or one that does not fit.
    """
    source = Path(checkpoint).expanduser()
    if source.is_dir():  # the file is named before the tokenizer is looked up
        raise ModelNotFoundError(f"{source} is a folder; a LAION-CLAP checkpoint is a single file")
    if not source.is_file():
        raise ModelNotFoundError(f"LAION-CLAP checkpoint not found: {source}")
    folder = find_roberta_tokenizer(tokenizer)
    if folder is None:
        raise ModelNotFoundError(_NO_TOKENIZER)
    tok = load_roberta_tokenizer(folder)
    state, _ = load_laion_state_dict(checkpoint)
    model, conv = laion_clap_model(state)
    check_vocabulary(tok, int(model.config.text_config.vocab_size), str(checkpoint))
    clap = HFClap(model, laion_feature_extractor(), tok, name=Path(checkpoint).name)
    clap.source = {"checkpoint": str(checkpoint), "audio": conv.audio}
    return clap.to(device).eval()


def _load_laion_spec(path: str, device: str | torch.device) -> HFClap:
    """``laion:PATH``, with the tokenizer the upstream options name (``--text-tokenizer``,
    ``QUERYSEP_TEXT_TOKENIZER``), else the one in the local Hugging Face cache."""
    from ..models.upstream import current_upstream_options

    return load_laion_clap(path, device, tokenizer=current_upstream_options().text_tokenizer)


register_clap_loader("laion", _load_laion_spec)
