"""Training configuration: nested dataclasses bound from YAML plus ``key=value`` overrides.

A config file maps onto :class:`TrainConfig` (sections ``model``, ``data``, ``optim``,
``trainer``). Command-line overrides use dotted keys (``optim.lr=3e-4``,
``data.train.0.splits=[fold1,fold2]``) and YAML values. Unknown keys, wrong types and broken
YAML raise :class:`~querysep.errors.ConfigError` naming the key and where it came from.

Relative paths in a config (manifests, audio folders, ``output_dir``) are taken relative to
the working directory, as on the command line.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..errors import ConfigError

__all__ = [
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "PrepareConfig",
    "TrainConfig",
    "TrainSetConfig",
    "TrainerConfig",
    "ValidationConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config",
    "parse_override",
]

LossName = Literal["l1", "sdr", "si_sdr", "thresholded_sdr", "thresholded_sdr_si_sdr"]
Precision = Literal["32", "bf16-mixed"]
CaptionField = Literal["captions", "labels", "both"]

#: Keys of a model folder's ``config.json`` that the model section accepts and ignores.
_IGNORED_MODEL_KEYS = ("format", "format_version")


# ------------------------------------------------------------------------------ sections


@dataclass
class ModelConfig:
    """What to train: a new separator (the ``config.json`` layout) or a pretrained one.

    Attributes:
        network: ``{"type": "resunet", "config": {...ResUNetConfig fields}}``. A missing
            ``condition_dim`` is taken from the text encoder.
        text_encoder: ``{"kind": "minilm"}``, ``{"kind": "clap", "path": ...}``,
            ``{"kind": "hashing", "dim": 32}``...
        init_from: A model name, folder or ``kind:path`` to fine-tune instead
            (then ``network`` and ``text_encoder`` must be left out).
        train_text_encoder: Fine-tune the text encoder too (frozen by default).
        sample_rate: Optional; must equal ``network.config.sample_rate`` (accepted so that a
            model folder's ``config.json`` can be pasted here as is).
        metadata: Free-form facts copied into the exported model's metadata.
    """

    network: dict[str, Any] | None = None
    text_encoder: dict[str, Any] | None = None
    init_from: str | None = None
    train_text_encoder: bool = False
    sample_rate: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.init_from is not None:
            if self.network is not None or self.text_encoder is not None:
                raise ConfigError(
                    "give either init_from or network/text_encoder, not both "
                    "(a fine-tuned model keeps its architecture and text encoder)"
                )
            return
        if self.network is None:
            self.network = {"type": "resunet", "config": {}}
        if self.text_encoder is None:
            self.text_encoder = {"kind": "minilm"}
        if "kind" not in self.text_encoder:
            raise ConfigError("text_encoder needs a 'kind' (minilm, clap, hashing)")
        unknown = sorted(set(self.network) - {"type", "config"})
        if unknown:
            raise ConfigError(f"network: unknown key(s) {', '.join(unknown)} (known: type, config)")
        self.network.setdefault("type", "resunet")
        net_config = self.network.setdefault("config", {})
        if not isinstance(net_config, dict):
            raise ConfigError("network.config must be a mapping of ResUNetConfig fields")
        if self.sample_rate is not None:
            rate = net_config.setdefault("sample_rate", self.sample_rate)
            if rate != self.sample_rate:
                raise ConfigError(
                    f"sample_rate {self.sample_rate} differs from network.config.sample_rate {rate}"
                )
        if self.network["type"] == "resunet":
            from ..models.resunet import ResUNetConfig

            full = ResUNetConfig.from_dict(net_config).to_dict()  # fails early on bad fields
            if "condition_dim" not in net_config:
                del full["condition_dim"]  # taken from the text encoder when the model is built
            self.network["config"] = full

    @property
    def network_sample_rate(self) -> int | None:
        """The network's rate as configured (``None`` for ``init_from``)."""
        if self.network is None:
            return None
        from ..models.resunet import ResUNetConfig

        rate = self.network.get("config", {}).get("sample_rate")
        return int(rate) if rate is not None else ResUNetConfig.sample_rate


@dataclass
class PrepareConfig:
    """Build a manifest on the fly with a dataset recipe (``querysep prepare`` names).

    Attributes:
        recipe: Recipe name, e.g. ``esc50``, ``clotho``, ``folder``.
        root: The dataset folder.
        options: Extra keyword arguments of the recipe function.
    """

    recipe: str
    root: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainSetConfig:
    """One source of training clips: a manifest file or a recipe, optionally split-filtered.

    Attributes:
        manifest: A JSON-lines manifest written by ``querysep prepare``.
        prepare: Or a recipe that builds the manifest in memory.
        splits: Keep only clips of these splits (``None``: all).
    """

    manifest: str | None = None
    prepare: PrepareConfig | None = None
    splits: list[str] | None = None

    def __post_init__(self) -> None:
        if (self.manifest is None) == (self.prepare is None):
            raise ConfigError("each training set needs exactly one of 'manifest' or 'prepare'")


@dataclass
class ValidationConfig:
    """Fixed validation mixtures in the DCASE list format.

    Attributes:
        mixtures: CSV ``source,noise,snr,caption`` (or ``mixture,target,caption``).
        audio_dir: Folder holding the clips the list names.
        max_items: Use only the first rows (``None``: all).
        batch_size: Mixtures per validation batch (padded to the longest; scores use each
            mixture's own length).
    """

    mixtures: str
    audio_dir: str
    max_items: int | None = None
    batch_size: int = 1

    def __post_init__(self) -> None:
        if self.max_items is not None and self.max_items < 1:
            raise ConfigError(f"max_items must be at least 1, got {self.max_items}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")


@dataclass
class DataConfig:
    """Training mixtures made on the fly, and validation mixtures.

    Attributes:
        train: Training clip sources; all their clips form one pool.
        validation: Validation list (``None``: no validation; the last checkpoint is
            exported).
        sample_rate: Audio rate; ``None`` = the network's (must match it when given).
        segment_seconds: Length of each training example.
        batch_size: Examples per step and device.
        num_workers: DataLoader worker processes (0: load in the main process).
        gain_db: Interferer level relative to the target, drawn uniformly, in dB.
        max_offset: Largest interferer delay as a fraction of the segment.
        caption: Query text: a random caption (``captions``), a label (``labels``), or
            either (``both``); clips without the asked kind fall back to the other.
        preload: Decode every training clip into memory before training (shared by
            forked workers). Off for datasets larger than memory.
        cache_size: Decoded files kept in memory when not preloading (``None``: all, 0: none).
    """

    train: list[TrainSetConfig] = field(default_factory=list)
    validation: ValidationConfig | None = None
    sample_rate: int | None = None
    segment_seconds: float = 10.0
    batch_size: int = 16
    num_workers: int = 4
    gain_db: list[float] = field(default_factory=lambda: [-10.0, 10.0])
    max_offset: float = 0.0
    caption: CaptionField = "captions"
    preload: bool = True
    cache_size: int | None = None

    def __post_init__(self) -> None:
        if self.segment_seconds <= 0:
            raise ConfigError(f"segment_seconds must be positive, got {self.segment_seconds}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")
        if len(self.gain_db) != 2 or self.gain_db[0] > self.gain_db[1]:
            raise ConfigError(f"gain_db must be [low, high] with low <= high, got {self.gain_db}")
        if self.sample_rate is not None and self.sample_rate <= 0:
            raise ConfigError(f"sample_rate must be positive, got {self.sample_rate}")


@dataclass
class OptimConfig:
    """AdamW with a linear warm-up to a constant learning rate.

    Attributes:
        lr: Learning rate after warm-up.
        weight_decay: AdamW decoupled weight decay.
        betas: Adam betas.
        eps: Adam epsilon.
        amsgrad: Use the AMSGrad variant (as the DCASE baseline).
        warmup_steps: Steps of linear warm-up: step ``t`` (from 0) uses
            ``lr * min(1, (t + 1) / warmup_steps)``; 0 disables it.
        loss: ``l1`` (waveform L1, the baseline), ``sdr`` or ``si_sdr`` (negative, in dB),
            ``thresholded_sdr`` (negative SDR with a floor 30 dB below the mixture, so
            crops where the target is silent stay bounded), or ``thresholded_sdr_si_sdr``
            (the mean of that and a negative SI-SDR with the same floor, which gives nothing
            for turning the output down).
        schedule: After warm-up, ``constant`` (the baseline) or ``cosine`` decay to
            ``min_lr_ratio * lr`` at ``trainer.max_steps`` (better for short runs).
        min_lr_ratio: Final learning rate of the cosine schedule, as a fraction of ``lr``.
    """

    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    amsgrad: bool = True
    warmup_steps: int = 10000
    loss: LossName = "l1"
    schedule: str = "constant"
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"schedule must be constant or cosine, not {self.schedule!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


@dataclass
class TrainerConfig:
    """The training loop, devices, checkpoints and logs.

    Attributes:
        output_dir: Run folder: ``config.yaml``, ``checkpoints/``, ``logs/``, ``model/``.
        max_steps: Optimizer steps to train for.
        val_every_n_steps: Validate every this many steps.
        checkpoint_every_n_steps: Write ``checkpoints/last.ckpt`` every this many steps.
        keep_step_checkpoints: Also keep a copy ``checkpoints/step-<N>.ckpt`` of each one.
        log_every_n_steps: Log training loss and learning rate every this many steps.
        precision: ``"32"`` or ``"bf16-mixed"`` (autocast; also on CPU).
        accelerator: ``auto``, ``cpu``, ``gpu``, ``cuda``, ``mps``.
        devices: ``auto``, a count, or a list of device indices.
        num_nodes: Machines for multi-node DDP.
        strategy: Lightning strategy: ``auto``, ``ddp``, ``ddp_find_unused_parameters_true``...
        sync_batchnorm: Batch-norm statistics over all devices (DDP), as the DCASE baseline.
        gradient_clip_val: Clip the gradient norm to this (``None``: no clipping).
        seed: Seeds the weights' initialisation and every training mixture.
        deterministic: ``torch.use_deterministic_algorithms`` (slower; exact reruns).
        progress_bar: Show the progress bar.
        export: Export the best checkpoint as a model folder when training ends.
        max_time: Stop after this much training wall time (``HH:MM:SS``), checkpointing and
            exporting as at ``max_steps``; ``None``: no limit.
    """

    output_dir: str = "runs/train"
    max_steps: int = 100000
    val_every_n_steps: int = 5000
    checkpoint_every_n_steps: int = 1000
    keep_step_checkpoints: bool = False
    log_every_n_steps: int = 50
    precision: Precision = "32"
    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    sync_batchnorm: bool = False
    gradient_clip_val: float | None = None
    seed: int = 0
    deterministic: bool = False
    progress_bar: bool = True
    max_time: str | None = None

    def max_time_delta(self) -> datetime.timedelta | None:
        """:attr:`max_time` (``[DD:]HH:MM:SS``) as a timedelta."""
        if self.max_time is None:
            return None
        parts = str(self.max_time).split(":")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            nums = []
        if len(nums) not in (3, 4) or min(nums, default=-1) < 0:
            raise ConfigError(f"max_time must be HH:MM:SS or DD:HH:MM:SS, got {self.max_time!r}")
        days, (hours, minutes, seconds) = (nums[0], nums[1:]) if len(nums) == 4 else (0, nums)
        return datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)

    export: bool = True

    def __post_init__(self) -> None:
        if self.max_time is not None:
            self.max_time_delta()  # validates
        for name in ("max_steps", "val_every_n_steps", "checkpoint_every_n_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.log_every_n_steps < 1:
            raise ConfigError(f"log_every_n_steps must be at least 1, got {self.log_every_n_steps}")
        if self.num_nodes < 1:
            raise ConfigError(f"num_nodes must be at least 1, got {self.num_nodes}")
        if self.gradient_clip_val is not None and self.gradient_clip_val <= 0:
            raise ConfigError(f"gradient_clip_val must be positive, got {self.gradient_clip_val}")


@dataclass
class TrainConfig:
    """Everything a training run needs; see the section classes."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def __post_init__(self) -> None:
        net_rate = self.model.network_sample_rate
        rate = self.data.sample_rate
        if rate is not None and net_rate is not None and rate != net_rate:
            raise ConfigError(f"data.sample_rate {rate} differs from the network's {net_rate} Hz")

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML/JSON-serialisable data."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The config as YAML (sections in order, keys in declaration order)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @property
    def output_dir(self) -> Path:
        return Path(self.trainer.output_dir)


# ------------------------------------------------------------------------ YAML + overrides


def _yaml_error(exc: yaml.YAMLError, source: str) -> ConfigError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    return ConfigError(f"{where}: invalid YAML: {problem}")


def _key_lines(node: yaml.Node, prefix: str = "") -> dict[str, int]:
    """Dotted key -> 1-based line, for every mapping key in a composed YAML document."""
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = f"{prefix}{key_node.value}"
            out[path] = key_node.start_mark.line + 1
            out.update(_key_lines(value_node, path + "."))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            out.update(_key_lines(item, f"{prefix}{index}."))
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"a.b.0.c=value"`` into its key path and its value parsed as a YAML scalar/list.

    Raises:
        ConfigError: No ``=``, an empty key, or a value that is not valid YAML.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} is not key=value (e.g. optim.lr=3e-4)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, f"override {text!r}") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Set each ``key=value`` of ``overrides`` in the nested dict ``data`` (in place).

    Mappings along the way are created when missing; list items are addressed by index.

    Raises:
        ConfigError: A malformed override, or one that indexes past a list or into a scalar.
    """
    for text in overrides:
        path, value = parse_override(text)
        node: Any = data
        for depth, part in enumerate(path):
            last = depth == len(path) - 1
            where = ".".join(path[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(
                        f"override {text!r}: {where} is not an item of a {len(node)}-item list"
                    )
                index: Any = int(part)
            elif isinstance(node, dict):
                index = part
            else:
                raise ConfigError(f"override {text!r}: {'.'.join(path[:depth])} is not a mapping")
            if last:
                node[index] = value
            else:
                if isinstance(node, dict) and node.get(index) is None:
                    node[index] = {}
                node = node[index]
    return data


class _Binder:
    """Builds dataclasses from plain data, reporting errors with the key and its origin."""

    def __init__(self, source: str, lines: Mapping[str, int], overridden: Mapping[str, str]):
        self.source = source
        self.lines = lines
        self.overridden = overridden

    def where(self, path: str) -> str:
        for key, text in self.overridden.items():
            if path == key or path.startswith(key + "."):
                return f"override {text!r}"
        line = self.lines.get(path)
        return f"{self.source}:{line}" if line is not None else self.source

    def error(self, path: str, message: str) -> ConfigError:
        return ConfigError(f"{self.where(path)}: {path or 'config'}: {message}")

    def bind(self, tp: Any, value: Any, path: str) -> Any:
        origin = typing.get_origin(tp)
        if tp is Any:
            return value
        if dataclasses.is_dataclass(tp):
            return self._dataclass(tp, value, path)
        if origin in (typing.Union, types.UnionType):
            args = typing.get_args(tp)
            if value is None:
                if type(None) in args:
                    return None
                raise self.error(path, "must not be empty")
            errors = []
            for arg in args:
                if arg is type(None):
                    continue
                try:
                    return self.bind(arg, value, path)
                except ConfigError as exc:
                    errors.append(exc)
            raise (
                errors[0]
                if len(errors) == 1
                else self.error(path, f"expected {_describe(tp)}, got {value!r}")
            )
        if origin is Literal:
            choices = typing.get_args(tp)
            text = str(value) if isinstance(value, (int, float, str)) else value
            if text not in choices:
                raise self.error(
                    path, f"must be one of {', '.join(map(str, choices))}, got {value!r}"
                )
            return text
        if origin is list:
            (item_tp,) = typing.get_args(tp)
            if isinstance(value, tuple):
                value = list(value)
            if not isinstance(value, list):
                raise self.error(path, f"expected a list, got {value!r}")
            return [self.bind(item_tp, v, f"{path}.{i}") for i, v in enumerate(value)]
        if origin is dict:
            if not isinstance(value, dict):
                raise self.error(path, f"expected a mapping, got {value!r}")
            return dict(value)
        return self._scalar(tp, value, path)

    def _scalar(self, tp: Any, value: Any, path: str) -> Any:
        if tp is bool:
            if isinstance(value, bool):
                return value
            raise self.error(path, f"expected true or false, got {value!r}")
        if tp is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise self.error(path, f"expected an integer, got {value!r}")
        if tp is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
                try:
                    return float(value)
                except ValueError:
                    pass
            raise self.error(path, f"expected a number, got {value!r}")
        if tp is str:
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                return str(value)
            raise self.error(path, f"expected text, got {value!r}")
        raise self.error(path, f"unsupported type {tp!r}")  # pragma: no cover - schema bug

    def _dataclass(self, cls: Any, value: Any, path: str) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.error(path, f"expected a mapping, got {value!r}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        prefix = f"{path}." if path else ""
        for key in value:
            if key not in fields:
                close = difflib.get_close_matches(str(key), list(fields), n=1)
                hint = (
                    f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(fields)})"
                )
                raise self.error(f"{prefix}{key}", f"unknown key{hint}")
        kwargs: dict[str, Any] = {}
        for name, f in fields.items():
            if name in value:
                kwargs[name] = self.bind(hints[name], value[name], f"{prefix}{name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise self.error(f"{prefix}{name}", "is required")
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise self.error(path, str(exc)) from None


def _describe(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    names = {int: "an integer", float: "a number", str: "text", bool: "true/false"}
    return " or ".join(
        names.get(a, "a list" if typing.get_origin(a) is list else str(a)) for a in args
    )


def _normalize(data: dict[str, Any]) -> dict[str, Any]:
    """Accept a pasted model ``config.json`` in the model section (its bookkeeping keys)."""
    model = data.get("model")
    if isinstance(model, dict):
        for key in _IGNORED_MODEL_KEYS:
            model.pop(key, None)
    return data


def config_from_dict(
    data: Mapping[str, Any] | None,
    overrides: Sequence[str] = (),
    *,
    source: str = "config",
    key_lines: Mapping[str, int] | None = None,
) -> TrainConfig:
    """Bind plain data (plus ``key=value`` overrides) to a :class:`TrainConfig`.

    Args:
        data: The parsed YAML document (``None``: all defaults).
        overrides: ``key=value`` strings applied on top, in order.
        source: Name used in error messages (the file).
        key_lines: Dotted key -> line in ``source``, for error messages.

    Raises:
        ConfigError: Unknown keys, wrong types, invalid values or malformed overrides.
    """
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping with model/data/optim/trainer sections")
    raw = _deep_copy(dict(data or {}))
    apply_overrides(raw, overrides)
    overridden = {".".join(parse_override(o)[0]): o for o in overrides}
    binder = _Binder(source, key_lines or {}, overridden)
    return binder.bind(TrainConfig, _normalize(raw), "")


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config file and apply ``key=value`` overrides.

    Args:
        path: The YAML file.
        overrides: e.g. ``["optim.lr=3e-4", "trainer.max_steps=1000"]``.

    Raises:
        ConfigError: The file is missing or is not valid YAML (with the line), or binding
            fails (naming the key and the file or override).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, str(path)) from None
    lines = _key_lines(node) if node is not None else {}
    return config_from_dict(data, overrides, source=str(path), key_lines=lines)
