"""Hugging Face model ids and folders, resolved locally: nothing is ever downloaded.

A spec is a local folder, or a hub id (``namespace/name``) whose snapshot is already in the
local Hugging Face cache (``HF_HOME``). Resolving it first, before any ``from_pretrained``
call, keeps those calls on local folders: given a name that is neither, transformers looks
it up on the network even with ``local_files_only`` (a DNS wait of tens of seconds offline)
and then answers in its own words.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelNotFoundError

__all__ = ["absolute_if_local", "resolve_hf_folder"]


def resolve_hf_folder(spec: str) -> Path:
    """A local folder as it is, or the local cache snapshot of hub id ``spec``.

    A spec that is no hub id (it exists, starts with ``.``, ``/`` or ``~``, or has other than
    one ``/``) comes back as a path, existing or not, for the caller to check.

    Raises:
        ModelNotFoundError: A hub id that is not in the local cache.
    """
    path = Path(spec).expanduser()
    if path.exists() or not spec or spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec, local_files_only=True))
    except (OSError, ValueError):  # LocalEntryNotFoundError, HFValidationError
        raise ModelNotFoundError(
            f"{spec} is neither a folder nor a model in the local Hugging Face cache "
            "(querysep downloads nothing: fetch it into the cache first, or give its folder)"
        ) from None


def absolute_if_local(spec: str) -> str:
    """``spec`` naming the same thing from any working directory.

    A relative path that exists (``~`` expanded) is made absolute, so that a config that
    records it still finds it when read from another folder; a hub id, an absolute path and
    a spec that names nothing are returned as given.
    """
    path = Path(spec).expanduser()
    return os.path.abspath(path) if spec and path.exists() else spec
