"""querysep: language-queried audio source separation.

Give a recording and a text query such as "a dog barking"; get the sound the query describes.

>>> import querysep
>>> estimate = querysep.separate(audio, 16000, "a dog barking")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Separator", "__version__", "list_models", "load_model", "separate"]

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
    raise AttributeError(f"module 'querysep' has no attribute {name!r}")
