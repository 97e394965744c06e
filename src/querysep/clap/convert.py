"""``querysep clap convert``: a LAION-CLAP checkpoint to a transformers ``ClapModel`` folder.

The folder holds ``config.json`` + ``model.safetensors`` (``ClapModel.save_pretrained``),
``preprocessor_config.json`` (LAION's front end as a ``ClapFeatureExtractor``), the
roberta-base tokenizer files when one was given or found in the local Hugging Face cache,
and ``querysep_clap.json`` (the source checkpoint's name and sha256). It loads with
``load_clap(OUTDIR)`` and with :class:`querysep.models.text.clap.ClapTextEncoder`.

The folder appears whole or not at all: everything is written into a hidden folder beside
it, which is renamed to OUTDIR at the end and removed on any error.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import OutputError
from ..fileio import check_output_folder, publish_folder, sha256_file
from ..models.text.clap import quiet_transformers
from ..models.text.laion import ROBERTA_TOKENIZER_FILES
from .hf import CONVERSION_FILE
from .laion import (
    check_vocabulary,
    find_roberta_tokenizer,
    laion_clap_model,
    laion_feature_extractor,
    load_laion_state_dict,
    load_roberta_tokenizer,
)

__all__ = ["ConversionResult", "convert_laion_checkpoint"]


@dataclass(frozen=True)
class ConversionResult:
    """What :func:`convert_laion_checkpoint` wrote.

    Attributes:
        folder: The model folder.
        audio: ``HTSAT-tiny``, ``HTSAT-base`` or a description of another size.
        text: The text tower.
        sha256: Of the source checkpoint.
        tokenizer: The tokenizer folder copied in, or ``None`` (text needs one added).
        ignored: Number of checkpoint keys deliberately not copied (analytic buffers,
            classification head, training-only MLPs).
    """

    folder: Path
    audio: str
    text: str
    sha256: str
    tokenizer: Path | None
    ignored: int

    @property
    def tokenizer_note(self) -> str:
        """One line saying what the folder still needs, or ``""``."""
        if self.tokenizer is not None:
            return ""
        return (
            f"no roberta-base tokenizer was given or cached: copy its {ROBERTA_TOKENIZER_FILES} "
            f"into {self.folder} before embedding text"
        )


def _check_outdir(outdir: Path, overwrite: bool) -> None:
    here = Path.cwd().resolve()
    if outdir.resolve() in (here, *here.parents):  # "." would be swapped for a new folder
        raise OutputError(
            f"cannot write to {outdir}: it is the current folder (or holds it), which the "
            "conversion would replace; name a new folder, e.g. clap-converted"
        )
    check_output_folder(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"cannot write to {outdir}: it is a file, not a folder")
    if outdir.is_dir() and any(outdir.iterdir()) and not overwrite:
        raise OutputError(f"{outdir} exists and is not empty (use --overwrite to replace it)")


def convert_laion_checkpoint(
    checkpoint: str | Path,
    outdir: str | Path,
    *,
    tokenizer: str | Path | None = None,
    overwrite: bool = False,
) -> ConversionResult:
    """Convert a LAION-CLAP checkpoint into a transformers ``ClapModel`` folder.

    Args:
        checkpoint: The original ``.pt`` (bare, ``state_dict``, ``module.`` or AudioSep's
            ``query_encoder.model.`` keys).
        outdir: The folder to write; it must not exist or be empty, unless ``overwrite``.
        tokenizer: Folder of the roberta-base tokenizer; by default the local Hugging Face
            cache is searched. Without one the model is still written, and the result's
            :attr:`~ConversionResult.tokenizer_note` says what to copy in.
        overwrite: Replace an existing non-empty ``outdir``.

    Raises:
        ModelNotFoundError: No such checkpoint, or a ``tokenizer`` folder without one.
        CheckpointError: Not a LAION-CLAP checkpoint, needs pickled code, or does not fit.
        OutputError: ``outdir`` exists and is not empty, or cannot be written.
    """
    checkpoint = Path(checkpoint).expanduser()
    outdir = Path(outdir).expanduser()
    _check_outdir(outdir, overwrite)
    for source in (checkpoint, *([Path(tokenizer).expanduser()] if tokenizer else [])):
        if Path(os.path.realpath(source)).is_relative_to(os.path.realpath(outdir)):
            raise OutputError(
                f"cannot write {outdir}: it holds the input {source}, which replacing it "
                "would delete; choose another folder"
            )
    tok_folder = find_roberta_tokenizer(tokenizer)
    tok = load_roberta_tokenizer(tok_folder) if tok_folder is not None else None
    state, prefix = load_laion_state_dict(checkpoint)
    model, conv = laion_clap_model(state)
    if tok is not None:
        check_vocabulary(tok, int(model.config.text_config.vocab_size), str(checkpoint))
    sha256 = sha256_file(checkpoint)

    parent = outdir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {parent}: {exc.strerror or exc}") from exc
    temp = parent / f".{outdir.name}.{secrets.token_hex(4)}.part"
    try:
        temp.mkdir()
        with quiet_transformers():
            model.save_pretrained(temp, safe_serialization=True)
        laion_feature_extractor().save_pretrained(temp)
        if tok is not None:
            tok.save_pretrained(temp)
        info = {
            "format": "querysep-clap-conversion",
            "version": 1,
            "source": {
                "file": checkpoint.name,
                "sha256": sha256,
                "size_bytes": checkpoint.stat().st_size,
                "key_prefix": prefix,
            },
            "audio": conv.audio,
            "text": conv.text,
            "ignored_keys": len(conv.ignored),
            "tokenizer": "included" if tok is not None else "missing (copy roberta-base's)",
            "converted_by": f"querysep {__version__}",
        }
        (temp / CONVERSION_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        publish_folder(temp, outdir)
    except OSError as exc:
        raise OutputError(f"cannot write {outdir}: {exc.strerror or exc}") from exc
    finally:
        if temp.exists():
            with contextlib.suppress(OSError):
                shutil.rmtree(temp)
    return ConversionResult(outdir, conv.audio, conv.text, sha256, tok_folder, len(conv.ignored))
