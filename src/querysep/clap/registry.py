"""Audio-text models by name, folder or ``kind:path``.

- a name: ``esc50-clap`` (bundled, the default) or the reserved ``test-tiny``;
- a folder: a transformers ``ClapModel`` folder (``config.json`` with ``model_type`` clap)
  or a querysep audio-text model folder;
- ``kind:path`` for a registered loader (``hf:`` a transformers folder or a hub id already
  in the local cache, ``laion:`` an original LAION-CLAP ``.pt`` converted on the fly).

Sources plug in with :func:`register_clap_loader` (a ``kind:path`` prefix) and
:func:`register_folder_loader` (recognising a folder by its files).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError, ModelNotFoundError
from ..fileio import sha256_file
from ..pretrained import ModelInfo, check_spec, resolve_device, rng_untouched
from ..textfiles import read_text
from .base import AudioTextModel

__all__ = [
    "DEFAULT_CLAP",
    "ClapInfo",
    "clap_loader_kinds",
    "list_clap_models",
    "load_clap",
    "register_clap_loader",
    "register_folder_loader",
]

TEST_TINY = "test-tiny"
ESC50_CLAP = "esc50-clap"

#: The audio-text model used when none is named.
DEFAULT_CLAP = ESC50_CLAP


ClapInfo = ModelInfo
"""A named audio-text model: the same record as a named separator's."""


_NAMED: dict[str, ClapInfo] = {
    TEST_TINY: ClapInfo(
        name=TEST_TINY,
        description="Reserved random-weight audio-text model for smoke tests; scores are NOT "
        "meaningful.",
        license="Apache-2.0",
    ),
}

Loader = Callable[[str, torch.device], AudioTextModel]
FolderTest = Callable[[Path], bool]
_LOADERS: dict[str, Loader] = {}
_FOLDER_LOADERS: list[tuple[FolderTest, Loader]] = []


_NAMED_LOADERS: dict[str, Callable[[Path], AudioTextModel]] = {}


def register_named(info: ClapInfo, loader: Callable[[Path], AudioTextModel]) -> None:
    """Add a bundled model under ``info.name``; ``loader(folder)`` builds it."""
    _NAMED[info.name] = info
    _NAMED_LOADERS[info.name] = loader


def register_clap_loader(kind: str, loader: Loader) -> None:
    """Let ``kind:path`` specs load through ``loader(path, device)``."""
    _LOADERS[kind] = loader


def register_folder_loader(test: FolderTest, loader: Loader) -> None:
    """Load folders for which ``test(folder)`` is true through ``loader(str(folder), device)``."""
    _FOLDER_LOADERS.append((test, loader))


def clap_loader_kinds() -> list[str]:
    """The ``kind:`` prefixes :func:`load_clap` accepts."""
    _register_sources()
    return sorted(_LOADERS)


def list_clap_models() -> list[ClapInfo]:
    """Every named audio-text model, the default first."""
    _register_sources()
    return sorted(_NAMED.values(), key=lambda m: (m.name != DEFAULT_CLAP, m.name))


def _load_named(info: ClapInfo) -> AudioTextModel:
    if info.name == TEST_TINY:
        from .tiny import TinyClap

        return TinyClap()
    assert info.folder is not None
    folder = Path(str(resources.files("querysep") / "weights" / info.folder))
    if info.sha256:
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise ModelNotFoundError(
                f"bundled audio-text model {info.name} is missing its weights; reinstall querysep"
            )
        digest = sha256_file(weights)
        if digest != info.sha256:
            raise CheckpointError(
                f"bundled audio-text model {info.name} is corrupt: sha256 {digest[:12]}... "
                f"!= {info.sha256[:12]}...; reinstall querysep"
            )
    model = _NAMED_LOADERS[info.name](folder)
    model.name = info.name
    model.weights_sha256 = info.sha256 or ""
    return model


def _register_sources() -> None:
    """Import the modules that register loaders (each registers itself once)."""
    import importlib

    for name in _SOURCES:
        try:
            importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:  # a source still being written
            if exc.name != f"{__package__}.{name}":
                raise


_SOURCES = ("hf", "laion", "small")


def load_clap(spec: str | None = None, device: str | torch.device | None = "cpu") -> AudioTextModel:
    """Load an audio-text model by name, folder or ``kind:path``.

    Loading leaves torch's global random state as it was
    (see :func:`~querysep.pretrained.rng_untouched`).

    Args:
        spec: A name from :func:`list_clap_models`, a folder, or ``kind:path``.
            ``None`` = :data:`DEFAULT_CLAP`.
        device: Where to put it (``"auto"`` picks a GPU when there is one).

    Raises:
        ModelNotFoundError: Nothing matches ``spec`` (or it is empty).
        CheckpointError: Weights that do not fit, or a corrupt bundled file.
        ConfigError: An unknown or unavailable device, or a folder whose ``config.json`` is
            not valid JSON.
    """
    spec = check_spec(spec, "audio-text model")
    _register_sources()
    dev = resolve_device(device)
    with rng_untouched(dev):  # a seed the caller set stays where it was
        return _load_spec(spec or DEFAULT_CLAP, dev)


def _load_spec(spec: str, dev: torch.device) -> AudioTextModel:
    if spec in _NAMED:
        model = _load_named(_NAMED[spec])
        return model.to(dev).eval()
    kind, sep, rest = spec.partition(":")
    if sep and kind in _LOADERS:
        if not rest.strip():  # Path("") would be the current folder
            raise ModelNotFoundError(f"{kind}: needs a path after the colon, e.g. {kind}:DIR")
        return _LOADERS[kind](rest, dev).to(dev).eval()
    path = Path(spec).expanduser()
    if path.is_dir():
        for test, loader in _FOLDER_LOADERS:
            if test(path):
                return loader(str(path), dev).to(dev).eval()
        config = path / "config.json"
        if config.is_file():  # a model folder whose config cannot be read: say why
            try:
                json.loads(read_text(config, "model config", error=ConfigError))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{config} is not valid JSON: {exc}") from None
        raise ModelNotFoundError(
            f"{spec} is not an audio-text model folder (expected a transformers ClapModel "
            "folder or a querysep audio-text model folder with config.json)"
        )
    if path.exists():
        raise ModelNotFoundError(
            f"{spec} is a file; for an original LAION-CLAP checkpoint use laion:{spec}, or "
            f"convert it once with `querysep clap convert {spec} OUTDIR`"
        )
    if "hf" in _LOADERS and "/" in spec and not spec.startswith((".", "/", "~")):
        return _LOADERS["hf"](spec, dev).to(dev).eval()
    names = ", ".join(m.name for m in list_clap_models())
    kinds = ", ".join(sorted(_LOADERS)) or "none"
    raise ModelNotFoundError(
        f"unknown audio-text model {spec!r}: not a known name ({names}), not a folder, "
        f"and not kind:path with a known kind ({kinds})"
    )
