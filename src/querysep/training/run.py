"""One training run from a :class:`TrainConfig`: build, fit (or resume), export.

The run folder (``trainer.output_dir``) holds::

    config.yaml              the resolved config of the latest start
    checkpoints/last.ckpt    written every trainer.checkpoint_every_n_steps and at the end
    checkpoints/best.ckpt    best val/sdri (when there is a validation list); a run that
                             starts afresh keeps an earlier run's as best.<k>.ckpt
    logs/csv/metrics.csv     and logs/tensorboard/ when tensorboard is installed; a resumed
                             run keeps the earlier log as logs/csv/metrics.<k>.csv
    model/                   the exported model folder (config.json + model.safetensors)

If ``checkpoints/last.ckpt`` exists, :func:`train` continues from it (step, weights,
optimizer, learning-rate schedule and data position) with the settings of its own config
(a changed ``optim`` section or ``max_steps`` applies from the resumed step on; a changed
model is refused); ``restart=True`` starts over. The
export at the end takes ``best.ckpt`` when the run validates, else ``last.ckpt``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import lightning.pytorch as pl
import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from ..errors import CheckpointError, ConfigError, OutputError
from ..fileio import check_output_folder, locked_folder, write_text
from ..models.separator import CONFIG_NAME, TextQueriedSeparator, build_network
from ..models.text import NearestTextEncoder, build_text_encoder, plain_encoder
from ..precision import describe_choice, resolve_precision
from .callbacks import (
    LAST_CHECKPOINT,
    AtomicCheckpointIO,
    GracefulInterrupt,
    LastCheckpoint,
    StepProgressBar,
    TimeLimit,
    TrainingInterruptedError,
    ValidateAtStop,
)
from .config import DataConfig, ModelConfig, TrainConfig, TrainerConfig
from .datamodule import MixtureDataModule
from .export import BEST_CHECKPOINT, export_checkpoint, find_export_checkpoint, read_checkpoint
from .module import SeparationTask, SkippedStepWarning

__all__ = [
    "TrainResult",
    "build_model",
    "build_trainer",
    "fit_warnings_filtered",
    "open_run_folder",
    "train",
]

CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
MODEL_DIR = "model"
LOG_DIR = "logs"

Echo = Callable[[str], None]


@dataclass
class TrainResult:
    """What a call to :func:`train` did.

    Attributes:
        output_dir: The run folder.
        step: Global step reached.
        resumed_from: Step of the checkpoint training continued from, if it resumed.
        interrupted: Stopped early on Ctrl-C (``last.ckpt`` holds the state).
        exported: The exported model folder, if any.
    """

    output_dir: Path
    step: int
    resumed_from: int | None = None
    interrupted: bool = False
    exported: Path | None = None


def build_model(config: ModelConfig) -> TextQueriedSeparator:
    """A fresh separator from the model section, or the pretrained one it names.

    A fresh network whose class has ``reset_mask_head`` starts from its neutral mask, and one
    with ``prepare_training`` loads what only training needs. A missing
    ``network.config.condition_dim`` is set to the text encoder's size.
    """
    if config.init_from is not None:
        from ..pretrained import load_model

        model = load_model(config.init_from, device="cpu")
        model.metadata = {"init_from": config.init_from, **config.metadata}
        if config.grow:
            grown = getattr(model.net, "grown", None)
            if not callable(grown):
                raise ConfigError(
                    f"model.grow: a {type(model.net).__name__} network cannot grow "
                    "(only ResUNet networks can)"
                )
            model.net = grown(**config.grow)
            model.metadata["grown"] = dict(config.grow)
        return model
    assert config.network is not None and config.text_encoder is not None
    encoder = build_text_encoder(config.text_encoder)
    net_config = dict(config.network.get("config", {}))
    net_config.setdefault("condition_dim", encoder.dim)
    net = build_network(str(config.network["type"]), net_config)
    reset_head = getattr(net, "reset_mask_head", None)
    if callable(reset_head):  # start from a neutral mask (see ResUNet.reset_mask_head)
        reset_head()
    prepare = getattr(net, "prepare_training", None)
    if callable(prepare):  # load what training alone needs now (IRM-LDM's UNet for sds)
        prepare()
    return TextQueriedSeparator(net, encoder, dict(config.metadata))


def _keep_csv_log(output_dir: Path) -> None:
    """Move an earlier ``metrics.csv`` aside (Lightning's CSVLogger deletes it on resume)."""
    folder = output_dir / LOG_DIR / "csv"
    log = folder / "metrics.csv"
    if log.is_file():
        k = 1
        while (folder / f"metrics.{k}.csv").exists():
            k += 1
        log.rename(folder / f"metrics.{k}.csv")


def _loggers(output_dir: Path) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(output_dir, name=LOG_DIR, version="csv")]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        loggers.append(
            TensorBoardLogger(
                output_dir, name=LOG_DIR, version="tensorboard", default_hp_metric=False
            )
        )
    return loggers


class RunConfig(Protocol):
    """What :func:`build_trainer` reads of a run's config (a :class:`TrainConfig`, or the
    mel VAE's :class:`~querysep.training.melvae.MelVaeTrainConfig`)."""

    data: DataConfig
    trainer: TrainerConfig


def build_trainer(
    config: RunConfig,
    *,
    callbacks: Sequence[Callback] = (),
    checkpoints: bool = True,
    loggers: bool = True,
    echo: Echo = print,
) -> pl.Trainer:
    """The Lightning trainer of a run: step-based, resumable, one process per device.

    Args:
        config: The run's config.
        callbacks: Extra callbacks.
        checkpoints: Write ``last.ckpt`` / ``best.ckpt`` and handle Ctrl-C.
        loggers: Write CSV (and TensorBoard) logs.
        echo: Prints messages.
    """
    t = config.trainer
    out = Path(t.output_dir)
    validate = config.data.validation is not None
    cbs: list[Callback] = [ValidateAtStop()] if validate else []
    best = None
    last = None
    if checkpoints:
        last = LastCheckpoint(
            out / CHECKPOINT_DIR,
            t.checkpoint_every_n_steps,
            keep_step_checkpoints=t.keep_step_checkpoints,
            echo=echo,
        )
        cbs += [last, GracefulInterrupt(last, echo=echo)]
        if validate:
            best = ModelCheckpoint(
                dirpath=out / CHECKPOINT_DIR,
                filename=Path(BEST_CHECKPOINT).stem,
                monitor="val/sdri",
                mode="max",
                save_top_k=1,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            )
            cbs.append(best)
    if t.num_nodes > 1 and not _multi_machine_launch():
        raise ConfigError(
            f"trainer.num_nodes={t.num_nodes}: this process was not started by a multi-machine "
            "launcher (SLURM, torchrun, LSF, MPI) and MASTER_ADDR and NODE_RANK are "
            "not both set, so it would wait for the other machines forever"
        )
    limit = t.max_time_delta()
    if limit is not None:  # not Lightning's max_time: see TimeLimit
        cbs.append(TimeLimit(limit, last, echo=echo))
    if t.progress_bar:
        cbs.append(StepProgressBar(refresh_rate=max(1, min(20, t.log_every_n_steps))))
    cbs.extend(callbacks)
    try:
        trainer = pl.Trainer(
            plugins=[AtomicCheckpointIO()],
            max_steps=t.max_steps,
            max_epochs=-1,
            val_check_interval=t.val_every_n_steps,
            check_val_every_n_epoch=None,
            limit_val_batches=None if validate else 0,
            num_sanity_val_steps=1 if validate else 0,
            precision=resolve_precision(t.precision, t.accelerator),
            accelerator=t.accelerator,
            devices=t.devices,
            num_nodes=t.num_nodes,
            strategy=t.strategy,
            sync_batchnorm=t.sync_batchnorm,
            gradient_clip_val=t.gradient_clip_val,
            deterministic=t.deterministic,
            benchmark=t.cudnn_benchmark,
            log_every_n_steps=t.log_every_n_steps,
            use_distributed_sampler=False,  # the step sampler shards by rank itself
            enable_checkpointing=best is not None,
            enable_progress_bar=t.progress_bar,
            callbacks=cbs,
            logger=_loggers(out) if loggers else False,
            default_root_dir=out,
        )
    except (ValueError, TypeError, MisconfigurationException) as exc:  # strategy, devices...
        raise ConfigError(f"trainer: {' '.join(str(exc).split())}") from None
    # The time limit's second save (after the stop step's validation) must come after
    # ModelCheckpoint has recorded that score; Lightning puts checkpoint callbacks last.
    limits = [cb for cb in trainer.callbacks if isinstance(cb, TimeLimit)]
    trainer.callbacks = [cb for cb in trainer.callbacks if not isinstance(cb, TimeLimit)] + limits
    return trainer


def _multi_machine_launch() -> bool:
    """Whether this process can find the other machines of a multi-node run."""
    from lightning.fabric.plugins import environments as envs

    launchers = (  # the ones Lightning itself detects
        envs.SLURMEnvironment,
        envs.TorchElasticEnvironment,
        envs.LSFEnvironment,
        envs.MPIEnvironment,
    )
    if any(env.detect() for env in launchers):
        return True
    # or set by hand on each machine (Lightning reads the node rank from either name)
    return "MASTER_ADDR" in os.environ and ("NODE_RANK" in os.environ or "GROUP_RANK" in os.environ)


def _write_config(config: Any, path: Path, echo: Echo, *, resume: bool = False) -> None:
    text = config.to_yaml()
    if path.is_file():
        try:
            old = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError):  # about to be replaced anyway
            old = {}
        changed = _changed_keys(old, config.to_dict())
        if changed:
            echo(
                f"note: config differs from the saved {path.name} in: {', '.join(changed)}"
                + ("; the resumed run trains with the new values" if resume else "")
            )
    write_text(path, text)
    echo(f"config saved to {path}")


def _check_same_model(config: Any, saved: Path, sections: Sequence[str] = ("model",)) -> None:
    """Refuse to resume a run whose saved config describes another model (any key of its
    ``sections`` but their ``metadata``), or is unreadable."""
    if not saved.is_file():
        return
    fix = "fix or delete it, use another trainer.output_dir, or --restart to start over"
    try:
        data = yaml.safe_load(saved.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(
            f"cannot resume {saved.parent}: {saved} is not UTF-8 text; {fix}"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{saved}:{mark.line + 1}" if mark is not None else str(saved)
        raise ConfigError(
            f"cannot resume {saved.parent}: {where} is not valid YAML; {fix}"
        ) from None
    changed: list[str] = []
    for section in sections:
        if not isinstance(data, dict) or not isinstance(data.get(section), dict):
            raise ConfigError(
                f"cannot resume {saved.parent}: {saved} has no {section} section; {fix}"
            )
        old = data[section]
        new = config.to_dict()[section]
        changed += [
            k
            for k in _changed_keys(old, new, f"{section}.")
            if not k.startswith(f"{section}.metadata")
        ]
    if changed:
        raise ConfigError(
            f"cannot resume {saved.parent}: the model differs from its {saved.name} in "
            f"{', '.join(changed)}; use another trainer.output_dir, or --restart to start over"
        )


def check_resumable(last: Path) -> None:
    """Refuse, before the run folder is touched, a ``last.ckpt`` that is no training
    checkpoint (corrupt, foreign, or needing pickled code).

    Raises:
        CheckpointError: Why, and how to go on.
    """
    try:
        read_checkpoint(last)
    except CheckpointError as exc:
        raise CheckpointError(
            f"cannot resume: {exc}; remove it, or --restart to start over"
        ) from None


def _check_output_dir(out: Path, config: Any = None) -> None:
    """Refuse a run folder that is a file or lies under one, or that holds another kind
    of run (whose model/ a ``--restart`` would delete and an export would write into):
    ``querysep clap train``'s, or a separator's where ``config`` trains a VAE or the
    reverse. Nothing is written yet."""
    try:
        check_output_folder(out)
    except OutputError as exc:
        raise ConfigError(f"trainer.output_dir: {exc}") from None
    clap_files = ("checkpoint.pt", "log.jsonl", "member*/checkpoint.pt")  # one model, ensemble
    other = next((m.name for n in clap_files for m in sorted(out.glob(n))), None)
    if other is not None:
        raise ConfigError(
            f"trainer.output_dir: {out} holds a 'querysep clap train' run ({other}); "
            "choose another folder"
        )
    saved = out / CONFIG_FILE
    if config is None or not saved.is_file():
        return
    try:
        old = yaml.safe_load(saved.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return  # resuming checks the saved config itself and says what is wrong with it
    kinds = {"vae": "a mel VAE (ldm train-vae)", "model": "a separator (querysep train)"}
    new = config.to_dict()
    was = next((k for k in kinds if isinstance(old, dict) and k in old), None)
    now = next((k for k in kinds if k in new), None)
    if was is not None and now is not None and was != now:
        raise ConfigError(
            f"trainer.output_dir: {out} holds the run of {kinds[was]}, and this config trains "
            f"{kinds[now]}; choose another folder"
        )


#: Settings added after runs were already saved, with the value a saved config that lacks
#: them meant: such a run still resumes (and is not reported as changed).
_ADDED_LATER: dict[str, object] = {"model.query_bank": False, "data.query_mix_prob": 0.0}


def _changed_keys(old: object, new: object, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            name = f"{prefix}{key}"
            if key not in old and name in _ADDED_LATER and new[key] == _ADDED_LATER[name]:
                continue
            out += _changed_keys(old.get(key), new.get(key), f"{name}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def _set_aside_earlier_best(folder: Path, echo: Echo, *, resumed: bool = False) -> None:
    """Keep the ``best.ckpt`` of an earlier run as ``best.<k>.ckpt`` when this run does not
    resume it (no ``last.ckpt``): it holds another run's weights (maybe another model), which
    neither this run's export nor ``querysep train export RUN`` may take for this run's. Also
    when a run ``resumed`` without validation: its export is ``last.ckpt``, and so must
    ``train export RUN``'s be. It is renamed rather than deleted: it may be the only copy of
    those best weights. ``k`` is one above the highest one there, so later is higher."""
    best = folder / BEST_CHECKPOINT
    if not best.is_file():
        return
    taken = [
        int(m.group(1))
        for p in folder.iterdir()
        if (m := re.fullmatch(rf"{re.escape(best.stem)}\.(\d+){re.escape(best.suffix)}", p.name))
    ]
    aside = best.rename(folder / f"{best.stem}.{max(taken, default=0) + 1}{best.suffix}")
    why = (
        "this run resumes without validation, so it exports where it ends"
        if resumed
        else f"it is from an earlier run (no {LAST_CHECKPOINT} to resume it); this run starts "
        "afresh"
    )
    echo(f"note: {best} kept as {aside.name}, not exported: {why}")


def check_validation_share(datamodule: Any, trainer: pl.Trainer) -> None:
    """Refuse a validation list shorter than the number of processes: each validates its
    own share of the list, and one with none fails in Lightning with a traceback per process.

    Raises:
        ConfigError: Fewer validation mixtures than processes.
    """
    rows = datamodule.val_dataset
    if rows is not None and len(rows) < trainer.world_size:
        raise ConfigError(
            f"data.validation: {len(rows)} mixtures for {trainer.world_size} processes, and "
            "each process validates a share of them: give at least one per process (raise "
            "data.validation.max_items, or train on fewer devices)"
        )


def _restart(out: Path, echo: Echo) -> None:
    removed = []
    for name in (CHECKPOINT_DIR, LOG_DIR, MODEL_DIR):
        if (out / name).exists():
            shutil.rmtree(out / name)
            removed.append(name)
    if removed:
        echo(f"--restart: removed {', '.join(removed)} from {out}")


def train(
    config: TrainConfig,
    *,
    restart: bool = False,
    callbacks: Sequence[Callback] = (),
    echo: Echo = print,
    on_checked: Callable[[], None] | None = None,
) -> TrainResult:
    """Train (or continue training) as ``config`` says, then export the best model.

    Args:
        config: The resolved config.
        restart: Start over even if ``checkpoints/last.ckpt`` exists (removes the run's
            checkpoints, logs and exported model first).
        callbacks: Extra Lightning callbacks.
        echo: Prints messages (only the global rank 0 process prints).
        on_checked: Called (on the global rank 0 process) once config, model, data and
            trainer are checked, just before the run folder is touched: ``querysep train``
            prints the resolved config there, so that a config that fails a check prints
            one line only.

    Returns:
        What happened; ``interrupted`` when stopped by Ctrl-C.

    Raises:
        ConfigError, DataError, ModelNotFoundError, CheckpointError: Bad config or inputs.
    """
    is_zero = rank_zero_only.rank == 0
    say: Echo = echo if is_zero else (lambda _msg: None)
    out = config.output_dir
    _check_output_dir(out, config)
    last = out / CHECKPOINT_DIR / LAST_CHECKPOINT
    resume = last.is_file() and not restart
    if resume:
        _check_same_model(config, out / CONFIG_FILE)
        check_resumable(last)
    say(describe_choice(config.trainer.precision, config.trainer.accelerator))

    # Everything is checked (config, model, data) before the run folder is touched.
    pl.seed_everything(config.trainer.seed, workers=False, verbose=False)
    model = build_model(config.model)
    rate = config.data.sample_rate or model.sample_rate
    if rate != model.sample_rate:
        raise ConfigError(
            f"data.sample_rate {rate} differs from the model's {model.sample_rate} Hz"
        )
    datamodule = MixtureDataModule(config.data, model.sample_rate, seed=config.trainer.seed)
    datamodule.setup("fit")
    datamodule.check_train_audio()  # streaming (no preload): a missing file stops it here
    ds = datamodule.train_dataset
    assert ds is not None
    # model.query_bank: the new model answers with the nearest of this run's texts; a model
    # that has a bank already (init_from) gets them instead of its own, and without the
    # option it loses its own (new training texts must not snap to old ones)
    own = model.text_encoder
    plain = plain_encoder(own)
    if config.model.query_bank:
        model.text_encoder = NearestTextEncoder(plain, ds.query_texts())
    elif isinstance(own, NearestTextEncoder):
        model.text_encoder = plain
        say(
            f"note: {config.model.init_from} answers each query with the nearest of its "
            f"{len(own.texts)} training texts; this run trains and exports without them "
            "(model.query_bank=true gives the new model its own)"
        )
    say(
        f"training data: {len(ds.clips)} clips, {len(ds.targets)} targets, "
        f"{config.data.segment_seconds:g} s segments at {model.sample_rate} Hz"
        + (
            f"; {len(ds.cache)} decoded ({ds.cache.nbytes / 2**20:.0f} MiB)"
            if config.data.preload
            else ""
        )
    )
    task = SeparationTask(
        model,
        config.optim,
        train_text_encoder=config.model.train_text_encoder,
        checkpoint_info={"train_config": config.to_dict()},
        seed=config.trainer.seed,
        channels_last=config.trainer.channels_last,
    )
    trainer = build_trainer(config, callbacks=callbacks, echo=say)
    check_validation_share(datamodule, trainer)
    if on_checked is not None and is_zero:  # every check passed: the CLI prints the config
        on_checked()
    # Only now, with the trainer built too (Lightning checks strategy, devices...), is the
    # run folder touched: a --restart's old run is removed and the config saved.
    with (
        open_run_folder(config, restart=restart, resume=resume, echo=say),
        fit_warnings_filtered(say),
    ):
        if not config.model.train_text_encoder:  # the frozen text encoder stays in eval mode
            warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start")
        result = fit(trainer, task, datamodule, out=out, resume=resume, echo=say)
        if not result.interrupted and config.trainer.export and trainer.is_global_zero:
            _export(out, result, say, best=config.data.validation is not None)
    return result


def _export(out: Path, result: TrainResult, say: Echo, *, best: bool = True) -> None:
    """Export the run's best (when it validates, ``best``) or last checkpoint to
    ``out/model`` and say so."""
    source = find_export_checkpoint(out / CHECKPOINT_DIR, best=best)
    # as `querysep train export` does: one writing into out/model at once (it would clear
    # this export's temporary files as a killed export's)
    with locked_folder(out / MODEL_DIR, "train export"):
        result.exported = export_checkpoint(source, out / MODEL_DIR)
    meta = json.loads((result.exported / CONFIG_NAME).read_text(encoding="utf-8"))["metadata"]
    scores = meta["training"]["validation"]
    step = meta["training"]["step"]
    shown = ", ".join(f"{k} {v:.2f}" for k, v in scores.items() if k.startswith("val/"))
    if shown and scores.get("step", step) != step:  # validated earlier, not since
        shown = f"validated at step {scores['step']}: {shown}"
    say(
        f"exported {source.name} (step {step}"
        + (f"; {shown}" if shown else "")
        + f") to {result.exported}"
    )


def fit(
    trainer: pl.Trainer,
    task: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    *,
    out: Path,
    resume: bool,
    echo: Echo = print,
) -> TrainResult:
    """``trainer.fit``, from ``out``'s ``last.ckpt`` when ``resume``; the run's result.

    A first Ctrl-C (the interrupt callback of :func:`build_trainer`) ends the fit after the
    current step with ``last.ckpt`` saved: the result is ``interrupted``.

    Raises:
        CheckpointError: ``last.ckpt`` does not fit the model or optimiser being trained.
    """
    last = out / CHECKPOINT_DIR / LAST_CHECKPOINT
    try:
        trainer.fit(
            task, datamodule=datamodule, ckpt_path=last if resume else None, weights_only=True
        )
    except (RuntimeError, ValueError) as exc:
        text = str(exc)
        if resume and ("state_dict" in text or "parameter group" in text):
            first = text.strip().splitlines()[0]
            raise CheckpointError(
                f"{last} does not fit this config ({first}); use another "
                "trainer.output_dir, or --restart to discard it"
            ) from None
        raise
    except TrainingInterruptedError as exc:
        echo(f"stopped at step {exc.step}; saved {exc.checkpoint}: rerun the command to resume")
        return TrainResult(out, exc.step, _resumed_step(trainer), interrupted=True)
    return TrainResult(out, trainer.global_step, _resumed_step(trainer))


@contextlib.contextmanager
def fit_warnings_filtered(echo: Echo | None = None) -> Iterator[None]:
    """Silence Lightning's warnings about what a resumable run does on purpose (reusing its
    log and checkpoint folders, resuming without the validation it had) and a deprecation
    inside Lightning itself; with ``echo``, each skipped step's warning
    (:class:`~querysep.training.module.SkippedStepWarning`) is one ``warning: ...`` line."""
    with warnings.catch_warnings():
        if echo is not None:
            shown = warnings.showwarning

            def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
                if issubclass(category, SkippedStepWarning):
                    echo(f"warning: {message}")
                else:
                    shown(message, category, *args, **kwargs)

            warnings.simplefilter("always", SkippedStepWarning)
            warnings.showwarning = show
        warnings.filterwarnings("ignore", message=".*Experiment logs directory.*exists.*")
        warnings.filterwarnings(
            "ignore", message=".*Checkpoint directory.*exists and is not empty.*"
        )
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
        # a run resumed without validation has no ModelCheckpoint for the saved one's state
        warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint")
        yield


@contextlib.contextmanager
def open_run_folder(config: Any, *, restart: bool, resume: bool, echo: Echo) -> Iterator[None]:
    """Touch the run folder (enter once everything is checked) and hold it while the block
    runs: lock it, remove a ``--restart``'s old run, say that the run resumes, save the
    config, keep the earlier CSV log aside, and, when not resuming, an earlier run's
    ``best.ckpt`` (as ``best.<k>.ckpt``).

    The lock (:func:`~querysep.fileio.locked_folder`, global rank 0 only) refuses a second
    training into the same folder while this one runs: the two would overwrite each other's
    checkpoints.

    Args:
        config: The run's config (with ``output_dir``, ``to_yaml`` and ``to_dict``).
        restart: ``--restart`` was given.
        resume: ``checkpoints/last.ckpt`` will be resumed from.
        echo: Prints messages.

    Raises:
        OutputError: Another training is writing into the folder.
        CheckpointError: ``last.ckpt`` came or went while the command was starting.
    """
    out = config.output_dir
    is_zero = rank_zero_only.rank == 0
    with locked_folder(out, "training") if is_zero else contextlib.nullcontext(out):
        last = out / CHECKPOINT_DIR / LAST_CHECKPOINT
        if is_zero and not restart and resume != last.is_file():
            raise CheckpointError(
                f"{last} {'went away' if resume else 'appeared'} while this command was "
                "starting (another run?): run the command again"
            )
        if restart and is_zero:
            _restart(out, echo)
        if resume:
            echo(f"found {last}: resuming (use --restart to start over)")
            data = getattr(config, "data", None)
            if is_zero and data is not None and getattr(data, "validation", True) is None:
                _set_aside_earlier_best(out / CHECKPOINT_DIR, echo, resumed=True)
        elif is_zero:
            _set_aside_earlier_best(out / CHECKPOINT_DIR, echo)
        if is_zero:
            _write_config(config, out / CONFIG_FILE, echo, resume=resume)
            _keep_csv_log(out)  # the CSV logger opens (and would delete) it during fit
        yield


def _resumed_step(trainer: pl.Trainer) -> int | None:
    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(cb, LastCheckpoint):
            return cb.resumed_from
    return None
