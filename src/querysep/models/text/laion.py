"""LAION-CLAP's RoBERTa text tower: reading checkpoints, mapping the text branch, its tokenizer.

The text half of the LAION-CLAP conversion (:mod:`querysep.clap.laion` adds the HTSAT audio
tower and the whole model). It lives with the text encoders because AudioSep's query
encoder (:class:`~querysep.models.text.clap.ClapTextEncoder`) needs only this half, and the
models layer does not import the ``clap`` room above it.

- :func:`load_laion_state_dict` reads a checkpoint without running any pickled code
  (``torch.load(weights_only=True)``) and finds the CLAP keys in it (bare, DDP's
  ``module.``, or AudioSep's ``query_encoder.model.``);
- :func:`convert_text_branch` maps the tower to transformers' CLAP names and
  :func:`laion_text_model` builds the checked ``ClapTextModelWithProjection``;
- :func:`find_roberta_tokenizer` / :func:`load_roberta_tokenizer` find and load the
  roberta-base tokenizer offline.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from ...errors import CheckpointError, ModelNotFoundError
from ...safeload import load_weights_only

__all__ = [
    "PROJECTION_NAMES",
    "RECOMPUTED_KEYS",
    "ROBERTA_HUB_IDS",
    "ROBERTA_TOKENIZER_FILES",
    "TEXT_DROPPED",
    "branch_items",
    "convert_text_branch",
    "few_keys",
    "find_roberta_tokenizer",
    "get_key",
    "has_tokenizer_files",
    "laion_key_name",
    "laion_text_model",
    "load_laion_state_dict",
    "load_roberta_tokenizer",
    "map_projection",
    "skip_weight_init",
    "strip_laion_prefix",
]

ROBERTA_HUB_IDS = ("FacebookAI/roberta-base", "roberta-base")
"""Where the RoBERTa tokenizer is looked for in the local Hugging Face cache."""

ROBERTA_TOKENIZER_FILES = "vocab.json, merges.txt and tokenizer_config.json (or tokenizer.json)"
"""The roberta-base files a converted LAION-CLAP folder needs to embed text."""


def has_tokenizer_files(folder: Path, *, bert_vocab: bool = True) -> bool:
    """Whether ``folder`` holds a tokenizer's vocabulary: ``tokenizer.json``, a BPE
    ``vocab.json`` with ``merges.txt``, or (with ``bert_vocab``) a BERT-style ``vocab.txt``."""
    if (folder / "tokenizer.json").is_file() or (bert_vocab and (folder / "vocab.txt").is_file()):
        return True
    return (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()


_TEXT_MARK = "text_branch.embeddings.word_embeddings.weight"
_AUDIO_MARK = "audio_branch.patch_embed.proj.weight"
#: Prefixes a training wrapper adds to every key (DDP's ``module.``, a Lightning module's
#: ``model.``), longest first; an upstream checkpoint's keys may carry one too.
WRAPPER_PREFIXES = ("module.model.", "model.module.", "module.", "model.")
_PREFIXES = tuple(
    wrapper + inner for wrapper in ("", *WRAPPER_PREFIXES) for inner in ("", "query_encoder.model.")
)

#: RoBERTa buffers transformers recomputes (not copied from a checkpoint).
TEXT_DROPPED = ("embeddings.position_ids", "embeddings.token_type_ids")
#: A projection ``Sequential(Linear, ReLU, Linear)``'s LAION names -> transformers' names.
PROJECTION_NAMES = {"0.": "linear1.", "2.": "linear2."}
#: transformers CLAP keys that are recomputed buffers, never loaded from LAION's weights.
RECOMPUTED_KEYS = re.compile(
    r"(\.relative_position_index|embeddings\.position_ids|embeddings\.token_type_ids"
    r"|batch_norm\.num_batches_tracked)$"
)


# ---------------------------------------------------------------------------------------
# reading checkpoints


def few_keys(keys: Any, count: int = 4) -> str:
    """The first ``count`` of ``keys`` (sorted) and how many more, for messages."""
    keys = sorted(keys)
    more = f" and {len(keys) - count} more" if len(keys) > count else ""
    return ", ".join(keys[:count]) + more


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
    ``query_encoder.model.`` (AudioSep; its other weights, the separator's, are left out),
    either behind a wrapper's prefix (:data:`WRAPPER_PREFIXES`: ``module.``, ``model.``).

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
            f"not a LAION-CLAP checkpoint (neither {_AUDIO_MARK} nor {_TEXT_MARK}, with or "
            f"without a module., model. or query_encoder.model. prefix); keys found: "
            f"{few_keys(keys)}"
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
        raise CheckpointError(f"checkpoint entries that are not tensors: {few_keys(bad)}")
    return out, prefix


# ---------------------------------------------------------------------------------------
# the text tower


def get_key(state: Mapping[str, torch.Tensor], key: str, dims: int | None = None) -> torch.Tensor:
    """``state[key]``, a tensor with ``dims`` dimensions when given (its shape is read).

    Raises:
        CheckpointError: The key is missing, or holds no tensor of that many dimensions.
    """
    try:
        value = state[key]
    except KeyError:
        raise CheckpointError(f"missing key in the LAION-CLAP checkpoint: {key}") from None
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{key} in the LAION-CLAP checkpoint is not a tensor")
    if dims is not None and value.dim() != dims:
        raise CheckpointError(
            f"wrong shape {tuple(value.shape)} for {key} in the LAION-CLAP checkpoint "
            f"(expected {dims} dimensions)"
        )
    return value


def branch_items(
    state: Mapping[str, torch.Tensor], branch: str
) -> Iterator[tuple[str, torch.Tensor]]:
    """``(rest, value)`` for every key ``branch + rest`` of ``state`` (one tower's weights)."""
    for key, value in state.items():
        if key.startswith(branch):
            yield key[len(branch) :], value


def map_projection(
    state: Mapping[str, torch.Tensor], src: str, dst: str, out: dict[str, torch.Tensor]
) -> dict[str, str]:
    """Map ``src{0,2}.{weight,bias}`` (Linear-ReLU-Linear) to ``dst{linear1,linear2}.*``."""
    names = {}
    for key in state:
        if not key.startswith(src):
            continue
        rest = key[len(src) :]
        head = rest[:2]
        if head not in PROJECTION_NAMES:
            raise CheckpointError(f"unexpected key in the LAION-CLAP checkpoint: {key}")
        new = dst + PROJECTION_NAMES[head] + rest[2:]
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
    words = get_key(state, branch + "embeddings.word_embeddings.weight", 2)
    vocab_size, hidden = (int(n) for n in words.shape)
    positions = get_key(state, branch + "embeddings.position_embeddings.weight", 2)
    types = get_key(state, branch + "embeddings.token_type_embeddings.weight", 2)
    layer_ids = {
        int(m.group(1))
        for key in state
        if (m := re.match(re.escape(branch) + r"encoder\.layer\.(\d+)\.", key))
    }
    if not layer_ids:
        raise CheckpointError(f"missing keys in the LAION-CLAP checkpoint: {branch}encoder.layer.*")
    intermediate = get_key(state, branch + "encoder.layer.0.intermediate.dense.weight", 2)
    proj = get_key(state, f"{prefix}text_projection.0.weight", 2)
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
    out = {
        "text_model." + rest: v
        for rest, v in branch_items(state, branch)
        if rest not in TEXT_DROPPED
    }
    map_projection(state, f"{prefix}text_projection.", "text_projection.", out)
    return config, out


def skip_weight_init() -> contextlib.AbstractContextManager[Any]:
    """transformers' context that skips random initialisation (where this version has it)."""
    try:
        from transformers.initialization import no_init_weights  # transformers 5
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights  # transformers 4
        except ImportError:  # pragma: no cover
            return contextlib.nullcontext()
    return no_init_weights()


def laion_key_name(hf_key: str) -> str:
    """The LAION key a transformers CLAP key of the text tower or a projection comes from.

    For messages; other keys come back unchanged (:mod:`querysep.clap.laion` maps the
    audio tower's).
    """
    if hf_key.startswith(("audio_projection.", "text_projection.")):
        return hf_key.replace("linear1.", "0.").replace("linear2.", "2.")
    if hf_key.startswith("text_model."):
        return "text_branch." + hf_key[len("text_model.") :]
    return hf_key


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
    with skip_weight_init():  # every parameter is loaded below (checked first)
        model = ClapTextModelWithProjection(ClapTextConfig(**config))
    expected = model.state_dict()
    missing = [k for k in expected if k not in mapped and not RECOMPUTED_KEYS.search(k)]
    unexpected = [k for k in mapped if k not in expected]
    wrong = [
        f"{prefix}{laion_key_name(k)} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
        for k, v in mapped.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append("missing keys: " + few_keys({prefix + laion_key_name(k) for k in missing}))
    if unexpected:
        problems.append(
            "unexpected keys: " + few_keys({prefix + laion_key_name(k) for k in unexpected})
        )
    if wrong:
        problems.append("wrong shapes: " + few_keys(wrong))
    if problems:
        raise CheckpointError("the LAION-CLAP text tower does not fit: " + "; ".join(problems))
    weights = {k: v.to(expected[k].dtype).contiguous() for k, v in mapped.items()}
    model.load_state_dict(weights, strict=False, assign=True)
    return model.eval()


# ---------------------------------------------------------------------------------------
# the tokenizer


def find_roberta_tokenizer(tokenizer: str | Path | None = None) -> Path | None:
    """The folder of the RoBERTa tokenizer: ``tokenizer``, else roberta-base in the local cache.

    Returns:
        The folder, or ``None`` when no tokenizer is given and none is cached.

    Raises:
        ModelNotFoundError: ``tokenizer`` is given but has no tokenizer files.
    """
    if tokenizer is not None:
        folder = Path(tokenizer).expanduser()
        if not folder.is_dir() or not has_tokenizer_files(folder, bert_vocab=False):
            raise ModelNotFoundError(
                f"no RoBERTa tokenizer in {folder}: it needs {ROBERTA_TOKENIZER_FILES}"
            )
        return folder
    from huggingface_hub import try_to_load_from_cache

    for repo in ROBERTA_HUB_IDS:
        for name in ("tokenizer.json", "vocab.json"):
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str) and has_tokenizer_files(Path(found).parent, bert_vocab=False):
                return Path(found).parent
    return None


def check_vocabulary(tokenizer: Any, vocab_size: int, where: str) -> None:
    """Refuse a tokenizer whose ids run past the text model's embedding table (which would
    fail at the first query with an IndexError): the two do not belong together, e.g. a
    LAION-CLAP checkpoint whose text model is not roberta-base.

    Raises:
        CheckpointError: The tokenizer has more tokens than the model embeds.
    """
    if len(tokenizer) > vocab_size:
        raise CheckpointError(
            f"{where}: the tokenizer has {len(tokenizer)} tokens but the text model embeds "
            f"only {vocab_size}, so they do not belong together (a LAION-CLAP checkpoint "
            "needs roberta-base's text model and tokenizer; a model folder, its own tokenizer)"
        )


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
