"""querysep: language-queried audio source separation.

Give a recording and a text query such as "a dog barking"; get the sound the query describes.

>>> import querysep
>>> estimate = querysep.separate(audio, 16000, "a dog barking")  # doctest: +SKIP

Subpackages (``querysep.clap``, ``querysep.metrics``, ...) are imported on first use, so
``import querysep`` (and the CLI's ``--help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Separator", "__version__", "list_models", "load_model", "separate"]

#: The subpackages and modules reachable as ``querysep.NAME`` (imported on first use).
_SUBMODULES = (
    "api",
    "app",
    "audio",
    "captions",
    "clap",
    "cli",
    "data",
    "errors",
    "evaluation",
    "fileio",
    "hub",
    "metrics",
    "models",
    "outputs",
    "plotting",
    "precision",
    "pretrained",
    "safeload",
    "schema",
    "testing",
    "textfiles",
    "training",
)

if TYPE_CHECKING:
    from .api import Separator, separate
    from .pretrained import list_models, load_model


def __getattr__(name: str) -> Any:
    # Lazy, so that `import querysep` (and the CLI's --help) stays fast.
    if name in ("Separator", "separate"):
        from . import api

        return getattr(api, name)
    if name in ("list_models", "load_model"):
        from . import pretrained

        return getattr(pretrained, name)
    if name in _SUBMODULES:  # importing it also sets it on this package
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'querysep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*(k for k in globals() if k.startswith("__")), *__all__, *_SUBMODULES})
