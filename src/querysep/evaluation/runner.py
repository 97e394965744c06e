"""The evaluation runner: mixture list + audio folder + systems -> per-clip scores -> table.

Work is grouped by clip: each mixture is loaded (or built from its source and noise with the
DCASE protocol) once and given to every system, and only one clip's audio is held at a
time. Each (clip, system) score is appended to ``per_clip.csv`` and flushed as soon as it
exists, so a killed run resumes where it stopped: on start the rows already in the file are
read back and those pairs are not computed again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..audio.io import SILENT_PEAK, check_duration, check_sample_rate
from ..data.manifest import MixtureRow, csv_header, csv_records, read_mixture_list
from ..data.mixing import load_row_mixture, row_files
from ..errors import AudioError, ConfigError, DataError, QuerysepError
from ..fileio import check_output_folder, locked_folder, refuse_overwriting, write_text
from ..metrics import get_metrics
from ..schema import check_count
from ..textfiles import read_text
from .report import METRIC_COLUMNS, PerClipWriter, format_table, read_per_clip, write_summary
from .systems import System, SystemOptions, make_system, run_system
from .upgrade import missing_columns, peek_header, upgrade_per_clip

__all__ = [
    "PER_CLIP_NAME",
    "SUMMARY_NAME",
    "TABLE_NAME",
    "MetricHook",
    "Summary",
    "check_settings",
    "evaluate",
    "resolve_systems",
]

PER_CLIP_NAME = "per_clip.csv"
METRIC_MODELS_NAME = "metric_models.json"
SETTINGS_NAME = "settings.json"
SUMMARY_NAME = "summary.json"
TABLE_NAME = "table.md"


class MetricHook(Protocol):
    """Extra per-clip metrics, added as columns without touching the runner.

    A hook declares its columns up front (CSV column -> table label) and is called once per
    (clip, system) with the audio the standard metrics see, at the evaluation rate. Its
    values get their own CSV columns, their means in ``summary.json`` and their own columns
    in the table, after SDR, SDRi and SI-SDR.

    This is where the audio-text similarity score (ATS) of the DCASE 2024 Task 9 report
    comes in: an ATS hook holds a CLAP model, has ``columns = {"ats": "ATS"}`` and returns
    ``{"ats": cosine(CLAP_audio(estimate), CLAP_text(query))}``; it is passed as
    ``evaluate(..., metric_hooks=[hook])``.

    Attributes:
        columns: Column key -> table label, in order.
    """

    columns: Mapping[str, str]

    def __call__(
        self,
        *,
        mixture: np.ndarray,
        target: np.ndarray,
        estimate: np.ndarray,
        query: str,
        sample_rate: int,
    ) -> Mapping[str, float]:
        """Score one estimate.

        Shape:
            - mixture, target, estimate: ``(time,)``
        """
        ...


@dataclass
class Summary:
    """What :func:`evaluate` found and wrote.

    Attributes:
        scores: ``{system: {column: mean, ..., "n": clips scored}}``, rows in table order.
        columns: Metric column -> table label, in table order.
        num_clips: Rows of the list that were evaluated (after ``limit``).
        num_computed: (clip, system) pairs scored by this call.
        num_resumed: Pairs read back from an earlier, interrupted run.
        skipped: Ids of the clips skipped for missing audio.
        out_dir: Output folder.
        notes: Lines printed under the table (which model computed a metric, ...).
        num_upgraded: Rows of an older ``per_clip.csv`` given the metric columns it lacked.
    """

    scores: dict[str, dict[str, float]]
    columns: dict[str, str]
    num_clips: int
    num_computed: int
    num_resumed: int
    skipped: list[str] = field(default_factory=list)
    out_dir: Path = Path(".")
    notes: list[str] = field(default_factory=list)
    num_upgraded: int = 0

    @property
    def per_clip_path(self) -> Path:
        return self.out_dir / PER_CLIP_NAME

    @property
    def summary_path(self) -> Path:
        return self.out_dir / SUMMARY_NAME

    @property
    def table_path(self) -> Path:
        return self.out_dir / TABLE_NAME

    def table(self) -> str:
        """The markdown table (as written to ``table.md``), with its notes under it."""
        table = format_table(self.scores, self.columns)
        if self.notes:
            table += "\n" + "\n".join(self.notes) + "\n"
        return table


def resolve_systems(
    systems: str | System | Sequence[str | System],
    *,
    baselines: bool = True,
    reference: bool = False,
    options: SystemOptions | None = None,
) -> list[System]:
    """Build systems from specs, adding the ``mixture``, ``oracle-irm`` and ``reference`` rows.

    With ``baselines``, ``mixture`` comes first and ``oracle-irm`` last unless the list
    already has a system of that name; the given systems keep their order between them.
    With ``reference`` (for reference-free metrics such as ATS), ``reference`` (the clean
    target) comes after everything else. A single spec (``"test-tiny"``) or system is one
    system, as a list of one.

    Raises:
        ConfigError: No system at all, or two systems with the same name.
    """
    if isinstance(systems, str | System):  # one spec, not its letters
        systems = [systems]
    built = [make_system(s, options) for s in systems]
    names = [s.name for s in built]  # as built: " mixture" and "mixture:" are "mixture"
    if baselines:
        if "mixture" not in names:
            built.insert(0, make_system("mixture", options))
        if not any(n == "oracle-irm" or n.startswith("oracle-irm:") for n in names):
            built.append(make_system("oracle-irm", options))
    if reference and "reference" not in names:
        built.append(make_system("reference", options))
    if not built:
        raise ConfigError("no system to evaluate")
    seen = Counter(s.name for s in built)
    twice = [name for name, count in seen.items() if count > 1]
    if twice:
        raise ConfigError(f"two systems are named {twice[0]!r}; each table row needs its own name")
    return built


def check_settings(*, sample_rate: float, limit: int | None = None) -> int:
    """Check :func:`evaluate`'s numeric settings (callers can do so before loading models).

    Returns:
        ``sample_rate`` as an ``int``.

    Raises:
        ConfigError: ``sample_rate`` is not a whole number of Hz (``16000.0`` is one) in the
            supported range, or ``limit`` is not a whole number >= 1 (a bool is neither).
    """
    rate = check_sample_rate(sample_rate, ConfigError)
    if limit is not None:
        check_count("limit", limit)
    return rate


@dataclass
class _Resume:
    """What an earlier run left in ``per_clip.csv``.

    Attributes:
        rows: Its complete rows.
        clean: Whether it can be appended to as is.
        done: ``(list values, occurrence, system) -> scores``: the j-th row of (list values,
            system) in the file is the j-th occurrence of that list row, so exact duplicate
            rows in the list are handled too.
    """

    rows: list[dict[str, str]]
    clean: bool
    done: dict[tuple[tuple[str, ...], int, str], dict[str, float]]


@dataclass
class _Task:
    """One clip still to score: its row, its list values, the systems it needs, its files."""

    row: MixtureRow
    key: tuple[str, ...]
    systems: list[System]
    files: tuple[Path, Path]


@dataclass
class _Plan:
    """The clips still to score, and what was resumed or skipped on the way."""

    tasks: list[_Task]
    scores: dict[str, list[dict[str, float]]]
    num_resumed: int
    skipped: list[str]


def _load_rows(list_path: Path, audio_path: Path) -> tuple[list[MixtureRow], list[str]]:
    """The list's rows and its own columns, in file order."""
    rows = read_mixture_list(list_path)
    if not rows:
        raise DataError(f"{list_path}: the mixture list has a header but no rows")
    if not audio_path.is_dir():
        raise DataError(
            f"audio folder not found: {audio_path}"
            + (" (it is a file)" if audio_path.exists() else "")
        )
    header = csv_header(csv_records(list_path, read_text(list_path, "mixture list")))
    return rows, [name.strip() for name in header]


def _metric_columns(
    list_path: Path, list_columns: Sequence[str], hooks: Sequence[MetricHook]
) -> dict[str, str]:
    """Metric column -> table label: the standard metrics, then each hook's."""
    columns = dict(METRIC_COLUMNS)
    for hook in hooks:
        for key, label in hook.columns.items():
            if key in columns:
                raise ConfigError(f"two metrics write the column {key!r}")
            columns[key] = label
    reserved = set(columns) | {"system"}
    if reserved & set(list_columns):
        raise DataError(
            f"{list_path}: column {sorted(reserved & set(list_columns))[0]!r} clashes with "
            "an output column; rename it"
        )
    return columns


def _read_resume(
    per_clip: Path, header: Sequence[str], list_columns: Sequence[str], columns: Sequence[str]
) -> _Resume:
    """Read back the scores an earlier run of the same list and metrics wrote."""
    existing, clean = read_per_clip(per_clip, header)
    done: dict[tuple[tuple[str, ...], int, str], dict[str, float]] = {}
    counts: Counter[tuple[tuple[str, ...], str]] = Counter()
    for rec in existing:
        key = tuple(rec[c] for c in list_columns)
        j = counts[(key, rec["system"])]
        counts[(key, rec["system"])] += 1
        done[(key, j, rec["system"])] = {c: float(rec[c]) for c in columns}
    return _Resume(existing, clean, done)


def _check_resumed_rows_are_listed(
    resume: _Resume,
    rows: Sequence[MixtureRow],
    list_columns: Sequence[str],
    list_path: Path,
    per_clip: Path,
) -> None:
    """Refuse a per-clip file holding scores of clips the list does not have (a folder
    written for another list with the same columns): its table would mix two lists.

    Raises:
        DataError: Such a row was found.
    """
    listed = Counter(row.values(list_columns) for row in rows)
    foreign = [key for key, j, _ in resume.done if j >= listed[key]]
    if foreign:
        example = ",".join(foreign[0])
        raise DataError(
            f"{per_clip} holds scores of clips that {list_path} does not list (e.g. "
            f"'{example}'): it was written for another mixture list; choose another output "
            "folder"
        )


def _plan(
    rows: Sequence[MixtureRow],
    list_columns: Sequence[str],
    systems: Sequence[System],
    resume: _Resume,
    audio_path: Path,
    skip_missing: bool,
) -> _Plan:
    """Which systems each clip still needs; each clip's files are found up front."""
    plan = _Plan(tasks=[], scores={s.name: [] for s in systems}, num_resumed=0, skipped=[])
    seen: Counter[tuple[str, ...]] = Counter()
    for row in rows:
        key = row.values(list_columns)
        k = seen[key]
        seen[key] += 1
        todo = []
        for system in systems:
            prior = resume.done.get((key, k, system.name))
            if prior is None:
                todo.append(system)
            else:
                plan.scores[system.name].append(prior)
                plan.num_resumed += 1
        if not todo:
            continue
        try:
            files = row_files(row, audio_path)
        except DataError:
            if not skip_missing:
                raise
            plan.skipped.append(row.id)
            continue
        if files[0].resolve() == files[1].resolve():
            raise DataError(
                f"clip {row.source or row.target}: the "
                f"{'noise' if row.kind == 'dcase' else 'target'} is the "
                f"same file as the {'source' if row.kind == 'dcase' else 'mixture'} "
                f"({files[0]}): there is nothing to separate; remove the row"
            )
        plan.tasks.append(_Task(row, key, todo, files))
    return plan


def _score_tasks(
    plan: _Plan,
    writer: PerClipWriter,
    list_columns: Sequence[str],
    sample_rate: int,
    hooks: Sequence[MetricHook],
    progress: bool,
) -> int:
    """Score every task, appending each row to ``writer`` (and ``plan.scores``) as it comes.

    Returns:
        The number of (clip, system) pairs scored.
    """
    num_computed = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan.tasks), unit="clip", desc="evaluating", leave=False)
    try:
        for task in plan.tasks:
            mixture, target = load_row_mixture(task.row, task.files, sample_rate)
            clip = task.row.source or task.row.target
            check_duration(target.shape[-1], sample_rate, f"clip {clip}", "too short to score")
            if not np.abs(target).max(initial=0.0) > SILENT_PEAK:  # SDR would be meaningless
                raise DataError(
                    f"clip {clip}: the target is silent (no sample above -100 dBFS), so SDR "
                    "and SI-SDR are undefined; remove the row (the rows before it are kept)"
                )
            if not np.abs(mixture - target).max(initial=0.0) > SILENT_PEAK:  # nothing to remove
                what = f"noise {task.row.noise} is silent" if task.row.noise else "is silent"
                raise DataError(
                    f"clip {clip}: the interference (mixture - target) {what}, so the mixture "
                    "is the target and SDRi is undefined (the mixture's SDR is unbounded); "
                    "remove the row (the rows before it are kept)"
                )
            cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            for system in task.systems:
                if bar is not None:
                    bar.set_postfix_str(system.name, refresh=False)
                query = task.row.caption
                try:
                    estimate = run_system(system, mixture, target, query, sample_rate, cache)
                except AudioError as exc:  # name the clip: the message says only "audio"
                    clip = task.row.source or task.row.mixture
                    raise AudioError(f"clip {clip} ({system.name}): {exc}") from None
                scores = _score(system, mixture, target, estimate, query, sample_rate, hooks)
                values = dict(zip(list_columns, task.key, strict=True))
                writer.write({**values, "system": system.name, **scores})
                plan.scores[system.name].append(scores)
                num_computed += 1
            del cache, mixture, target
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return num_computed


def _means(
    systems: Sequence[System],
    scores: Mapping[str, Sequence[dict[str, float]]],
    columns: Sequence[str],
) -> dict[str, dict[str, float]]:
    """Per system, the mean of each column over its scored clips, and ``n``.

    A clip without a value in a column (NaN: the ATS of a silent output) is left out of that
    column's mean, and ``n_<column>`` then says how many clips the mean is over; a column
    without any value (the reference row's SDR) has a NaN mean and no count.
    """
    means: dict[str, dict[str, float]] = {}
    for system in systems:
        records = scores[system.name]
        entry: dict[str, float] = {}
        for c in columns:
            values = [r[c] for r in records if math.isfinite(r[c])]
            entry[c] = _mean(values)
            if values and len(values) < len(records):
                entry[f"n_{c}"] = len(values)
        means[system.name] = {**entry, "n": len(records)}
    return means


def _partial_notes(scores: Mapping[str, Mapping[str, float]], columns: Mapping[str, str]):
    """One line per (system, column) whose mean leaves clips out (see :func:`_means`)."""
    return [
        f"{label} of {system}: the mean of {int(values[f'n_{c}'])} of its "
        f"{int(values['n'])} clips (the others have no {label}: a silent output)"
        for system, values in scores.items()
        for c, label in columns.items()
        if f"n_{c}" in values
    ]


def _write_summary(
    summary: Summary,
    list_path: Path,
    audio_path: Path,
    sample_rate: int,
    limit: int | None,
    models: Mapping[str, object],
) -> None:
    """Write ``summary.json`` (means, counts, where the data came from) and ``table.md``."""
    write_summary(
        summary.summary_path,
        {
            "mixture_list": str(list_path.resolve()),
            "audio_dir": str(audio_path.resolve()),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "sample_rate": int(sample_rate),
            "num_clips": summary.num_clips,
            "limit": limit,
            "num_skipped": len(summary.skipped),
            "skipped": summary.skipped,
            "metrics": summary.columns,
            "metric_models": dict(models),
            "systems": summary.scores,
        },
    )
    write_text(summary.table_path, summary.table())


def evaluate(
    mixture_list: str | Path,
    audio_dir: str | Path,
    systems: str | System | Sequence[str | System],
    out_dir: str | Path,
    *,
    sample_rate: float = 16000,
    progress: bool = True,
    limit: int | None = None,
    skip_missing: bool = False,
    baselines: bool = True,
    metric_hooks: Sequence[MetricHook] = (),
    options: SystemOptions | None = None,
) -> Summary:
    """Score systems on a mixture list and write per-clip scores, a summary and a table.

    Writes into ``out_dir``: ``per_clip.csv`` (the list's columns, ``system``, ``sdr``,
    ``sdri``, ``si_sdr`` and any hook columns; one row per (clip, system), appended and
    flushed as scored), ``summary.json`` (per-system means and counts, with the list path
    and date) and ``table.md`` (a markdown table, one row per system in order). Rows already
    in ``per_clip.csv`` are kept and not computed again.

    Each clip is built by :func:`~querysep.data.mixing.load_row_mixture`, as the training
    validation set builds it.

    A ``per_clip.csv`` written before a hook's column existed (a folder evaluated before
    ATS) is upgraded in place by :func:`~querysep.evaluation.upgrade.upgrade_per_clip`: its
    rows keep their scores and get the new column. Hooks that use a model (ATS) record it in
    ``metric_models.json``; a later run with another model into the same folder is refused.
    ``settings.json`` records the rate, the audio folder and each system's own settings
    (a model's segment length, overlap, precision, the SHA-256 of the files it was loaded
    from, and ``normalize`` for a ``normalized:`` row): a later run into a folder that holds
    scores must match them, so one table never mixes scores computed two ways. It also
    records the spec each row was built from (a system's ``spec``), from which an upgrade
    builds the rows this run does not name.

    Args:
        mixture_list: A DCASE (``source,noise,snr,caption``) or triplet
            (``mixture,target,caption``) CSV.
        audio_dir: Folder with the clips (ids are looked up with any supported extension).
        systems: Systems or specs for :func:`~querysep.evaluation.make_system`; a single
            spec (``"test-tiny"``) or system is one system.
        out_dir: Output folder (created).
        sample_rate: Rate everything is loaded, mixed and scored at, a whole number of Hz.
        progress: Show a progress bar.
        limit: Evaluate only the first ``limit`` rows.
        skip_missing: Skip (and count) clips with missing audio instead of failing.
        baselines: Add the ``mixture`` and ``oracle-irm`` rows (see :func:`resolve_systems`).
        metric_hooks: Extra metrics (see :class:`MetricHook`).
        options: Device etc. for the systems built from specs.

    Returns:
        The :class:`Summary`.

    Raises:
        DataError: The list or audio folder is missing or malformed, a clip's audio is
            missing (unless ``skip_missing``), or ``per_clip.csv`` has other columns.
        ConfigError: Bad ``sample_rate``, ``limit`` or systems, or settings other than
            those the folder's scores were computed with (``settings.json``).
        AudioError: An audio file cannot be read, or a system returned NaN or infinite
            samples (the message names the clip and the system).
        OutputError: ``out_dir`` is a file or lies under one, cannot be written, or another
            run is writing into it (:func:`~querysep.fileio.locked_folder`).
    """
    list_path, audio_path, out_path = Path(mixture_list), Path(audio_dir), Path(out_dir)
    sample_rate = check_settings(sample_rate=sample_rate, limit=limit)
    limit = None if limit is None else int(limit)  # a numpy integer too, for summary.json
    all_rows, list_columns = _load_rows(list_path, audio_path)
    rows = all_rows[:limit] if limit is not None else all_rows
    check_output_folder(out_path)
    outputs = (PER_CLIP_NAME, SUMMARY_NAME, TABLE_NAME, SETTINGS_NAME, METRIC_MODELS_NAME)
    refuse_overwriting([out_path / name for name in outputs], [list_path])
    columns = _metric_columns(list_path, list_columns, metric_hooks)
    header = [*list_columns, "system", *columns]
    built = resolve_systems(systems, baselines=baselines, options=options)
    per_clip = out_path / PER_CLIP_NAME
    with locked_folder(out_path, "evaluate"):  # one run at a time writes into a folder
        models = _metric_models(out_path, metric_hooks)
        old_header = peek_header(per_clip)
        _check_extra_columns(per_clip, old_header, header)
        settings = _Settings.load(out_path, sample_rate, audio_path)
        if old_header is not None and "system" in old_header:  # else refused further down
            settings.scored = {r["system"] for r in read_per_clip(per_clip, old_header)[0]}
        settings.check_folder()
        for system in built:
            settings.check(system)

        def record() -> None:
            if models:
                write_text(out_path / METRIC_MODELS_NAME, json.dumps(models, indent=2) + "\n")
            settings.write()

        def score(system: System, mix: np.ndarray, tgt: np.ndarray, est: np.ndarray, q: str):
            return _score(system, mix, tgt, est, q, sample_rate, metric_hooks)

        num_upgraded = 0
        addable = [c for c in columns if c not in METRIC_COLUMNS]
        missing = missing_columns(old_header, header, addable) if old_header else None
        if old_header is not None and missing is not None:
            get_system = _system_getter(built, options, settings)
            num_upgraded = upgrade_per_clip(
                per_clip,
                old_header,
                header,
                list_columns,
                all_rows,
                audio_path,
                sample_rate,
                get_system,
                score,
                progress=progress,
                on_open=record,
            )
        resume = _read_resume(per_clip, header, list_columns, list(columns))
        _check_resumed_rows_are_listed(resume, all_rows, list_columns, list_path, per_clip)
        plan = _plan(rows, list_columns, built, resume, audio_path, skip_missing)
        if rows and len(plan.skipped) == len(rows):
            raise DataError(
                f"--skip-missing skipped all {len(rows)} clips: none of their audio is in "
                f"{audio_path} (is it the right --audio-dir?)"
            )

        with PerClipWriter(
            per_clip, header, resume.rows, rewrite=not resume.clean, on_open=record
        ) as writer:
            num_computed = _score_tasks(
                plan, writer, list_columns, sample_rate, metric_hooks, progress
            )

        means = _means(built, plan.scores, list(columns))
        notes = [note for hook in metric_hooks if (note := getattr(hook, "note", None))]
        summary = Summary(
            scores=means,
            columns=columns,
            num_clips=len(rows),
            num_computed=num_computed,
            num_resumed=plan.num_resumed,
            skipped=plan.skipped,
            out_dir=out_path,
            notes=notes + _partial_notes(means, columns),
            num_upgraded=num_upgraded,
        )
        _write_summary(summary, list_path, audio_path, sample_rate, limit, models)
        return summary


def _metric_models(out_path: Path, hooks: Sequence[MetricHook]) -> dict[str, object]:
    """``column -> model description`` of the hooks that use a model (ATS: the CLAP model).

    Raises:
        ConfigError: The folder's scores were computed with another model: values of two
            models must not be mixed in one column.
    """
    models: dict[str, object] = {}
    for hook in hooks:
        describe = getattr(hook, "describe", None)
        if callable(describe):
            for column in hook.columns:
                models[column] = describe()
    path = out_path / METRIC_MODELS_NAME
    if not models or not path.is_file():
        return models
    stored = _read_json_object(path, "metric models file")
    for column, model in models.items():
        old = stored.get(column)
        if isinstance(model, dict) and isinstance(old, dict) and "weights_sha256" not in old:
            # written before digests were recorded: compare the rest
            model = {k: v for k, v in model.items() if k != "weights_sha256"}
        if column in stored and stored[column] != model:
            name = stored[column].get("name") if isinstance(stored[column], dict) else None
            now = model.get("name") if isinstance(model, dict) else model
            then = (
                f"another version of {name!r} (its kind, size or weights differ)"
                if name is not None and name == now
                else repr(name or stored[column])
            )
            raise ConfigError(
                f"the {column} scores in {out_path} were computed with {then}, not {now!r}: "
                "values of two models do not compare; use the same model or another output folder"
            )
    return {**stored, **models}


def _row_label(name: str) -> str:
    """The `` [label]`` (or labels: `` [vocoder] [normalized]``) a row name ends with
    (``""`` for none)."""
    found = re.search(r"(?: \[[^\[\]]*\])+$", name)
    return found.group(0) if found else ""


def _system_getter(built: Sequence[System], options: SystemOptions | None, settings: _Settings):
    """``name -> System``: this run's systems, others built on demand from the spec the
    folder recorded for them (a folder from before specs were recorded: from their name),
    with the segment length and precision recorded for them (else ``options``').

    Raises (from the getter):
        ConfigError: The row cannot be built again: ``-m SPEC`` must name it.
    """
    by_name = {s.name: s for s in built}

    def get(name: str) -> System:
        if name not in by_name:
            spec = settings.specs.get(name)
            hint = f"pass -m SPEC for the row {name!r} (the --model it was evaluated with)"
            try:
                system = make_system(
                    spec or name, settings.options_for(name, options or SystemOptions())
                )
            except QuerysepError as exc:
                if spec is None:  # "NAME [label]" and the like are not specs
                    raise ConfigError(
                        f"its name does not build it ({exc}) and this folder records no spec "
                        f"for it (evaluated before specs were, or given as a System): {hint}"
                    ) from None
                raise ConfigError(
                    f"cannot build it from its spec {spec!r} ({exc}); {hint}"
                ) from None
            if system.name != name:
                # a spec recorded with its folder made absolute names the row otherwise
                # ("/abs/m1 [x]" for "m1 [x]", "model:m1" or "m1"): the same row when the
                # label at its end (which output an IRM-LDM row used) agrees
                if spec is None or _row_label(system.name) != _row_label(name):
                    raise ConfigError(
                        f"{spec or name!r} now builds the row {system.name!r}, not {name!r}; {hint}"
                    )
                system.name = name
            settings.check(system)
            by_name[name] = system
        return by_name[name]

    return get


def _check_extra_columns(
    per_clip: Path, old_header: Sequence[str] | None, header: Sequence[str]
) -> None:
    """Refuse, with a message that says why, a folder whose rows hold columns this run would
    not compute (an ATS column, when this run leaves ATS out): those values must not go."""
    if old_header is None or "system" not in old_header:
        return
    extra = [c for c in old_header if c not in header]
    metrics = old_header[old_header.index("system") + 1 :]
    if (
        extra
        and set(extra) <= set(metrics)
        and [c for c in old_header if c in header] == list(header)
    ):
        raise DataError(
            f"{per_clip} has the column(s) {', '.join(extra)}, which this run does not "
            "compute (ATS left out?): score them too (without --no-ats) or choose another "
            "output folder"
        )


@dataclass
class _Settings:
    """What the scores in an output folder depend on beyond the list: the evaluation rate,
    the audio folder, and each system's own settings (a model's segment length, overlap,
    precision, the SHA-256 of its files, and ``normalize`` for a ``normalized:`` row).
    Stored in ``settings.json``; a later run into the folder must match them, so that one
    table never mixes scores computed two ways.

    A folder written before ``settings.json`` existed is checked against its
    ``summary.json`` (rate and audio folder).
    """

    path: Path
    sample_rate: int
    audio_dir: str
    systems: dict[str, object]
    stored: dict[str, object]
    scored: set[str] = field(default_factory=set)  # systems with rows in the folder
    specs: dict[str, str] = field(default_factory=dict)  # row name -> spec it was built from

    @classmethod
    def load(cls, out_path: Path, sample_rate: int, audio_path: Path) -> _Settings:
        """Read the folder's settings (:meth:`check_folder` and :meth:`check` compare).

        Raises:
            DataError: ``settings.json`` is corrupt.
        """
        path = out_path / SETTINGS_NAME
        stored: dict[str, object] = {}
        if path.is_file():
            stored = _read_json_object(path, "evaluation settings file")
        elif (out_path / PER_CLIP_NAME).is_file() and (out_path / SUMMARY_NAME).is_file():
            try:  # an older folder: its summary says the rate and folder of its last run
                summary = json.loads(read_text(out_path / SUMMARY_NAME, "summary file"))
            except (DataError, ValueError):
                summary = None
            if isinstance(summary, dict):
                stored = {k: summary[k] for k in ("sample_rate", "audio_dir") if k in summary}
                stored["from"] = SUMMARY_NAME
        settings = cls(path, int(sample_rate), str(audio_path.resolve()), {}, stored)
        stored_systems = stored.get("systems")
        if isinstance(stored_systems, dict):
            settings.systems.update(stored_systems)
        stored_specs = stored.get("specs")
        if isinstance(stored_specs, dict):
            settings.specs.update({k: v for k, v in stored_specs.items() if isinstance(v, str)})
        return settings

    def check_folder(self) -> None:
        """Refuse another rate or audio folder than the folder's scores were computed with
        (only when it holds scores: ``scored``).

        Raises:
            ConfigError: They differ.
        """
        if not self.scored:
            return
        out_path = self.path.parent
        old_rate, old_dir = self.stored.get("sample_rate"), self.stored.get("audio_dir")
        if old_rate is not None and old_rate != self.sample_rate:
            raise ConfigError(
                f"the scores in {out_path} were computed at {old_rate} Hz, not "
                f"{self.sample_rate} Hz: use the same sample rate or another output folder"
            )
        if old_dir is not None and old_dir != self.audio_dir:
            raise ConfigError(
                f"the scores in {out_path} were computed from the clips in {old_dir}, not "
                f"{self.audio_dir}: use the same audio folder or another output folder (if "
                f"the same clips moved, set audio_dir in {self.stored.get('from', SETTINGS_NAME)})"
            )

    def options_for(self, name: str, options: SystemOptions) -> SystemOptions:
        """``options`` with the segment length and precision recorded for system ``name``."""
        old = self.systems.get(name)
        if not isinstance(old, dict):
            return options
        changes: dict[str, Any] = {}
        if isinstance(old.get("segment_seconds"), (int, float)):
            changes["segment_seconds"] = float(old["segment_seconds"])
        if isinstance(old.get("precision"), str):
            changes["precision"] = old["precision"]
        return dataclasses.replace(options, **changes)

    def check(self, system: System) -> None:
        """Refuse ``system`` if its rows in the folder were computed with other settings.

        A setting that older folders did not record (:data:`_RECORDED_LATER`: the digest of
        a model's files) is not compared when absent; it is recorded from then on.

        Raises:
            ConfigError: They were.
        """
        mine = _system_settings(system)
        old = self.systems.get(system.name)
        if system.name in self.scored and isinstance(old, dict):
            compared = {k: v for k, v in mine.items() if k in old or k not in _RECORDED_LATER}
            if old != compared:
                raise ConfigError(_changed(system.name, self.path.parent, old, compared))
        self.systems[system.name] = mine
        spec = getattr(system, "spec", None)
        if isinstance(spec, str):
            self.specs[system.name] = spec

    def write(self) -> None:
        """Write ``settings.json`` (rate, audio folder, every system seen so far and the
        spec each was built from, where known)."""
        data = {"sample_rate": self.sample_rate, "audio_dir": self.audio_dir}
        data |= {"systems": self.systems, "specs": self.specs}
        write_text(self.path, json.dumps(data, indent=2) + "\n")


def _system_settings(system: System) -> dict[str, object]:
    """A system's own settings (its ``settings`` mapping, if any), as JSON reads them back."""
    settings = getattr(system, "settings", None)
    if not isinstance(settings, Mapping):
        return {}
    return json.loads(json.dumps(dict(settings), default=str))  # a Path is kept as its text


#: System settings that folders written before them lack (compared only when recorded).
_RECORDED_LATER = ("weights_sha256",)


def _changed(name: str, folder: Path, old: Mapping[str, object], new: Mapping[str, object]) -> str:
    """Why the scores of ``name`` in ``folder`` cannot be resumed with settings ``new``."""
    differ = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
    if differ == {"normalize"}:
        then, now = ("with", "without") if old.get("normalize") else ("without", "with")
        return (
            f"the scores of {name} in {folder} were computed {then} normalize (the input "
            f"scaled to peak 0.9 for the network: a normalized: row), not {now}: use the same "
            "setting or another output folder"
        )
    if differ == {"weights_sha256"}:
        digest = "weights_sha256"
        return (
            f"the scores of {name} in {folder} were computed from other model files (weights "
            f"or config sha256 {old.get(digest)}, now {new.get(digest)}): the model changed "
            "since; evaluate it into another output folder"
        )
    return (
        f"the scores of {name} in {folder} were computed with {_describe(old)}, not "
        f"{_describe(new)}: use the same settings or another output folder"
    )


def _describe(settings: Mapping[str, object]) -> str:
    return ", ".join(f"{k} {v}" for k, v in settings.items()) or "no settings"


def _read_json_object(path: Path, what: str) -> dict[str, object]:
    try:
        data = json.loads(read_text(path, what))
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise DataError(f"{path} is corrupt; delete it or choose another output folder")
    return data


def _score(
    system: System,
    mixture: np.ndarray,
    target: np.ndarray,
    estimate: np.ndarray,
    query: str,
    sample_rate: int,
    hooks: Sequence[MetricHook],
) -> dict[str, float]:
    """The standard metrics (empty for the reference row) and every hook's."""
    if getattr(system, "is_reference", False):
        scores = dict.fromkeys(METRIC_COLUMNS, math.nan)
    else:
        metrics = get_metrics(mixture, target, estimate)
        scores = {c: float(metrics[c]) for c in METRIC_COLUMNS}
    for hook in hooks:
        extra = hook(
            mixture=mixture, target=target, estimate=estimate, query=query, sample_rate=sample_rate
        )
        unknown = set(extra) - set(hook.columns)
        if unknown:
            raise ValueError(f"metric hook returned undeclared columns {sorted(unknown)}")
        scores.update({c: float(extra.get(c, math.nan)) for c in hook.columns})
    return scores


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else math.nan
