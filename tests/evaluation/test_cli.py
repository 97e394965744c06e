"""``querysep evaluate`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from querysep.cli import app
from querysep.pretrained import DEFAULT_MODEL
from querysep.testing import synth

from .conftest import ValSet


def test_cli_smoke(valset: ValSet, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        "evaluate",
        "--mixtures",
        str(valset.mixture_list),
        "--audio-dir",
        str(valset.audio_dir),
        "-o",
        str(out),
        "--limit",
        "2",
        "--no-progress",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("per_clip.csv", "summary.json", "table.md"):
        assert (out / name).is_file()
        assert f"wrote {out / name}" in result.stdout
    assert "| System | SDR | SDRi | SI-SDR | ATS |" in result.stdout
    assert "esc50-clap" in result.stdout  # the table names the model behind its ATS
    systems = json.loads((out / "summary.json").read_text())["systems"]
    # default model + baselines + the reference row of the (default) ATS column
    assert list(systems) == ["mixture", DEFAULT_MODEL, "oracle-irm", "reference"]
    assert all(entry["n"] == 2 for entry in systems.values())

    # Re-running into the same folder resumes: nothing is computed again.
    result = CliRunner().invoke(app, [*args, "--no-baselines", "-m", "mixture"])
    assert result.exit_code == 0, result.output
    assert "4 scores resumed" in result.stdout  # mixture and reference rows, 2 clips each
    assert (out / "table.md").read_text().splitlines()[2].startswith("| mixture |")


def test_cli_missing_list_is_one_line_exit_2(tmp_path: Path) -> None:
    args = ["evaluate", "--mixtures", str(tmp_path / "nope.csv"), "--audio-dir", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("querysep: error: mixture list not found") and "nope.csv" in lines[0]


def test_cli_output_folder_that_is_a_file_is_one_line_exit_2(
    valset: ValSet, tmp_path: Path
) -> None:
    blocker = tmp_path / "FILE"
    blocker.write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    for out in (blocker, blocker / "sub"):
        args = ["evaluate", "--mixtures", str(valset.mixture_list)]
        args += ["--audio-dir", str(valset.audio_dir), "-o", str(out), "-m", "mixture"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert lines == [
            f"querysep: error: cannot write to {out}: {blocker} is a file, not a folder"
        ]
    assert sorted(p.name for p in tmp_path.iterdir()) == before and blocker.read_text() == "x"


def _evaluate_one_row(
    tmp_path: Path, source: np.ndarray, system: str, noise: np.ndarray | None = None
) -> Any:
    """``querysep evaluate`` of one DCASE row: ``source`` (16 kHz) under a 1 s noise clip."""
    (tmp_path / "audio").mkdir(parents=True)
    sf.write(tmp_path / "audio" / "s.wav", source, 16000)
    noise = synth.scene(1.0, 16000, seed=2) if noise is None else noise
    synth.write_wav(tmp_path / "audio" / "b.wav", noise, 16000)
    (tmp_path / "l.csv").write_text("source,noise,snr,caption\ns,b,0,a dog\n")
    args = ["evaluate", "--mixtures", str(tmp_path / "l.csv"), "--audio-dir"]
    args += [str(tmp_path / "audio"), "-m", system, "-o", str(tmp_path / "ev"), "--no-ats"]
    return CliRunner().invoke(app, args)


def test_a_clip_too_short_to_separate_is_named(tmp_path: Path) -> None:
    """Refused for every row, the baselines' too (a 1-sample source scored SI-SDR 69 in the
    mixture row before, while separate and ats refuse such audio)."""
    for system in ("test-tiny", "mixture"):
        result = _evaluate_one_row(tmp_path / system, synth.scene(0.05, 16000, seed=1), system)
        assert result.exit_code == 2
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(
            "querysep: error: clip s: 800 samples at 16000 Hz (50 ms) is too short to score"
        ), last


def test_a_silent_target_stops_with_the_clip_named(tmp_path: Path) -> None:
    """A silent source has no SDR (it scored 0/0/0 into the means before)."""
    result = _evaluate_one_row(tmp_path, np.zeros(16000, np.float32), "mixture")
    assert result.exit_code == 2
    assert "querysep: error: clip s: the target is silent" in result.stderr


def test_a_silent_interferer_stops_with_the_clip_named(tmp_path: Path) -> None:
    """A silent noise clip leaves the mixture equal to its target: SDRi is undefined (its
    mixture SDR is unbounded; the row scored SDRi -86 into the means before)."""
    silence = np.zeros(16000, np.float32)
    result = _evaluate_one_row(tmp_path, synth.scene(1.0, 16000, seed=1), "mixture", silence)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("querysep: error: clip s: the interference (mixture - target)")
    assert "noise b is silent" in lines[-1]
    assert not (tmp_path / "ev" / "summary.json").exists()


def test_a_row_that_mixes_a_clip_with_itself_is_refused(tmp_path: Path) -> None:
    """source == noise scored SI-SDR 102 dB in the mixture row: nothing to separate."""
    (tmp_path / "audio").mkdir()
    synth.write_wav(tmp_path / "audio" / "s.wav", synth.scene(1.0, 16000, seed=1), 16000)
    (tmp_path / "l.csv").write_text("source,noise,snr,caption\ns,s,0,a dog\n")
    args = ["evaluate", "--mixtures", str(tmp_path / "l.csv"), "--audio-dir"]
    args += [str(tmp_path / "audio"), "-m", "mixture", "-o", str(tmp_path / "ev"), "--no-ats"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "clip s: the noise is the same file as the source" in result.stderr
    assert not (tmp_path / "ev" / "summary.json").exists()


def test_skip_missing_that_skips_every_clip_fails(tmp_path: Path) -> None:
    """A wrong --audio-dir with --skip-missing wrote a table of dashes and exited 0."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "l.csv").write_text("source,noise,snr,caption\na,b,0,a dog\nc,d,0,a cat\n")
    args = ["evaluate", "--mixtures", str(tmp_path / "l.csv"), "--audio-dir"]
    args += [str(tmp_path / "empty"), "-m", "mixture", "-o", str(tmp_path / "ev"), "--no-ats"]
    result = CliRunner().invoke(app, [*args, "--skip-missing"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"querysep: error: --skip-missing skipped all 2 clips: none of their audio is in "
        f"{tmp_path / 'empty'} (is it the right --audio-dir?)"
    )
    assert not (tmp_path / "ev" / "summary.json").exists()


@pytest.mark.parametrize("name", ["summary.json", "table.md", "per_clip.csv"])
def test_a_mixture_list_named_as_an_output_in_the_folder_is_not_overwritten(
    valset: ValSet, tmp_path: Path, name: str
) -> None:
    out = tmp_path / "ev"
    out.mkdir()
    listed = out / name
    listed.write_bytes(valset.mixture_list.read_bytes())
    args = ["evaluate", "--mixtures", str(listed), "--audio-dir", str(valset.audio_dir)]
    result = CliRunner().invoke(app, [*args, "-o", str(out), "-m", "mixture", "--no-ats"])
    assert result.exit_code == 2
    assert f"cannot write {listed}: it is the input {listed}" in result.stderr
    assert listed.read_bytes() == valset.mixture_list.read_bytes()
