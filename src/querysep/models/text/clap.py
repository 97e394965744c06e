"""The text tower of a CLAP model: a transformers ``ClapModel`` folder or a LAION checkpoint.

Loads only what text queries need (``text_model`` + ``text_projection``), from

- a local folder or a hub id already in the local cache (``ClapModel.save_pretrained``
  layout, tokenizer included), or a diffusers AudioLDM folder (``text_encoder/`` +
  ``tokenizer/``), or
- an original LAION-CLAP checkpoint (``music_speech_audioset_epoch_15_esc_89.98.pt``) or a
  checkpoint that embeds one (AudioSep's, under ``query_encoder.model.``), converted by
  :mod:`querysep.models.text.laion`, with the roberta-base tokenizer from a folder or the local
  Hugging Face cache.

Nothing is downloaded here (``local_files_only``), and checkpoints are read without running
pickled code. The embedding is the pooler output through the projection, L2-normalised:
LAION's ``get_text_embedding``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import Field

from ...errors import CheckpointError, ConfigError, ModelNotFoundError
from ...hub import absolute_if_local, resolve_hf_folder
from .base import TextEncoder, register_text_encoder
from .laion import RECOMPUTED_KEYS, has_tokenizer_files

__all__ = [
    "LAION_MAX_TOKENS",
    "ClapTextEncoder",
    "laion_tokenizer_folder",
    "quiet_transformers",
    "refuse_random_weights",
]


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' progress bars and warnings (its table of missing or unexpected
    weights: :func:`refuse_random_weights` says in one line what matters) inside the block."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if was_enabled:
            hf_logging.enable_progress_bar()


def refuse_random_weights(where: str, info: Mapping[str, Any]) -> None:
    """Refuse weights that left parts of a model at their random initialisation.

    Args:
        where: What was loaded, for the message (``"the CLAP weights in DIR"``).
        info: ``from_pretrained(..., output_loading_info=True)``'s second value (loaded
            with ``ignore_mismatched_sizes=True``, so that weights of another shape are
            listed here rather than raised with a pointer to a hidden table).

    Raises:
        CheckpointError: Weights missing from the file, or of another shape.
    """
    missing = sorted(k for k in info.get("missing_keys") or () if not RECOMPUTED_KEYS.search(k))
    mismatched = sorted(
        str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys") or ()
    )
    if missing or mismatched:
        what = (
            f"{len(missing)} weight(s) the model needs are missing (e.g. {missing[0]})"
            if missing
            else f"{len(mismatched)} weight(s) have another shape (e.g. {mismatched[0]})"
        )
        raise CheckpointError(f"{where}: {what}; the model would run with random weights there")


#: Token limit AudioSep's query encoder tokenises with (roberta-base's 512 positions).
LAION_MAX_TOKENS = 512


def laion_tokenizer_folder(tokenizer: str | Path | None = None) -> Path:
    """The roberta-base tokenizer folder LAION-CLAP's text tower needs.

    Args:
        tokenizer: A folder holding it; ``None`` searches the local Hugging Face cache.

    Raises:
        ModelNotFoundError: ``tokenizer`` has no tokenizer files, or none is given and none
            is cached (the message names the files and where they go).
    """
    from .laion import ROBERTA_TOKENIZER_FILES, find_roberta_tokenizer

    folder = find_roberta_tokenizer(tokenizer)
    if folder is None:
        raise ModelNotFoundError(
            "the CLAP text encoder needs the roberta-base tokenizer and none is in the local "
            f"Hugging Face cache: download its {ROBERTA_TOKENIZER_FILES} from "
            "https://huggingface.co/FacebookAI/roberta-base into a folder and pass it with "
            "--text-tokenizer DIR"
        )
    return folder


@register_text_encoder("clap")
class ClapTextEncoder(TextEncoder):
    """CLAP text embeddings (512-d for LAION CLAP), frozen, L2-normalised.

    Give exactly one of ``path`` and ``laion_checkpoint``.

    Args:
        path: Folder saved by ``ClapModel.save_pretrained`` (with its tokenizer), a diffusers
            AudioLDM folder (its ``text_encoder/`` and ``tokenizer/``: AudioLDM's own CLAP
            text tower), or the id of a model already in the local Hugging Face cache.
        max_length: Token limit; longer queries are truncated.
        laion_checkpoint: An original LAION-CLAP ``.pt``, or a checkpoint with one inside
            (AudioSep's ``.ckpt``); only its text tower is loaded.
        tokenizer: With ``laion_checkpoint``: the roberta-base tokenizer folder (``None``
            searches the local Hugging Face cache).
    """

    def __init__(
        self,
        path: str | None = None,
        max_length: Annotated[int, Field(ge=1)] = 77,
        laion_checkpoint: str | None = None,
        tokenizer: str | None = None,
    ) -> None:
        super().__init__()
        if (path is None) == (laion_checkpoint is None):
            raise ConfigError("a CLAP text encoder needs either path or laion_checkpoint")
        if laion_checkpoint is not None:
            from .laion import laion_text_model, load_laion_state_dict

            folder = laion_tokenizer_folder(tokenizer)  # cheap: checked before the weights
            state, _ = load_laion_state_dict(laion_checkpoint)
            self._setup(laion_text_model(state), _load_tokenizer(folder), max_length)
            # local paths recorded absolute, so that a model saved with this encoder's config
            # loads from any working folder
            self.laion_checkpoint: str | None = absolute_if_local(str(laion_checkpoint))
            self.tokenizer_folder: str | None = absolute_if_local(str(folder))
            self.path = None
            return
        from transformers import AutoTokenizer, ClapTextModelWithProjection

        # resolved here, so that from_pretrained only ever sees a local folder (given a
        # missing path it looks the name up on the network, local_files_only or not)
        need = (
            "a local folder with config.json, weights and tokenizer files, or a hub id "
            "in the local Hugging Face cache, is needed"
        )
        try:
            local = resolve_hf_folder(str(path)) if str(path) else Path("")
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(f"CLAP text model: {exc}") from None
        if not str(path) or not local.is_dir():
            raise ModelNotFoundError(f"CLAP text model folder not found: {path!r} ({need})")
        model_source, tok_source = local, local
        if (local / "text_encoder" / "config.json").is_file():  # a diffusers AudioLDM folder
            model_source, tok_source = local / "text_encoder", local / "tokenizer"
            if not tok_source.is_dir():
                raise ModelNotFoundError(
                    f"CLAP text model {path!r}: an AudioLDM folder with text_encoder/ but no "
                    "tokenizer/ folder"
                )
        if not (model_source / "config.json").is_file():
            raise ModelNotFoundError(f"CLAP text model {path!r}: no config.json in {model_source}")
        if not has_tokenizer_files(tok_source):
            raise ModelNotFoundError(
                f"CLAP text model {path!r}: no tokenizer files in {tok_source} (tokenizer.json, "
                "or vocab.json and merges.txt)"
            )
        try:
            with quiet_transformers():
                tok = AutoTokenizer.from_pretrained(str(tok_source), local_files_only=True)
                model, info = ClapTextModelWithProjection.from_pretrained(
                    str(model_source),
                    local_files_only=True,
                    output_loading_info=True,
                    ignore_mismatched_sizes=True,
                )
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelNotFoundError(
                f"cannot load a CLAP text model from {path!r} (a local folder with "
                f"config.json, weights and tokenizer files is needed): {first}"
            ) from None
        refuse_random_weights(f"CLAP text model {path!r}: the weights in {model_source}", info)
        self._setup(model, tok, max_length)
        self.path = absolute_if_local(str(path))  # as laion_checkpoint above
        self.laion_checkpoint = None
        self.tokenizer_folder = None

    def _setup(self, model: Any, tokenizer: Any, max_length: int) -> None:
        from .laion import check_vocabulary

        check_vocabulary(tokenizer, int(model.config.vocab_size), "CLAP text model")
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.dim = int(self.model.config.projection_dim)

    @classmethod
    def from_laion_state_dict(
        cls,
        state: Mapping[str, torch.Tensor],
        *,
        prefix: str = "",
        tokenizer: str | Path,
        checkpoint: str | Path,
        max_length: int = LAION_MAX_TOKENS,
    ) -> ClapTextEncoder:
        """The text tower of an already read LAION-CLAP state dict (no second file read).

        Args:
            state: The state dict; only ``{prefix}text_branch.*`` and
                ``{prefix}text_projection.*`` are used.
            prefix: What precedes ``text_branch.`` (``query_encoder.model.`` in AudioSep's).
            tokenizer: The roberta-base tokenizer folder.
            checkpoint: The file ``state`` came from: :meth:`to_config` names it, so a saved
                model folder can rebuild this encoder.
            max_length: Token limit (AudioSep tokenises to 512).

        Raises:
            CheckpointError: The text tower's keys or shapes do not fit.
            ModelNotFoundError: The tokenizer cannot be loaded.
        """
        from .laion import laion_text_model

        encoder = cls.__new__(cls)
        TextEncoder.__init__(encoder)
        encoder._setup(
            laion_text_model(state, prefix), _load_tokenizer(Path(tokenizer)), max_length
        )
        encoder.path = None
        encoder.laion_checkpoint = absolute_if_local(str(checkpoint))
        encoder.tokenizer_folder = absolute_if_local(str(tokenizer))
        return encoder

    def embed_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Embeddings from token ids, for callers that tokenise themselves.

        Shape:
            - input_ids, attention_mask: ``(batch, tokens)``
            - output: ``(batch, dim)``
        """
        out = self.model(
            input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)
        )
        return torch.nn.functional.normalize(out.text_embeds.float(), dim=-1)

    def _encode(self, queries: list[str]) -> torch.Tensor:
        tok = self.tokenizer(
            queries,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return self.embed_tokens(tok["input_ids"], tok["attention_mask"])

    def to_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"kind": self.kind, "max_length": self.max_length}
        if self.laion_checkpoint is not None:
            config["laion_checkpoint"] = self.laion_checkpoint
            config["tokenizer"] = self.tokenizer_folder
        else:
            config["path"] = self.path
        return config


def _load_tokenizer(folder: Path) -> Any:
    from .laion import load_roberta_tokenizer

    return load_roberta_tokenizer(folder)
