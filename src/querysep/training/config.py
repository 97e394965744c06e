"""Training configuration: typed sections validated with pydantic, from YAML plus overrides.

A config file maps onto :class:`TrainConfig` (sections ``model``, ``data``, ``optim``,
``trainer``). Command-line overrides use dotted keys (``optim.lr=3e-4``,
``data.train.0.splits=[fold1,fold2]``) and YAML values. Every section, the network's and the
text encoder's arguments included, is checked the same way (:mod:`querysep.schema`): unknown
keys, wrong types, values out of range and broken YAML raise
:class:`~querysep.errors.ConfigError` naming the key, the value, what was expected and where
it came from (``file:line`` or the override).

pydantic v2 was chosen over OmegaConf structured configs because it checks ranges and
cross-field rules declaratively (``Field(ge=1)``, validators), validates plain dataclasses
and function signatures (the network configs, the text encoders' arguments) with the same
machinery, and reports each problem as a key path, which the messages here are built from.

Relative paths in a config (manifests, audio folders, ``output_dir``) are taken relative to
the working directory, as on the command line.
"""

from __future__ import annotations

import copy
import datetime
import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from ..data.effects import DRR_DB_LIMITS, MAX_EQ_DB, RT60_LIMITS
from ..data.manifest import MAX_ABS_SNR_DB
from ..errors import ConfigError
from ..precision import PrecisionSetting
from ..schema import (
    ConfigModel,
    YamlLoader,
    bool_problem,
    config_error,
    describe_error,
    nested,
    other_kind,
)
from ..textfiles import read_text

__all__ = [
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "PrepareConfig",
    "RunSections",
    "TrainConfig",
    "TrainSetConfig",
    "TrainerConfig",
    "ValidationConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config",
    "parse_override",
]

LossName = Literal["l1", "mse", "sdr", "si_sdr", "thresholded_sdr", "thresholded_sdr_si_sdr"]
CaptionField = Literal["captions", "labels", "both"]
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps"]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]

C = TypeVar("C", bound=ConfigModel)

#: Keys of a model folder's ``config.json`` that the model section accepts and ignores.
_IGNORED_MODEL_KEYS = ("format", "format_version", "save_id")


# ------------------------------------------------------------------------------ sections


class ModelConfig(ConfigModel):
    """What to train: a new separator (the ``config.json`` layout) or a pretrained one.

    Attributes:
        network: ``{"type": "resunet", "config": {...ResUNetConfig fields}}``. A missing
            ``condition_dim`` is taken from the text encoder.
        text_encoder: ``{"kind": "minilm"}``, ``{"kind": "clap", "path": ...}``,
            ``{"kind": "hashing", "dim": 32}``...
        init_from: A model name, folder or ``kind:path`` to fine-tune instead
            (then ``network`` and ``text_encoder`` must be left out).
        grow: With ``init_from``: make the pretrained network deeper before training, without
            changing its output (``{"blocks": 2}`` or ``{"blocks": [1, 1, 2, 2, 2]}``: residual
            blocks per level, see ``ResUNet.grown``).
        train_text_encoder: Fine-tune the text encoder too (frozen by default).
        query_bank: Answer each query of the trained model with the nearest (cosine) of the
            training data's query texts (:class:`~querysep.models.text.NearestTextEncoder`
            around the text encoder, written into the exported ``config.json``). Training
            steps are unchanged (each training text is its own nearest); validation queries
            that are not training texts are answered as their nearest, as the exported
            model will answer them, so they count in ``val/*`` and the best checkpoint.
        sample_rate: Optional; must equal ``network.config.sample_rate`` (accepted so that a
            model folder's ``config.json`` can be pasted here as is).
        metadata: Free-form facts copied into the exported model's metadata.
    """

    network: dict[str, Any] | None = None
    text_encoder: dict[str, Any] | None = None
    init_from: str | None = None
    grow: dict[str, PositiveInt | list[PositiveInt]] | None = None
    train_text_encoder: bool = False
    query_bank: bool = False
    sample_rate: PositiveInt | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        try:
            return self._check_sections()
        except ConfigError as exc:
            raise nested(exc) from None

    def _check_sections(self) -> ModelConfig:
        if self.query_bank and self.train_text_encoder:
            raise config_error(
                "query_bank", "cannot go with train_text_encoder (its texts' embeddings move)"
            )
        if self.grow is not None:
            if self.init_from is None:
                raise config_error("grow", "needs init_from (a new network is built at its size)")
            unknown = sorted(set(self.grow) - {"blocks"})
            if unknown:
                raise config_error(f"grow.{unknown[0]}", "unknown key (known: blocks)")
        if self.init_from is not None:
            if self.network is not None or self.text_encoder is not None:
                raise ValueError(
                    "give either init_from or network/text_encoder, not both "
                    "(a fine-tuned model keeps its architecture and text encoder)"
                )
            return self
        from ..models.separator import check_network_config
        from ..models.text import check_text_encoder_config

        network = dict(self.network or {"type": "resunet", "config": {}})
        unknown = sorted(set(network) - {"type", "config"})
        if unknown:
            raise config_error(f"network.{unknown[0]}", "unknown key (known: type, config)")
        kind = network.setdefault("type", "resunet")
        net_config = network.setdefault("config", {})
        if not isinstance(net_config, dict):
            raise config_error("network.config", f"expected a mapping, got {net_config!r}")
        if self.sample_rate is not None:
            rate = net_config.setdefault("sample_rate", self.sample_rate)
            if rate != self.sample_rate:
                raise config_error(
                    "sample_rate",
                    f"{self.sample_rate} differs from network.config.sample_rate {rate}",
                )
        try:
            full = check_network_config(kind, net_config, partial=("condition_dim",))
        except ConfigError as exc:
            raise exc.within(prefix="network" if exc.key == "type" else "network.config") from None
        encoder = dict(self.text_encoder or {"kind": "minilm"})
        try:
            check_text_encoder_config(encoder)
        except ConfigError as exc:
            raise exc.within(prefix="text_encoder") from None
        # assigned without re-validation (validate_assignment would call this again)
        self.__dict__.update(network={"type": kind, "config": full}, text_encoder=encoder)
        return self

    @property
    def network_sample_rate(self) -> int | None:
        """The network's rate as configured (``None`` for ``init_from``)."""
        if self.network is None:
            return None
        return int(self.network["config"]["sample_rate"])


class PrepareConfig(ConfigModel):
    """Build a manifest on the fly with a dataset recipe (``querysep prepare`` names).

    Attributes:
        recipe: Recipe name, e.g. ``esc50``, ``clotho``, ``folder``.
        root: The dataset folder.
        options: Extra keyword arguments of the recipe function.
    """

    recipe: str
    root: str
    options: dict[str, Any] = Field(default_factory=dict)


class TrainSetConfig(ConfigModel):
    """One source of training clips: a manifest file or a recipe, optionally split-filtered.

    Attributes:
        manifest: A JSON-lines manifest written by ``querysep prepare``.
        prepare: Or a recipe that builds the manifest in memory.
        splits: Keep only clips of these splits (``None``: all; an empty list is refused).
    """

    manifest: str | None = None
    prepare: PrepareConfig | None = None
    splits: list[str] | None = None

    @field_validator("splits")
    @classmethod
    def _some_split(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("name at least one split, or leave splits out (null) for all")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> TrainSetConfig:
        if (self.manifest is None) == (self.prepare is None):
            raise ValueError("each training set needs exactly one of 'manifest' or 'prepare'")
        return self


class ValidationConfig(ConfigModel):
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
    max_items: PositiveInt | None = None
    batch_size: PositiveInt = 1


class DataConfig(ConfigModel):
    """Training mixtures made on the fly, and validation mixtures.

    Attributes:
        train: Training clip sources; all their clips form one pool.
        validation: Validation list (``None``: no validation; the last checkpoint is
            exported).
        sample_rate: Audio rate; ``None`` = the network's (must match it when given).
        segment_seconds: Length of each training example.
        batch_size: Examples per step and device.
        num_workers: DataLoader worker processes (0: load in the main process).
        gain_db: Interferer level relative to the target, drawn uniformly, in dB
            (within -100..100, as mixture lists' SNRs).
        max_offset: Largest interferer delay as a fraction of the segment.
        caption: Query text: a random caption (``captions``), a label (``labels``), or
            either (``both``); clips without the asked kind fall back to the other.
        preload: Decode every training clip into memory before training (shared by
            forked workers). Off for datasets larger than memory: a run then reads each
            file's header at the start instead (a missing or unreadable file stops it
            before its folder is touched) and decodes clips on first use.
        cache_size: Decoded files kept in memory when not preloading (``None``: all, 0: none).
        augmented_caption_prob: Probability that a step's query is one of the target
            clip's ``augmented_captions`` (written by ``querysep augment``) instead of a
            caption or label chosen by ``caption``; 0 never uses them.
        speed_range: ``[low, high]``: target and interferer each play at a random speed
            in this range (pitch moves with it), applied before mixing so the target stays
            exactly what the mixture holds; ``[1, 1]`` (the default) is off.
        reverb_prob: Probability that a mixture is reverberant: each source convolved
            with its own synthetic impulse response (:mod:`querysep.data.effects`), the
            target as reverberant as the mixture holds it; 0 (the default) is off.
        reverb_rt60: ``[low, high]`` reverberation time in seconds (0.05..3).
        reverb_drr_db: ``[low, high]`` direct-to-reverberant ratio of each source, in dB.
        eq_prob: Probability that a mixture's sources all pass one random EQ (a recording
            chain's colour); 0 (the default) is off.
        eq_db: Largest boost or cut of that EQ, in dB (0..24).
        three_source_prob: Probability that a mixture gets a second interferer (its own
            gain drawn from ``gain_db``); 0 (the default) is off.
        query_mix_prob: Probability that a step's query is the weighted mix of the
            embeddings of two different texts of the target clip (weight uniform in
            [0, 1], norm kept), a point between two phrasings of its class; 0 (the
            default) is off.
    """

    train: list[TrainSetConfig] = Field(default_factory=list)
    validation: ValidationConfig | None = None
    sample_rate: PositiveInt | None = None
    segment_seconds: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 10.0
    batch_size: PositiveInt = 16
    num_workers: NonNegativeInt = 4
    gain_db: list[Annotated[float, Field(ge=-MAX_ABS_SNR_DB, le=MAX_ABS_SNR_DB)]] = Field(
        default_factory=lambda: [-10.0, 10.0]
    )
    max_offset: Annotated[float, Field(ge=0, le=1)] = 0.0
    caption: CaptionField = "captions"
    preload: bool = True
    cache_size: NonNegativeInt | None = None
    augmented_caption_prob: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    speed_range: list[Annotated[float, Field(ge=0.5, le=2.0, allow_inf_nan=False)]] = Field(
        default_factory=lambda: [1.0, 1.0]
    )
    reverb_prob: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    reverb_rt60: list[
        Annotated[float, Field(ge=RT60_LIMITS[0], le=RT60_LIMITS[1], allow_inf_nan=False)]
    ] = Field(default_factory=lambda: [0.2, 1.0])
    reverb_drr_db: list[
        Annotated[float, Field(ge=DRR_DB_LIMITS[0], le=DRR_DB_LIMITS[1], allow_inf_nan=False)]
    ] = Field(default_factory=lambda: [0.0, 12.0])
    eq_prob: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    eq_db: Annotated[float, Field(ge=0, le=MAX_EQ_DB, allow_inf_nan=False)] = 6.0
    three_source_prob: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    query_mix_prob: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0

    @field_validator("gain_db", "speed_range", "reverb_rt60", "reverb_drr_db")
    @classmethod
    def _range(cls, value: list[float], info: ValidationInfo) -> list[float]:
        if len(value) != 2 or value[0] > value[1]:
            raise ValueError(f"{info.field_name} must be [low, high] with low <= high, got {value}")
        return value


class OptimConfig(ConfigModel):
    """AdamW with a linear warm-up to a constant learning rate.

    A run resumed with other values trains with them from the resumed step on (the
    optimizer's moments and the step count are kept).

    Attributes:
        lr: Learning rate after warm-up, at most 1.
        weight_decay: AdamW decoupled weight decay.
        betas: Adam betas.
        eps: Adam epsilon.
        amsgrad: Use the AMSGrad variant (as the DCASE baseline).
        warmup_steps: Steps of linear warm-up: step ``t`` (from 0) uses
            ``lr * min(1, (t + 1) / warmup_steps)``; 0 disables it.
        loss: ``l1`` (waveform L1, the baseline), ``mse`` (waveform mean squared error,
            IRM-LDM's in the report), ``sdr`` or ``si_sdr`` (negative, in dB),
            ``thresholded_sdr`` (negative SDR with a floor 30 dB below the mixture, so
            crops where the target is silent stay bounded), or ``thresholded_sdr_si_sdr``
            (the mean of that and a negative SI-SDR with the same floor, which gives nothing
            for turning the output down).
        schedule: After warm-up, ``constant`` (the baseline) or ``cosine`` decay to
            ``min_lr_ratio * lr`` at ``trainer.max_steps`` (better for short runs).
        min_lr_ratio: Final learning rate of the cosine schedule, as a fraction of ``lr``.
        text_noise: Regularises the query side: in training, each query embedding gets
            isotropic Gaussian noise of this expected norm relative to its own norm (std
            ``text_noise / sqrt(dim)`` per dimension on a unit embedding) and is scaled back
            to its norm, so the network learns a neighbourhood of each phrasing rather than
            the point; drawn from ``(trainer.seed, step, rank)`` so a resumed run repeats it.
            0 (the default) is off; validation and inference never add it.
    """

    lr: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    betas: list[Annotated[float, Field(ge=0, lt=1)]] = Field(default_factory=lambda: [0.9, 0.999])
    eps: Annotated[float, Field(gt=0)] = 1e-8
    amsgrad: bool = True
    warmup_steps: NonNegativeInt = 10000
    loss: LossName = "l1"
    schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.0
    text_noise: Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)] = 0.0

    @field_validator("betas")
    @classmethod
    def _two_betas(cls, value: list[float]) -> list[float]:
        if len(value) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {value}")
        return value


class TrainerConfig(ConfigModel):
    """The training loop, devices, checkpoints and logs.

    Attributes:
        output_dir: Run folder: ``config.yaml``, ``checkpoints/``, ``logs/``, ``model/``.
        max_steps: Optimizer steps to train for.
        val_every_n_steps: Validate every this many steps.
        checkpoint_every_n_steps: Write ``checkpoints/last.ckpt`` every this many steps.
        keep_step_checkpoints: Also keep a copy ``checkpoints/step-<N>.ckpt`` of each one.
        log_every_n_steps: Log training loss and learning rate every this many steps.
        precision: ``auto`` (bf16-mixed where the hardware computes bf16 natively: a CUDA
            GPU with bf16, a CPU with AVX-512 BF16 or AMX; float32 elsewhere), ``"32"`` or
            ``"bf16-mixed"`` (autocast; the STFT stays in float32). See
            :func:`querysep.precision.resolve_precision`.
        accelerator: ``auto``, ``cpu``, ``gpu``, ``cuda``, ``mps``.
        devices: ``auto``, a count, or a list of device indices.
        num_nodes: Machines for multi-node DDP; the run must be started by a launcher on each
            (SLURM, torchrun, LSF, MPI) or with MASTER_ADDR and NODE_RANK set there.
        strategy: Lightning strategy: ``auto``, ``ddp``, ``ddp_find_unused_parameters_true``...
        sync_batchnorm: Batch-norm statistics over all devices (DDP), as the DCASE baseline.
        gradient_clip_val: Clip the gradient norm to this (``None``: no clipping).
        seed: Seeds the weights' initialisation and every training mixture.
        deterministic: ``torch.use_deterministic_algorithms`` (slower; exact reruns).
        cudnn_benchmark: Let cuDNN time its convolution algorithms on the first batches and
            keep the fastest (``torch.backends.cudnn.benchmark``; for CUDA training with a
            fixed batch and segment length; not with ``deterministic``). ``None`` leaves
            PyTorch's setting as it is (off by default).
        channels_last: Train the network's convolutions in channels-last memory layout
            (the layout of GPU tensor cores in bf16); the exported weights are the same.
        progress_bar: Show the progress bar.
        export: Export the best validated checkpoint (without a validation list: the last)
            as a model folder when training ends.
        max_time: Stop after this much training wall time (``[DD:]HH:MM:SS``), validating,
            checkpointing and exporting as at ``max_steps``; ``None``: no limit. It counts
            each run of the command: a resumed run trains for up to this long again.
    """

    output_dir: str = "runs/train"
    max_steps: PositiveInt = 100000
    val_every_n_steps: PositiveInt = 5000
    checkpoint_every_n_steps: PositiveInt = 1000
    keep_step_checkpoints: bool = False
    log_every_n_steps: PositiveInt = 50
    precision: PrecisionSetting = "auto"
    accelerator: Accelerator = "auto"
    devices: Any = "auto"
    num_nodes: PositiveInt = 1
    strategy: str = "auto"
    sync_batchnorm: bool = False
    gradient_clip_val: Annotated[float, Field(gt=0)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0  # numpy's seed range
    deterministic: bool = False
    cudnn_benchmark: bool | None = None
    channels_last: bool = False
    progress_bar: bool = True
    export: bool = True
    max_time: str | None = None

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _search_not_deterministic(self) -> TrainerConfig:
        if self.cudnn_benchmark and self.deterministic:
            raise nested(
                config_error(
                    "cudnn_benchmark",
                    "cannot be true with deterministic: true (cuDNN's algorithm search "
                    "picks algorithms by timing, so reruns would differ)",
                )
            ) from None
        return self

    @field_validator("devices")
    @classmethod
    def _devices(cls, value: Any) -> Any:
        if value == "auto" or (
            isinstance(value, int) and not isinstance(value, bool) and (value >= 1 or value == -1)
        ):
            return value
        if (
            isinstance(value, list)
            and value
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
        ):
            return value
        raise ValueError(
            f"devices must be auto, a count >= 1 (-1: all) or a list of device indices, "
            f"got {value!r}"
        )

    @field_validator("max_time")
    @classmethod
    def _max_time(cls, value: str | None) -> str | None:
        _parse_duration(value)
        return value

    def max_time_delta(self) -> datetime.timedelta | None:
        """:attr:`max_time` (``[DD:]HH:MM:SS``) as a timedelta."""
        return _parse_duration(self.max_time)


def _parse_duration(text: str | None) -> datetime.timedelta | None:
    if text is None:
        return None
    parts = str(text).split(":")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) not in (3, 4) or min(nums, default=-1) < 0:
        raise ValueError(f"max_time must be HH:MM:SS or DD:HH:MM:SS, got {text!r}")
    days, (hours, minutes, seconds) = (nums[0], nums[1:]) if len(nums) == 4 else (0, nums)
    return datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


class RunSections(ConfigModel):
    """What every training run's config has: a plain-data form and, in its ``trainer``
    section (each subclass declares its sections in its own order), an output folder."""

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML/JSON-serialisable data."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        """The config as YAML (sections in order, keys in declaration order)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @property
    def output_dir(self) -> Path:
        return Path(self.trainer.output_dir)  # type: ignore[attr-defined]


class TrainConfig(RunSections):
    """Everything a training run needs; see the section classes."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)

    @model_validator(mode="after")
    def _same_rate(self) -> TrainConfig:
        net_rate = self.model.network_sample_rate
        rate = self.data.sample_rate
        if rate is not None and net_rate is not None and rate != net_rate:
            raise nested(
                config_error("data.sample_rate", f"{rate} differs from the network's {net_rate} Hz")
            )
        return self


# ------------------------------------------------------------------------ YAML + overrides


def _yaml_error(exc: yaml.YAMLError, source: str) -> ConfigError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    return ConfigError(f"{where}: invalid YAML: {problem}")


def _key_lines(node: yaml.Node, prefix: str = "", seen: set[int] | None = None) -> dict[str, int]:
    """Dotted key -> 1-based line, for every mapping key in a composed YAML document.

    A node reached again through an alias is not walked again (its keys keep the lines of
    their first path): a recursive alias would never end, and nested ones multiply.
    """
    seen = set() if seen is None else seen
    if id(node) in seen:
        return {}
    seen.add(id(node))
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = f"{prefix}{key_node.value}"
            out[path] = key_node.start_mark.line + 1
            out.update(_key_lines(value_node, path + ".", seen))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            out.update(_key_lines(item, f"{prefix}{index}.", seen))
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
        value = yaml.load(raw, Loader=YamlLoader) if raw.strip() else None
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


def _sections_made(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, str]:
    """Dotted key -> override, for each section an override creates (missing or null in
    ``data``, e.g. ``data.validation`` for ``data.validation.max_items=5``): a problem
    inside such a section comes from that override, not from the file."""
    made: dict[str, str] = {}
    for text in overrides:
        path = parse_override(text)[0]
        node: Any = data
        for depth, part in enumerate(path[:-1]):
            if isinstance(node, Mapping):
                node = node.get(part)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                break  # apply_overrides refused it already
            if node is None:
                made.setdefault(".".join(path[: depth + 1]), text)
                break
    return made


def _where(key: str, source: str, lines: Mapping[str, int], overridden: Mapping[str, str]) -> str:
    """``override '...'`` or ``file:line`` for a dotted key (the longest known prefix).

    The override that set the key or a section holding it is blamed first (the last such),
    then the last one inside the key's section: ``trainer.max_steps=2 trainer=1`` blames
    ``trainer=1`` for a ``trainer`` that is not a mapping.
    """
    setting = [t for n, t in overridden.items() if key == n or key.startswith(n + ".")]
    inside = [t for n, t in overridden.items() if n.startswith(key + ".")]
    if setting or inside:
        return f"override {(setting or inside)[-1]!r}"
    probe = key
    while probe:
        if probe in lines:
            return f"{source}:{lines[probe]}"
        probe = probe.rpartition(".")[0]
    return source


def _suggestion(key: str, schema: type[ConfigModel]) -> str:
    """``; did you mean 'lr'?`` for an unknown key close to a known one."""
    section, _, name = key.rpartition(".")
    model: Any = schema
    for part in section.split(".") if section else []:
        field = getattr(model, "model_fields", {}).get(part)
        model = getattr(field, "annotation", None)
        if model is None:
            return ""
    known = list(getattr(model, "model_fields", {}))
    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def config_from_dict(
    data: Mapping[str, Any] | None,
    overrides: Sequence[str] = (),
    *,
    source: str = "config",
    key_lines: Mapping[str, int] | None = None,
    schema: type[C] = TrainConfig,  # type: ignore[assignment]
) -> C:
    """Validate plain data (plus ``key=value`` overrides) as a :class:`TrainConfig`.

    Args:
        data: The parsed YAML document (``None``: all defaults).
        overrides: ``key=value`` strings applied on top, in order.
        source: Name used in error messages (the file).
        key_lines: Dotted key -> line in ``source``, for error messages.
        schema: The config class (another run's, e.g. the mel VAE's), checked the same way.

    Raises:
        ConfigError: Unknown keys, wrong types, invalid values or malformed overrides, with
            the key, the value and where it came from.
    """
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping with model/data/optim/trainer sections")
    raw = copy.deepcopy(dict(data or {}))
    apply_overrides(raw, overrides)
    overridden = {".".join(parse_override(o)[0]): o for o in overrides}
    for section, text in _sections_made(data or {}, overrides).items():
        overridden.setdefault(section, text)
    model = raw.get("model")
    if isinstance(model, dict):  # a pasted model config.json keeps its bookkeeping keys
        for key in _IGNORED_MODEL_KEYS:
            model.pop(key, None)
    try:
        found = bool_problem(schema, raw)  # pydantic would read true as 1
        if found:
            key, problem = found
        else:
            return schema.model_validate(raw)
    except ValidationError as exc:
        key, problem = describe_error(exc)
        if problem == "unknown key":
            problem += _suggestion(key, schema)
    except ConfigError as exc:
        if exc.key is None or exc.problem is None:
            raise ConfigError(f"{source}: {exc}") from None
        key, problem = exc.key, exc.problem
    where = _where(key, source, key_lines or {}, overridden)
    own = "a mel VAE" if "vae" in schema.model_fields else "a separator"
    raise config_error(key, problem + other_kind(data, own), where)


def load_config(
    path: str | Path,
    overrides: Sequence[str] = (),
    schema: type[C] = TrainConfig,  # type: ignore[assignment]
) -> C:
    """Read a YAML config file and apply ``key=value`` overrides.

    Args:
        path: The YAML file.
        overrides: e.g. ``["optim.lr=3e-4", "trainer.max_steps=1000"]``.
        schema: The config class (default: a separator's :class:`TrainConfig`).

    Raises:
        ConfigError: The file is missing, not UTF-8 text or not valid YAML (with the line),
            or validation fails (naming the key and the file or override).
    """
    path = Path(path)
    text = read_text(path, "config file", error=ConfigError)
    try:
        node = yaml.compose(text, Loader=YamlLoader)
        data = yaml.load(text, Loader=YamlLoader)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, str(path)) from None
    lines = _key_lines(node) if node is not None else {}
    return config_from_dict(data, overrides, source=str(path), key_lines=lines, schema=schema)
