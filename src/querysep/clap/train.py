"""Train the small CLAP on ESC-50 folds: ``python -m querysep.clap.train CONFIG -o OUT``.

The text tower (MiniLM) is frozen, so every training text is embedded once up front; a step
then costs one audio-tower pass. Each step pairs a batch of augmented clips with one text per
class (drawn among the label variants and the ``train`` captions, and with ``more_captions``
the ``more`` ones) and minimises a symmetric
multi-positive InfoNCE loss with a learnable temperature: clip -> the 50 class texts with
soft (mixup) targets, and each class text present in the batch -> the clips of its class.
``loss: sigmoid`` replaces it with :class:`PairwiseSigmoid` (every clip-text pair a binary
decision against one learned threshold), ``loss: infonce+sigmoid`` adds the two.

Data order and augmentation are drawn from generators seeded by (seed, epoch, step), and the
checkpoint keeps the global generator that dropout draws from, so a run is reproducible and
resumes from ``OUT/checkpoint.pt`` where it stopped, to the same weights. The checkpoint
keeps the settings the run trains with, and a resume that changes one of them (``epochs``,
``lr``, a seed...) is refused: only the refit, export and validation settings may change
(``init_from`` of the finished run's ``model/`` trains on from its weights instead), and
``data`` only to a folder holding the same training clips (names, sizes, classes). The
model folder (``config.json`` + ``model.safetensors``) is written to ``OUT/model`` at the
end, named by ``name`` (shown in every score table, e.g. ``ATS (NAME)``; default: the folder
``OUT``'s name; the shipped recipes set ``esc50-clap``). A run whose loss or weights stop
being finite (a learning rate too high) stops at once with a one-line error: nothing of the
diverged steps is checkpointed, logged or exported.

With ``members: N`` (N > 1) the command trains N such models one after the other, member
``i`` with seed ``seed + i`` in ``OUT/member{i}/`` (each resumable as above; a finished member
is not trained again), and writes their :class:`~querysep.clap.small.ClapEnsemble` to
``OUT/model``. ``members`` may instead list one mapping of overrides per member (e.g.
``[{epochs: 300}, {epochs: 400}]``: the recipe with each member's own top-level settings; the
seed stays ``seed`` unless a member sets it; a member's ``model`` names only the network
settings it changes, e.g. ``{model: {channels: [32, 64, 192, 384]}}``). A folder holds one
kind of run: an ensemble's into a folder holding one model's run (``OUT/checkpoint.pt``), or
one model's into a folder holding members' runs, is refused before anything trains, as is a
path in the way of the files a run writes (``OUT/model`` a file, a checkpoint a folder). The
training clips are read once for all members, and what they do not allow (a member's batch
larger than the clips, a ``text_ridge`` refit with a class missing from ``train_folds``) is
refused before any member trains.

With ``snapshots: true`` the members are one trajectory instead of independent runs: member
``i > 0`` starts from member ``i - 1``'s exported model (``init_from`` set to
``OUT/member{i-1}/model``, after its text-head refit) and trains its own schedule from there,
with its own seed; the ensemble is of these snapshots.

``init_from`` fine-tunes instead of training from random weights: the run starts from a
trained small CLAP with the same network settings (a folder, or a name such as
``esc50-clap``); an ensemble of N starts member ``i`` of an N-member run from its member ``i``
(``configs/esc50-clap-finetune.yaml``). A run that has a checkpoint resumes from it instead.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..audio.io import resample
from ..errors import CheckpointError, ConfigError, OutputError, QuerysepError
from ..fileio import (
    check_output_file,
    check_output_folder,
    locked_folder,
    new_folders_removed_on_error,
    write_text,
)
from ..models.text.base import TextEncoder
from ..precision import check_precision, resolve_precision
from ..safeload import load_weights_only
from ..schema import YamlLoader, config_error, other_kind, validate_dataclass
from .augment import AugmentConfig, augment_mel, spec_augment
from .small import (
    ENSEMBLE_SHARED,
    WEIGHTS_DTYPES,
    ClapEnsemble,
    LogMel,
    SmallClap,
    SmallClapConfig,
    _is_number,
    check_templates,
    check_weights_dtype,
    log_compress,
    mel_centres,
    non_finite_weight,
)
from .zeroshot import (
    DEFAULT_ROOT,
    Esc50Split,
    Paraphraser,
    check_paraphraser,
    class_texts,
    evaluate_zeroshot,
    load_esc50,
)

__all__ = [
    "ClapTrainConfig",
    "PairwiseSigmoid",
    "check_refit",
    "export_ensemble",
    "load_train_config",
    "refit_targets",
    "refit_text_head",
    "train",
]


@dataclass
class ClapTrainConfig:
    """Everything a training run depends on (YAML maps onto it; ``a.b=value`` overrides)."""

    # The exported model's name, which every score table shows (e.g. "ATS (NAME)"); None =
    # the output folder's name (a member's model: that name and "-member{i}").
    name: str | None = None
    data: str = DEFAULT_ROOT
    train_folds: list[int] = field(default_factory=lambda: [1, 2, 3])
    val_folds: list[int] = field(default_factory=list)
    model: SmallClapConfig = field(default_factory=SmallClapConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    epochs: int = 100
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 3
    min_lr_ratio: float = 0.01
    # A warm restart: the last restart_epochs of the epochs are a second cycle, warmed up over
    # restart_warmup_epochs to restart_lr and decayed by cosine to min_lr_ratio of it, as a
    # fine-tune from the first cycle's weights would be, within one run (0 = one cycle).
    restart_epochs: int = 0
    restart_lr: float = 1e-3
    restart_warmup_epochs: int = 2
    ema_decay: float = 0.0  # 0 = off; else the exported weights are the EMA
    text_noise: float = 0.0  # expected norm of Gaussian noise added to unit sentence embeddings
    loss: str = "infonce"  # "infonce", "sigmoid" (pairwise, global threshold) or "infonce+sigmoid"
    paraphrases: int = 0  # offline paraphrases of each training caption added to its class's texts
    more_captions: bool = False  # the classes' "more" captions join the training texts
    # Start from these weights instead of random ones (fine-tuning): a small-CLAP folder or a
    # load_clap name such as esc50-clap, with this run's network settings. An ensemble gives
    # member i of a run with as many members its member i.
    init_from: str | None = None
    seed: int = 0
    precision: str | int = "auto"  # "auto", "32", "bf16-mixed" (32 as a number too)
    val_every: int = 10
    max_steps: int | None = None  # cut a run short (smoke tests)
    # > 1: train that many seeds (seed, seed + 1, ...) and export their ensemble; or a list of
    # per-member overrides of the top-level settings, e.g. [{epochs: 300}, {epochs: 400}]
    members: int | list[Any] = 1  # entries: mappings (checked in _bind and member_configs)
    # With members: each member after the first starts from the previous one's trained model
    # (OUT/member{i-1}/model) instead of random weights: one trajectory, restarted, whose
    # snapshots make the ensemble (a snapshot ensemble).
    snapshots: bool = False
    text_ridge: float | None = None  # after training, refit the text head by ridge (this penalty)
    # Refit targets: unit mix of the class centroid and (this weight) the class's discriminant
    # direction, whose within-class covariance is shrunk by text_ridge_shrinkage x its mean
    # variance; 0 = the centroids alone.
    text_ridge_discriminant: float = 0.0
    text_ridge_shrinkage: float = 0.3
    # Templates the refit stores in the model (sentence embedding = mean over them); None =
    # keep model.text_templates.
    text_ridge_templates: list[str] | None = None
    # The refit also fits each class's "more" captions (querysep's further training phrasings;
    # more_captions puts them among the texts of the training steps).
    text_ridge_more_captions: bool = False
    # How the exported weights are stored: "float32" or "float16" (half the size; computation
    # stays float32)
    weights_dtype: str = "float32"


#: Settings that must be whole numbers >= 1 (or non-empty lists of them), at the top level
#: and in each member; the model's sizes are checked by :class:`SmallClapConfig` itself, other
#: ranges and choices where they are used (``train``).
_POSITIVE = frozenset({"epochs", "batch_size", "val_every", "max_steps", "train_folds"})


def _bind(data: Any, what: str) -> ClapTrainConfig:
    """The config from parsed YAML: every value checked against its field's type
    (:func:`~querysep.schema.validate_dataclass`), each member's settings too, and sizes
    and counts >= 1."""
    if isinstance(data, Mapping):  # the sections first: their unknown keys are errors too
        data = dict(data)
        for name, section in (("model", SmallClapConfig), ("augment", AugmentConfig)):
            if isinstance(data.get(name), Mapping):
                data[name] = validate_dataclass(section, data[name], what=what, prefix=name)
    config = validate_dataclass(ClapTrainConfig, data, what=what)
    members = config.members if isinstance(config.members, list) else []
    checked = [("", config)]
    for i, member in enumerate(members):
        if isinstance(member, Mapping):  # not a mapping: refused by member_configs
            member = _with_member_model(config.model, member, what, f"members[{i}]")
            bound = validate_dataclass(ClapTrainConfig, member, what=what, prefix=f"members[{i}]")
            checked.append((f"members[{i}].", bound))
            members[i] = {key: getattr(bound, key) for key in member}  # the checked values
    for prefix, section in checked:
        for name in _POSITIVE & {f.name for f in fields(section)}:
            value = getattr(section, name)
            values = value if isinstance(value, list) else [value]
            if value == [] or any(v is not None and v < 1 for v in values):
                raise config_error(f"{prefix}{name}", f"must be >= 1, got {value!r}", what)
    return config


def _with_member_model(
    model: SmallClapConfig, member: Mapping[str, Any], what: str, prefix: str
) -> dict[str, Any]:
    """``member`` with its ``model`` mapping (the settings it changes) completed by the
    recipe's ``model`` and checked; a member without one keeps the recipe's."""
    member = dict(member)
    if isinstance(member.get("model"), Mapping):
        merged = {**asdict(model), **member["model"]}
        member["model"] = validate_dataclass(
            SmallClapConfig, merged, what=what, prefix=f"{prefix}.model"
        )
    return member


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=YamlLoader)
    except yaml.YAMLError:
        return text  # not YAML: the string itself (its type is checked like any value)


def load_train_config(path: str | None, overrides: list[str] = ()) -> ClapTrainConfig:
    """Read a YAML config (or the defaults) and apply ``a.b=value`` overrides.

    Raises:
        ConfigError: The file is missing, not UTF-8, not YAML or not a mapping; an override
            is not ``key=value`` or reaches into a setting that is not a mapping; a key is
            unknown; a value has the wrong type or is out of range.
    """
    import yaml

    data: Any = {}
    if path:
        try:
            data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=YamlLoader) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not UTF-8 text") from None
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', '')})") from None
        if not isinstance(data, dict):
            raise ConfigError(
                f"{path}: a config is a mapping of settings, not {type(data).__name__}"
            )
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value")
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a mapping of settings")
        node[leaf] = _parse_value(value)
    try:
        return _bind(data, str(path) if path and not overrides else "")
    except ConfigError as exc:
        hint = other_kind(data, "an audio-text (CLAP)")
        if not hint:
            raise
        raise ConfigError(f"{exc}{hint}", key=exc.key, problem=exc.problem) from None


def _text_table(
    categories: list[str],
    encode: Callable[[list[str]], torch.Tensor],
    paraphrases: int = 0,
    paraphrase: Paraphraser | None = None,
    more_captions: bool = False,
) -> tuple[torch.Tensor, list[list[int]], list[str]]:
    """Sentence embeddings (by ``encode``) of every training text, and each class's indices."""
    texts, owners = [], []
    for index, category in enumerate(categories):
        for text in class_texts(category, paraphrases, paraphrase, more_captions=more_captions):
            owners.append(index)
            texts.append(text)
    emb = encode(texts).float().clone()
    by_class = [[j for j, o in enumerate(owners) if o == c] for c in range(len(categories))]
    return emb, by_class, texts


def contrastive_loss(
    audio: torch.Tensor, text: torch.Tensor, soft: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric multi-positive InfoNCE between clips and one text per class.

    Shape:
        - audio: ``(batch, dim)``; text: ``(num_classes, dim)``; soft: ``(batch, num_classes)``
    """
    a = F.normalize(audio.float(), dim=-1)
    t = F.normalize(text.float(), dim=-1)
    logits = logit_scale.exp() * a @ t.T
    a2t = -(soft * F.log_softmax(logits, dim=1)).sum(1).mean()
    present = soft.sum(0) > 0
    target = soft[:, present].T
    target = target / target.sum(1, keepdim=True)
    t2a = -(target * F.log_softmax(logits.T[present], dim=1)).sum(1).mean()
    return (a2t + t2a) / 2


LOSSES = ("infonce", "sigmoid", "infonce+sigmoid")


class PairwiseSigmoid(torch.nn.Module):
    """Pairwise sigmoid loss: every (clip, class text) pair is its own binary decision.

    Unlike InfoNCE, which only ranks the texts of one clip (and the clips of one text) against
    each other, it fits one scale and one bias shared by all pairs, so matching pairs are
    pushed above a single global threshold: what scoring ATS against a threshold needs. The
    scale and bias are training-only (``SmallClap`` exports cosines); the bias starts at the
    log prior odds of a match among ``num_classes`` texts.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(10.0)))
        self.bias = torch.nn.Parameter(torch.tensor(-math.log(max(1, num_classes - 1))))

    def forward(self, audio: torch.Tensor, text: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        """Mean over clips of the summed pair losses; ``soft`` holds the (mixup) targets.

        Shape:
            - audio: ``(batch, dim)``; text: ``(num_classes, dim)``; soft: ``(batch, num_classes)``
        """
        a = F.normalize(audio.float(), dim=-1)
        t = F.normalize(text.float(), dim=-1)
        logits = self.log_scale.exp() * a @ t.T + self.bias
        bce = F.binary_cross_entropy_with_logits(logits, soft.clamp(0, 1), reduction="sum")
        return bce / len(a)


class _Ema:
    """Exponential moving average of a model's parameters (buffers are copied)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.state[key].lerp_(value, 1 - self.decay)
            else:
                self.state[key].copy_(value)


def _lr_lambda(config: ClapTrainConfig, steps_per_epoch: int) -> Any:
    """The learning rate of each step, as a factor of ``config.lr``: linear warm-up, then
    cosine decay to ``min_lr_ratio``; with ``restart_epochs``, a second such cycle at
    ``restart_lr`` over the last epochs."""
    second = config.restart_epochs * steps_per_epoch
    first = config.epochs * steps_per_epoch - second
    floor = config.min_lr_ratio

    def cycle(step: int, total: int, warm: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def factor(step: int) -> float:
        if step < first or not second:
            return cycle(step, first, max(1, config.warmup_epochs * steps_per_epoch))
        scale = config.restart_lr / config.lr if config.lr > 0 else 0.0
        warm = max(1, config.restart_warmup_epochs * steps_per_epoch)
        return scale * cycle(step - first, second, warm)

    return factor


def _mel_power(model: SmallClap, audio: np.ndarray, chunk: int = 64) -> torch.Tensor:
    """Mel power spectrograms of all clips, computed once. Shape: ``(clips, mels, frames)``."""
    with torch.no_grad():
        parts = [
            model.logmel.power(torch.from_numpy(audio[i : i + chunk]))
            for i in range(0, len(audio), chunk)
        ]
    return torch.cat(parts)


#: The largest ridge penalty: beyond it the fit (about sum(x y) / penalty, for any text set
#: querysep trains on) no longer turns, it only shrinks towards weights too small to store.
MAX_RIDGE = 1e8
#: A refitted head must, as stored, embed every training text within this cosine of the fit.
_REFIT_FIDELITY = 0.99


def check_refit(
    penalty: Any,
    *,
    text_mlp: bool,
    discriminant: Any = 0.0,
    shrinkage: Any = 0.3,
    templates: Any = None,
) -> None:
    """Raise :class:`ConfigError` for refit settings :func:`refit_text_head` cannot use."""
    if text_mlp:
        raise ConfigError("text_ridge refits a linear text head only: set model.text_mlp: false")
    if not _is_number(penalty) or not 0 < penalty <= MAX_RIDGE:
        raise ConfigError(
            f"text_ridge must be a positive number up to {MAX_RIDGE:g} (a larger penalty only "
            f"shrinks the head towards zero), got {penalty!r}"
        )
    if not _is_number(discriminant) or not 0 <= discriminant <= 1:
        raise ConfigError(f"text_ridge_discriminant must be in [0, 1], got {discriminant!r}")
    if not _is_number(shrinkage) or not shrinkage > 0:
        raise ConfigError(f"text_ridge_shrinkage must be a positive number, got {shrinkage!r}")
    if templates is not None:
        check_templates(templates)


def refit_targets(
    audio: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    *,
    discriminant: float = 0.0,
    shrinkage: float = 0.3,
) -> torch.Tensor:
    """The unit vector each class's texts are regressed onto by :func:`refit_text_head`.

    ``discriminant = 0``: the unit centroid of the class's unit audio embeddings. Otherwise
    the unit mix ``discriminant * d_c + (1 - discriminant) * centroid_c``, where ``d_c`` is
    the unit linear-discriminant direction of class ``c``: the within-class covariance
    ``S_w``, shrunk towards ``shrinkage`` times its mean variance, solved against the class
    mean minus the overall mean. A direction, unlike a centroid, discounts what all classes
    share and what varies within a class, tried in the esc50-clap model card's fifth design
    round (it helped on the design folds, not on fold 4; off in the shipped recipe).

    Shape:
        - audio: ``(clips, dim)``, unit rows; targets: ``(clips,)`` class indices
        - output: ``(num_classes, dim)``, float64, unit rows
    """
    # the centroids are summed in float32, as the refit always did (same weights as before)
    sums32 = torch.zeros(num_classes, audio.shape[-1]).index_add_(0, targets, audio.float())
    centroids = F.normalize(sums32, dim=-1).double()
    if discriminant == 0:
        return centroids
    audio = audio.double()
    sums = torch.zeros(num_classes, audio.shape[-1], dtype=torch.float64)
    sums.index_add_(0, targets, audio)
    counts = torch.bincount(targets, minlength=num_classes).clamp(min=1).double()
    means = sums / counts[:, None]
    within = audio - means[targets]
    scatter = within.T @ within / len(audio)
    dim = audio.shape[-1]
    ridge = float(shrinkage) * torch.trace(scatter) / dim
    eye = torch.eye(dim, dtype=torch.float64)
    directions = torch.linalg.solve(scatter + ridge * eye, (means - audio.mean(0)).T).T
    mixed = discriminant * F.normalize(directions, dim=-1) + (1 - discriminant) * centroids
    return F.normalize(mixed, dim=-1)


def refit_text_head(
    model: SmallClap,
    split: Esc50Split,
    penalty: float,
    *,
    paraphrases: int = 0,
    paraphrase: Paraphraser | None = None,
    batch_size: int = 32,
    discriminant: float = 0.0,
    shrinkage: float = 0.3,
    templates: list[str] | None = None,
    more_captions: bool = False,
    weights_dtype: str | None = None,
) -> dict[str, Any]:
    """Replace the (linear) text head by a ridge regression onto the audio class targets.

    Every training text of a class (:func:`~querysep.clap.zeroshot.class_texts`) is mapped,
    from its frozen sentence embedding, to its class's target (:func:`refit_targets`: the
    unit centroid of the unit audio embeddings of the class's clips in ``split``, as
    :meth:`embed_audio` computes them at inference, mixed with the class's discriminant
    direction when ``discriminant > 0``): the least-squares linear map with an L2 penalty
    ``penalty`` on all its coefficients (bias included), solved in closed form. The audio
    tower is untouched. On the design folds this placed unseen phrasings nearer their sounds
    than the contrastively trained head did (see the esc50-clap model card).

    Args:
        templates: Stored in the model's config before the fit (the sentence embeddings,
            here and at inference, are means over them); ``None`` keeps the model's.
        more_captions: Fit on the classes' ``more`` captions too
            (:func:`~querysep.clap.zeroshot.class_texts`).
        weights_dtype: How the model's weights will be stored (``None``: its own
            ``weights_dtype``): the fitted head must survive that storage.

    Returns:
        What was done (``method``, ``penalty``, ``discriminant``, ``shrinkage``,
        ``templates``, ``audio_views``, ``more_captions``, number of ``texts`` and
        ``clips``), for the model's metadata.

    Raises:
        ConfigError: A text head with an MLP branch (only a linear head can be refitted),
            a penalty (up to :data:`MAX_RIDGE`) or shrinkage that is not a positive number, a
            discriminant weight outside [0, 1], malformed templates, a class without clips
            in ``split``, or a penalty so large that the head, stored as ``weights_dtype``,
            would no longer embed the texts as fitted (the model is then left unchanged).
    """
    check_refit(
        penalty,
        text_mlp=model.text_head.mlp is not None,
        discriminant=discriminant,
        shrinkage=shrinkage,
        templates=templates,
    )
    if len(split.categories) < 2:
        raise ConfigError(
            "the text-head refit needs clips of at least two classes (it maps each class's "
            f"texts onto its clips' centroid); these are all {split.categories[0]!r}"
            if split.categories
            else "the text-head refit needs clips of at least two classes; there are none"
        )
    counts = np.bincount(split.targets, minlength=len(split.categories))
    if (counts == 0).any():
        missing = split.categories[int(np.flatnonzero(counts == 0)[0])]
        raise ConfigError(f"the text-head refit needs clips of every class; none of {missing!r}")
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        audio = model.embed_audio(split.audio, split.sample_rate, batch_size=batch_size).float()
    model.train(was_training)
    targets = refit_targets(
        audio,
        torch.from_numpy(split.targets).long(),
        len(split.categories),
        discriminant=float(discriminant),
        shrinkage=float(shrinkage),
    )
    kept_templates = model.config.text_templates
    if templates is not None:
        model.config.text_templates = list(templates)
    sentences, by_class, texts = _text_table(
        split.categories, model.sentence_embeddings, paraphrases, paraphrase, more_captions
    )
    owner = torch.empty(len(texts), dtype=torch.long)
    for index, rows in enumerate(by_class):
        owner[rows] = index
    x = torch.cat([sentences.double(), torch.ones(len(texts), 1, dtype=torch.float64)], dim=1)
    y = targets[owner]
    gram = x.T @ x + float(penalty) * torch.eye(x.shape[1], dtype=torch.float64)
    solution = torch.linalg.solve(gram, x.T @ y)  # (text_dim + 1, dim)
    linear = model.text_head.linear
    storage = check_weights_dtype(weights_dtype or model.weights_dtype)
    stored = solution.to(linear.weight.dtype).to(WEIGHTS_DTYPES[storage]).double()
    fidelity = float(F.cosine_similarity(x @ stored, x @ solution, dim=-1).min())
    if not fidelity >= _REFIT_FIDELITY:  # a row stored as zeros has cosine 0
        model.config.text_templates = kept_templates
        raise ConfigError(
            f"text_ridge {float(penalty):g} shrinks the text head to weights of about "
            f"{float(solution.abs().max()):.1g}, too small to store as {storage} (a text's "
            f"embedding would keep cosine {fidelity:.2f} to the fit's): use a smaller penalty"
        )
    with torch.no_grad():
        linear.weight.copy_(solution[:-1].T.to(linear.weight))
        linear.bias.copy_(solution[-1].to(linear.bias))
    return {
        "method": "ridge",
        "penalty": float(penalty),
        "discriminant": float(discriminant),
        "shrinkage": float(shrinkage),
        "templates": list(model.config.text_templates),
        "audio_views": model.audio_views,
        "more_captions": bool(more_captions),
        "texts": len(texts),
        "clips": len(audio),
    }


def _evaluate(model: SmallClap, split: Esc50Split, use_bf16: bool) -> dict[str, float]:
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
        result = evaluate_zeroshot(model, split)
    model.train()
    return result


def train(
    config: ClapTrainConfig,
    output_dir: str | os.PathLike[str],
    *,
    log: Any = print,
    text_encoder: TextEncoder | None = None,
    paraphrase: Paraphraser | None = None,
    member: tuple[int, int] | None = None,
    init_sources: dict[str, Any] | None = None,
) -> Path:
    """Run (or resume) a training run; return the exported model folder.

    Args:
        config: The run's configuration.
        output_dir: Gets ``checkpoint.pt``, ``log.jsonl`` and ``model/``.
        log: Called with each progress line.
        text_encoder: The frozen sentence encoder; ``None`` = the model's own (MiniLM, or
            ``model.text_encoder``). Tests pass a cheap one; its ``dim`` must equal
            ``model.text_dim``, and the exported folder still names the MiniLM.
        paraphrase: The offline paraphraser, needed by ``config.paraphrases > 0``
            (``querysep clap train`` passes :func:`querysep.captions.paraphrase.paraphrase`).
        member: ``(index, count)`` when the run is member ``index`` of ``count`` (set by
            ``members``): picks the member of an ensemble ``init_from``.
        init_sources: The models ``init_from`` names, by name, as loaded so far (filled as
            they load): the members of a run share one load of their source.
    """
    out = Path(output_dir)
    sources = {} if init_sources is None else init_sources
    if config.name is None:  # the run's folder names its model (and its members')
        config = replace(config, name=_default_name(out))
    members = member_configs(config)
    if config.snapshots:
        members = _chained(config, members, out)
    runs = members or [config]
    for each in runs:  # before training (any member), not after it
        _check_run(each, paraphrase)
    if members is not None:
        _check_members_share(members)
    if member is None:  # a bad output folder or init_from fails before any member trains
        _check_outputs(out, None if members is None else len(members))
        for index, each in enumerate(runs):
            where = out / f"member{index}" if members else out
            if config.snapshots and index > 0:  # its start is trained by this run
                continue
            if each.init_from is not None and not (where / "checkpoint.pt").is_file():
                _init_state(each, (index, len(runs)) if members else None, sources)
    # created only for a config that passed the checks, and removed again if the run fails
    # before writing anything; a member's folder is held through its ensemble's
    hold = locked_folder(out, "clap train") if member is None else _created(out)
    with hold:
        # read once, for every member, and checked against each before any trains
        train_split = load_esc50(config.data, config.train_folds)
        _check_data(config, runs, train_split)
        if members is not None:
            return _train_ensemble(
                config,
                members,
                out,
                log=log,
                text_encoder=text_encoder,
                paraphrase=paraphrase,
                sources=sources,
                train_split=train_split,
            )
        return _train_one(config, out, log, text_encoder, paraphrase, member, sources, train_split)


def _check_data(config: ClapTrainConfig, runs: list[ClapTrainConfig], split: Esc50Split) -> None:
    """Refuse settings the training clips do not allow, for every run (each member) before
    any trains: a batch larger than the clips, crops too short for the network, and a
    text-head refit without clips of every class."""
    for index, run in enumerate(runs):
        own = f"members[{index}]: "  # named where a member's own setting is at fault
        if run.batch_size > len(split.targets):
            raise ConfigError(
                f"{own if run.batch_size != config.batch_size else ''}batch_size "
                f"{run.batch_size} is more than the {len(split.targets)} training clips "
                f"(folds {run.train_folds}): not one step per epoch"
            )
        clip = resample(split.audio[:1], split.sample_rate, run.model.sample_rate)
        with torch.no_grad():
            frames = LogMel(run.model).power(torch.from_numpy(clip)).shape[-1]
        crop = round(run.augment.crop_seconds * run.model.sample_rate / run.model.hop_length)
        what = f"{own if run.model != config.model else ''}the training clips are crops of"
        _check_crop(run, min(frames, crop), what)
    if any(run.text_ridge is not None for run in runs):
        counts = np.bincount(split.targets, minlength=len(split.categories))
        if (counts == 0).any():
            missing = split.categories[int(np.flatnonzero(counts == 0)[0])]
            raise ConfigError(
                f"text_ridge: the text-head refit needs clips of every class, but training "
                f"folds {config.train_folds} have none of {missing!r}"
            )


def _check_outputs(out: Path, members: int | None) -> None:
    """Refuse, before anything trains, an output folder whose files this run could not write
    or whose finished work it would replace: the run of one model into a folder holding an
    ensemble's members (``members`` > 1, or a list), or the reverse.

    Raises:
        OutputError: The first such problem, saying how to go on.
    """
    lone = out / "checkpoint.pt"
    grouped = sorted(out.glob("member*/checkpoint.pt")) if out.is_dir() else []
    if members is None and grouped:
        raise OutputError(
            f"{out} holds the runs of an ensemble's members ({grouped[0].parent.name}/ ...): "
            "this config trains one model (members: 1), which would replace their model/; "
            "train into another output folder (-o), or remove those runs to start over"
        )
    if members is not None and (lone.exists() or lone.is_symlink()):
        raise OutputError(
            f"{out} holds the run of one model ({lone.name}): this config trains an ensemble "
            f"of {members} members, which would replace its model/; train into another "
            "output folder (-o), or remove that run to start over"
        )
    if (out / "checkpoints").is_dir():  # querysep train's or ldm train-vae's run folder
        raise OutputError(
            f"{out} holds another command's training run (checkpoints/: querysep train or "
            "ldm train-vae), whose model/ this run would write into; train into another "
            "output folder (-o)"
        )
    runs = [out] if members is None else [out / f"member{i}" for i in range(members)]
    check_output_folder(out)
    check_output_folder(out / "model")
    for run in runs:
        check_output_folder(run)
        check_output_folder(run / "model")
        for name in ("checkpoint.pt", "checkpoint.tmp", "log.jsonl"):
            check_output_file(run / name)


@contextmanager
def _created(out: Path) -> Iterator[Path]:
    """Create ``out`` for the block; remove it again if the block fails leaving it empty."""
    with new_folders_removed_on_error([out / "_"]):
        out.mkdir(parents=True, exist_ok=True)
        yield out


def _train_one(
    config: ClapTrainConfig,
    out: Path,
    log: Any,
    text_encoder: TextEncoder | None,
    paraphrase: Paraphraser | None,
    member: tuple[int, int] | None,
    sources: dict[str, Any],
    train_split: Esc50Split,
) -> Path:
    """One model's run into ``out`` (which exists) on ``train_split``, after :func:`train`'s
    checks."""
    torch.manual_seed(config.seed)
    precision = str(config.precision)  # YAML reads a bare 32 as a number
    use_bf16 = resolve_precision(precision, torch.device("cpu")) == "bf16-mixed"
    val_split = load_esc50(config.data, config.val_folds) if config.val_folds else None
    num_classes = len(train_split.categories)
    # its own copy of the settings: the export writes metadata (and a refit templates) into it
    model = SmallClap(replace(config.model, metadata={}), text_encoder)
    ckpt_path = out / "checkpoint.pt"
    init_record: dict[str, Any] | None = None  # where the starting weights came from
    init_known = True  # False: resumed from a checkpoint written before runs recorded it
    if config.init_from is not None and not ckpt_path.is_file():  # a checkpoint resumes instead
        state, init_record = _init_state(config, member, sources)
        model.load_state_dict(state)
        taken = f" (its member {init_record['member']})" if "member" in init_record else ""
        log(f"initialised from {config.init_from}{taken}")
    text_emb, text_by_class, texts = _text_table(
        train_split.categories,
        model.sentence_embeddings,
        config.paraphrases,
        paraphrase,
        config.more_captions,
    )
    if text_emb.shape[-1] != config.model.text_dim:
        raise ConfigError(
            f"model.text_dim is {config.model.text_dim}, but the sentence encoder gives "
            f"{text_emb.shape[-1]}-d embeddings: set model.text_dim: {text_emb.shape[-1]}"
        )
    model.train()
    # clips at another rate (e.g. the original 44.1 kHz ESC-50) are resampled to the model's
    audio = resample(train_split.audio, train_split.sample_rate, config.model.sample_rate)
    mel = _mel_power(model, audio)
    band_hz = mel_centres(config.model.n_mels, config.model.f_min, config.model.f_max)
    band_weight = model.logmel.fbank.sum(0)
    crop_frames = min(
        mel.shape[-1],
        round(config.augment.crop_seconds * config.model.sample_rate / config.model.hop_length),
    )
    _check_crop(config, crop_frames, "the training clips are crops of")
    targets = torch.from_numpy(train_split.targets).long()
    steps_per_epoch = len(mel) // config.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"batch_size {config.batch_size} is more than the {len(mel)} training clips "
            f"(folds {config.train_folds}): not one step per epoch"
        )
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name == "logit_scale" else decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay}]
    pairwise = PairwiseSigmoid(num_classes) if "sigmoid" in config.loss else None
    if pairwise is not None:
        groups.append({"params": list(pairwise.parameters())})
    opt = torch.optim.AdamW(groups, lr=config.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(config, steps_per_epoch))
    ema = _Ema(model, config.ema_decay) if config.ema_decay > 0 else None
    start_epoch, history, resumed_step = 0, [], None
    settings = _run_settings(config)  # kept in every checkpoint, checked on resume
    clips = _clip_list(config.data, train_split)  # likewise
    if ckpt_path.is_file():
        ckpt = load_weights_only(ckpt_path, "CLAP training checkpoint")
        expected = {"model", "opt", "sched"}
        if not isinstance(ckpt, dict) or not expected <= set(ckpt):
            raise CheckpointError(
                f"{ckpt_path} is not a checkpoint of querysep clap train; remove it (or train "
                "into a new output folder) to start over"
            )
        if ("pairwise" in ckpt) != (pairwise is not None):
            raise ConfigError(
                f"{ckpt_path} was written by a run with{'out' if pairwise else ''} the pairwise "
                f"sigmoid loss, but loss is {config.loss!r}: resume with the run's own loss "
                "or train into a new output folder"
            )
        init_known = "init" in ckpt  # checkpoints written before init_from lack the key
        if init_known:
            init_record = ckpt["init"]
            started = init_record.get("from") if isinstance(init_record, dict) else None
            if started != config.init_from:
                raise ConfigError(
                    f"{ckpt_path} belongs to a run that started from "
                    f"{started or 'random weights'}, but init_from is "
                    f"{config.init_from or 'not set'}: train into a new output folder"
                )
        if "settings" in ckpt:  # checkpoints written before runs kept them lack the key
            _check_resume(ckpt_path, ckpt["settings"], settings)
        if "clips" in ckpt:  # likewise for the training clips
            _check_clips(ckpt_path, ckpt["clips"], clips)
        try:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["opt"])
            sched.load_state_dict(ckpt["sched"])
            if ema is not None:
                ema.state = ckpt["ema"]
            if pairwise is not None:
                pairwise.load_state_dict(ckpt["pairwise"])
            if "rng" in ckpt:  # dropout draws from the global generator
                torch.set_rng_state(ckpt["rng"])
            start_epoch, history = int(ckpt["epoch"]), list(ckpt["history"])
            resumed_step = int(ckpt["step"]) if "step" in ckpt else None
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"{ckpt_path} does not fit this config ({type(exc).__name__}: {first}); train "
                "into a new output folder, or remove it to start over"
            ) from None
        broken = non_finite_weight(model.state_dict())
        if broken is not None:  # written by a run that diverged, before runs checked
            raise CheckpointError(
                f"{ckpt_path} holds NaN or infinite weights ({broken}): its run diverged; "
                "train into a new output folder with other settings (e.g. a smaller lr)"
            )
        # the log says what the checkpoint holds (a cut run may have logged an epoch more)
        write_text(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in history))
        log(f"resumed from {ckpt_path} at epoch {start_epoch}")
    log(
        f"{len(mel)} clips (folds {config.train_folds}), {len(texts)} texts, "
        f"{steps_per_epoch} steps/epoch, {sum(p.numel() for p in model.parameters())} params, "
        f"{'bf16-mixed' if use_bf16 else 'float32'}"
    )
    step = start_epoch * steps_per_epoch if resumed_step is None else resumed_step
    for epoch in range(start_epoch, config.epochs):
        if config.max_steps is not None and step >= config.max_steps:
            break  # a max_steps run already cut short: nothing more to train
        t0, losses = time.time(), []
        order = torch.randperm(
            len(mel), generator=torch.Generator().manual_seed(config.seed * 100003 + epoch)
        )
        for b in range(steps_per_epoch):
            if config.max_steps is not None and step >= config.max_steps:
                break
            gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
            idx = order[b * config.batch_size : (b + 1) * config.batch_size]
            x, soft = augment_mel(
                mel[idx],
                targets[idx],
                num_classes,
                crop_frames,
                band_hz,
                band_weight,
                config.augment,
                gen,
            )
            pick = [row[int(torch.randint(len(row), (1,), generator=gen))] for row in text_by_class]
            sent = text_emb[pick]
            if config.text_noise > 0:
                scale = config.text_noise / math.sqrt(sent.shape[-1])
                noise = torch.randn(sent.shape, generator=gen) * scale
                sent = F.normalize(sent + noise, dim=-1)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                logmel = spec_augment(log_compress(x), config.augment, gen)
                a = model.audio_head(model.audio(logmel))
                t = model.text_features(sent)
            loss = torch.zeros(())
            if "infonce" in config.loss:
                loss = loss + contrastive_loss(a, t, soft, model.logit_scale)
            if pairwise is not None:
                loss = loss + pairwise(a, t, soft)
            value = float(loss.detach())
            if not math.isfinite(value):  # before the step: the checkpoint stays the last good
                raise _diverged(ckpt_path, epoch, step, f"the loss is {value}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            if ema is not None:
                ema.update(model)
            losses.append(value)
            step += 1
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": step,
            "loss": float(np.mean(losses)) if losses else None,
            "lr": sched.get_last_lr()[0],
            "temperature": float(1 / model.logit_scale.detach().exp()),
            **(
                {
                    "pair_scale": float(pairwise.log_scale.detach().exp()),
                    "pair_bias": float(pairwise.bias.detach()),
                }
                if pairwise is not None
                else {}
            ),
            "seconds": round(time.time() - t0, 1),
        }
        last = epoch + 1 == config.epochs or (config.max_steps and step >= config.max_steps)
        states = [model.state_dict(), *([ema.state] if ema is not None else [])]
        if pairwise is not None:
            states.append(pairwise.state_dict())
        broken = next((k for k in map(non_finite_weight, states) if k is not None), None)
        if broken is not None:  # the last step diverged: never validate, save nor log it
            raise _diverged(ckpt_path, epoch, step - 1, f"weight {broken} is not finite")
        if val_split is not None and ((epoch + 1) % config.val_every == 0 or last):
            try:
                record["val"] = _evaluate(_with_ema(model, ema), val_split, use_bf16)
                if ema is not None:  # the raw weights too, to see what the average adds
                    record["val_raw"] = _evaluate(model, val_split, use_bf16)
            except CheckpointError:  # finite weights too large for finite embeddings
                what = "the validation embeddings are not finite"
                raise _diverged(ckpt_path, epoch, step - 1, what) from None
        history.append(record)
        log(json.dumps(record))
        payload = {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "sched": sched.state_dict(),
            "epoch": epoch + 1,
            "step": step,
            "history": history,
            "rng": torch.get_rng_state(),
            "settings": settings,
            "clips": clips,
        }
        if ema is not None:
            payload["ema"] = ema.state
        if init_known:  # else it stays unknown (not "random weights") in the checkpoint
            payload["init"] = init_record  # None: random weights
        if pairwise is not None:
            payload["pairwise"] = pairwise.state_dict()
        partial = out / "checkpoint.tmp"
        try:
            torch.save(payload, partial)
            os.replace(partial, ckpt_path)
        except BaseException:
            partial.unlink(missing_ok=True)  # the last whole checkpoint stays
            raise
        # after the checkpoint, so the log never holds an epoch the checkpoint lacks
        with open(out / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if last:
            break
    final = _with_ema(model, ema)
    refit = None
    if config.text_ridge is not None:
        refit = refit_text_head(
            final,
            train_split,
            config.text_ridge,
            paraphrases=config.paraphrases,
            paraphrase=paraphrase,
            discriminant=config.text_ridge_discriminant,
            shrinkage=config.text_ridge_shrinkage,
            templates=config.text_ridge_templates,
            more_captions=config.text_ridge_more_captions,
            weights_dtype=config.weights_dtype,
        )
        line: dict[str, Any] = {"text_head_refit": refit}
        if val_split is not None:
            line["val"] = _evaluate(final, val_split, use_bf16)
        log(json.dumps(line))
    if config.init_from is not None and not init_known:
        # a checkpoint from before runs kept this: the source as this command found it, if it
        # still is, marked as such (it may have changed since the run started)
        try:
            init_record = {**_init_state(config, member, sources)[1], "recorded_at_export": True}
        except Exception as exc:  # provenance only: never lose a finished run over it
            init_record = {"from": config.init_from, "unavailable": str(exc).splitlines()[0]}
    final.config.metadata = {
        **_card(config, out / "model"),
        "training": {
            "config": _plain(asdict(config)),
            **({"init": init_record} if init_record is not None else {}),
            "steps": step,
            "final": history[-1] if history else None,
            **({"text_head_refit": refit} if refit is not None else {}),
        },
    }
    return final.save_pretrained(out / "model", config.weights_dtype)


#: Settings the weights depend on: an ``init_from`` model must have the run's values.
_ARCHITECTURE = (
    "text_encoder",
    "sample_rate",
    "n_fft",
    "hop_length",
    "n_mels",
    "f_min",
    "f_max",
    "channels",
    "dim",
    "text_dim",
    "text_mlp",
)


def _architecture_differences(have: SmallClapConfig, want: SmallClapConfig) -> str:
    """``"n_fft 1024 vs 2048, ..."``: the :data:`_ARCHITECTURE` settings in which ``have``
    differs from ``want``; ``""`` when none does."""
    return ", ".join(
        f"{name} {getattr(have, name)!r} vs {getattr(want, name)!r}"
        for name in _ARCHITECTURE
        if getattr(have, name) != getattr(want, name)
    )


def _init_state(
    config: ClapTrainConfig,
    member: tuple[int, int] | None,
    sources: dict[str, Any] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights ``config.init_from`` names, for ``member`` ``(index, count)`` of a run (or a
    lone run: ``None``), and a record of them for the exported model's metadata: the source,
    its weights' SHA-256, the member taken and that model's own training record (so a
    fine-tuned model still tells how the weights it started from were trained). ``sources``
    caches loaded models by name across the calls of one command.

    Raises:
        ConfigError: ``init_from`` is not a small CLAP, is an ensemble of another size than the
            run's members, or differs from ``config.model`` in a setting that shapes weights.
        CheckpointError: Its weights hold a NaN or an infinity.
    """
    from .registry import load_clap

    source = None if sources is None else sources.get(config.init_from)
    if source is None:
        try:
            source = load_clap(config.init_from)
        except QuerysepError as exc:  # name the setting: "unknown audio-text model" misleads
            raise type(exc)(f"init_from: {exc}") from None
        if sources is not None:
            sources[config.init_from] = source
    record: dict[str, Any] = {"from": config.init_from, "weights_sha256": source.weights_sha256}
    if isinstance(source, ClapEnsemble):
        count = len(source.members)
        index, wanted = member if member is not None else (0, 1)
        if wanted != count:
            raise ConfigError(
                f"init_from {config.init_from} is an ensemble of {count} members: it can "
                f"start a run of {count} members (member i from its member i), not of {wanted}"
            )
        runs = source.metadata.get("training", {}).get("members") or []
        record["member"] = index
        record["training"] = runs[index] if index < len(runs) else None
        source = source.members[index]
    elif isinstance(source, SmallClap):
        meta = source.config.metadata
        record["training"] = dict(meta.get("training") or {}) or None
        if record["training"] is not None and "text_head_refit" in meta:
            record["training"]["text_head_refit"] = meta["text_head_refit"]
    if not isinstance(source, SmallClap):
        raise ConfigError(
            f"init_from {config.init_from} is a "
            f"{getattr(source, 'kind', type(source).__name__)} model; training can start only "
            "from a small CLAP (querysep clap train's model)"
        )
    shown = _architecture_differences(source.config, config.model)
    if shown:
        raise ConfigError(f"init_from {config.init_from} does not fit model settings ({shown})")
    state = {k: v.float() if v.is_floating_point() else v for k, v in source.state_dict().items()}
    broken = non_finite_weight(state)
    if broken is not None:
        raise CheckpointError(
            f"init_from {config.init_from}: weight {broken} holds NaN or infinite values; "
            "start from other weights"
        )
    return state, record


def _diverged(ckpt_path: Path, epoch: int, step: int, what: str) -> ConfigError:
    """The error that stops a run whose loss or weights stopped being finite."""
    kept = (  # a checkpoint is written at the end of each epoch
        f"{ckpt_path} keeps the last good epoch, {epoch}"
        if ckpt_path.is_file()
        else "no checkpoint was written"
    )
    return ConfigError(
        f"training diverged at epoch {epoch + 1}, step {step + 1}: {what} ({kept}); train "
        "into a new output folder with other settings, e.g. a smaller lr"
    )


def _default_name(output: Path) -> str:
    """The name of a model written to ``output`` without a ``name`` setting: the run's
    folder (``OUT`` for ``OUT/model``)."""
    folder = output.absolute()
    name = (folder.parent if folder.name == "model" else folder).name
    return " ".join(name.split()) or "small-clap"  # one line, not padded (as a set name)


def _card(config: ClapTrainConfig, output: Path) -> dict[str, Any]:
    return {
        "name": config.name or _default_name(output),
        "license": "CC BY-NC 3.0 (trained on ESC-50): non-commercial use only",
        "data": f"ESC-50 folds {config.train_folds}",
    }


def _check_run(config: ClapTrainConfig, paraphrase: Paraphraser | None = None) -> None:
    """Raise :class:`ConfigError` for a setting a run cannot use (before anything trains)."""
    check_paraphraser(config.paraphrases, paraphrase)
    check_weights_dtype(config.weights_dtype)
    name = config.name
    if name is not None and (not name.strip() or name != name.strip() or not name.isprintable()):
        raise ConfigError(f"name must be one line of text, not blank or padded, got {name!r}")
    if config.loss not in LOSSES:
        raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {config.loss!r}")
    check_precision(str(config.precision))
    shared = sorted(set(config.train_folds) & set(config.val_folds))
    if shared:
        raise ConfigError(
            f"val_folds {config.val_folds} share fold {shared[0]} with train_folds "
            f"{config.train_folds}: validation must be on clips the run does not train on"
        )
    augment = config.augment
    ranges = [  # (name, value, lowest, highest, highest included)
        ("weight_decay", config.weight_decay, 0.0, math.inf, False),
        ("min_lr_ratio", config.min_lr_ratio, 0.0, 1.0, True),
        ("ema_decay", config.ema_decay, 0.0, 1.0, False),
        ("text_noise", config.text_noise, 0.0, math.inf, False),
        ("augment.speed", augment.speed, 0.0, 1.0, False),
        ("augment.gain_db", augment.gain_db, 0.0, math.inf, False),
        ("augment.mixup_prob", augment.mixup_prob, 0.0, 1.0, True),
        ("augment.noise_prob", augment.noise_prob, 0.0, 1.0, True),
        ("augment.time_mask_frac", augment.time_mask_frac, 0.0, 1.0, True),
    ]
    for name, value, low, high, closed in ranges:
        if not _is_number(value) or value < low or value > high or (value == high and not closed):
            bound = f"[{low:g}, {high:g}{']' if closed else ')'}"
            raise ConfigError(f"{name} must be a number in {bound}, got {value!r}")
    if not _is_number(config.lr) or config.lr < 0:  # 0: the weights stay (a refit or re-export)
        raise ConfigError(f"lr must be a finite number >= 0, got {config.lr!r}")
    if not _is_number(augment.crop_seconds) or augment.crop_seconds <= 0:
        raise ConfigError(f"augment.crop_seconds must be positive, got {augment.crop_seconds!r}")
    if augment.mixup_prob > 0 and (not _is_number(augment.mixup_alpha) or augment.mixup_alpha <= 0):
        raise ConfigError(
            f"augment.mixup_alpha must be positive (or mixup off: augment.mixup_prob: 0), got "
            f"{augment.mixup_alpha!r}"
        )
    snr = augment.noise_snr_db
    if len(snr) != 2 or not all(_is_number(v) for v in snr) or snr[0] > snr[1]:
        raise ConfigError(f"augment.noise_snr_db must be [low, high] in dB, got {list(snr)!r}")
    for name in ("warmup_epochs", "paraphrases", "restart_epochs", "restart_warmup_epochs"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(config, name)!r}")
    if config.restart_epochs:
        if config.restart_epochs >= config.epochs:
            raise ConfigError(
                f"restart_epochs ({config.restart_epochs}) must be fewer than epochs "
                f"({config.epochs}): they are the last epochs of the run"
            )
        if config.warmup_epochs > config.epochs - config.restart_epochs:
            raise ConfigError(
                f"warmup_epochs ({config.warmup_epochs}) must be at most the "
                f"{config.epochs - config.restart_epochs} epochs before the restart"
            )
        if config.restart_warmup_epochs > config.restart_epochs:
            raise ConfigError(
                f"restart_warmup_epochs ({config.restart_warmup_epochs}) must be at most "
                f"restart_epochs ({config.restart_epochs})"
            )
        if not _is_number(config.restart_lr) or config.restart_lr <= 0:
            raise ConfigError(f"restart_lr must be a positive number, got {config.restart_lr!r}")
    for name in ("time_masks", "freq_masks", "freq_mask_bands"):
        if getattr(augment, name) < 0:
            raise ConfigError(f"augment.{name} must be >= 0, got {getattr(augment, name)!r}")
    if not -_MAX_SEED < config.seed < _MAX_SEED:
        raise ConfigError(f"seed must be a whole number of magnitude < 2**40, got {config.seed!r}")
    frames = round(augment.crop_seconds * config.model.sample_rate / config.model.hop_length)
    _check_crop(config, frames, f"augment.crop_seconds {augment.crop_seconds:g} gives")
    if config.text_ridge is not None:
        check_refit(
            config.text_ridge,
            text_mlp=config.model.text_mlp,
            discriminant=config.text_ridge_discriminant,
            shrinkage=config.text_ridge_shrinkage,
            templates=config.text_ridge_templates,
        )
    elif config.text_ridge_more_captions:
        raise ConfigError("text_ridge_more_captions: true needs a text_ridge penalty (the refit)")
    elif config.text_ridge_templates is not None:
        raise ConfigError(
            "text_ridge_templates needs a text_ridge penalty (the refit stores them); without "
            "one the model keeps model.text_templates"
        )


#: Seeds of this magnitude would overflow the per-step generator seeds (seed * 1_000_003 +
#: step).
_MAX_SEED = 2**40


def _check_crop(config: ClapTrainConfig, frames: int, what: str) -> None:
    """A training crop of ``frames`` frames must survive the audio tower's pooling."""
    least = 2 ** len(config.model.channels)
    if frames < least:
        raise ConfigError(
            f"{what} {frames} frames, too few for {len(config.model.channels)} pooling blocks "
            f"(model.channels): at least {least}"
        )


def _check_members_share(members: list[ClapTrainConfig]) -> None:
    """Members whose models could not form one ensemble are refused before any trains."""

    def exported(member: ClapTrainConfig) -> dict[str, Any]:  # the model settings it exports
        model = asdict(member.model)
        if member.text_ridge is not None and member.text_ridge_templates is not None:
            model["text_templates"] = list(member.text_ridge_templates)  # the refit stores them
        return {key: model[key] for key in ENSEMBLE_SHARED}

    first = exported(members[0])
    for index, member in enumerate(members[1:], 1):
        mine = exported(member)
        differ = [f"{k} {mine[k]!r} vs {first[k]!r}" for k in first if mine[k] != first[k]]
        if differ:
            raise ConfigError(
                f"members[{index}] differs from members[0] in {', '.join(differ)}: an ensemble's "
                "members must share these"
            )


#: Settings a resumed run may change: they act after training (the refit, the export) or
#: only on validation. Every other setting must be the checkpoint's run's own. ``data`` may
#: name another folder, but its training clips must be the run's (:func:`_check_clips`).
_CHANGEABLE_ON_RESUME = frozenset(
    {"name", "data", "val_folds", "val_every", "members", "snapshots", "init_from"}
    | {"weights_dtype", "text_ridge", "text_ridge_discriminant", "text_ridge_shrinkage"}
    | {"text_ridge_templates", "text_ridge_more_captions"}
)


def _plain_config(config: ClapTrainConfig) -> dict[str, Any]:
    """Every setting as plain data, precision as text (32 and "32" are one setting)."""
    plain = _plain(asdict(config))
    plain["precision"] = str(plain["precision"])
    return plain


def _run_settings(config: ClapTrainConfig) -> dict[str, Any]:
    """The settings a checkpoint's run was trained with (as plain data), for resuming."""
    plain = _plain_config(config)
    for not_trained_with in ("metadata", "audio_views"):  # the export's, and embed_audio's
        plain["model"].pop(not_trained_with, None)
    if not config.restart_epochs:  # without a restart its settings do nothing
        plain.pop("restart_lr")
        plain.pop("restart_warmup_epochs")
    return {k: v for k, v in plain.items() if k not in _CHANGEABLE_ON_RESUME}


def _check_resume(path: Path, had: Any, has: dict[str, Any]) -> None:
    """Refuse to resume a run whose training settings have changed since ``path``.

    A setting that querysep gained after the checkpoint was written counts as its default
    there (the run trained without it), so an older checkpoint resumes with the defaults.
    """
    if not isinstance(had, dict):
        raise CheckpointError(f"{path} is not a checkpoint of querysep clap train")
    defaults = _plain_config(ClapTrainConfig())
    differ = []
    for key in sorted(set(has) & (set(had) | set(defaults))):
        old, new = had.get(key, defaults[key]), has[key]
        if isinstance(old, dict) and isinstance(new, dict):
            nested = defaults.get(key) if isinstance(defaults.get(key), dict) else {}
            differ += [
                f"{key}.{k} {old.get(k, nested.get(k))!r} -> {new[k]!r}"
                for k in sorted(set(new) & (set(old) | set(nested)))
                if old.get(k, nested.get(k)) != new[k]
            ]
        elif old != new:
            differ.append(f"{key} {old!r} -> {new!r}")
    if differ:
        raise ConfigError(
            f"{path} belongs to a run trained with other settings ({'; '.join(differ)}): "
            "resume with the run's own settings, or train into a new output folder "
            "(init_from: its model/ continues from its weights)"
        )


def _clip_list(root: str | os.PathLike[str], split: Esc50Split) -> list[list[Any]]:
    """What a run trains on: each clip's file name (within ``audio/``: the folder may move),
    size in bytes and class, by file name."""
    audio = Path(root) / "audio"
    return [
        [name, (audio / name).stat().st_size, int(target)]
        for name, target in zip(split.filenames, split.targets, strict=True)
    ]


def _check_clips(path: Path, had: Any, has: list[list[Any]]) -> None:
    """Refuse to resume a run on other training clips than those ``path`` was trained on."""
    try:
        old = {name: (size, target) for name, size, target in had}
    except (TypeError, ValueError):
        raise CheckpointError(f"{path} is not a checkpoint of querysep clap train") from None
    new = {name: (size, target) for name, size, target in has}
    if old == new:
        return
    differ = sorted(n for n in set(old) | set(new) if old.get(n) != new.get(n))
    name = differ[0]
    if name not in new:
        example = f"{name} is gone"
    elif name not in old:
        example = f"{name} is new"
    elif old[name][0] != new[name][0]:
        example = f"{name} is {new[name][0]} bytes, was {old[name][0]}"
    else:
        example = f"{name} is class {new[name][1]}, was {old[name][1]}"
    raise ConfigError(
        f"{path} belongs to a run trained on other clips ({len(differ)} differ, e.g. {example}): "
        "resume on the run's own data (its folder may move), or train into a new output folder"
    )


_NOT_PER_MEMBER = frozenset(
    {"members", "snapshots", "augment", "data", "train_folds", "weights_dtype", "name"}
)


def _chained(
    config: ClapTrainConfig, members: list[ClapTrainConfig] | None, out: Path
) -> list[ClapTrainConfig]:
    """``members`` as the snapshots of one trajectory (``snapshots: true``): member ``i > 0``
    starts from member ``i - 1``'s exported model.

    Raises:
        ConfigError: Fewer than two members, or a member after the first that sets its own
            ``init_from``.
    """
    if members is None:
        raise ConfigError("snapshots: true needs members >= 2 (the snapshots of the ensemble)")
    listed = config.members if isinstance(config.members, list) else []
    for index, overrides in enumerate(listed[1:], 1):
        if "init_from" in overrides:
            raise ConfigError(
                f"members[{index}] sets init_from, but with snapshots: true it starts from "
                f"member {index - 1}'s model"
            )
    return [
        each if index == 0 else replace(each, init_from=str(out / f"member{index - 1}" / "model"))
        for index, each in enumerate(members)
    ]


def member_configs(config: ClapTrainConfig) -> list[ClapTrainConfig] | None:
    """The configs of an ensemble's members (see the module docstring); ``None`` for one model.

    Raises:
        ConfigError: ``members`` is neither a whole number >= 1 nor a non-empty list of
            mappings of known top-level keys (not ``members``, ``augment``, ``data``,
            ``train_folds``, ``weights_dtype`` or ``name``, which every member shares). A member's
            ``model`` lists only the settings it changes (e.g. ``{channels: [...]}``).
    """
    members = config.members
    if isinstance(members, int) and not isinstance(members, bool) and members >= 1:
        if members == 1:
            return None
        return [
            replace(
                config,
                seed=config.seed + i,
                members=1,
                model=deepcopy(config.model),
                name=_member_name(config.name, i),
            )
            for i in range(members)
        ]
    if not isinstance(members, list) or not members:
        raise ConfigError(
            f"members must be a whole number >= 1 or a list of per-member settings, got {members!r}"
        )
    known = {f.name for f in fields(ClapTrainConfig)} - _NOT_PER_MEMBER
    out = []
    for index, overrides in enumerate(members):
        if not isinstance(overrides, dict):
            raise ConfigError(f"members[{index}] must be a mapping of settings, got {overrides!r}")
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"members[{index}] sets {', '.join(unknown)}: a member may set only "
                f"{', '.join(sorted(known))}"
            )
        overrides = _with_member_model(config.model, overrides, "", f"members[{index}]")
        overrides.setdefault("model", deepcopy(config.model))  # each member its own settings
        out.append(replace(config, **overrides, members=1, name=_member_name(config.name, index)))
    return out


def _member_name(name: str | None, index: int) -> str | None:
    """The name of member ``index``'s own model, in its ``OUT/member{index}/model``."""
    return None if name is None else f"{name}-member{index}"


def _train_ensemble(
    config: ClapTrainConfig,
    members: list[ClapTrainConfig],
    out: Path,
    *,
    log: Any,
    text_encoder: TextEncoder | None,
    paraphrase: Paraphraser | None,
    sources: dict[str, Any],
    train_split: Esc50Split,
) -> Path:
    """Train ``members`` one after the other (each resumable); export their ensemble."""
    folders = []
    for index, member in enumerate(members):
        where = out / f"member{index}"
        detail = f"seed {member.seed}, {member.epochs} epochs"
        if member.model != config.model:
            detail += f", channels {member.model.channels}, dim {member.model.dim}"
        log(f"member {index + 1}/{len(members)} ({detail}) in {where}")
        with _created(where):  # held through the ensemble's folder
            folders.append(
                _train_one(
                    member,
                    where,
                    log,
                    text_encoder,
                    paraphrase,
                    (index, len(members)),
                    sources,
                    train_split,
                )
            )
    return export_ensemble(config, folders, out / "model")


def export_ensemble(
    config: ClapTrainConfig, folders: list[Path] | list[str], output: str | os.PathLike[str]
) -> Path:
    """Write the ensemble of trained member folders to ``output``, as ``members`` does.

    The ensemble's metadata describes the recipe ``config`` and each member's run once (a
    text-head refit done afterwards by ``querysep clap refit-text`` joins its member's run);
    its name is ``config.name``, or else the folder ``output`` names (``OUT`` for
    ``OUT/model``).

    Raises:
        ConfigError: A folder given twice, or a member whose network differs from the
            recipe's ``model`` (its own, for a recipe whose ``members`` list as many runs as
            there are folders): the recipe would be recorded wrongly.
    """
    seen: dict[Path, str | os.PathLike[str]] = {}
    for folder in folders:
        key = Path(folder).resolve()
        if key in seen:
            raise ConfigError(
                f"{folder} is given twice (also as {seen[key]}): an ensemble's members are "
                "distinct runs"
            )
        seen[key] = folder
    ensemble = ClapEnsemble.from_members(list(folders))
    recipes = member_configs(config) or []  # members may set their own network
    if len(recipes) != len(folders):
        recipes = [config] * len(folders)
    for folder, member, recipe in zip(folders, ensemble.members, recipes, strict=True):
        shown = _architecture_differences(member.config, recipe.model)
        if shown:
            raise ConfigError(
                f"{folder} was not trained with the recipe's model settings ({shown}): give "
                "--config the recipe its members were trained with"
            )
    runs = []
    for member in ensemble.members:
        meta = member.config.metadata
        run = dict(meta.get("training") or {})
        if "text_head_refit" in meta:
            run["text_head_refit"] = meta["text_head_refit"]
        runs.append(run)
        member.config.metadata = {}
    ensemble.metadata = {
        **_card(config, Path(output)),
        "training": {"config": _plain(asdict(config)), "members": runs},
    }
    return ensemble.save_pretrained(output, config.weights_dtype)


def _with_ema(model: SmallClap, ema: _Ema | None) -> SmallClap:
    if ema is None:
        return model
    copy = SmallClap(model.config, model.__dict__.get("_text_encoder"))
    copy.load_state_dict(ema.state)
    return copy


def _plain(data: Any) -> Any:
    return json.loads(json.dumps(data, default=list))


if __name__ == "__main__":  # the same command as `querysep clap train ARGS`
    import sys

    from querysep.cli import app

    app(["clap", "train", *sys.argv[1:]], prog_name="python -m querysep.clap.train")
