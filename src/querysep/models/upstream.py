"""AudioSep and DCASE 2024 Task 9 baseline checkpoints as querysep separators (System 2).

Both are Lightning checkpoints of upstream's ``AudioSep`` module, whose ``state_dict`` holds

- ``ss_model.*``: the ResUNet30 separator (32 kHz in AudioSep's
  ``audiosep_base_4M_steps.ckpt``, 16 kHz in the DCASE baseline's), loaded into
  :meth:`ResUNetConfig.resunet30 <querysep.models.resunet.ResUNetConfig.resunet30>`;
- ``query_encoder.model.*``: the frozen LAION-CLAP model of the query encoder (HTSAT-base +
  RoBERTa, ``music_speech_audioset_epoch_15_esc_89.98.pt``). Only its text tower is used:
  RoBERTa's pooler output -> Linear-ReLU-Linear -> L2 norm, LAION's ``get_text_embedding``,
  converted by :mod:`querysep.models.text.laion`. The audio tower, the training-only
  ``*_transform`` MLPs and the logit scales are accepted and ignored.

``load_model("audiosep:PATH.ckpt")`` and ``load_model("dcase-baseline:PATH.ckpt")`` come here.
The roberta-base tokenizer and, optionally, a separate LAION-CLAP checkpoint for the query
encoder are given with :func:`upstream_options` (what ``--text-tokenizer`` and
``--clap-checkpoint`` set), or the environment variables ``QUERYSEP_TEXT_TOKENIZER`` and
``QUERYSEP_CLAP_CHECKPOINT``; without a tokenizer the local Hugging Face cache is searched.

Files are read with ``torch.load(weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ModelNotFoundError
from ..safeload import load_weights_only
from .resunet import ResUNet, ResUNetConfig
from .separator import TextQueriedSeparator
from .text.laion import WRAPPER_PREFIXES, few_keys

__all__ = [
    "CLAP_CHECKPOINT_ENV",
    "TEXT_TOKENIZER_ENV",
    "UPSTREAM_KINDS",
    "UpstreamCheckpoint",
    "UpstreamKind",
    "UpstreamOptions",
    "current_upstream_options",
    "is_upstream_spec",
    "load_upstream",
    "read_upstream_checkpoint",
    "upstream_options",
]

TEXT_TOKENIZER_ENV = "QUERYSEP_TEXT_TOKENIZER"
CLAP_CHECKPOINT_ENV = "QUERYSEP_CLAP_CHECKPOINT"

SS_PREFIX = "ss_model."
QUERY_PREFIX = "query_encoder.model."
# Parts of the query encoder's LAION-CLAP model that text queries do not use.
_QUERY_IGNORED = (
    "audio_branch.",
    "audio_projection.",
    "audio_transform.",
    "text_transform.",
    "logit_scale_a",
    "logit_scale_t",
)
_QUERY_USED = ("text_branch.", "text_projection.")
_LAION_MARK = "text_branch.embeddings.word_embeddings.weight"


@dataclass(frozen=True)
class UpstreamKind:
    """One kind of upstream checkpoint.

    Attributes:
        name: The ``kind`` of ``kind:path`` specs.
        sample_rate: Rate of its ResUNet30.
        label: What it is, for messages.
        precision: Its default inference precision (``auto``: bf16 autocast where the device
            computes bf16 natively; see ``benchmarks/upstream_speed.py`` for the agreement
            with float32). ``--precision 32`` forces the exact path.
    """

    name: str
    sample_rate: int
    label: str
    precision: str = "auto"

    @property
    def a_label(self) -> str:
        """The label with its article, for messages (``an AudioSep``)."""
        return ("an " if self.label[:1].lower() in "aeiou" else "a ") + self.label


UPSTREAM_KINDS: dict[str, UpstreamKind] = {
    "audiosep": UpstreamKind("audiosep", 32000, "AudioSep"),
    "dcase-baseline": UpstreamKind("dcase-baseline", 16000, "DCASE 2024 Task 9 baseline"),
}
_BINS_TO_RATE = {513: 16000, 1025: 32000}


def is_upstream_spec(spec: str | None) -> bool:
    """Whether a model spec names an upstream checkpoint (``audiosep:...``, ...)."""
    return spec is not None and spec.partition(":")[0] in UPSTREAM_KINDS and ":" in spec


# ---------------------------------------------------------------------------------------
# options: tokenizer and separate query-encoder checkpoint


@dataclass(frozen=True)
class UpstreamOptions:
    """What upstream checkpoints need besides the file.

    Attributes:
        text_tokenizer: Folder of the roberta-base tokenizer (``None``: the local Hugging
            Face cache).
        clap_checkpoint: A LAION-CLAP ``.pt`` for the query encoder, used instead of the
            copy inside the checkpoint (``None``: the checkpoint's own).
    """

    text_tokenizer: str | None = None
    clap_checkpoint: str | None = None


_OPTIONS: contextvars.ContextVar[UpstreamOptions | None] = contextvars.ContextVar(
    "querysep_upstream_options", default=None
)


@contextlib.contextmanager
def upstream_options(
    text_tokenizer: str | os.PathLike[str] | None = None,
    clap_checkpoint: str | os.PathLike[str] | None = None,
) -> Iterator[UpstreamOptions]:
    """Set the tokenizer and query-encoder checkpoint for upstream specs loaded inside.

    >>> with upstream_options(text_tokenizer="roberta-base/"):  # doctest: +SKIP
    ...     model = load_model("audiosep:audiosep_base_4M_steps.ckpt")
    """
    options = UpstreamOptions(
        None if text_tokenizer is None else str(text_tokenizer),
        None if clap_checkpoint is None else str(clap_checkpoint),
    )
    token = _OPTIONS.set(options)
    try:
        yield options
    finally:
        _OPTIONS.reset(token)


def current_upstream_options() -> UpstreamOptions:
    """Each option from the innermost :func:`upstream_options` that sets it, else from the
    environment (``QUERYSEP_TEXT_TOKENIZER``, ``QUERYSEP_CLAP_CHECKPOINT``)."""
    options = _OPTIONS.get() or UpstreamOptions()
    return UpstreamOptions(
        options.text_tokenizer or os.environ.get(TEXT_TOKENIZER_ENV) or None,
        options.clap_checkpoint or os.environ.get(CLAP_CHECKPOINT_ENV) or None,
    )


# ---------------------------------------------------------------------------------------
# reading


@dataclass
class UpstreamCheckpoint:
    """What :func:`read_upstream_checkpoint` found.

    Attributes:
        separator: ``ss_model.*`` entries (prefix kept).
        query_encoder: ``query_encoder.model.*`` entries (prefix kept); empty when the
            checkpoint has no query encoder.
        sample_rate: Rate of the ResUNet30, from the shape of its input batch norm.
        ignored: Query-encoder keys deliberately not used (audio tower and the like).
    """

    separator: dict[str, torch.Tensor]
    query_encoder: dict[str, torch.Tensor]
    sample_rate: int
    ignored: list[str]


def _unwrapped(state: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """``state`` without a wrapper's prefix, where every key has it and it hides the
    separator's weights (``module.ss_model.*``); else ``state`` as it is."""
    for prefix in WRAPPER_PREFIXES:
        if all(str(k).startswith(prefix) for k in state) and any(
            str(k).startswith(prefix + SS_PREFIX) for k in state
        ):
            return {str(k)[len(prefix) :]: v for k, v in state.items()}
    return state


def _wrong_kind(
    path: Path, obj: Any, state: Mapping[str, Any], info: UpstreamKind
) -> CheckpointError:
    """The error for a readable file that is not an upstream separator checkpoint."""
    if isinstance(obj, Mapping) and "querysep" in obj:
        return CheckpointError(
            f"{path} is a querysep training checkpoint, not the {info.label} one: export it with "
            "'querysep train export' and pass the folder as --model"
        )
    keys = [str(k) for k in state]
    if any(k.endswith(_LAION_MARK) for k in keys) and not any(SS_PREFIX in k for k in keys):
        return CheckpointError(
            f"{path} is a LAION-CLAP checkpoint (a query encoder), not a separator checkpoint: "
            f"pass it with --clap-checkpoint and the {info.label} .ckpt with --model"
        )
    return CheckpointError(
        f"{path} is not {info.a_label} separator checkpoint: no {SS_PREFIX}* weights; "
        f"keys found: {few_keys(keys)}"
    )


def read_upstream_checkpoint(path: str | os.PathLike[str], kind: str) -> UpstreamCheckpoint:
    """Read an upstream Lightning checkpoint and sort its entries, checking every key.

    Args:
        path: The ``.ckpt`` file.
        kind: A key of :data:`UPSTREAM_KINDS`.

    Raises:
        ModelNotFoundError: No such file.
        CheckpointError: Unreadable, needs pickled code (never run), not this kind of
            checkpoint (a LAION-CLAP ``.pt``, a querysep checkpoint, the other rate), or
            keys that belong to neither the separator nor the query encoder.
    """
    info = UPSTREAM_KINDS[kind]
    path = Path(path).expanduser()
    obj = load_weights_only(path, f"{info.label} checkpoint")
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if isinstance(state, Mapping):
        state = _unwrapped(state)
    if not isinstance(state, Mapping) or not state:
        got = (
            "an empty one"
            if isinstance(state, Mapping)
            else type(state if isinstance(obj, Mapping) else obj).__name__
        )
        raise CheckpointError(
            f"{path} is not {info.a_label} separator checkpoint: expected a dict of "
            f"weights, got {got}"
        )
    separator: dict[str, torch.Tensor] = {}
    query: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    unexpected: list[str] = []
    for key, value in state.items():
        key = str(key)
        if key.startswith(SS_PREFIX):
            separator[key] = value
        elif key.startswith(QUERY_PREFIX):
            rest = key[len(QUERY_PREFIX) :]
            if rest.startswith(_QUERY_USED):
                query[key] = value
            elif rest.startswith(_QUERY_IGNORED):
                ignored.append(key)
            else:
                unexpected.append(key)
        else:
            unexpected.append(key)
    if not separator:
        raise _wrong_kind(path, obj, state, info)
    if unexpected:
        raise CheckpointError(
            f"{path}: unexpected keys in {info.a_label} checkpoint: {few_keys(unexpected)}"
        )
    bad = [k for k, v in {**separator, **query}.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: checkpoint entries that are not tensors: {few_keys(bad)}")
    bn0 = separator.get(SS_PREFIX + "base.bn0.weight")
    if bn0 is None:
        raise CheckpointError(
            f"{path}: missing key in {info.a_label} checkpoint: {SS_PREFIX}base.bn0.weight"
        )
    rate = _BINS_TO_RATE.get(int(bn0.shape[0]) if bn0.dim() == 1 else -1)
    if rate != info.sample_rate:
        others = [k for k in UPSTREAM_KINDS.values() if k.sample_rate == rate]
        hint = f": load it as {others[0].name}:{path}" if others else ""
        found = f"a {rate // 1000} kHz" if rate else "an unknown"
        bins = f"{bn0.shape[0]} bins" if bn0.dim() == 1 else f"shape {tuple(bn0.shape)}"
        raise CheckpointError(
            f"{path} holds {found} ResUNet30 ({SS_PREFIX}base.bn0 has {bins}), "
            f"but {info.label} is {info.sample_rate // 1000} kHz{hint}"
        )
    return UpstreamCheckpoint(separator, query, rate, sorted(ignored))


# ---------------------------------------------------------------------------------------
# loading


def load_upstream(
    path: str | os.PathLike[str],
    kind: str = "audiosep",
    device: str | torch.device = "cpu",
    *,
    text_tokenizer: str | os.PathLike[str] | None = None,
    clap_checkpoint: str | os.PathLike[str] | None = None,
) -> TextQueriedSeparator:
    """An AudioSep or DCASE-baseline checkpoint as a :class:`TextQueriedSeparator`.

    Args:
        path: The Lightning ``.ckpt``.
        kind: ``audiosep`` (32 kHz) or ``dcase-baseline`` (16 kHz).
        device: Where to put the model.
        text_tokenizer: Folder of the roberta-base tokenizer; ``None`` takes
            :func:`current_upstream_options`' or searches the local Hugging Face cache.
        clap_checkpoint: A LAION-CLAP ``.pt`` for the query encoder instead of the copy in
            the checkpoint; ``None`` takes :func:`current_upstream_options`'.

    Raises:
        ModelNotFoundError: A missing file, no tokenizer, or no query encoder at all.
        CheckpointError: A file that cannot be read or does not fit (see
            :func:`read_upstream_checkpoint`).
    """
    from .text.clap import LAION_MAX_TOKENS, ClapTextEncoder, laion_tokenizer_folder

    if kind not in UPSTREAM_KINDS:
        raise ModelNotFoundError(
            f"unknown upstream kind {kind!r}; known: {', '.join(sorted(UPSTREAM_KINDS))}"
        )
    info = UPSTREAM_KINDS[kind]
    if not str(path).strip():
        raise ModelNotFoundError(f"{kind}: needs the checkpoint's path, e.g. {kind}:model.ckpt")
    options = current_upstream_options()
    text_tokenizer = text_tokenizer if text_tokenizer is not None else options.text_tokenizer
    clap_checkpoint = clap_checkpoint if clap_checkpoint is not None else options.clap_checkpoint
    # The cheap checks first, the files named before the tokenizer looked up: a missing
    # file or tokenizer fails before 1-2 GB are read.
    path = Path(path).expanduser()
    if path.is_dir():
        raise ModelNotFoundError(f"{path} is a folder; {info.a_label} checkpoint is a single file")
    if not path.is_file():
        raise ModelNotFoundError(f"{kind} checkpoint not found: {path}")
    if clap_checkpoint is not None and not Path(clap_checkpoint).expanduser().is_file():
        raise ModelNotFoundError(f"LAION-CLAP checkpoint not found: {clap_checkpoint}")
    tokenizer = laion_tokenizer_folder(text_tokenizer)
    ckpt = read_upstream_checkpoint(path, kind)
    net = ResUNet(ResUNetConfig.resunet30(info.sample_rate))
    try:
        net.load_upstream_state_dict(ckpt.separator)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if clap_checkpoint is not None:
        encoder = ClapTextEncoder(
            max_length=LAION_MAX_TOKENS,
            laion_checkpoint=str(clap_checkpoint),
            tokenizer=str(tokenizer),
        )
        query_source = str(clap_checkpoint)
    elif ckpt.query_encoder:
        try:
            encoder = ClapTextEncoder.from_laion_state_dict(
                ckpt.query_encoder, prefix=QUERY_PREFIX, tokenizer=tokenizer, checkpoint=path
            )
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        query_source = f"{path} ({QUERY_PREFIX}*)"
    else:
        raise ModelNotFoundError(
            f"{path} holds no query encoder ({QUERY_PREFIX}* weights): give the LAION-CLAP "
            "checkpoint music_speech_audioset_epoch_15_esc_89.98.pt with --clap-checkpoint"
        )
    metadata = {
        "name": kind,
        "checkpoint": str(path),
        "query_encoder": query_source,
        "upstream": info.label,
        "precision": info.precision,
    }
    del ckpt
    model = TextQueriedSeparator(net, encoder, metadata)
    model.add_source_file(path)  # hashed when a digest is asked for: evaluate does, once a run
    if clap_checkpoint is not None:
        model.add_source_file(Path(clap_checkpoint).expanduser())
    return model.to(device).eval()
