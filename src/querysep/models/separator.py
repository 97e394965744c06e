"""A text encoder and a separation network, saved and loaded together as one folder.

A model folder holds ``config.json`` (architecture, text encoder, metadata) and
``model.safetensors`` (the network's weights). Loading never unpickles anything.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import CheckpointError, ConfigError, ModelNotFoundError
from ..fileio import atomic_files, sha256_file
from ..schema import ConfigModel, config_error, validate_model
from ..textfiles import read_text
from .resunet import ResUNet, ResUNetConfig, load_state_dict_strict
from .text import BANK_NAME, NearestTextEncoder, TextEncoder, build_text_encoder

__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "TextQueriedSeparator",
    "build_network",
    "check_network_config",
    "loading_folder",
    "register_network",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
#: Key of the random id that ties a saved ``config.json`` to its ``model.safetensors``.
SAVE_ID_KEY = "save_id"

_LOADING: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "querysep_loading_folder", default=None
)


def loading_folder() -> Path | None:
    """The model folder :meth:`TextQueriedSeparator.from_pretrained` is loading, if any.

    A network whose config names other files by relative path (IRM-LDM's AudioLDM folder)
    looks for them there first.
    """
    return _LOADING.get()


# network type -> (config from dict, network from config, config to dict)
_NETWORKS: dict[str, tuple[Callable[[Mapping[str, Any]], Any], Callable[[Any], nn.Module]]] = {
    "resunet": (ResUNetConfig.from_dict, ResUNet),
}


def register_network(
    kind: str,
    config_from_dict: Callable[[Mapping[str, Any]], Any],
    factory: Callable[[Any], nn.Module],
) -> None:
    """Make a separation network type loadable from ``config.json`` under ``kind``.

    The network must take ``(mixture (B, 1, L), condition (B, D))`` and return ``(B, 1, L)``,
    and its config must have ``to_dict()`` and a ``sample_rate`` and ``condition_dim``.
    """
    _NETWORKS[kind] = (config_from_dict, factory)


def _network_entry(kind: Any) -> tuple[Callable[[Mapping[str, Any]], Any], Any]:
    if not isinstance(kind, str) or kind not in _NETWORKS:
        raise config_error(
            "type", f"unknown network type {kind!r}; known: {', '.join(sorted(_NETWORKS))}"
        )
    return _NETWORKS[kind]


def check_network_config(
    kind: Any, config: Mapping[str, Any], *, partial: Sequence[str] = ()
) -> dict[str, Any]:
    """Validate a network config without building the network.

    Args:
        kind: The network type (``resunet``).
        config: Its config fields.
        partial: Fields that may be missing and are filled in later (left out of the result
            when missing), e.g. ``condition_dim`` taken from the text encoder.

    Returns:
        The complete config as plain data (defaults filled in).

    Raises:
        ConfigError: An unknown type, an unknown field, or a wrongly typed or out-of-range
            value, naming the field.
    """
    from_dict, _ = _network_entry(kind)
    if not isinstance(config, Mapping):
        raise config_error("", f"expected a mapping, got {config!r}")
    full = from_dict(config).to_dict()
    for name in partial:
        if name not in config:
            full.pop(name, None)
    return full


def build_network(kind: str, config: Mapping[str, Any]) -> nn.Module:
    """A network of a registered type from its config fields (see :func:`register_network`)."""
    from_dict, factory = _network_entry(kind)
    return factory(from_dict(config))


class _NetworkSection(ConfigModel):
    type: str = "resunet"
    config: dict[str, Any] = Field(default_factory=dict)


class _ModelFile(ConfigModel):
    """The layout of a model folder's ``config.json``."""

    format: Literal["querysep-separator"]
    format_version: Annotated[int, Field(ge=0)] = 0
    sample_rate: Annotated[int, Field(ge=1)] | None = None
    network: _NetworkSection
    text_encoder: dict[str, Any]
    metadata: dict[str, Any] = Field(default_factory=dict)
    save_id: str | None = None  # pairs config.json with its model.safetensors


def _condition_mismatch(net: nn.Module, text_encoder: TextEncoder) -> str:
    """Why ``text_encoder``'s embeddings cannot condition ``net`` ("" when they can)."""
    cond = getattr(net.config, "condition_dim", None)
    if cond is None or cond == text_encoder.dim:
        return ""
    return (
        f"the network expects {cond}-d conditions but the text encoder gives "
        f"{text_encoder.dim}-d embeddings"
    )


def _network_kind(net: nn.Module) -> str:
    for kind, (_, factory) in _NETWORKS.items():
        if isinstance(factory, type) and isinstance(net, factory):
            return kind
    raise ConfigError(f"network class {type(net).__name__} is not registered")


class TextQueriedSeparator(nn.Module):
    """Separates the sound a text query describes.

    Args:
        net: Separation network ``(mixture, condition) -> estimate``.
        text_encoder: Turns queries into the network's conditions.
        metadata: Free-form, JSON-serialisable facts about the model (name, data, license).
    """

    def __init__(
        self, net: nn.Module, text_encoder: TextEncoder, metadata: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        mismatch = _condition_mismatch(net, text_encoder)
        if mismatch:
            raise ConfigError(mismatch)
        self.net = net
        self.text_encoder = text_encoder
        self.metadata: dict[str, Any] = dict(metadata or {})
        #: The files the model was loaded from: resolved path -> SHA-256 ("" until
        #: :meth:`weights_digest` needs it). Empty for a model built in code.
        self.source_files: dict[str, str] = {}

    @property
    def sample_rate(self) -> int:
        return int(self.net.config.sample_rate)

    def add_source_file(self, path: str | os.PathLike[str], sha256: str = "") -> None:
        """Record a file the model was loaded from, with its SHA-256 when the loader already
        computed it (a digest recorded earlier is kept otherwise)."""
        key = str(Path(path).resolve())
        self.source_files[key] = sha256 or self.source_files.get(key, "")

    def weights_digest(self) -> str | None:
        """The SHA-256 (hex) over the files the model was loaded from, or ``None`` for a
        model built in code (``test-tiny``).

        The files are those its loader recorded (:attr:`source_files`: a folder's
        ``config.json`` and ``model.safetensors``, an upstream checkpoint) and those the
        network names in its own ``source_files`` (IRM-LDM's VAE and vocoder). Each file is
        hashed at most once per model; digests a loader already checked are reused. The
        digest does not depend on where the files are.

        Raises:
            CheckpointError: A file can no longer be read.
        """
        for path in getattr(self.net, "source_files", ()):
            self.add_source_file(path)
        if not self.source_files:
            return None
        for path, digest in self.source_files.items():
            if not digest:
                try:
                    self.source_files[path] = sha256_file(path)
                except OSError as exc:
                    raise CheckpointError(
                        f"cannot read {path}, which the model was loaded from: "
                        f"{exc.strerror or exc}"
                    ) from None
        return hashlib.sha256("\n".join(sorted(self.source_files.values())).encode()).hexdigest()

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def encode(self, queries: str | Sequence[str]) -> torch.Tensor:
        """Query embeddings on the network's device.

        Shape:
            - output: ``(num_queries, condition_dim)``
        """
        return self.text_encoder.encode(queries).to(self.device)

    def forward(self, mixture: torch.Tensor, queries: Sequence[str] | torch.Tensor) -> torch.Tensor:
        """Estimate, for each mixture, the source its query describes.

        Args:
            mixture: Mono mixtures at :attr:`sample_rate`.
            queries: One text per mixture, or their precomputed embeddings.

        Shape:
            - mixture: ``(batch, 1, time)``
            - queries: ``batch`` strings or ``(batch, condition_dim)``
            - output: ``(batch, 1, time)``
        """
        condition = queries if isinstance(queries, torch.Tensor) else self.encode(list(queries))
        return self.net(mixture, condition.to(mixture.device))

    # ------------------------------------------------------------------ persistence
    def config_dict(self, folder: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """What ``config.json`` holds for a model saved to ``folder`` (``None``: not tied to
        a folder, as in a training checkpoint): a network may write paths relative to it."""
        for_folder = getattr(self.net, "config_for", None)
        network = for_folder(folder) if callable(for_folder) else self.net.config.to_dict()
        return {
            "format": "querysep-separator",
            "format_version": FORMAT_VERSION,
            "sample_rate": self.sample_rate,
            "network": {"type": _network_kind(self.net), "config": network},
            "text_encoder": self.text_encoder.to_config(),
            "metadata": self.metadata,
        }

    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``folder``, as one pair, and
        for a model that answers queries with a bank of texts (a ``nearest`` text encoder)
        their embeddings, ``query_bank.safetensors``, so that loading it embeds nothing.

        Both files are written to temporary files and flushed to disk before either
        replaces anything (see :func:`querysep.fileio.atomic_files`), so an error or Ctrl-C
        while saving leaves the folder's previous pair untouched. The weights are renamed
        into place first and the config last; both carry the same random ``save_id``, so
        the one state a crash between the two renames can leave (new weights, old config)
        is refused by :meth:`from_pretrained` instead of being loaded as a mismatched pair.

        Args:
            folder: The model folder (created).

        Returns:
            ``folder``.

        Raises:
            OutputError: ``folder`` is a file or lies under one, or cannot be written.
        """
        folder = Path(folder)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        save_id = secrets.token_hex(8)
        config = {**self.config_dict(folder), SAVE_ID_KEY: save_id}
        bank = self.text_encoder if isinstance(self.text_encoder, NearestTextEncoder) else None
        paths = [
            folder / WEIGHTS_NAME,
            *([folder / BANK_NAME] if bank else []),
            folder / CONFIG_NAME,
        ]
        with atomic_files(*paths) as temps:
            save_file(state, temps[0], metadata={"format": "pt", SAVE_ID_KEY: save_id})
            if bank is not None:
                bank.save_embeddings(temps[1], save_id)
            temps[-1].write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        if bank is None:  # one of an earlier save would only be skipped as stale
            (folder / BANK_NAME).unlink(missing_ok=True)
        return folder

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        text_encoder: TextEncoder | None = None,
        *,
        source: str = "model config",
    ) -> TextQueriedSeparator:
        """Build an untrained separator from a ``config.json`` dictionary.

        Args:
            config: The parsed ``config.json``.
            text_encoder: Reuse this encoder instead of building the one the config names.
            source: Where the config came from, for error messages.

        Raises:
            ConfigError: A missing or wrongly typed field, naming it.
        """
        if not isinstance(config, Mapping) or config.get("format") != "querysep-separator":
            raise ConfigError(f"{source} is not a querysep model config")
        parsed = validate_model(_ModelFile, config, what=source)
        if parsed.format_version > FORMAT_VERSION:
            raise ConfigError(
                f"{source} was written by a newer querysep (format {parsed.format_version}); "
                "upgrade querysep to load it"
            )
        try:
            net = build_network(parsed.network.type, parsed.network.config)
        except ConfigError as exc:
            raise exc.within(source, "network.config" if exc.key != "type" else "network") from None
        except (RuntimeError, MemoryError) as exc:  # sizes no machine holds: "channels": [1e5]
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(
                f"{source}: cannot build the network it describes ({reason})"
            ) from None
        if text_encoder is None:
            try:
                text_encoder = build_text_encoder(parsed.text_encoder)
            except ConfigError as exc:
                raise exc.within(source, "text_encoder") from None
        mismatch = _condition_mismatch(net, text_encoder)
        if mismatch:
            unset = "" if "condition_dim" in parsed.network.config else " (not set: the default)"
            raise ConfigError(f"{source}: network.config.condition_dim{unset}: {mismatch}")
        return cls(net, text_encoder, parsed.metadata)

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike[str], text_encoder: TextEncoder | None = None
    ) -> TextQueriedSeparator:
        """Load a model folder written by :meth:`save_pretrained`.

        Torch's global random state is left as it was (the network is built with random
        weights before the saved ones replace them).

        Args:
            folder: The folder.
            text_encoder: Reuse an already loaded encoder instead of building the one the
                config names (it must produce the same embeddings).

        Raises:
            ModelNotFoundError: The folder or one of its files is missing.
            ConfigError: ``config.json`` is not valid.
            CheckpointError: The weights do not fit the architecture, the two files come
                from different saves, or the bank's embeddings (``query_bank.safetensors``)
                cannot be read or are damaged.
        """
        folder = Path(folder)
        cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise ModelNotFoundError(
                    f"{folder} is not a querysep model folder: {p.name} missing"
                )
        try:
            config = json.loads(read_text(cfg_path, "model config", error=ConfigError))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{cfg_path} is not valid JSON: {exc}") from None
        token = _LOADING.set(folder)
        # The network is built with random weights that the saved ones then replace: a seed
        # the caller set must not move (it is built on the CPU, whose state alone is drawn).
        try:
            with torch.random.fork_rng(devices=[]):
                model = cls.from_config(config, text_encoder, source=str(cfg_path))
        finally:
            _LOADING.reset(token)
        try:
            with safe_open(str(w_path), framework="pt") as weights:
                saved_with = (weights.metadata() or {}).get(SAVE_ID_KEY)
                state = {key: weights.get_tensor(key) for key in weights.keys()}  # noqa: SIM118
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"cannot read {w_path}: {exc}") from None
        if saved_with is not None and saved_with != config.get(SAVE_ID_KEY):
            raise CheckpointError(
                f"{folder}: {WEIGHTS_NAME} and {CONFIG_NAME} come from different saves "
                "(an interrupted save?); save or export the model again"
            )
        load_state_dict_strict(model.net, state, what=f"model {folder.name}")
        model.metadata.setdefault("path", str(folder))
        model.add_source_file(cfg_path)
        model.add_source_file(w_path)
        # The bank's embeddings, if saved and not stale. Not one of the files the model's
        # digest covers: they only spare computing what the texts and encoder the config
        # names give (their marks say so; a resumed evaluation checks the texts themselves).
        bank = folder / BANK_NAME
        encoder = model.text_encoder
        if text_encoder is None and isinstance(encoder, NearestTextEncoder) and bank.is_file():
            encoder.load_embeddings(bank, config.get(SAVE_ID_KEY))
        return model.eval()
