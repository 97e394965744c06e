"""Known models by name, and loading by name, folder or ``kind:path``.

Bundled models live in ``querysep/weights/<name>/`` and are checked against the SHA-256
written here before loading. ``test-tiny`` is reserved: a deterministic random-weight model,
built in code, for smoke tests (its output is not meaningful). Other sources plug in through
:func:`register_loader` (``kind:path`` specs): ``audiosep:PATH.ckpt`` and
``dcase-baseline:PATH.ckpt`` load upstream Lightning checkpoints
(:mod:`querysep.models.upstream`); ``irm-ldm:DIR[@OUTPUT]`` loads a trained IRM-LDM folder
(:mod:`querysep.models.irm_ldm`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from .errors import CheckpointError, ConfigError, ModelNotFoundError
from .fileio import sha256_file
from .hub import absolute_if_local
from .models.resunet import ResUNet, ResUNetConfig
from .models.separator import CONFIG_NAME, WEIGHTS_NAME, TextQueriedSeparator
from .models.text import BANK_NAME, HashingTextEncoder

__all__ = [
    "DEFAULT_MODEL",
    "ModelInfo",
    "absolute_spec",
    "list_models",
    "load_model",
    "network_config",
    "register_loader",
    "resolve_device",
]

TEST_TINY = "test-tiny"


@dataclass(frozen=True)
class ModelInfo:
    """A named model: where its files are and how to check them."""

    name: str
    description: str
    folder: str | None = None  # under querysep/weights/, for bundled models
    sha256: str | None = None  # of model.safetensors
    license: str = ""
    #: Other bundled files the model needs, as (path under querysep/weights/, SHA-256).
    extra_files: tuple[tuple[str, str], ...] = ()
    #: Optional packages (import names) it needs beyond querysep's own dependencies.
    requires: tuple[str, ...] = ()

    @property
    def missing(self) -> list[str]:
        """The packages of :attr:`requires` that are not installed."""
        return [name for name in self.requires if importlib.util.find_spec(name) is None]


ESC50_MINILM = "esc50-minilm"
IRM_LDM_ESC50 = "irm-ldm-esc50"

_MODELS: dict[str, ModelInfo] = {
    ESC50_MINILM: ModelInfo(
        name=ESC50_MINILM,
        description=(
            "Small ResUNet (3.1 M parameters) + offline MiniLM text encoder, trained on ESC-50 "
            "folds 1-3: the 50 ESC-50 everyday sound classes, 16 kHz. Each query is answered "
            "as the nearest of its 557 training texts (--no-snap: as it is). See its "
            "MODEL_CARD.md."
        ),
        folder=ESC50_MINILM,
        sha256="35b730f9a2daa47ea5a19a1989c49592e68144c2fafca201c6ea1756f43f868b",
        license="CC BY-NC 3.0 (non-commercial; trained on ESC-50)",
        extra_files=(
            # it changes the output besides the weights: it holds the 557 texts queries are
            # answered with
            (
                "esc50-minilm/config.json",
                "c9dbb8a36d56333837687fb8bbb68d1f6aa476a14399854969569b9a460c1a52",
            ),
            # the 557 texts' MiniLM embeddings (scripts/write_query_bank.py), so that a
            # process does not compute them on its first query
            (
                "esc50-minilm/query_bank.safetensors",
                "0487e63d138c0b77c10acfc27a2858717fe6b5297bd3dc3bddc86c3a193a0c68",
            ),
        ),
    ),
    IRM_LDM_ESC50: ModelInfo(
        name=IRM_LDM_ESC50,
        description=(
            "System 3 (IRM-LDM): ratio mask in the latent space of a small mel VAE, "
            "phase-preserving output, MiniLM queries, trained on ESC-50 folds 1-3; 16 kHz. "
            "Needs the gen extra (diffusers). See its MODEL_CARD.md."
        ),
        folder=IRM_LDM_ESC50,
        sha256="5c7225069f88045f01b385f2982258ed65c7844e9e20c3452c1b25a5ba4d2733",
        license="CC BY-NC 3.0 (non-commercial; trained on ESC-50)",
        requires=("diffusers",),
        extra_files=(
            (
                "esc50-melvae/vae/diffusion_pytorch_model.safetensors",
                "fcbd25f62d80f6425ad1aaccbdeda2f513609ae8e147785d90c4394ee799763a",
            ),
            # the files that change its output besides the weights
            (
                "irm-ldm-esc50/config.json",
                "b9942e38a9ed513c201068499e7bd45efb07489598c21d61b56136f3be1fc4ce",
            ),
            (
                "esc50-melvae/vae/config.json",
                "b28c9cde5036186333a9bae71d7a08c01d26c9b7156623ffdda92a6a7eef3d81",
            ),
            (
                "esc50-melvae/querysep_vae.json",
                "5d5daaf1ce925d477f38248ef8e9c0b58381cc4858fbf41eee38322a6776332c",
            ),
        ),
    ),
    TEST_TINY: ModelInfo(
        name=TEST_TINY,
        description="Reserved random-weight model for smoke tests; its output is NOT meaningful.",
        license="Apache-2.0",
    ),
}

#: The model used when none is named.
DEFAULT_MODEL = ESC50_MINILM

Loader = Callable[[str, torch.device], TextQueriedSeparator]
_LOADERS: dict[str, Loader] = {}


def register_loader(kind: str, loader: Loader) -> None:
    """Let ``kind:path`` specs load through ``loader(path, device)``."""
    _LOADERS[kind] = loader


def list_models() -> list[ModelInfo]:
    """Every named model, the default first."""
    return sorted(_MODELS.values(), key=lambda m: (m.name != DEFAULT_MODEL, m.name))


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` -> cuda if available, else mps if available, else cpu.

    Raises:
        ConfigError: ``device`` is not cpu, cuda, cuda:N, mps or auto, or names a GPU this
            machine does not have.
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):  # TypeError: not text at all (3.5, ["cpu"])
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device {str(device)!r}: use cpu, cuda, cuda:N, mps or auto")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device cuda was asked for but no CUDA GPU is available")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"device {dev} was asked for but there are only {count} CUDA GPU(s)")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError("device mps was asked for but Apple's MPS backend is not available")
    return dev


@contextlib.contextmanager
def rng_untouched(device: torch.device) -> Iterator[None]:
    """Leave torch's global random state as it was after the block.

    Building a network draws random initial weights before the saved ones replace them:
    loading a model must not move a seed the caller set. The CPU's state is kept, and each
    CUDA GPU's where CUDA is in use or about to be (``device`` is a GPU); CUDA is not started
    for a CPU model.
    """
    cuda = device.type == "cuda" or torch.cuda.is_initialized()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []):
        yield


def build_test_tiny() -> TextQueriedSeparator:
    """The reserved ``test-tiny`` model: small, deterministic, random weights."""
    config = ResUNetConfig(
        sample_rate=16000,
        n_fft=256,
        hop_length=64,
        channels=(8, 16, 16),
        pre_channels=8,
        downsample=((2, 2), (2, 2), (1, 2)),
        condition_dim=32,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = ResUNet(config)
    meta = {"name": TEST_TINY, "note": "random weights; output is not meaningful"}
    return TextQueriedSeparator(net, HashingTextEncoder(32), meta).eval()


def _load_named(info: ModelInfo) -> TextQueriedSeparator:
    if info.name == TEST_TINY:
        return build_test_tiny()
    model = TextQueriedSeparator.from_pretrained(verify_bundled(info))
    model.metadata["name"] = info.name
    for path, digest in _bundled_files(info):  # just checked: not hashed again
        if path.name != BANK_NAME:  # a cache of what config.json names (see from_pretrained)
            model.add_source_file(path, digest)
    return model


def _bundled_files(info: ModelInfo) -> list[tuple[Path, str]]:
    """The files of a bundled model that have a SHA-256 here, with it."""
    assert info.folder is not None
    weights = Path(str(resources.files("querysep") / "weights"))
    checks = [(weights / info.folder / WEIGHTS_NAME, info.sha256)] if info.sha256 else []
    return checks + [(weights / path, digest) for path, digest in info.extra_files]


def verify_bundled(info: ModelInfo) -> Path:
    """The folder of a bundled model, after checking its files against their SHA-256s.

    Raises:
        CheckpointError: A file is missing or differs from what was shipped.
    """
    assert info.folder is not None
    weights = Path(str(resources.files("querysep") / "weights"))
    folder = weights / info.folder
    for path, expected in _bundled_files(info):
        if not path.is_file():
            raise CheckpointError(
                f"bundled model {info.name} is incomplete: {path.relative_to(weights)} is "
                "missing; reinstall querysep"
            )
        digest = sha256_file(path)
        if digest != expected:
            raise CheckpointError(
                f"bundled model {info.name} is corrupt: {path.relative_to(weights)} has sha256 "
                f"{digest[:12]}... != {expected[:12]}...; reinstall querysep"
            )
    return folder


def network_config(spec: str | None = None) -> dict | None:
    """The network part of a bundled model's or a model folder's ``config.json``, read
    without loading any weights or text encoder; ``None`` for anything else (``test-tiny``,
    ``kind:path`` specs), which only :func:`load_model` can resolve."""
    spec = spec or DEFAULT_MODEL
    info = _MODELS.get(spec)
    if info is not None:
        if info.folder is None:
            return None
        folder = Path(str(resources.files("querysep") / "weights" / info.folder))
    else:
        folder = Path(spec).expanduser()
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        return dict(config["network"]["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_spec(spec: object, what: str) -> str | None:
    """``spec`` (a name, folder or ``kind:path``; ``None`` = the default) as text, checked.

    Raises:
        ModelNotFoundError: Not text (or a path), empty, or too long to name a file.
    """
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if spec is None:
        return None
    if not isinstance(spec, str):
        raise ModelNotFoundError(
            f"{what}s are named by text (a name, a folder or kind:path), got {type(spec).__name__}"
        )
    if not spec.strip():
        raise ModelNotFoundError(
            f"an empty {what} name was given (leave the option out for the default)"
        )
    if len(spec) > 4096 or any(len(os.fsencode(part)) > 255 for part in spec.split("/")):
        raise ModelNotFoundError(f"unknown {what} {spec[:40]!r}...: too long to be a name or path")
    return spec


def absolute_spec(spec: str) -> str:
    """``spec`` naming the same model from any working directory.

    A relative folder, or the path of ``kind:path`` (before an ``@OUTPUT`` tail where the
    path itself does not exist), is made absolute when it exists; names, absolute paths and
    specs that name nothing are returned as given.
    """
    if spec in _MODELS:
        return spec
    kind, sep, rest = spec.partition(":")
    if sep and kind in _LOADERS:
        path, at, tail = rest, "", ""
        if not Path(rest).expanduser().exists() and "@" in rest:
            path, at, tail = rest.rpartition("@")
        return f"{kind}:{absolute_if_local(path)}{at}{tail}"
    return absolute_if_local(spec)


def load_model(
    spec: str | None = None, device: str | torch.device | None = "cpu"
) -> TextQueriedSeparator:
    """Load a separator by name, model folder or ``kind:path``.

    Loading leaves torch's global random state as it was (see :func:`rng_untouched`).

    Args:
        spec: A name from :func:`list_models`, a folder written by ``save_pretrained``,
            or ``kind:path`` for a registered loader. ``None`` = :data:`DEFAULT_MODEL`.
        device: Where to put it (``"auto"`` picks a GPU when there is one).

    Raises:
        ModelNotFoundError: Nothing matches ``spec`` (or it is empty).
        ConfigError: An unknown or unavailable device.
    """
    spec = check_spec(spec, "model")
    dev = resolve_device(device)
    with rng_untouched(dev):  # a seed the caller set stays where it was
        return _load_spec(spec or DEFAULT_MODEL, dev)


def _load_spec(spec: str, dev: torch.device) -> TextQueriedSeparator:
    if spec in _MODELS:
        model = _load_named(_MODELS[spec])
    else:
        kind, sep, rest = spec.partition(":")
        if sep and kind in _LOADERS:
            return _LOADERS[kind](rest, dev).eval()
        path = Path(spec).expanduser()
        if path.is_dir():
            model = TextQueriedSeparator.from_pretrained(path)
        elif path.exists():
            raise ModelNotFoundError(
                f"{spec} is a file; a model is a folder with config.json and model.safetensors"
            )
        else:
            names = ", ".join(m.name for m in list_models())
            kinds = ", ".join(sorted(_LOADERS)) or "none"
            raise ModelNotFoundError(
                f"unknown model {spec!r}: not a known name ({names}), not a folder, "
                f"and not kind:path with a known kind ({kinds})"
            )
    return model.to(dev).eval()


def _load_folder(path: str, device: torch.device) -> TextQueriedSeparator:
    if not path.strip():  # Path("") would be the current folder
        raise ModelNotFoundError(
            "querysep: needs the model folder's path, e.g. querysep:runs/default-esc50/model"
        )
    return TextQueriedSeparator.from_pretrained(Path(path).expanduser()).to(device)


def _upstream_loader(kind: str) -> Loader:
    """``kind:PATH.ckpt`` for an upstream checkpoint (imported on first use, not at import)."""

    def load(path: str, device: torch.device) -> TextQueriedSeparator:
        from .models.upstream import load_upstream

        return load_upstream(path, kind, device)

    return load


def _load_irm_ldm(path: str, device: torch.device) -> TextQueriedSeparator:
    from .models.irm_ldm import load_irm_ldm

    return load_irm_ldm(path, device)


register_loader("querysep", _load_folder)
register_loader("irm-ldm", _load_irm_ldm)
register_loader("audiosep", _upstream_loader("audiosep"))
register_loader("dcase-baseline", _upstream_loader("dcase-baseline"))
