"""Clip manifests, AudioSep/DCASE datafiles and mixture lists.

Three on-disk formats meet here:

* the **manifest**, our own JSON-lines format with one :class:`Clip` per line, written by
  ``querysep prepare`` and read by the training datasets;
* the **datafile** of AudioSep and the DCASE 2024 Task 9 baseline,
  ``{"data": [{"wav": path, "caption": text}, ...]}`` with one entry per caption;
* **mixture lists**: the DCASE CSV ``source,noise,snr,caption`` (clip ids without extension,
  or paths under the audio folder, mixed at evaluation time) and triplet lists
  ``mixture,target,caption`` (given mixtures).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import DataError
from ..fileio import write_text
from ..textfiles import read_text

__all__ = [
    "AUDIO_EXTENSIONS",
    "Clip",
    "MixtureRow",
    "audio_names",
    "check_unique_ids",
    "find_audio",
    "label_to_text",
    "read_datafile",
    "read_manifest",
    "read_mixture_list",
    "split_names",
    "write_datafile",
    "write_manifest",
    "write_mixture_list",
]

#: File extensions tried, in order, when an audio file is named without one.
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")

#: Largest SNR magnitude a mixture list may ask for, in dB (DCASE lists use -15..15); far
#: beyond it the noise gain over- or underflows.
MAX_ABS_SNR_DB = 100.0

DCASE_COLUMNS: tuple[str, ...] = ("source", "noise", "snr", "caption")
TRIPLET_COLUMNS: tuple[str, ...] = ("mixture", "target", "caption")

MixtureKind = Literal["dcase", "triplet"]


def _check_unicode(key: str, text: str) -> None:
    """Refuse a caption that is not Unicode text: JSON can escape a lone UTF-16 surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end].encode("unicode_escape").decode("ascii")
        raise ValueError(
            f"field '{key}' holds {bad}, half of a UTF-16 surrogate pair, which is not text"
        ) from None


@dataclass
class Clip:
    """One audio clip with its text descriptions.

    Attributes:
        id: Identifier unique within a manifest; the audio file name without extension.
        audio: Path to the audio file. Absolute in memory after :func:`read_manifest`; on
            disk it may be relative to the manifest's folder.
        duration: Length in seconds (``0.0`` when the recipe did not probe the file).
        sample_rate: Native sample rate in Hz (``0`` when not probed).
        captions: Natural-language descriptions, best first.
        keywords: Free-form tags (e.g. Freesound tags, Clotho keywords).
        labels: Class labels from a fixed vocabulary; two clips that share one are never
            mixed together.
        source: Name of the dataset the clip comes from.
        split: Dataset split, e.g. ``"train"``, ``"fold4"``, ``"validation"``.
        augmented_captions: Extra captions written from ``captions`` by a language model
            or the offline paraphraser (``querysep augment``); training may draw its
            queries from them (``data.augmented_caption_prob``). Empty by default, and left
            out of the written line while empty.
    """

    id: str
    audio: str
    duration: float = 0.0
    sample_rate: int = 0
    captions: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    source: str = ""
    split: str = ""
    augmented_captions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the clip as a JSON-serialisable dict (without an empty
        ``augmented_captions``, so manifests of unaugmented clips stay as they were)."""
        data = asdict(self)
        if not data["augmented_captions"]:
            del data["augmented_captions"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Clip:
        """Build a clip from a dict, checking field types; unknown keys are ignored.

        Raises:
            ValueError: A required field is missing or a field has the wrong type.
        """
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        for key in ("id", "audio"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise ValueError(f"field '{key}' must be a non-empty string")
        duration = data.get("duration", 0.0)
        sample_rate = data.get("sample_rate", 0)
        if isinstance(duration, bool) or not isinstance(duration, (int, float)):
            raise ValueError("field 'duration' must be a number")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int):
            raise ValueError("field 'sample_rate' must be an integer")
        lists: dict[str, list[str]] = {}
        for key in ("captions", "keywords", "labels", "augmented_captions"):
            value = data.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"field '{key}' must be a list of strings")
            lists[key] = list(value)
        for key in ("source", "split"):
            if not isinstance(data.get(key, ""), str):
                raise ValueError(f"field '{key}' must be a string")
        for key, texts in lists.items():  # paths may hold surrogates: undecodable file names
            for text in texts:
                _check_unicode(key, text)
        return cls(
            id=data["id"],
            audio=data["audio"],
            duration=float(duration),
            sample_rate=sample_rate,
            source=data.get("source", ""),
            split=data.get("split", ""),
            **lists,
        )

    def texts(self) -> list[str]:
        """Return the captions, or the labels as text (underscores to spaces) if none
        (blank captions and labels do not count)."""
        return self.caption_texts() or self.label_texts()

    def caption_texts(self) -> list[str]:
        """The captions that are not blank."""
        return [caption for caption in self.captions if caption.strip()]

    def label_texts(self) -> list[str]:
        """The labels as text (underscores to spaces), blank ones left out."""
        return [text for label in self.labels if (text := label_to_text(label))]


def label_to_text(label: str) -> str:
    """Turn a class label into a caption: ``"chirping_birds"`` -> ``"chirping birds"``."""
    return " ".join(label.replace("_", " ").split())


# ---------------------------------------------------------------------------- path helpers


def _relative_if_inside(audio: str, folder: Path) -> str:
    """Return ``audio`` relative to ``folder`` when it lies inside it, else absolute."""
    absolute = Path(os.path.abspath(audio))
    try:
        return absolute.relative_to(folder).as_posix()
    except ValueError:
        return str(absolute)


def _resolve(path: str, folder: Path) -> str:
    expanded = os.path.expanduser(path)
    if os.path.isabs(expanded):
        return expanded
    return os.path.normpath(folder / expanded)


# -------------------------------------------------------------------------------- manifests


def check_unique_ids(
    clips: Sequence[Clip], numbers: Sequence[int], *, where: str, unit: str
) -> None:
    """Refuse clips that share an id: the one rule :func:`write_manifest` and
    :func:`read_manifest` both apply, so ``prepare`` never writes what training refuses.

    Args:
        clips: The clips, in manifest order.
        numbers: Where each clip is, for the message (its line in a file, or its position).
        where: What the message is about, e.g. the manifest path or ``"cannot write X"``.
        unit: What ``numbers`` count, e.g. ``"line"`` or ``"clip"``.

    Raises:
        DataError: An id is used twice or more; the one line names the first such id, every
            ``unit`` it is on, and how many other ids repeat.
    """
    positions: dict[str, list[int]] = {}
    for clip, number in zip(clips, numbers, strict=True):
        positions.setdefault(clip.id, []).append(number)
    repeated = [(clip_id, at) for clip_id, at in positions.items() if len(at) > 1]
    if not repeated:
        return
    clip_id, at = repeated[0]
    shown = ", ".join(str(n) for n in at[:-1]) + f" and {at[-1]}"
    others = len(repeated) - 1
    more = f", and {others} more repeated id{'s' * (others > 1)}" if others else ""
    raise DataError(
        f"{where}: duplicate clip id '{clip_id}' ({unit}s {shown}){more}; ids must be unique"
    )


def split_names(clips: Iterable[Clip], wanted: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(found, absent)``: the splits the clips have, sorted, and those of ``wanted`` (in its
    order, once each) that none has (a ``--split`` typo that would quietly drop a split)."""
    found = sorted({clip.split for clip in clips})
    return found, [s for s in dict.fromkeys(wanted) if s not in found]


def read_manifest(path: str | Path) -> list[Clip]:
    """Read a JSON-lines manifest written by :func:`write_manifest`.

    Blank lines are ignored. Relative audio paths are resolved against the manifest's
    folder, so every returned :attr:`Clip.audio` is absolute.

    Args:
        path: The ``.jsonl`` file.

    Returns:
        The clips, in file order.

    Raises:
        DataError: The file is missing or not UTF-8 text, or a line is not a valid clip (the
            message names the file and line number), or two lines share an id (see
            :func:`check_unique_ids`).
    """
    path = Path(path)
    text = read_text(path, "manifest")
    folder = path.resolve().parent
    clips: list[Clip] = []
    lines: list[int] = []
    # split on "\n" only: captions may hold other line separators (U+2028...) unescaped
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            clip = Clip.from_dict(json.loads(line))
        except (json.JSONDecodeError, ValueError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise DataError(f"{path}:{lineno}: malformed manifest line: {reason}") from None
        clip.audio = _resolve(clip.audio, folder)
        clips.append(clip)
        lines.append(lineno)
    check_unique_ids(clips, lines, where=str(path), unit="line")
    return clips


def write_manifest(clips: Iterable[Clip], path: str | Path) -> None:
    """Write clips as a JSON-lines manifest, atomically.

    Audio paths inside the manifest's folder are stored relative to it (the folder can be
    moved as a whole); others are stored absolute.

    Args:
        clips: The clips to write.
        path: The ``.jsonl`` file to create or replace.

    Raises:
        DataError: Two clips share an id, which :func:`read_manifest` would refuse (see
            :func:`check_unique_ids`); nothing is written.
        OutputError: ``path`` cannot be written.
    """
    path = Path(path)
    clips = list(clips)
    check_unique_ids(clips, range(1, len(clips) + 1), where=f"cannot write {path}", unit="clip")
    folder = path.parent.resolve()
    lines = []
    for clip in clips:
        record = clip.to_dict()
        record["audio"] = _relative_if_inside(clip.audio, folder)
        lines.append(json.dumps(record, ensure_ascii=False))
    write_text(path, "".join(line + "\n" for line in lines))


# -------------------------------------------------------------------------------- datafiles


def read_datafile(path: str | Path, *, audio_dir: str | Path | None = None) -> list[Clip]:
    """Read an AudioSep / DCASE datafile ``{"data": [{"wav": ..., "caption": ...}, ...]}``.

    Entries that repeat a ``wav`` are grouped into one clip with several captions. Relative
    ``wav`` paths are resolved against ``audio_dir`` (default: the datafile's folder).
    Durations and sample rates are not probed (left at 0).

    Args:
        path: The JSON file.
        audio_dir: Folder that relative ``wav`` paths are relative to.

    Returns:
        One clip per distinct ``wav``, in order of first appearance; ``id`` is the file name
        without extension (suffixed ``-2``, ``-3``... when two files share a name).

    Raises:
        DataError: The file is missing, not UTF-8 text, not JSON, or not in the datafile
            layout.
    """
    path = Path(path)
    text = read_text(path, "datafile")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    entries = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected an object with a 'data' list")
    folder = Path(audio_dir).resolve() if audio_dir is not None else path.resolve().parent
    by_wav: dict[str, Clip] = {}
    ids: set[str] = set()
    for index, entry in enumerate(entries):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("wav"), str)
            or not isinstance(entry.get("caption"), str)
        ):
            raise DataError(f"{path}: entry {index} needs string fields 'wav' and 'caption'")
        wav = _resolve(entry["wav"], folder)
        clip = by_wav.get(wav)
        if clip is None:
            clip_id = unique_id(Path(wav).stem, ids)
            clip = Clip(id=clip_id, audio=wav)
            by_wav[wav] = clip
        caption = " ".join(entry["caption"].split())
        if caption and caption not in clip.captions:
            clip.captions.append(caption)
    return list(by_wav.values())


def unique_id(stem: str, taken: set[str]) -> str:
    """``stem``, or ``stem-2``, ``stem-3``... if taken; the result is added to ``taken``."""
    candidate, k = stem, 1
    while candidate in taken:
        k += 1
        candidate = f"{stem}-{k}"
    taken.add(candidate)
    return candidate


def write_datafile(clips: Iterable[Clip], path: str | Path) -> int:
    """Write clips as an AudioSep / DCASE datafile, one entry per caption, atomically.

    Clips without captions use their labels as text; clips with neither are left out.
    Paths are written absolute, since AudioSep resolves relative ones against its working
    directory.

    Args:
        clips: The clips to write.
        path: The ``.json`` file to create or replace.

    Returns:
        The number of entries written.
    """
    data = [
        {"wav": os.path.abspath(clip.audio), "caption": text}
        for clip in clips
        for text in clip.texts()
    ]
    write_text(path, json.dumps({"data": data}, ensure_ascii=False, indent=1) + "\n")
    return len(data)


# --------------------------------------------------------------------------- mixture lists


@dataclass
class MixtureRow:
    """One row of a mixture list.

    A DCASE row (``kind == "dcase"``) names a source and a noise clip by id and the SNR at
    which to mix them; a triplet row (``kind == "triplet"``) names a given mixture and its
    target by path (relative to the audio folder).

    Attributes:
        caption: The text query describing the target.
        source: Source clip: its id or its path under the audio folder, usually without
            extension (DCASE rows; see :func:`find_audio`).
        noise: Noise clip, named the same way (DCASE rows).
        snr: Source-to-noise ratio in dB (DCASE rows).
        mixture: Mixture file path (triplet rows).
        target: Target file path (triplet rows).
        extra: Any other columns of the list, kept so that outputs can carry them.
    """

    caption: str
    source: str | None = None
    noise: str | None = None
    snr: float | None = None
    mixture: str | None = None
    target: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        dcase = self.source is not None and self.noise is not None and self.snr is not None
        triplet = self.mixture is not None and self.target is not None
        if dcase == triplet:
            raise ValueError(
                "a MixtureRow needs either source, noise and snr, or mixture and target"
            )

    @property
    def kind(self) -> MixtureKind:
        """``"dcase"`` or ``"triplet"``."""
        return "dcase" if self.source is not None else "triplet"

    @property
    def id(self) -> str:
        """A name for the row's outputs: ``source__noise__<snr>dB`` or the mixture's stem."""
        if self.kind == "dcase":
            return f"{self.source}__{self.noise}__{_format_snr(self.snr)}dB"
        return Path(str(self.mixture)).stem

    def column_values(self) -> dict[str, str]:
        """The standard columns of the row's kind, as written in a mixture list."""
        if self.kind == "dcase":
            return {
                "source": str(self.source),
                "noise": str(self.noise),
                "snr": _format_snr(self.snr),
                "caption": self.caption,
            }
        return {"mixture": str(self.mixture), "target": str(self.target), "caption": self.caption}

    def values(self, columns: Sequence[str]) -> tuple[str, ...]:
        """The row's value for each of ``columns`` (standard ones, then ``extra``, else "")."""
        known = self.column_values()
        return tuple(known[c] if c in known else self.extra.get(c, "") for c in columns)


def _format_snr(snr: float | None) -> str:
    value = float(snr or 0.0)
    return str(int(value)) if value.is_integer() else repr(value)


def read_mixture_list(path: str | Path) -> list[MixtureRow]:
    """Read a mixture list, detecting its format from the CSV header.

    ``source,noise,snr,caption`` gives DCASE rows; ``mixture,target,caption`` gives triplet
    rows. Other columns go to :attr:`MixtureRow.extra`.

    Args:
        path: The CSV file.

    Returns:
        The rows, in file order.

    Raises:
        DataError: The file is missing, empty or not UTF-8 text, the header fits neither
            format, or a row is malformed (the message names the line).
    """
    path = Path(path)
    lines = csv_records(path, read_text(path, "mixture list"))
    header = [name.strip() for name in csv_header(lines)]
    if not header:
        raise DataError(f"{path}: empty mixture list")
    if set(DCASE_COLUMNS) <= set(header):
        kind: MixtureKind = "dcase"
        known: tuple[str, ...] = DCASE_COLUMNS
    elif set(TRIPLET_COLUMNS) <= set(header):
        kind, known = "triplet", TRIPLET_COLUMNS
    else:
        raise DataError(
            f"{path}: unknown mixture list header {','.join(header)!r}; expected "
            f"{','.join(DCASE_COLUMNS)!r} or {','.join(TRIPLET_COLUMNS)!r}"
        )
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        raise DataError(f"{path}: column {twice[0]!r} appears twice in the header")
    rows: list[MixtureRow] = []
    for lineno, values in lines:
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            raise DataError(f"{path}:{lineno}: expected {len(header)} columns, found {len(values)}")
        record = dict(zip(header, values, strict=True))
        extra = {k: v for k, v in record.items() if k not in known}
        caption = record["caption"].strip()
        if not caption:
            raise DataError(f"{path}:{lineno}: empty caption")
        if kind == "dcase":
            source, noise = record["source"].strip(), record["noise"].strip()
            if not source or not noise:
                raise DataError(f"{path}:{lineno}: empty source or noise id")
            try:
                snr = float(record["snr"])
            except ValueError:
                snr = math.nan
            if not math.isfinite(snr):
                raise DataError(f"{path}:{lineno}: snr {record['snr']!r} is not a finite number")
            if abs(snr) > MAX_ABS_SNR_DB:
                raise DataError(
                    f"{path}:{lineno}: snr {record['snr']} dB is outside "
                    f"-{MAX_ABS_SNR_DB:g}..{MAX_ABS_SNR_DB:g} dB"
                )
            rows.append(MixtureRow(caption, source=source, noise=noise, snr=snr, extra=extra))
        else:
            mixture, target = record["mixture"].strip(), record["target"].strip()
            if not mixture or not target:
                raise DataError(f"{path}:{lineno}: empty mixture or target path")
            rows.append(MixtureRow(caption, mixture=mixture, target=target, extra=extra))
    return rows


def csv_records(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """``(line number, values)`` of each CSV record of ``text`` (read from ``path``).

    Strict: a quote left open (which would swallow the rest of the file into one field), a
    stray quote or a field over the csv module's size limit is a DataError naming the line.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        for values in reader:
            yield reader.line_num, values
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: not a valid CSV file: {exc}") from None


def csv_header(records: Iterator[tuple[int, list[str]]]) -> list[str]:
    """The first record of ``records`` that is not blank (blank lines may precede a
    header); ``[]`` when there is none."""
    for _, values in records:
        if any(v.strip() for v in values):
            return values
    return []


def write_mixture_list(rows: Sequence[MixtureRow], path: str | Path) -> None:
    """Write a mixture list (with header), atomically.

    All rows must be of one kind. Extra columns follow the standard ones, in order of first
    appearance; integral SNRs are written without a decimal point.

    Args:
        rows: The rows to write.
        path: The CSV file to create or replace.

    Raises:
        DataError: The rows mix DCASE and triplet kinds, or a file name could not be read
            back as written (spaces at its ends, which the reader strips, or a line break).
        OutputError: ``path`` cannot be written.
    """
    for row in rows:
        for name in (row.source, row.noise, row.mixture, row.target):
            if name is not None and (name != name.strip() or "\r" in name or "\n" in name):
                raise DataError(
                    f"cannot write the file name {name!r} into a mixture list: spaces at its "
                    "ends or a line break would not read back as written; rename the file"
                )
    kinds = {row.kind for row in rows}
    if len(kinds) > 1:
        raise DataError("cannot write DCASE and triplet rows into one mixture list")
    kind = kinds.pop() if kinds else "dcase"
    columns = list(DCASE_COLUMNS if kind == "dcase" else TRIPLET_COLUMNS)
    for row in rows:
        columns.extend(k for k in row.extra if k not in columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    caption = columns.index("caption")
    for row in rows:
        values = list(row.values(columns))
        values[caption] = " ".join(str(values[caption]).split())  # no line break (a query's own)
        writer.writerow(values)
    write_text(path, buffer.getvalue())


def find_audio(audio_dir: str | Path, name: str) -> Path:
    """Find the audio file ``name`` in ``audio_dir``, with or without an extension.

    ``name`` is a path relative to ``audio_dir`` (``"dog_01"``, ``"sub/dog_01"``,
    ``"sub/dog_01.flac"``). Named with an audio extension, that file is used when it exists;
    otherwise ``name`` with each of :data:`AUDIO_EXTENSIONS` appended is tried (so
    ``"dog_01"`` finds ``dog_01.wav`` or ``dog_01.flac``, but refuses to choose when both
    exist), then ``name`` as given.

    Args:
        audio_dir: Folder to look in.
        name: A clip id or a file name, possibly with subfolders.

    Returns:
        The file found.

    Raises:
        DataError: No such file exists, or several files have that name and differ only by
            their audio extension.
    """
    base = Path(audio_dir) / name
    if not str(name).strip() or not base.name:  # "", "/": no file name to look for
        raise DataError(f"no audio file for {name!r} in {audio_dir}: that is not a file name")
    if base.suffix.lower() in AUDIO_EXTENSIONS and base.is_file():
        return base
    found = [base.with_name(base.name + ext) for ext in AUDIO_EXTENSIONS]
    found = [candidate for candidate in found if candidate.is_file()]
    if len(found) > 1:
        raise DataError(
            f"audio file for '{name}' in {audio_dir} is ambiguous: "
            f"{', '.join(p.name for p in found)}; name it with its extension"
        )
    if found:
        return found[0]
    if base.is_file():
        return base
    raise DataError(
        f"no audio file for '{name}' in {audio_dir}: not found as named nor with "
        f"{', '.join(AUDIO_EXTENSIONS)}"
    )


def audio_names(
    paths: Sequence[str | Path], *, folder: str | Path | None = None
) -> tuple[Path, list[str]]:
    """Name audio files for a mixture list, so that :func:`find_audio` finds exactly them.

    Each name is the file's path under ``folder`` (``/`` separated), without its extension
    unless :func:`find_audio` would then find another file or refuse to choose (``x.wav``
    beside ``x.flac`` stays ``x.wav``; a missing file is named without). Files all in one
    folder, each with its own stem, are thus named by stem alone, as DCASE lists name clips.

    Args:
        paths: The audio files (at least one).
        folder: The folder to name them under; every file must lie inside it. Default:
            the deepest folder holding them all.

    Returns:
        The folder to pass as ``audio_dir`` (absolute), and the name of each file, in order.

    Raises:
        ValueError: ``paths`` is empty, or a file lies outside ``folder``.
    """
    if not paths:
        raise ValueError("audio_names needs at least one path")
    files = [Path(os.path.abspath(p)) for p in paths]
    root = Path(os.path.abspath(folder or os.path.commonpath([p.parent for p in files])))
    names = []
    for path in files:
        name = path.relative_to(root).as_posix()
        bare = name[: -len(path.suffix)] if path.suffix.lower() in AUDIO_EXTENSIONS else name
        try:
            unique = find_audio(root, bare) == path
        except DataError:  # ambiguous, or a missing file, which evaluate will name as usual
            unique = not path.is_file()
        names.append(bare if unique else name)
    return root, names
