"""Bad input, command by command: one line on stderr, exit code 2, no traceback, nothing written.

Every row of :data:`CASES` runs the real command line in-process, in a fresh folder that
holds a few valid inputs (see :func:`_base_files`: ``good.wav``, ``audio/{a,b,c,d}.wav``,
``list.csv``, ``manifest.jsonl``, ``train.yaml``), plus whatever the row's setup writes.
The working directory is that folder, so relative paths in ``argv`` name those files and
default output locations (``separated/``, ``evaluation/``, ``runs/``) land in it.

Each row checks the README's promises for bad input:

1. exactly one non-empty line on stderr, ``querysep: error: ...``, holding ``expect``;
2. exit code 2;
3. no traceback (no uncaught exception, no "Traceback" in the output);
4. nothing written: no file or folder appears, and no existing file changes or goes away.

To add a row, append ``Case(id, argv, setup, expect)`` to :data:`CASES`:

* ``id``: a short unique name (the pytest id);
* ``argv``: the arguments after ``querysep``, as one string split like a shell does
  (``"separate good.wav -q ''"``) or as a list (for arguments a shell line cannot hold);
* ``setup``: ``None``, or a function of the folder (a :class:`~pathlib.Path`) that writes
  the bad files; :func:`file` makes one for a single file (text is written as UTF-8,
  bytes as they are); it runs after the valid inputs are written, so it may replace them;
* ``expect``: a substring of the error line (after ``querysep: error:``).

For example ``Case("yaml-bad-n-fft", "train train.yaml model.network.config.n_fft=many",
None, "n_fft")``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

from querysep.cli import app
from querysep.data.manifest import Clip, MixtureRow, write_manifest, write_mixture_list
from querysep.pretrained import build_test_tiny
from querysep.testing import synth
from querysep.testing.clap import tiny_roberta_tokenizer

SR = 16000
Setup = Callable[[Path], object]


class Case(NamedTuple):
    """One bad invocation: see the module docstring."""

    id: str
    argv: str | Sequence[str]
    setup: Setup | None
    expect: str

    def args(self) -> list[str]:
        return shlex.split(self.argv) if isinstance(self.argv, str) else list(self.argv)


# ------------------------------------------------------------------------- valid inputs

TINY_NETWORK = {
    "type": "resunet",
    "config": {
        "sample_rate": SR,
        "n_fft": 256,
        "hop_length": 64,
        "channels": [8, 16, 16],
        "pre_channels": 8,
        "downsample": [[2, 2], [2, 2], [1, 2]],
    },
}


def _base_files(root: Path) -> None:
    """The valid inputs every case starts from (about 20 ms to write)."""
    synth.write_wav(root / "good.wav", synth.scene(0.5, SR, seed=1), SR)
    (root / "audio").mkdir()
    clips = []
    for k, (name, label) in enumerate([("a", "dog"), ("b", "rain"), ("c", "cat"), ("d", "wind")]):
        path = synth.write_wav(root / "audio" / f"{name}.wav", synth.scene(0.3, SR, seed=k), SR)
        clips.append(Clip(id=name, audio=str(path), labels=[label], split="train"))
    write_manifest(clips, root / "manifest.jsonl")
    rows = [
        MixtureRow("a dog", source="a", noise="b", snr=0.0),
        MixtureRow("a cat", source="c", noise="d", snr=5.0),
    ]
    write_mixture_list(rows, root / "list.csv")
    config = {
        "model": {"network": TINY_NETWORK, "text_encoder": {"kind": "hashing", "dim": 32}},
        "data": {
            "train": [{"manifest": str(root / "manifest.jsonl")}],
            "validation": None,
            "segment_seconds": 0.25,
            "batch_size": 2,
            "num_workers": 0,
            "preload": False,
        },
        "optim": {"lr": 1e-3, "warmup_steps": 0},
        "trainer": {
            "output_dir": str(root / "runs" / "bad"),
            "max_steps": 2,
            "accelerator": "cpu",
            "devices": 1,
            "progress_bar": False,
        },
    }
    (root / "train.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


# ------------------------------------------------------------------------- setup helpers


def file(name: str, content: str | bytes) -> Setup:
    """A setup writing one file (``str`` as UTF-8, ``bytes`` as is; parents created)."""

    def setup(root: Path) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode("utf-8") if isinstance(content, str) else content
        path.write_bytes(data)

    return setup


def both(*setups: Setup) -> Setup:
    """A setup running several others in turn."""

    def setup(root: Path) -> None:
        for step in setups:
            step(root)

    return setup


def _model_folder(
    name: str, network: dict[str, object] | None = None, text_encoder: object = None
) -> Setup:
    """A test-tiny model folder; ``network`` updates its network config, ``text_encoder``
    replaces its text encoder config."""

    def setup(root: Path) -> None:
        import json

        build_test_tiny().save_pretrained(root / name)
        cfg_path = root / name / "config.json"
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
        config["network"]["config"].update(network or {})
        if text_encoder is not None:
            config["text_encoder"] = text_encoder
        cfg_path.write_text(json.dumps(config), encoding="utf-8")

    return setup


def _nan_clip(root: Path) -> None:
    samples = np.full(SR // 4, 0.1, np.float32)
    samples[100] = np.nan
    sf.write(root / "audio" / "a.wav", samples, SR, subtype="FLOAT")


def _long_nan_clip(root: Path) -> None:
    """``long.wav``: 61 s (long enough for a progress bar) with a NaN early on."""
    samples = np.full(61 * SR, 0.1, np.float32)
    samples[SR] = np.nan
    sf.write(root / "long.wav", samples, SR, subtype="FLOAT")


def _model_folder_field(name: str, key: str, value: object) -> Setup:
    """A test-tiny model folder whose ``config.json`` has ``key`` set to ``value``."""

    def setup(root: Path) -> None:
        import json

        build_test_tiny().save_pretrained(root / name)
        cfg_path = root / name / "config.json"
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
        config[key] = value
        cfg_path.write_text(json.dumps(config), encoding="utf-8")

    return setup


def _torch_file(name: str, tensors: dict[str, list[float]]) -> Setup:
    """A setup writing ``torch.save`` of a dict of 1-D tensors."""

    def setup(root: Path) -> None:
        torch.save({k: torch.tensor(v) for k, v in tensors.items()}, root / name)

    return setup


def _uncaptioned_manifest(name: str) -> Setup:
    """A setup writing a manifest of the base files' clips with no caption and no label."""

    def setup(root: Path) -> None:
        clips = [Clip(id=i, audio=str(root / "audio" / f"{i}.wav"), split="train") for i in "abcd"]
        write_manifest(clips, root / name)

    return setup


def _captioned_manifest(name: str, captions: dict[str, str]) -> Setup:
    """A setup writing a manifest of ``audio/<id>.wav`` clips, one label each, with these
    captions (the ids must be among the base files' a, b, c, d)."""

    def setup(root: Path) -> None:
        clips = [
            Clip(
                id=i,
                audio=str(root / "audio" / f"{i}.wav"),
                labels=[f"label-{i}"],
                captions=[text],
                split="train",
            )
            for i, text in captions.items()
        ]
        write_manifest(clips, root / name)

    return setup


def _old_run(root: Path) -> None:
    """A finished run that a failed ``--restart`` must leave alone."""
    file("runs/bad/checkpoints/last.ckpt", b"an earlier run's checkpoint")(root)
    file("runs/bad/config.yaml", "earlier: config\n")(root)


LATIN1 = "caf\xe9".encode("latin-1")  # not UTF-8
BINARY = bytes(range(256)) * 4  # NUL bytes and invalid UTF-8
DCASE_HEADER = "source,noise,snr,caption\n"


# -------------------------------------------------------------------------------- the table

CASES: list[Case] = [
    # --- usage errors, parsed by typer/click, on every subcommand
    Case(
        "usage-not-a-number",
        "separate good.wav -q dog --segment-seconds abc",
        None,
        "'--segment-seconds'",
    ),
    Case(
        "usage-unknown-option", "separate good.wav -q dog --bogus", None, "No such option: --bogus"
    ),
    Case("usage-missing-option", "separate good.wav", None, "Missing option '--query'"),
    Case("usage-missing-argument", "train export", None, "Missing argument"),
    Case(
        "usage-invalid-choice",
        "mixtures make manifest.jsonl -n 3 -o mx.csv --caption bad",
        None,
        "'--caption'",
    ),
    Case("usage-int-option", "mixtures make manifest.jsonl -n many -o mx.csv", None, "'-n'"),
    Case("usage-unknown-command", "frobnicate", None, "No such command 'frobnicate'"),
    Case("usage-unknown-subcommand", "mixtures frobnicate", None, "No such command"),
    Case("usage-root-option", "--bogus models", None, "No such option: --bogus"),
    Case(
        "usage-evaluate-option",
        "evaluate --mixtures list.csv --audio-dir audio --threads 2",
        None,
        "--threads",
    ),
    Case(
        "usage-bad-parameter-in-command",
        "separate good.wav -q dog -m test-tiny --format mp3",
        None,
        "'--format'",
    ),
    # --- text files that are not UTF-8
    Case(
        "latin1-mixture-list",
        "evaluate --mixtures l1.csv --audio-dir audio -m mixture",
        file("l1.csv", DCASE_HEADER.encode() + b"a,b,0," + LATIN1 + b"\n"),
        "l1.csv is not UTF-8 text (byte 0xe9 on line 2)",
    ),
    Case(
        "mixture-list-quote-never-closed",
        "evaluate --mixtures open.csv --audio-dir audio -m mixture",
        file("open.csv", DCASE_HEADER + 'a,b,0,"a dog\nc,d,5,a cat\n'),
        "open.csv:3: not a valid CSV file: unexpected end of data",
    ),
    Case(
        "pair-list-quote-never-closed",
        "ats --list pairs.csv -o out.csv",
        file("pairs.csv", 'audio,caption\naudio/a.wav,"a dog\naudio/b.wav,rain\n'),
        "pairs.csv:3: not a valid CSV file",
    ),
    Case(
        "pair-list-column-twice",
        "ats --list pairs.csv -o out.csv",
        file("pairs.csv", "audio,caption,audio\naudio/a.wav,a dog,audio/b.wav\n"),
        "column 'audio' appears twice",
    ),
    Case(
        "pair-list-field-too-large",
        "ats --list pairs.csv -o out.csv",
        file("pairs.csv", "audio,caption\naudio/a.wav," + "x" * 140_000 + "\n"),
        "pairs.csv:2: not a valid CSV file: field larger than field limit",
    ),
    Case(
        "query-not-utf8",
        ["separate", "good.wav", "-q", "dog \udcff bark", "-m", "test-tiny"],
        None,
        "is not valid UTF-8 text",
    ),
    Case(
        "binary-mixture-list",
        "evaluate --mixtures bin.csv --audio-dir audio -m mixture",
        file("bin.csv", BINARY),
        "bin.csv is not UTF-8 text",
    ),
    Case(
        "utf16-mixture-list",
        "evaluate --mixtures u16.csv --audio-dir audio -m mixture",
        file("u16.csv", (DCASE_HEADER + "a,b,0,x\n").encode("utf-16")),
        "u16.csv is not UTF-8 text",
    ),
    Case(
        "latin1-manifest",
        "mixtures make l1.jsonl -n 3 -o mx.csv",
        file("l1.jsonl", b'{"id": "a", "audio": "' + LATIN1 + b'.wav"}\n'),
        "l1.jsonl is not UTF-8 text",
    ),
    Case(
        "binary-manifest",
        "mixtures make bin.jsonl -n 3 -o mx.csv",
        file("bin.jsonl", BINARY),
        "bin.jsonl is not UTF-8 text",
    ),
    Case(
        "latin1-captions-csv",
        "prepare folder audio -o out.jsonl --captions-csv caps.csv",
        file("caps.csv", b"file_name,caption\na.wav," + LATIN1 + b"\n"),
        "caps.csv is not UTF-8 text",
    ),
    Case(
        "latin1-captions-txt",
        "prepare folder audio -o out.jsonl",
        file("audio/a.txt", LATIN1 + b" sounds\n"),
        "a.txt is not UTF-8 text",
    ),
    Case(
        "binary-per-clip-csv",
        "evaluate --mixtures list.csv --audio-dir audio -m mixture -o ev",
        file("ev/per_clip.csv", BINARY),
        "per_clip.csv is not UTF-8 text",
    ),
    Case(
        "latin1-train-manifest",
        "train train.yaml data.train.0.manifest=l1.jsonl",
        file("l1.jsonl", LATIN1),
        "l1.jsonl is not UTF-8 text",
    ),
    # --- a folder where a file is expected, a file where a folder is expected
    Case("folder-as-audio", "separate audio -q dog -m test-tiny", None, "folder"),
    Case(
        "folder-as-mixture-list",
        "evaluate --mixtures audio --audio-dir audio -m mixture",
        None,
        "mixture list is a folder",
    ),
    Case("folder-as-manifest", "mixtures make audio -n 3 -o mx.csv", None, "manifest is a folder"),
    Case(
        "folder-as-captions-csv",
        "prepare folder audio -o out.jsonl --captions-csv audio",
        None,
        "is a folder",
    ),
    Case(
        "folder-as-model-weights",
        "separate good.wav -q dog -m audio",
        None,
        "not a querysep model folder",
    ),
    Case(
        "file-as-audio-dir",
        "evaluate --mixtures list.csv --audio-dir good.wav -m mixture",
        None,
        "audio folder not found: good.wav",
    ),
    Case(
        "file-as-dataset-root",
        "prepare esc50 good.wav -o out.jsonl",
        None,
        "dataset folder not found",
    ),
    Case(
        "file-in-the-path",
        "evaluate --mixtures good.wav/list.csv --audio-dir audio -m mixture",
        None,
        "Not a directory",
    ),
    Case("file-as-model", "separate good.wav -q dog -m good.wav", None, "is a file"),
    Case(
        "name-too-long",
        ["mixtures", "make", "m" * 5000 + ".jsonl", "-n", "3", "-o", "mx.csv"],
        None,
        "too long",
    ),
    # --- empty or malformed files
    Case(
        "empty-audio", "separate empty.wav -q dog -m test-tiny", file("empty.wav", b""), "empty.wav"
    ),
    Case(
        "one-sample-audio",
        "separate one.wav -q dog -m test-tiny",
        lambda root: sf.write(root / "one.wav", np.full(1, 0.5, np.float32), SR),
        "one.wav: 1 sample at 16000 Hz (0.0625 ms) is too short to separate",
    ),
    Case(
        "too-short-audio",
        "separate short.wav -q dog -m test-tiny --residual",
        lambda root: sf.write(root / "short.wav", np.full(SR // 10 - 1, 0.5, np.float32), SR),
        "at least 0.1 s is needed",
    ),
    Case(
        "nan-audio-in-list",
        "evaluate --mixtures list.csv --audio-dir audio -m mixture -o ev --no-progress",
        _nan_clip,
        "NaN",
    ),
    Case(  # was a progress bar's \r frames before the error line, in a log file
        "nan-audio-long-enough-for-a-progress-bar",
        "separate long.wav -q dog -m test-tiny --no-ats",
        _long_nan_clip,
        "long.wav: contains NaN or Inf samples (first at 1.000 s",
    ),
    Case(
        "corrupt-audio-in-list",
        "evaluate --mixtures list.csv --audio-dir audio -m mixture -o ev --no-progress",
        file("audio/a.wav", b"RIFF\0\0\0\0WAVEjunk"),
        "a.wav",
    ),
    Case(
        "resume-at-another-rate",
        "evaluate --mixtures list.csv --audio-dir audio -m mixture -o ev --no-progress",
        both(
            file("ev/settings.json", '{"sample_rate": 8000}'),
            file(
                "ev/per_clip.csv",
                "source,noise,snr,caption,system,sdr,sdri,si_sdr,ats\n"
                "a,b,0,a dog,mixture,1.0,0.0,1.0,0.1\n",
            ),
        ),
        "computed at 8000 Hz, not 16000 Hz",
    ),
    Case(
        "corrupt-settings-file",
        "evaluate --mixtures list.csv --audio-dir audio -m mixture -o ev --no-progress",
        file("ev/settings.json", "[1, 2"),
        "settings.json is corrupt",
    ),
    Case(
        "root-as-clip-id",
        "evaluate --mixtures r.csv --audio-dir audio -m mixture",
        file("r.csv", DCASE_HEADER + "/,b,0,x\n"),
        "that is not a file name",
    ),
    Case(
        "missing-audio-in-list",
        "evaluate --mixtures list.csv --audio-dir audio -m mixture",
        file("list.csv", DCASE_HEADER + "a,zz,0,x\n"),
        "no audio file for 'zz'",
    ),
    Case(
        "empty-mixture-list",
        "evaluate --mixtures e.csv --audio-dir audio -m mixture",
        file("e.csv", ""),
        "empty mixture list",
    ),
    Case(
        "header-only-mixture-list",
        "evaluate --mixtures h.csv --audio-dir audio -m mixture",
        file("h.csv", DCASE_HEADER),
        "no rows",
    ),
    Case(
        "unknown-columns",
        "evaluate --mixtures u.csv --audio-dir audio -m mixture",
        file("u.csv", "src,noise,snr,caption\na,b,0,x\n"),
        "unknown mixture list header",
    ),
    Case(
        "column-twice",
        "evaluate --mixtures d.csv --audio-dir audio -m mixture",
        file("d.csv", "source,noise,snr,caption,caption\na,b,0,x,y\n"),
        "'caption' appears twice",
    ),
    Case(
        "short-row",
        "evaluate --mixtures s.csv --audio-dir audio -m mixture",
        file("s.csv", DCASE_HEADER + "a,b,0\n"),
        "s.csv:2: expected 4 columns",
    ),
    Case(
        "snr-not-a-number",
        "evaluate --mixtures n.csv --audio-dir audio -m mixture",
        file("n.csv", DCASE_HEADER + "a,b,loud,x\n"),
        "snr 'loud'",
    ),
    Case(
        "snr-nan",
        "evaluate --mixtures n.csv --audio-dir audio -m mixture",
        file("n.csv", DCASE_HEADER + "a,b,nan,x\n"),
        "not a finite number",
    ),
    Case(
        "snr-absurd",
        "evaluate --mixtures n.csv --audio-dir audio -m mixture",
        file("n.csv", DCASE_HEADER + "a,b,4000,x\n"),
        "outside -100..100 dB",
    ),
    Case(
        "caption-too-long",
        "evaluate --mixtures c.csv --audio-dir audio -m test-tiny -o ev",
        file("c.csv", DCASE_HEADER + "a,b,0," + "x" * 5000 + "\n"),
        "too long",
    ),
    Case(
        "caption-over-csv-limit",
        "evaluate --mixtures c.csv --audio-dir audio -m mixture",
        file("c.csv", DCASE_HEADER + "a,b,0," + "x" * 200_000 + "\n"),
        "not a valid CSV file",
    ),
    Case("empty-manifest", "mixtures make e.jsonl -n 3 -o mx.csv", file("e.jsonl", ""), "no clips"),
    Case(
        "manifest-not-json-lines",
        "mixtures make list.csv -n 3 -o mx.csv",
        None,
        "list.csv:1: malformed manifest line",
    ),
    Case(
        "captions-csv-missing-column",
        "prepare folder audio -o out.jsonl --captions-csv list.csv",
        None,
        "missing column(s) file_name",
    ),
    Case(
        "prepare-finds-nothing",
        "prepare folder audio -o out.jsonl --captions-csv caps.csv",
        file("caps.csv", "file_name,caption\nzz.wav,x\n"),
        "no clips found for recipe folder in audio; skipped 1",
    ),
    Case(
        "prepare-over-its-captions-csv",
        "prepare folder audio -o caps.csv --captions-csv caps.csv",
        file("caps.csv", "file_name,caption\na.wav,a dog\n"),
        "cannot write caps.csv: it is the input caps.csv",
    ),
    Case(
        "prepare-over-a-dataset-file",
        "prepare folder audio -o audio/a.wav",
        None,
        "cannot write audio/a.wav: it is a file of the dataset in audio",
    ),
    Case(
        "train-seed-out-of-range",
        "train train.yaml trainer.seed=-1",
        None,
        "trainer.seed",
    ),
    # --- absurd numbers
    Case("num-zero", "mixtures make manifest.jsonl -n 0 -o mx.csv", None, "at least 1, got 0"),
    Case(
        "num-negative", "mixtures make manifest.jsonl -n -5 -o mx.csv", None, "at least 1, got -5"
    ),
    Case(
        "num-huge", "mixtures make manifest.jsonl -n 100000000 -o mx.csv", None, "at most 1,000,000"
    ),
    Case(
        "snr-range-inverted",
        "mixtures make manifest.jsonl -n 3 -o mx.csv --snr-min 10 --snr-max -10",
        None,
        "greater than",
    ),
    Case(
        "snr-range-absurd",
        "mixtures make manifest.jsonl -n 3 -o mx.csv --snr-min 1000 --snr-max 2000",
        None,
        "-100..100 dB",
    ),
    Case("seed-negative", "mixtures make manifest.jsonl -n 3 -o mx.csv --seed -1", None, "seed"),
    Case(
        "segment-zero",
        "separate good.wav -q dog -m test-tiny --segment-seconds 0",
        None,
        "segment length",
    ),
    Case(
        "segment-nan",
        "separate good.wav -q dog -m test-tiny --segment-seconds nan",
        None,
        "segment length",
    ),
    Case(
        "segment-inf",
        "separate good.wav -q dog -m test-tiny --segment-seconds inf",
        None,
        "segment length",
    ),
    Case(
        "overlap-not-shorter",
        "separate good.wav -q dog -m test-tiny --segment-seconds 2 --overlap-seconds 2",
        None,
        "overlap",
    ),
    Case(
        "overlap-negative",
        "separate good.wav -q dog -m test-tiny --overlap-seconds -1",
        None,
        "overlap",
    ),
    Case("threads-zero", "separate good.wav -q dog -m test-tiny --threads 0", None, "'--threads'"),
    Case(
        "evaluate-segment-nan",
        "evaluate --mixtures list.csv --audio-dir audio -m test-tiny --segment-seconds nan",
        None,
        "segment length",
    ),
    Case(
        "evaluate-limit-zero",
        "evaluate --mixtures list.csv --audio-dir audio -m mixture --limit 0",
        None,
        "limit",
    ),
    Case(
        "evaluate-rate-zero",
        "evaluate --mixtures list.csv --audio-dir audio -m test-tiny --sample-rate 0",
        None,
        "sample rate 0 Hz",
    ),
    # --- queries
    Case("query-empty", "separate good.wav -q '' -m test-tiny", None, "empty query"),
    Case("query-blank", "separate good.wav -q ' \t ' -m test-tiny", None, "empty query"),
    Case(
        "query-100kB",
        ["separate", "good.wav", "-q", "dog " * 25_000, "-m", "test-tiny"],
        None,
        "too long",
    ),
    # --- models and devices
    Case(
        "model-unknown",
        "separate good.wav -q dog -m no-such-model",
        None,
        "unknown model 'no-such-model'",
    ),
    Case("model-empty-name", "separate good.wav -q dog -m ''", None, "empty model name"),
    Case(
        "model-config-wrong-type",
        "separate good.wav -q dog -m bad-model",
        _model_folder("bad-model", network={"n_fft": "many"}),
        "n_fft: expected an integer",
    ),
    Case(  # 100000 x 100000 x 3 x 3 weights: 360 GB, more than any machine here holds
        "model-config-absurd-size",
        "separate good.wav -q dog -m bad-model",
        _model_folder("bad-model", network={"channels": [8, 16, 100000]}),
        "cannot build the network it describes",
    ),
    Case(
        "model-embedding-table-garbage",
        "separate good.wav -q dog -m bad-model",
        both(
            file("table.safetensors", BINARY),
            _model_folder(
                "bad-model", text_encoder={"kind": "precomputed", "path": "table.safetensors"}
            ),
        ),
        "cannot read embedding table table.safetensors",
    ),
    Case(
        "evaluate-model-unknown",
        "evaluate --mixtures list.csv --audio-dir audio -m no-such-model",
        None,
        "unknown model",
    ),
    Case(
        "evaluate-system-twice",
        "evaluate --mixtures list.csv --audio-dir audio -m mixture -m mixture",
        None,
        "two systems are named 'mixture'",
    ),
    Case(
        "threads-absurd",
        "separate good.wav -q dog -m test-tiny --threads 100000",
        None,
        "--threads",
    ),
    Case(
        "device-unknown",
        "separate good.wav -q dog -m test-tiny --device tpu",
        None,
        "unknown device 'tpu'",
    ),
    Case(
        "device-missing-gpu",
        "separate good.wav -q dog -m test-tiny --device cuda:99",
        None,
        "was asked for but",
    ),
    # --- outputs that would destroy inputs or earlier work
    Case(  # was a segfault: libvorbis crashes above 200 kHz
        "vorbis-output-above-200khz",
        "separate hi.wav -q dog -m test-tiny -o x.ogg",
        lambda root: sf.write(root / "hi.wav", np.full(25600, 0.1, np.float32), 256000),
        "cannot write x.ogg: Ogg Vorbis takes at most 200000 Hz, not 256000 Hz",
    ),
    Case(  # was a folder named "-" holding the output
        "output-is-standard-output",
        "separate good.wav -q dog -m test-tiny -o -",
        None,
        "--output -: querysep does not write audio to standard output",
    ),
    Case(  # was the current folder: Path("") is "."
        "output-is-empty",
        "separate good.wav -q dog -m test-tiny -o ''",
        None,
        "--output is empty: give a file or a folder",
    ),
    # an empty path of any other command (each was the current folder: read or written)
    Case(
        "evaluate-output-empty",
        "evaluate --mixtures list.csv --audio-dir audio -m mixture -o ''",
        None,
        "'--output' / '-o': is empty: give a file or a folder",
    ),
    Case(
        "evaluate-audio-dir-empty",
        "evaluate --mixtures list.csv --audio-dir '' -m mixture -o ev",
        None,
        "'--audio-dir': is empty",
    ),
    Case("ats-output-empty", "ats good.wav -q dog -o ''", None, "'--output' / '-o': is empty"),
    Case("mixtures-output-empty", "mixtures make manifest.jsonl -n 3 -o ''", None, "is empty"),
    Case("separate-input-empty", "separate good.wav '' -q dog -m test-tiny", None, "'inputs': is"),
    Case("train-config-empty", "train ''", None, "'config': is empty"),
    Case(
        "output-is-the-input",
        "separate good.wav -q dog -m test-tiny -o good.wav",
        None,
        "it is the input good.wav",
    ),
    Case(
        "mixtures-output-is-the-manifest",
        "mixtures make manifest.jsonl -n 2 -o manifest.jsonl",
        None,
        "it is the input manifest.jsonl",
    ),
    Case(
        "augment-output-is-the-manifest",
        "augment manifest.jsonl -o manifest.jsonl --backend offline",
        None,
        "it is the input manifest.jsonl",
    ),
    Case(  # named the clips under / and failed only in evaluate
        "mixtures-manifest-clip-missing",
        "mixtures make gone.jsonl -n 1 -o mx.csv",
        file(
            "gone.jsonl",
            '{"id": "a", "audio": "/nowhere/a.wav", "labels": ["dog"]}\n'
            '{"id": "b", "audio": "/nowhere/b.wav", "labels": ["rain"]}\n',
        ),
        "is missing (moved since the manifest was written? run querysep prepare again)",
    ),
    Case(  # a clip of the manifest was replaced by the list's text
        "mixtures-output-is-a-clip-of-the-manifest",
        "mixtures make manifest.jsonl -n 2 -o audio/a.wav",
        None,
        "cannot write audio/a.wav: it is the input",
    ),
    Case(
        "augment-output-is-a-clip-of-the-manifest",
        "augment manifest.jsonl -o audio/b.wav --backend offline",
        None,
        "cannot write audio/b.wav: it is the input",
    ),
    Case(
        "augment-empty-model-name",
        "augment manifest.jsonl -o out.jsonl --backend openai --model ' ' --dry-run",
        None,
        "--model must name the endpoint's model, e.g. gpt-4, got ' '",
    ),
    Case(
        "augment-cache-is-not-a-cache",
        "augment manifest.jsonl -o out.jsonl --backend offline --cache notes.txt",
        file("notes.txt", "my notes, no final newline"),
        "notes.txt:1 is not a cache record",
    ),
    Case(  # ignored when no row loads a model
        "evaluate-baselines-only-bad-device",
        "evaluate --mixtures list.csv --audio-dir audio -m mixture --no-ats --device bogus",
        None,
        "unknown device 'bogus'",
    ),
    Case(
        "evaluate-baselines-only-bad-precision",
        "evaluate --mixtures list.csv --audio-dir audio -m mixture --no-ats --precision fp8",
        None,
        "precision must be auto, 32 or bf16-mixed, got 'fp8'",
    ),
    Case(  # was "File does not exist or is not a regular file (possibly a pipe?)"
        "separate-corrupt-mp3",
        "separate broken.mp3 -q dog -m test-tiny -o out",
        file("broken.mp3", b"ID3\x03\x00\x00\x00\x00\x00\x00garbage"),
        "cannot read audio file broken.mp3: not audio it can decode",
    ),
    Case(  # was "not an audio-text model folder"
        "ats-clap-folder-with-broken-json",
        "ats good.wav -q dog --clap bad",
        file("bad/config.json", "{bad json"),
        "bad/config.json is not valid JSON: Expecting property name",
    ),
    Case(
        "ats-output-is-the-audio",
        "ats good.wav -q dog -o good.wav",
        None,
        "it is the input good.wav",
    ),
    Case(
        "ats-list-output-is-a-listed-audio",
        "ats --list pairs.csv -o audio/a.wav",
        file("pairs.csv", "audio,caption\naudio/a.wav,a dog\n"),
        "it is the input",
    ),
    Case(
        "train-export-into-a-folder-with-files",
        "train export runs/bad/checkpoints/last.ckpt -o audio",
        _old_run,
        "audio exists and holds other files than an earlier export's (a.wav, b.wav, c.wav, ...); "
        "use --overwrite",
    ),
    Case(
        "clap-convert-over-the-checkpoint-folder",
        "clap convert ck/x.pt ck --overwrite",
        file("ck/x.pt", b"not a checkpoint"),
        "holds the input ck/x.pt",
    ),
    Case(
        "restart-with-bad-data-keeps-old-run",
        "train train.yaml --restart data.train.0.manifest=nope.jsonl",
        _old_run,
        "manifest not found: nope.jsonl",
    ),
    Case(
        "train-resume-from-a-text-file",
        "train train.yaml",
        file("runs/bad/checkpoints/last.ckpt", "not a checkpoint\n"),
        "checkpoints/last.ckpt: not a PyTorch checkpoint of plain weights, or corrupt; remove it",
    ),
    Case(
        "clap-train-yaml-broken",
        "clap train c.yaml -o out",
        file("c.yaml", "epochs: [\n"),
        "c.yaml:2: not valid YAML",
    ),
    Case(
        "clap-train-not-a-mapping",
        "clap train c.yaml -o out",
        file("c.yaml", "- 1\n"),
        "c.yaml: a config is a mapping of settings, not list",
    ),
    Case(
        "clap-train-wrong-type",
        "clap train c.yaml -o out epochs=many",
        file("c.yaml", "batch_size: 8\n"),
        "epochs: expected an integer, got 'many'",
    ),
    Case(
        "clap-train-zero-batch",
        "clap train c.yaml -o out batch_size=0",
        file("c.yaml", "{}\n"),
        "batch_size: must be >= 1, got 0",
    ),
    Case(
        "clap-train-member-wrong-type",
        "clap train c.yaml -o out",
        file("c.yaml", "members: [{epochs: x}]\n"),
        "members[0].epochs: expected an integer, got 'x'",
    ),
    Case(
        "clap-train-override-into-a-number",
        "clap train c.yaml -o out lr.x=1",
        file("c.yaml", "lr: 0.001\n"),
        "lr is not a mapping of settings",
    ),
    Case(
        "clap-convert-a-text-file",
        "clap convert notes.pt out",
        file("notes.pt", "not a checkpoint\n"),
        "not a PyTorch checkpoint of plain weights, or corrupt",
    ),
    Case(
        "clap-convert-weights-of-the-wrong-rank",
        "clap convert flat.pt out",
        _torch_file("flat.pt", {"text_branch.embeddings.word_embeddings.weight": [0.0] * 3}),
        "wrong shape (3,) for text_branch.embeddings.word_embeddings.weight in the LAION-CLAP "
        "checkpoint (expected 2 dimensions)",
    ),
    Case(
        "clap-folder-with-a-mistyped-config",
        "ats good.wav -q dog --clap badclap",
        file("badclap/config.json", '{"format": "querysep-clap", "config": {"dim": "x"}}'),
        "dim: expected an integer, got 'x'",
    ),
    Case(
        "upstream-checkpoint-missing",
        "separate good.wav -q dog -m audiosep:nope.ckpt",
        None,
        "audiosep checkpoint not found: nope.ckpt",
    ),
    Case(
        "upstream-checkpoint-empty-state-dict",
        "separate good.wav -q dog -m audiosep:empty.ckpt --text-tokenizer tok",
        lambda root: (
            torch.save({"state_dict": {}}, root / "empty.ckpt"),
            tiny_roberta_tokenizer(root / "tok"),
        ),
        "expected a dict of weights, got an empty one",
    ),
    Case(
        "upstream-checkpoint-a-list",
        "separate good.wav -q dog -m audiosep:list.ckpt --text-tokenizer tok",
        lambda root: (
            torch.save([1, 2, 3], root / "list.ckpt"),
            tiny_roberta_tokenizer(root / "tok"),
        ),
        "expected a dict of weights, got list",
    ),
    Case(
        "augment-base-url-not-http",
        "augment manifest.jsonl -o out.jsonl --backend openai --base-url ftp://x",
        None,
        "--base-url 'ftp://x' is not a usable address (it must start with http:// or https://)",
    ),
    Case(
        "augment-base-url-port-not-a-number",
        "augment manifest.jsonl -o out.jsonl --backend openai --base-url http://host:port/v1",
        None,
        "--base-url 'http://host:port/v1' is not a usable address (Port could not be cast",
    ),
    Case(
        "augment-base-url-without-host",
        "augment manifest.jsonl -o out.jsonl --backend openai --base-url http:///v1",
        None,
        "--base-url 'http:///v1' is not a usable address (it names no host)",
    ),
    Case(
        "augment-empty-manifest",
        "augment empty.jsonl -o out.jsonl --backend offline",
        file("empty.jsonl", ""),
        "nothing to augment",
    ),
    Case(  # was exit 0 and "0 augmented"
        "augment-no-clip-with-a-caption",
        "augment plain.jsonl -o out.jsonl --backend offline",
        _uncaptioned_manifest("plain.jsonl"),
        "no clip of plain.jsonl has a caption or a label: nothing to augment (its 4 clips",
    ),
    Case(
        "evaluate-audio-dir-is-a-file",
        "evaluate --mixtures list.csv --audio-dir good.wav -m mixture",
        None,
        "audio folder not found: good.wav (it is a file)",
    ),
    Case(
        "mixtures-caption-with-a-control-character",
        "mixtures make bell.jsonl -n 2 -o out.csv",
        _captioned_manifest("bell.jsonl", {"a": "a bell\x07 ringing", "b": "rain"}),
        "clip a's caption: query 'a bell\\x07 ringing' holds a control character",
    ),
    # --- training
    Case(
        "train-accelerator",
        "train train.yaml trainer.accelerator=tpuu",
        None,
        "trainer.accelerator: must be one of",
    ),
    Case("train-devices-zero", "train train.yaml trainer.devices=0", None, "trainer.devices"),
    Case(
        "train-strategy", "train train.yaml trainer.strategy=bogus", None, "trainer: You selected"
    ),
    Case("train-device-list", "train train.yaml trainer.devices=[5]", None, "trainer: `devices`"),
    Case(
        "train-network-wrong-type",
        "train train.yaml model.network.config.n_fft=many",
        None,
        "n_fft: expected an integer",
    ),
    Case(
        "train-manifest-folder",
        "train train.yaml data.train.0.manifest=audio",
        None,
        "manifest is a folder",
    ),
    Case(
        "train-encoder-dim-negative",
        "train train.yaml model.text_encoder.dim=-3",
        None,
        "model.text_encoder.dim: must be >= 1, got -3",
    ),
    Case(
        "train-channels-not-a-list",
        "train train.yaml model.network.config.channels=5",
        None,
        "model.network.config.channels: expected a list, got 5",
    ),
    Case("train-precision", "train train.yaml trainer.precision=16", None, "trainer.precision"),
    Case(
        "train-output-dir-is-a-file",
        "train train.yaml trainer.output_dir=good.wav",
        None,
        "trainer.output_dir: cannot write to good.wav: good.wav is a file, not a folder",
    ),
    Case(
        "train-output-dir-under-a-file",
        "train train.yaml trainer.output_dir=good.wav/run",
        None,
        "cannot write to good.wav/run: good.wav is a file, not a folder",
    ),
    Case(
        "train-yaml-not-utf8",
        "train latin1.yaml",
        file("latin1.yaml", b"optim:\n  lr: 0.1  # " + LATIN1 + b"\n"),
        "latin1.yaml is not UTF-8 text",
    ),
    Case(
        "train-resume-corrupt-saved-config",
        "train train.yaml",
        both(_old_run, file("runs/bad/config.yaml", "model: [unclosed\n")),
        "is not valid YAML; fix or delete it",
    ),
    Case(
        "model-format-version-text",
        "separate good.wav -q dog -m bad-model",
        _model_folder_field("bad-model", "format_version", "x"),
        "format_version: expected an integer, got 'x'",
    ),
    Case(
        "model-network-not-a-mapping",
        "separate good.wav -q dog -m bad-model",
        _model_folder_field("bad-model", "network", 5),
        "network: expected a mapping, got 5",
    ),
    Case(
        "separate-precision",
        "separate good.wav -q dog -m test-tiny --precision 16",
        None,
        "precision must be auto, 32 or bf16-mixed",
    ),
    # --- IRM-LDM (System 3)
    Case(
        "irm-ldm-no-folder",
        "separate good.wav -q dog -m irm-ldm:nowhere",
        None,
        "IRM-LDM model folder not found: nowhere",
    ),
    Case(
        "irm-ldm-mistyped-output",
        "separate good.wav -q dog -m irm-ldm:irm-ldm-esc50@vocodr",
        None,
        "unknown IRM-LDM output 'vocodr' in irm-ldm-esc50@vocodr: use @vocoder, @griffin-lim",
    ),
    Case(
        "irm-ldm-train-no-audioldm",
        [
            "train",
            "train.yaml",
            "model.network={type: irm-ldm, config: {ldm: nowhere}}",
        ],
        None,
        "folder 'nowhere' the model names was not found",
    ),
    Case(
        "irm-ldm-bad-mask",
        [
            "train",
            "train.yaml",
            "model.network={type: irm-ldm, config: {ldm: x, mask_activation: relu}}",
        ],
        None,
        "model.network.config.mask_activation: must be one of",
    ),
    Case(
        "oracle-ldm-bad-output",
        "evaluate --mixtures list.csv --audio-dir audio -m oracle-ldm:loud:x --no-ats",
        None,
        "oracle-ldm rows are oracle-ldm:OUTPUT:SOURCE",
    ),
    Case(
        "ldm-train-vae-unknown-key",
        "ldm train-vae vae.yaml",
        file("vae.yaml", "vae:\n  blocks: [16, 32]\n"),
        "vae.blocks: unknown key",
    ),
    # a config given to another kind's command says which command runs it
    Case(
        "ldm-train-vae-with-a-separator-config",
        "ldm train-vae train.yaml",
        None,
        "model: unknown key (this is a separator config: run it with querysep train)",
    ),
    Case(
        "clap-train-with-a-separator-config",
        "clap train train.yaml -o out",
        None,
        "(this is a separator config: run it with querysep train)",
    ),
    Case(
        "train-with-a-clap-config",
        "train c.yaml",
        file("c.yaml", "train_folds: [1, 2]\nepochs: 3\n"),
        "c.yaml:1: train_folds: unknown key (this is an audio-text (CLAP) config: run it with "
        "querysep clap train)",
    ),
    Case(
        "train-with-a-mel-vae-config",
        "train vae.yaml",
        file("vae.yaml", "vae:\n  latent_channels: 8\ntrainer:\n  max_steps: 2\n"),
        "(this is a mel VAE config: run it with querysep ldm train-vae)",
    ),
    Case(  # trained every step as NaN, then exported a model with latent_std NaN
        "ldm-train-vae-infinite-f-max",
        "ldm train-vae vae.yaml",
        file("vae.yaml", "front_end:\n  f_max: .inf\n"),
        "vae.yaml:2: front_end.f_max: must satisfy 0 <= f_min < f_max <= sample_rate / 2",
    ),
    Case(  # a ValueError traceback from transformers' mel filters
        "ldm-train-vae-f-min-above-f-max",
        "ldm train-vae vae.yaml front_end.f_min=9000",
        file("vae.yaml", "front_end:\n  f_max: 8000\n"),
        "override 'front_end.f_min=9000': front_end.f_min: must satisfy 0 <= f_min < f_max",
    ),
    Case(
        "ldm-train-vae-groups",
        "ldm train-vae vae.yaml",
        file("vae.yaml", "vae:\n  block_out_channels: [12, 24]\n  norm_num_groups: 8\n"),
        "norm_num_groups 8 must divide every level's channels, not 12",
    ),
]


def _snapshot(root: Path) -> dict[str, str | None]:
    """Every path under ``root``: a folder maps to None, a file to its content's hash."""
    found: dict[str, str | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            found[os.path.relpath(os.path.join(dirpath, name), root)] = None
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = hashlib.sha1(handle.read()).hexdigest()
    return found


def _prepare(case: Case, root: Path) -> dict[str, str | None]:
    _base_files(root)
    if case.setup is not None:
        case.setup(root)
    return _snapshot(root)


Snapshot = dict[str, "str | None"]


def _check_promises(
    case: Case, code: int, stderr: str, output: str, before: Snapshot, after: Snapshot
) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"{case.id}: stderr is not one line:\n{stderr}"
    assert lines[0].startswith("querysep: error: "), lines[0]
    assert case.expect in lines[0], f"{case.id}: {case.expect!r} not in {lines[0]!r}"
    assert code == 2, f"{case.id}: exit code {code}"
    assert "Traceback" not in output
    added = sorted(set(after) - set(before))
    changed = sorted(p for p in before if after.get(p, "gone") != before[p])
    assert not added and not changed, f"{case.id}: written {added}, changed or removed {changed}"


def test_case_ids_are_unique() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


_NO_DIFFUSERS = pytest.mark.skipif(
    importlib.util.find_spec("diffusers") is None, reason="needs the gen extra (diffusers)"
)


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, marks=_NO_DIFFUSERS) if "ldm" in case.id else case for case in CASES],
    ids=[case.id for case in CASES],
)
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _prepare(case, tmp_path)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, case.args())
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        pytest.fail(f"{case.id}: uncaught exception (a traceback for the user):\n{trace}")
    _check_promises(
        case, result.exit_code, result.stderr, result.output, before, _snapshot(tmp_path)
    )


# Two rows through a real process: the exit code and stderr the shell sees, not a runner's.
@pytest.mark.parametrize("case_id", ["usage-not-a-number", "latin1-mixture-list"])
def test_bad_input_in_a_real_process(case_id: str, tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == case_id)
    before = _prepare(case, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "querysep", *case.args()],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = proc.stdout + proc.stderr
    _check_promises(case, proc.returncode, proc.stderr, output, before, _snapshot(tmp_path))


def test_help_still_works() -> None:
    for args in (["--help"], ["separate", "--help"], ["mixtures", "make", "--help"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0 and "Usage" in result.stdout and not result.stderr
