"""Original LAION-CLAP checkpoints (HTSAT audio tower + RoBERTa text tower) in transformers form.

LAION's ``CLAP_Module`` checkpoints (``630k-audioset-best.pt`` with HTSAT-tiny,
``music_speech_audioset_epoch_15_esc_89.98.pt`` with HTSAT-base; both unfused) and the CLAP
inside AudioSep's Lightning checkpoint (keys under ``query_encoder.model.``) become a
transformers ``ClapModel`` plus a ``ClapFeatureExtractor`` set to LAION's front end:

- :func:`load_laion_state_dict` reads a checkpoint without running any pickled code
  (``torch.load(weights_only=True)``) and finds the CLAP keys in it;
- :func:`convert_text_branch` and :func:`convert_audio_branch` map each tower on its own
  (AudioSep's query encoder needs only the text one);
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

import contextlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ModelNotFoundError
from ..safeload import load_weights_only
from .hf import ROBERTA_TOKENIZER_FILES, HFClap
from .registry import register_clap_loader

__all__ = [
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

ROBERTA_HUB_IDS = ("FacebookAI/roberta-base", "roberta-base")
"""Where the RoBERTa tokenizer is looked for in the local Hugging Face cache."""

_TEXT_MARK = "text_branch.embeddings.word_embeddings.weight"
_AUDIO_MARK = "audio_branch.patch_embed.proj.weight"
_PREFIXES = ("", "module.", "query_encoder.model.", "module.query_encoder.model.")
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
_TEXT_DROPPED = ("embeddings.position_ids", "embeddings.token_type_ids")
_PROJECTION = {"0.": "linear1.", "2.": "linear2."}  # Sequential(Linear, ReLU, Linear)
_RECOMPUTED = re.compile(
    r"(\.relative_position_index|embeddings\.position_ids|embeddings\.token_type_ids"
    r"|batch_norm\.num_batches_tracked)$"
)


def _few(keys: Any, count: int = 4) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - count} more" if len(keys) > count else ""
    return ", ".join(keys[:count]) + more


# ---------------------------------------------------------------------------------------
# reading checkpoints


def load_laion_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Read a LAION-CLAP checkpoint safely and return its CLAP weights without prefix.

    The file is read with ``torch.load(weights_only=True)``: a checkpoint that needs pickled
    code (a class, a function) is refused and none of it runs.

    Returns:
        The state dict (see :func:`strip_laion_prefix`) and the prefix its keys had.

    Raises:
        CheckpointError: Not readable, needs pickled code, or holds no LAION-CLAP weights.
        ModelNotFoundError: No such file.
    """
    obj = load_weights_only(path, "LAION-CLAP checkpoint")
    try:
        return strip_laion_prefix(obj)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def strip_laion_prefix(obj: Any) -> tuple[dict[str, torch.Tensor], str]:
    """The LAION-CLAP weights of a checkpoint object, keys without their prefix.

    Accepts the state dict bare or under ``state_dict``, with keys bare or prefixed by
    ``module.`` (DDP) or ``query_encoder.model.`` (AudioSep; its other weights, the
    separator's, are left out).

    Returns:
        The state dict and the prefix its keys had.

    Raises:
        CheckpointError: No LAION-CLAP weights in it (the message lists a few keys found).
    """
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else obj
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(
            f"not a LAION-CLAP checkpoint: expected a dict of weights, got {type(obj).__name__}"
        )
    keys = [str(k) for k in state]
    prefix = None
    for candidate in _PREFIXES:
        if candidate + _TEXT_MARK in state or candidate + _AUDIO_MARK in state:
            prefix = candidate
            break
    if prefix is None:
        raise CheckpointError(
            "not a LAION-CLAP checkpoint (no audio_branch./text_branch. weights); "
            f"keys found: {_few(keys)}"
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = str(key)
        if key.startswith(prefix):
            out[key[len(prefix) :]] = value
        elif "query_encoder.model." not in prefix:
            out[key] = value  # reported as unexpected later
    bad = [k for k, v in out.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"checkpoint entries that are not tensors: {_few(bad)}")
    return out, prefix


# ---------------------------------------------------------------------------------------
# the two towers


def _get(state: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    try:
        return state[key]
    except KeyError:
        raise CheckpointError(f"missing key in the LAION-CLAP checkpoint: {key}") from None


def _projection(
    state: Mapping[str, torch.Tensor], src: str, dst: str, out: dict[str, torch.Tensor]
) -> dict[str, str]:
    """Map ``src{0,2}.{weight,bias}`` (Linear-ReLU-Linear) to ``dst{linear1,linear2}.*``."""
    names = {}
    for key in state:
        if not key.startswith(src):
            continue
        rest = key[len(src) :]
        head = rest[:2]
        if head not in _PROJECTION:
            raise CheckpointError(f"unexpected key in the LAION-CLAP checkpoint: {key}")
        new = dst + _PROJECTION[head] + rest[2:]
        out[new] = state[key]
        names[new] = key
    return names


def convert_text_branch(
    state: Mapping[str, torch.Tensor], prefix: str = "", *, num_attention_heads: int | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Map LAION's RoBERTa text tower and ``text_projection`` to transformers' CLAP names.

    Reads ``{prefix}text_branch.*`` and ``{prefix}text_projection.*`` and ignores every
    other key, so it works on a whole AudioSep checkpoint with
    ``prefix="query_encoder.model."``.

    Args:
        state: The state dict.
        prefix: What precedes ``text_branch.`` in its keys.
        num_attention_heads: RoBERTa's heads; by default ``hidden_size // 64`` (12 for
            roberta-base), which the weights' shapes cannot tell.

    Returns:
        A ``ClapTextConfig`` keyword dict and the state dict with keys ``text_model.*`` and
        ``text_projection.linear{1,2}.*``, which loads with ``strict=True`` into
        ``ClapTextModelWithProjection(ClapTextConfig(**config))`` except for its
        ``position_ids``/``token_type_ids`` buffers (kept at their initial values).

    Raises:
        CheckpointError: Keys of the RoBERTa tower or its projection are missing.
    """
    branch = f"{prefix}text_branch."
    words = _get(state, branch + "embeddings.word_embeddings.weight")
    vocab_size, hidden = (int(n) for n in words.shape)
    positions = _get(state, branch + "embeddings.position_embeddings.weight")
    types = _get(state, branch + "embeddings.token_type_embeddings.weight")
    layer_ids = {
        int(m.group(1))
        for key in state
        if (m := re.match(re.escape(branch) + r"encoder\.layer\.(\d+)\.", key))
    }
    if not layer_ids:
        raise CheckpointError(f"missing keys in the LAION-CLAP checkpoint: {branch}encoder.layer.*")
    intermediate = _get(state, branch + "encoder.layer.0.intermediate.dense.weight")
    proj = _get(state, f"{prefix}text_projection.0.weight")
    heads = num_attention_heads or max(1, hidden // 64)
    config = {
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "num_hidden_layers": max(layer_ids) + 1,
        "num_attention_heads": heads,
        "intermediate_size": int(intermediate.shape[0]),
        "max_position_embeddings": int(positions.shape[0]),
        "type_vocab_size": int(types.shape[0]),
        "layer_norm_eps": 1e-5,  # RoBERTa's (transformers' CLAP default is BERT's 1e-12)
        "hidden_act": "gelu",
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "projection_dim": int(proj.shape[0]),
        "projection_hidden_act": "relu",
    }
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(branch):
            rest = key[len(branch) :]
            if rest not in _TEXT_DROPPED:
                out["text_model." + rest] = value
    _projection(state, f"{prefix}text_projection.", "text_projection.", out)
    return config, out


def _swin_key(rest: str, value: torch.Tensor, out: dict[str, torch.Tensor]) -> None:
    """One HTSAT key (without ``audio_branch.``) into ``out`` in transformers' names."""
    base = "audio_model.audio_encoder."
    if rest.startswith("bn0."):
        out[base + "batch_norm." + rest[4:]] = value
        return
    if ".attn.qkv." in rest:  # rows: query, key, value
        head, _, param = rest.partition(".attn.qkv.")
        if value.shape[0] % 3:
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
            f"feature-fusion LAION-CLAP checkpoints are not supported (found {_few(fused, 2)}); "
            "use an unfused one"
        )
    patch = _get(state, branch + "patch_embed.proj.weight")
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
        table = _get(state, f"{branch}layers.{i}.blocks.0.attn.relative_position_bias_table")
        depths.append(max(blocks) + 1 if blocks else 0)
        heads.append(int(table.shape[1]))
        window = (math.isqrt(int(table.shape[0])) + 1) // 2
    if not depths or 0 in depths:
        raise CheckpointError(
            f"missing keys in the LAION-CLAP checkpoint: {branch}layers.*.blocks.*"
        )
    fc1 = _get(state, f"{branch}layers.0.blocks.0.mlp.fc1.weight")
    mel_bins = int(_get(state, branch + "bn0.weight").shape[0])
    proj = _get(state, f"{prefix}audio_projection.0.weight")
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
    for key, value in state.items():
        if key.startswith(branch):
            rest = key[len(branch) :]
            if not _AUDIO_DROPPED.match(rest):
                _swin_key(rest, value, out)
    _projection(state, f"{prefix}audio_projection.", "audio_projection.", out)
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
    key = hf_key
    for new, old in (("linear1.", "0."), ("linear2.", "2.")):
        if key.startswith(("audio_projection.", "text_projection.")):
            key = key.replace(new, old)
    if key.startswith("text_model."):
        return "text_branch." + key[len("text_model.") :]
    if key.startswith("audio_model.audio_encoder."):
        key = key[len("audio_model.audio_encoder.") :]
        key = re.sub(r"\.attention\.self\.(query|key|value)\.", ".attn.qkv.", key)
        for old, new in reversed(_AUDIO_RENAMES):
            key = key.replace(new, old)
        key = re.sub(r"^batch_norm\.", "bn0.", key)
        return "audio_branch." + key
    return key


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
        raise CheckpointError(f"unexpected keys in the LAION-CLAP checkpoint: {_few(unknown)}")
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
        mapped[name] = _get(state, name).reshape(())
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
        or k in {"text_branch." + name for name in _TEXT_DROPPED}
    )
    text = (
        f"RoBERTa ({text_config['num_hidden_layers']} layers, hidden {text_config['hidden_size']})"
    )
    return LaionConversion(config, mapped, variant, text, ignored)


def _no_init_weights() -> contextlib.AbstractContextManager[Any]:
    """transformers' context that skips random initialisation (where this version has it)."""
    try:
        from transformers.initialization import no_init_weights  # transformers 5
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights  # transformers 4
        except ImportError:  # pragma: no cover
            return contextlib.nullcontext()
    return no_init_weights()


def laion_clap_model(state: Mapping[str, torch.Tensor]) -> tuple[Any, LaionConversion]:
    """A transformers ``ClapModel`` (eval mode) with the weights of a LAION-CLAP state dict.

    Every key and shape is checked (strictly, apart from the buffers transformers
    recomputes); a mismatch names a few keys in LAION's names.

    Raises:
        CheckpointError: Missing, unexpected or wrong-shape keys.
    """
    from transformers import ClapModel

    conv = convert_laion_state_dict(state)
    with _no_init_weights():  # every parameter is loaded below (checked first)
        model = ClapModel(conv.config)
    expected = model.state_dict()
    missing = [k for k in expected if k not in conv.state_dict and not _RECOMPUTED.search(k)]
    unexpected = [k for k in conv.state_dict if k not in expected]
    wrong = [
        k
        for k, v in conv.state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append("missing keys: " + _few({_laion_name(k) for k in missing}))
    if unexpected:
        problems.append("unexpected keys: " + _few({_laion_name(k) for k in unexpected}))
    if wrong:
        problems.append(
            "wrong shapes: "
            + _few(
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
    weights = {k: v.to(expected[k].dtype).contiguous() for k, v in conv.state_dict.items()}
    model.load_state_dict(weights, strict=False, assign=True)  # no copy of ~1 GB
    return model.eval(), conv


def laion_text_model(state: Mapping[str, torch.Tensor], prefix: str = "") -> Any:
    """A transformers ``ClapTextModelWithProjection`` (eval mode) with LAION's text tower.

    Only ``{prefix}text_branch.*`` and ``{prefix}text_projection.*`` are read (see
    :func:`convert_text_branch`), so this works on a whole AudioSep checkpoint with
    ``prefix="query_encoder.model."``; L2-normalising its ``text_embeds`` gives LAION's
    ``get_text_embedding``. Every key and shape of the text tower is checked.

    Raises:
        CheckpointError: Missing, unexpected or wrong-shape keys of the text tower.
    """
    from transformers import ClapTextConfig, ClapTextModelWithProjection

    config, mapped = convert_text_branch(state, prefix)
    with _no_init_weights():  # every parameter is loaded below (checked first)
        model = ClapTextModelWithProjection(ClapTextConfig(**config))
    expected = model.state_dict()
    missing = [k for k in expected if k not in mapped and not _RECOMPUTED.search(k)]
    unexpected = [k for k in mapped if k not in expected]
    wrong = [
        f"{prefix}{_laion_name(k)} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
        for k, v in mapped.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append("missing keys: " + _few({prefix + _laion_name(k) for k in missing}))
    if unexpected:
        problems.append("unexpected keys: " + _few({prefix + _laion_name(k) for k in unexpected}))
    if wrong:
        problems.append("wrong shapes: " + _few(wrong))
    if problems:
        raise CheckpointError("the LAION-CLAP text tower does not fit: " + "; ".join(problems))
    weights = {k: v.to(expected[k].dtype).contiguous() for k, v in mapped.items()}
    model.load_state_dict(weights, strict=False, assign=True)
    return model.eval()


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


# ---------------------------------------------------------------------------------------
# the tokenizer


def _tokenizer_folder_ok(folder: Path) -> bool:
    if (folder / "tokenizer.json").is_file():
        return True
    return (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()


def find_roberta_tokenizer(tokenizer: str | Path | None = None) -> Path | None:
    """The folder of the RoBERTa tokenizer: ``tokenizer``, else roberta-base in the local cache.

    Returns:
        The folder, or ``None`` when no tokenizer is given and none is cached.

    Raises:
        ModelNotFoundError: ``tokenizer`` is given but has no tokenizer files.
    """
    if tokenizer is not None:
        folder = Path(tokenizer).expanduser()
        if not folder.is_dir() or not _tokenizer_folder_ok(folder):
            raise ModelNotFoundError(
                f"no RoBERTa tokenizer in {folder}: it needs {ROBERTA_TOKENIZER_FILES}"
            )
        return folder
    from huggingface_hub import try_to_load_from_cache

    for repo in ROBERTA_HUB_IDS:
        for name in ("tokenizer.json", "vocab.json"):
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str) and _tokenizer_folder_ok(Path(found).parent):
                return Path(found).parent
    return None


def load_roberta_tokenizer(folder: Path, *, pad_token_id: int = 1) -> Any:
    """Load the tokenizer in ``folder`` (a RoBERTa one: pads with id 1, as the model expects).

    Raises:
        ModelNotFoundError: It cannot be loaded.
        CheckpointError: It pads with another id than the model's.
    """
    from transformers import AutoTokenizer, RobertaTokenizer

    try:
        try:
            tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError):  # vocab.json + merges.txt, nothing to say what
            tok = RobertaTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFoundError(f"cannot load the tokenizer in {folder}: {first}") from None
    if tok.pad_token_id != pad_token_id:
        raise CheckpointError(
            f"the tokenizer in {folder} pads with id {tok.pad_token_id}, but LAION-CLAP's "
            f"RoBERTa expects {pad_token_id}: use roberta-base's tokenizer"
        )
    return tok


_NO_TOKENIZER = (
    "LAION-CLAP needs the roberta-base tokenizer to embed text, and none is in the local "
    f"Hugging Face cache: give a folder with its {ROBERTA_TOKENIZER_FILES}"
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
    folder = find_roberta_tokenizer(tokenizer)
    if folder is None:
        raise ModelNotFoundError(_NO_TOKENIZER)
    tok = load_roberta_tokenizer(folder)
    state, _ = load_laion_state_dict(checkpoint)
    model, conv = laion_clap_model(state)
    clap = HFClap(model, laion_feature_extractor(), tok, name=Path(checkpoint).name)
    clap.source = {"checkpoint": str(checkpoint), "audio": conv.audio}
    return clap.to(device).eval()


register_clap_loader("laion", lambda path, device: load_laion_clap(path, device))
