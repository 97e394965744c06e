"""`querysep separate` and `querysep models`: outputs, naming and every bad-input case."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from querysep import Separator
from querysep.cli import app
from querysep.outputs import query_slug
from querysep.pretrained import build_test_tiny
from querysep.testing import synth

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def mix(tmp_path: Path) -> Path:
    return synth.write_wav(tmp_path / "mix.wav", synth.scene(2.0, 16000, seed=1), 16000)


def test_one_input_one_query_writes_exactly_that_file(mix: Path, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "dog.flac"
    res = run("separate", str(mix), "-q", "a dog barking", "-o", str(out), "-m", "test-tiny")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["dog.flac"]
    data, rate = sf.read(out)
    assert rate == 16000 and data.shape == (32000,)
    assert "wrote" in res.stdout
    # the styled "note:" reaches the terminal as a word, not as the markup that styles it
    assert "note: model test-tiny has random weights" in res.stderr
    assert "[yellow]" not in res.stderr
    # the file holds the library's estimate, to FLAC's 16-bit rounding
    audio, _ = sf.read(mix, dtype="float32")
    want = Separator("test-tiny").separate_tensor(audio, 16000, "a dog barking")[0, 0].numpy()
    assert np.abs(want).max() > 0.01
    np.testing.assert_allclose(data, want, rtol=0, atol=1.01 / 2**15)


def test_folder_mode_names_each_input_and_query(tmp_path: Path) -> None:
    a = synth.write_wav(tmp_path / "a.wav", synth.scene(1.0, 22050, seed=2), 22050)
    stereo = np.stack([synth.scene(1.5, 48000, seed=3), synth.scene(1.5, 48000, seed=4)])
    b = synth.write_wav(tmp_path / "b.wav", stereo, 48000)
    res = run(
        "separate",
        str(a),
        str(b),
        "-q",
        "Dog, barking!",
        "-q",
        "rain",
        "-o",
        str(tmp_path / "out"),
        "-m",
        "test-tiny",
    )
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["a__dog-barking.wav", "a__rain.wav", "b__dog-barking.wav", "b__rain.wav"]
    info = sf.info(tmp_path / "out" / "b__rain.wav")
    assert (info.samplerate, info.channels, info.frames) == (48000, 2, 72000)
    res = run(
        "separate", str(b), "-q", "rain", "--mono", "-o", str(tmp_path / "m.wav"), "-m", "test-tiny"
    )
    assert res.exit_code == 0 and sf.info(tmp_path / "m.wav").channels == 1


def test_a_long_input_name_is_cut_to_fit_the_file_system(tmp_path: Path) -> None:
    # a legal 228-byte name + "__" + a 60-character query slug is over the 255-byte limit
    stem = "日本語の長い名前の録音ファイルです" * 4 + "-take"
    src = synth.write_wav(tmp_path / f"{stem}.wav", synth.scene(1.0, 16000, seed=2), 16000)
    query = "a dog barking loudly in the distance while rain falls on a tin roof"
    out = tmp_path / "out"
    res = run("separate", str(src), "-q", query, "--residual", "-o", str(out), "-m", "test-tiny")
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2 and all(len(n.encode()) <= 220 for n in names)
    kept = names[0].split("__")[0]
    assert stem.startswith(kept) and len(kept) > 40  # as much of the name as fits
    assert names == [f"{kept}__{query_slug(query)}.wav", f"{kept}__residual.wav"]
    # two inputs that only differ past the cut still get two names
    other = synth.write_wav(tmp_path / f"{stem}-2.wav", synth.scene(1.0, 16000, seed=3), 16000)
    res = run(
        "separate",
        str(src),
        str(other),
        "-q",
        query,
        "-o",
        str(tmp_path / "two"),
        "-m",
        "test-tiny",
    )
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "two").iterdir())) == 2


def test_a_float_input_beyond_full_scale_gives_float_outputs_that_add_up(tmp_path: Path) -> None:
    loud = 3.0 * synth.scene(1.0, 16000, seed=5) / np.abs(synth.scene(1.0, 16000, seed=5)).max()
    src = synth.write_wav(tmp_path / "loud.wav", loud.astype(np.float32), 16000, subtype="FLOAT")
    out = tmp_path / "out"
    res = run("separate", str(src), "-q", "dog", "--residual", "-o", str(out), "-m", "test-tiny")
    assert res.exit_code == 0, res.output
    parts = []
    for name in ("loud__dog.wav", "loud__residual.wav"):
        assert sf.info(out / name).subtype == "FLOAT"
        parts.append(sf.read(out / name, dtype="float32")[0])
    assert np.abs(parts[1]).max() > 1.0  # kept, not clipped
    np.testing.assert_allclose(sum(parts), loud, rtol=0, atol=1e-5)


def test_a_failure_found_mid_file_leaves_no_empty_folder(tmp_path: Path) -> None:
    x = np.full(16000 * 3, 0.1, np.float32)
    x[16000 * 2] = np.nan  # found only after the outputs were opened
    src = synth.write_wav(tmp_path / "late.wav", x, 16000, subtype="FLOAT")
    kept = tmp_path / "kept"
    kept.mkdir()
    for out in (tmp_path / "new" / "deeper", tmp_path / "new2" / "x.wav", kept):
        res = run("separate", str(src), "-q", "dog", "-o", str(out), "-m", "test-tiny")
        assert res.exit_code == 2 and "NaN" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept", "late.wav"]  # kept stays


def test_slugs() -> None:
    assert query_slug("A dog, barking!") == "a-dog-barking"
    assert query_slug("!!!") == "query"
    assert len(query_slug("word " * 50)) <= 60


def test_models_lists_the_reserved_model() -> None:
    res = run("models")
    assert res.exit_code == 0 and "test-tiny" in res.stdout


def _write(path: Path, data: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    sf.write(path, data, rate, subtype=subtype)
    return path


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    good = str(_write(tmp / "good.wav", synth.scene(1.0, 16000), 16000))
    corrupt = tmp / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" + bytes(range(256)))
    nan = np.full(16000, 0.1, np.float32)
    nan[100] = np.nan
    tiny = build_test_tiny()
    tiny.save_pretrained(tmp / "broken-model")
    w = tmp / "broken-model" / "model.safetensors"
    state = load_file(w)
    state.pop("base.after_conv.weight")
    state["base.stray"] = state["base.after_conv.bias"].clone()
    save_file(state, w)
    return {
        "missing file": ([str(tmp / "nope.wav"), "-q", "dog"], "nope.wav"),
        "corrupt file": ([str(corrupt), "-q", "dog"], "corrupt.wav"),
        "empty file": ([str(_touch(tmp / "empty.wav")), "-q", "dog"], "empty.wav"),
        "zero samples": ([str(_write(tmp / "zero.wav", np.zeros(0), 16000)), "-q", "dog"], "zero"),
        "nan samples": ([str(_write(tmp / "nan.wav", nan, 16000, "FLOAT")), "-q", "dog"], "NaN"),
        "silent file": (
            [str(_write(tmp / "silent.wav", np.zeros(16000), 16000)), "-q", "dog"],
            "silent.wav: silent",
        ),
        "rate too low": ([str(_write(tmp / "low.wav", np.zeros(4000), 4000)), "-q", "dog"], "4000"),
        "rate too high": (
            [str(_write(tmp / "high.wav", np.zeros(4000), 400000)), "-q", "dog"],
            "400000",
        ),
        "too many channels": (
            [str(_write(tmp / "ch.wav", np.zeros((100, 9)), 16000)), "-q", "dog"],
            "9",
        ),
        "empty query": ([good, "-q", ""], "query"),
        "blank query": ([good, "-q", "  \t "], "query"),
        "long query": ([good, "-q", "x" * 1001], "too long"),
        "absurd query": ([good, "-q", "dog", "-q", "?!"], "'?!' has no letter or digit"),
        "unknown model": ([good, "-q", "dog", "-m", "no-such-model"], "no-such-model"),
        "bad checkpoint": (
            [good, "-q", "dog", "-m", str(tmp / "broken-model")],
            "missing: base.after_conv.weight",
        ),
    }


def _touch(p: Path) -> Path:
    p.write_bytes(b"")
    return p


CASES = [
    "missing file",
    "corrupt file",
    "empty file",
    "zero samples",
    "nan samples",
    "silent file",
    "rate too low",
    "rate too high",
    "too many channels",
    "empty query",
    "blank query",
    "long query",
    "absurd query",
    "unknown model",
    "bad checkpoint",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_no_output(case: str, tmp_path: Path) -> None:
    args, needle = _bad_inputs(tmp_path)[case]
    out_dir = tmp_path / "out"
    res = runner.invoke(
        app,
        ["separate", *args, "-o", str(out_dir), "-m", "test-tiny"]
        if "-m" not in args
        else ["separate", *args, "-o", str(out_dir)],
    )
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("querysep: error:") and needle in lines[0]
    assert "Traceback" not in res.output
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_a_silent_input_fails_but_keeps_the_outputs_already_written(tmp_path: Path) -> None:
    quiet = 1e-4 * np.random.default_rng(0).standard_normal(16000)  # -80 dBFS: not silent
    first = _write(tmp_path / "quiet.wav", quiet, 16000, "FLOAT")
    second = _write(tmp_path / "silent.wav", np.zeros(24000), 16000)
    out_dir = tmp_path / "out"
    res = runner.invoke(
        app,
        ["separate", str(first), str(second), "-q", "dog", "-o", str(out_dir), "-m", "test-tiny"],
    )
    assert res.exit_code == 2, res.output
    assert res.stderr.strip() == (
        f"querysep: error: {second}: silent (no sample above -100 dBFS): there is nothing to "
        "separate"
    )
    assert sorted(p.name for p in out_dir.iterdir()) == ["quiet__dog.wav"]
    assert f"wrote {out_dir / 'quiet__dog.wav'}" in res.stdout


def test_real_process_exit_code_and_debug_traceback(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "querysep", "separate", str(tmp_path / "missing.wav"), "-q", "dog"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "missing.wav" in proc.stderr
    proc = subprocess.run(
        [*cmd[:3], "--debug", *cmd[3:]], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_plot_writes_a_spectrogram_png_next_to_the_output(mix: Path, tmp_path: Path) -> None:
    out = tmp_path / "dog.wav"
    res = run("separate", str(mix), "-q", "a dog", "-o", str(out), "-m", "test-tiny", "--plot")
    assert res.exit_code == 0, res.output
    png = tmp_path / "dog.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000  # three spectrogram panels, not an empty canvas
    assert not list(tmp_path.glob(".*part*"))


def test_a_flac_with_no_length_in_its_header_separates_and_plots(tmp_path: Path) -> None:
    """A FLAC written to a pipe (its length unknown) failed with a bare numpy ValueError,
    and its plot with a libsndfile traceback; it separates as the same audio with a length."""
    audio = synth.scene(2.0, 16000, seed=1)
    known = synth.write_wav(tmp_path / "known.flac", audio, 16000)
    piped = synth.write_streamed_flac(tmp_path / "piped.flac", audio, 16000)
    for path in (known, piped):
        out = tmp_path / f"{path.stem}-dog.wav"
        res = run("separate", str(path), "-q", "a dog", "-o", str(out), "-m", "test-tiny", "--plot")
        assert res.exit_code == 0, res.output
        assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    want, _ = sf.read(tmp_path / "known-dog.wav")
    got, rate = sf.read(tmp_path / "piped-dog.wav")
    assert rate == 16000 and got.shape == (32000,)
    np.testing.assert_array_equal(got, want)


def test_plots_are_outputs_checked_before_the_model_loads(mix: Path, tmp_path: Path) -> None:
    """A plot over the input (a WAV named .png) destroyed it; a folder in a plot's place
    failed only after separating."""
    wav_png = tmp_path / "mix.png"
    wav_png.write_bytes(mix.read_bytes())
    res = run(
        "separate",
        str(wav_png),
        "-q",
        "rain",
        "-o",
        str(tmp_path / "mix.wav"),
        "-m",
        "test-tiny",
        "--plot",
        "--no-ats",
    )
    assert res.exit_code == 2 and "it is the input" in res.stderr
    assert wav_png.read_bytes() == mix.read_bytes()
    (tmp_path / "dog.png").mkdir()
    res = run(
        "separate",
        str(mix),
        "-q",
        "a dog",
        "-o",
        str(tmp_path / "dog.wav"),
        "-m",
        "test-tiny",
        "--plot",
        "--no-ats",
    )
    assert res.exit_code == 2 and "dog.png: it is a folder" in res.stderr
    assert not (tmp_path / "dog.wav").exists()


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="libsndfile without MP3")
def test_an_output_format_that_cannot_hold_the_input_fails_before_the_model_loads(
    tmp_path: Path,
) -> None:
    """MP3 holds at most two channels: said before the (here unknown) model is looked up."""
    path = tmp_path / "eight.wav"
    sf.write(path, 0.1 * np.random.default_rng(0).standard_normal((16000, 8)), 16000)
    res = run(
        "separate",
        str(path),
        "-q",
        "rain",
        "-o",
        str(tmp_path / "x.mp3"),
        "-m",
        "no-such-model",
        "--no-ats",
    )
    assert res.exit_code == 2, res.output
    assert "cannot write " in res.stderr  # not libsndfile's "Format not recognised"
    assert "x.mp3: MP3 holds at most 2 channels, not 8" in res.stderr


def test_output_ending_in_a_slash_or_an_existing_folder_is_a_folder(
    mix: Path, tmp_path: Path
) -> None:
    """``-o out.wav/`` and an existing folder ``adir.wav`` take the outputs as folders (the
    slash was dropped, and a folder named like a file was refused as an output file)."""

    def separate_to(out: str):
        return run("separate", str(mix), "-q", "dog", "-o", out, "-m", "test-tiny", "--no-ats")

    res = separate_to(f"{tmp_path / 'out.wav'}/")
    assert res.exit_code == 0, res.output
    assert [p.name for p in (tmp_path / "out.wav").iterdir()] == ["mix__dog.wav"]
    (tmp_path / "adir.wav").mkdir()
    res = separate_to(str(tmp_path / "adir.wav"))
    assert res.exit_code == 0, res.output
    assert [p.name for p in (tmp_path / "adir.wav").iterdir()] == ["mix__dog.wav"]
    res = separate_to(str(tmp_path / "x.wav"))
    assert res.exit_code == 0 and (tmp_path / "x.wav").is_file()  # a file, as before


def test_normalize_reaches_the_separator(tmp_path: Path) -> None:
    from querysep import Separator

    x = (0.01 * np.sin(np.arange(16000) * 0.05) * np.linspace(0, 1, 16000)).astype(np.float32)
    path = tmp_path / "quiet.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    out = tmp_path / "dog.wav"
    res = run(
        "separate",
        str(path),
        "-q",
        "a dog",
        "-o",
        str(out),
        "-m",
        "test-tiny",
        "--normalize",
        "--no-ats",
    )
    assert res.exit_code == 0, res.output
    want = Separator("test-tiny", normalize=True).separate_tensor(x, 16000, "a dog")[0, 0]
    other = Separator("test-tiny").separate_tensor(x, 16000, "a dog")[0, 0]
    got, _ = sf.read(out, dtype="float32")
    np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-6)  # float WAV: exact
    assert np.abs(got - other.numpy()).max() > 1e-4  # and not what it gives without


def test_output_with_any_writable_extension_is_a_file(tmp_path: Path) -> None:
    """The CLI's file-or-folder decision uses the writer's own list of extensions."""
    from querysep.audio import supported_save_extensions

    if ".opus" not in supported_save_extensions():
        pytest.skip("this libsndfile build cannot write Opus")
    example = Path(__file__).parents[2] / "examples" / "dog-and-rain.wav"
    out = tmp_path / "X" / "out.opus"
    res = run("separate", str(example), "-q", "dog", "-o", str(out), "--model", "test-tiny")
    assert res.exit_code == 0, res.output
    info = sf.info(out)
    assert (info.format, info.subtype) == ("OGG", "OPUS")
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.opus"]


def test_output_with_a_non_audio_extension_is_refused_unless_a_folder(
    mix: Path, tmp_path: Path
) -> None:
    """``-o notes.txt`` is a mistake, not a folder to create; an existing folder of that name
    still takes the outputs, and a name like ``run.final`` is a folder as before."""
    res = run("separate", str(mix), "-q", "dog", "-o", str(tmp_path / "o.txt"), "-m", "test-tiny")
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and ".txt is not an audio format querysep writes (" in lines[0]
    assert ".wav" in lines[0] and "create the folder first" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix.wav"]
    (tmp_path / "o.txt").mkdir()
    res = run("separate", str(mix), "-q", "dog", "-o", str(tmp_path / "o.txt"), "-m", "test-tiny")
    assert res.exit_code == 0, res.output
    assert [p.name for p in (tmp_path / "o.txt").iterdir()] == ["mix__dog.wav"]
    # other dotted names are folders, created as before
    res = run(
        "separate", str(mix), "-q", "dog", "-o", str(tmp_path / "run.final"), "-m", "test-tiny"
    )
    assert res.exit_code == 0, res.output
    assert [p.name for p in (tmp_path / "run.final").iterdir()] == ["mix__dog.wav"]


@pytest.mark.parametrize("where", ["FILE/out.wav", "FILE", "FILE/deeper"])
def test_output_under_a_file_is_one_line_exit_2(mix: Path, tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "FILE"
    blocker.write_text("x")
    res = run("separate", str(mix), "-q", "dog", "-o", str(tmp_path / where), "-m", "test-tiny")
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output
    assert lines[0].startswith(f"querysep: error: cannot write {tmp_path / where}")
    assert lines[0].endswith(f"{blocker} is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE", "mix.wav"]


def test_each_output_is_printed_with_its_ats(mix: Path, tmp_path: Path) -> None:
    from querysep.clap import load_clap
    from querysep.clap.files import embed_file

    out = tmp_path / "out"
    res = run(
        "separate",
        str(mix),
        "-q",
        "a dog",
        "-q",
        "rain",
        "-o",
        str(out),
        "-m",
        "test-tiny",
        "--clap",
        "test-tiny",
    )
    assert res.exit_code == 0, res.output
    clap = load_clap("test-tiny")
    for query, line in zip(["a dog", "rain"], res.stdout.strip().splitlines(), strict=True):
        path = out / f"mix__{query_slug(query)}.wav"
        ats = float(embed_file(clap, path) @ clap.embed_text([query])[0])
        assert line.startswith(f"wrote {path}") and line.endswith(f"ATS {ats:.3f}")
    res = run(
        "separate",
        str(mix),
        "-q",
        "a dog",
        "-o",
        str(tmp_path / "b"),
        "-m",
        "test-tiny",
        "--no-ats",
    )
    assert res.exit_code == 0 and "ATS" not in res.output


def test_a_bad_clap_fails_before_any_output(mix: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run(
        "separate",
        str(mix),
        "-q",
        "a dog",
        "-o",
        str(out),
        "-m",
        "test-tiny",
        "--clap",
        "no-such-clap",
    )
    assert res.exit_code == 2 and "unknown audio-text model" in res.output
    assert not out.exists()


def test_residual_is_written_next_to_the_outputs(mix: Path, tmp_path: Path) -> None:
    # a query named "residual" does not take the residual's name
    out = tmp_path / "out"
    res = run(
        "separate",
        str(mix),
        "-q",
        "dog",
        "-q",
        "Residual",
        "-o",
        str(out),
        "-m",
        "test-tiny",
        "--residual",
        "--no-ats",
    )
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["mix__dog.wav", "mix__residual-2.wav", "mix__residual.wav"]
    assert "everything else in mix.wav" in res.stdout
    parts = [sf.read(out / n)[0] for n in names]
    np.testing.assert_allclose(sum(parts), sf.read(mix)[0], rtol=0, atol=3.03 / 2**15)
    # one input, one query, an output file: the residual goes beside it
    res = run(
        "separate",
        str(mix),
        "-q",
        "dog",
        "-o",
        str(tmp_path / "d.flac"),
        "-m",
        "test-tiny",
        "--residual",
        "--no-ats",
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "mix__residual.flac").is_file()
    res = run(
        "separate",
        str(mix),
        "-q",
        "dog",
        "-o",
        str(tmp_path / "mix__residual.wav"),
        "-m",
        "test-tiny",
        "--residual",
    )
    assert res.exit_code == 2 and "name of the residual" in res.stderr


def test_sigterm_stops_like_ctrl_c_and_leaves_no_partial_file(tmp_path: Path) -> None:
    """A kill removes the half-written output, as Ctrl-C does."""
    long = synth.write_wav(tmp_path / "long.wav", synth.scene(600.0, 16000, seed=2), 16000)
    out = tmp_path / "out.wav"
    cmd = [sys.executable, "-m", "querysep", "separate", str(long), "-q", "dog", "-m"]
    cmd += ["test-tiny", "-o", str(out), "--no-ats", "--segment-seconds", "0.5"]
    cmd += ["--overlap-seconds", "0.1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".out.wav.*.part.wav")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]  # the bar first
    assert proc.returncode == 2 and lines[-1] == "querysep: error: interrupted", stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.wav"]


def test_names_and_queries_are_printed_as_they_are(tmp_path: Path) -> None:
    # Rich reads [..] as markup: "[live]" vanished from the reported name and the query
    # "dog [/]" raised MarkupError as a traceback after the outputs were written.
    src = synth.write_wav(tmp_path / "take [live].wav", synth.scene(1.0, 16000, seed=2), 16000)
    out = tmp_path / "o [1]"
    res = run("separate", str(src), "-q", "dog [/]", "-o", str(out), "-m", "test-tiny")
    assert res.exit_code == 0, res.output
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == 1
    assert f"{out / written[0]}  (dog [/] from take [live].wav)  ATS " in res.stdout


def test_clipping_a_float_input_into_flac_is_said_not_silent(tmp_path: Path) -> None:
    """FLAC holds integers: samples of a float input beyond full scale are clipped there,
    and the command says so for the file it happened in (a .wav output keeps them)."""
    x = 0.3 * np.random.default_rng(0).standard_normal(32000)
    x[1000] = 5.0
    sf.write(tmp_path / "loud.wav", x, 16000, subtype="FLOAT")
    base = ["separate", str(tmp_path / "loud.wav"), "-q", "dog", "-m", "test-tiny", "--no-ats"]
    base.append("--residual")
    flac = run(*base, "-o", str(tmp_path / "flac"), "--format", "flac")
    assert flac.exit_code == 0, flac.output
    notes = [line for line in flac.stderr.splitlines() if "clipped" in line]
    assert len(notes) == 1 and "loud__residual.flac:" in notes[0], flac.stderr
    clipped = int(notes[0].split(": ")[2].split()[0])
    rest, _ = sf.read(tmp_path / "flac" / "loud__residual.flac")
    assert clipped >= 1 and np.count_nonzero(np.abs(rest) >= 1 - 2**-15) >= clipped
    wav = run(*base, "-o", str(tmp_path / "wav"))
    assert wav.exit_code == 0 and "clipped" not in wav.stderr
    with pytest.warns(UserWarning, match="samples beyond full scale were clipped"):
        Separator("test-tiny").separate_file(
            tmp_path / "loud.wav", "dog", [tmp_path / "api.flac"], residual=tmp_path / "r.flac"
        )


_WARN_EACH_FILE = """
import sys, warnings
import querysep.api
from querysep.cli import app

real = querysep.api.Separator.separate_file

def separate_file(self, *args, **kwargs):
    warnings.warn("a library says hi", UserWarning)  # one place: Python shows it once
    return real(self, *args, **kwargs)

querysep.api.Separator.separate_file = separate_file
app(sys.argv[1:], prog_name="querysep")
"""


def test_other_warnings_show_once_a_run_and_clipping_once_a_file(tmp_path: Path) -> None:
    loud = 0.3 * np.random.default_rng(0).standard_normal(16000)
    loud[100] = 3.0
    names = []
    for i in range(3):
        sf.write(tmp_path / f"in{i}.wav", loud, 16000, subtype="FLOAT")
        names.append(str(tmp_path / f"in{i}.wav"))
    args = ["separate", *names, "-q", "dog", "-m", "test-tiny", "--no-ats", "--residual"]
    args += ["--format", "flac"]
    run_ = subprocess.run(
        [sys.executable, "-W", "default", "-c", _WARN_EACH_FILE, *args, "-o", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run_.returncode == 0, run_.stderr
    assert run_.stderr.count("a library says hi") == 1, run_.stderr
    clipped = [line for line in run_.stderr.splitlines() if "were clipped" in line]
    assert [line.split("/")[-1].split(":")[0] for line in clipped] == [
        f"in{i}__residual.flac" for i in range(3)
    ]


@pytest.mark.skipif(not hasattr(os, "pipe") or not Path("/dev/fd").is_dir(), reason="no /dev/fd")
def test_a_pipe_as_input_is_one_true_line(tmp_path: Path) -> None:
    """``separate <(cat a.wav)`` names a pipe: refused as one, not as an empty (0 bytes) file."""
    read_end, write_end = os.pipe()
    try:
        res = run("separate", f"/dev/fd/{read_end}", "-q", "dog", "-m", "test-tiny", "--no-ats")
    finally:
        os.close(read_end)
        os.close(write_end)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert f"/dev/fd/{read_end} is a pipe, not a file" in lines[0] and "empty" not in lines[0]


def test_a_query_far_from_every_training_text_gets_a_note(mix: Path, tmp_path: Path) -> None:
    """The default model answers every query as its nearest training text; where that text
    is far from the query (a sound outside ESC-50, or none), separate says so, once."""
    res = run(
        "separate", str(mix), "-q", "a dog barking", "-q", "the stock market :fire:",
        "-o", str(tmp_path / "out") + "/", "--no-ats",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "[answered as 'barking of a dog']" in res.stdout
    notes = [line for line in res.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1, res.stderr
    # the query as typed (no emoji for ":fire:"), then what it was answered as
    prefix = "note: 'the stock market :fire:' is far from every text esc50-minilm"
    assert notes[0].startswith(prefix), notes[0]
    (match,) = Separator().query_matches(["the stock market :fire:"])  # what the note reports
    assert match.far and f"(cosine {match.cosine:.2f} to the nearest, {match.text!r})" in notes[0]
    assert len(list((tmp_path / "out").iterdir())) == 2  # a note, not a refusal
    # with queries embedded as they are nothing is answered as another text: no note
    plain = run(
        "separate", str(mix), "-q", "the stock market", "--no-snap",
        "-o", str(tmp_path / "plain.wav"), "--no-ats",
    )  # fmt: skip
    assert plain.exit_code == 0, plain.output
    assert "note:" not in plain.stderr and "answered as" not in plain.stdout


def test_format_against_a_named_file_is_refused_not_ignored(tmp_path: Path) -> None:
    sf.write(tmp_path / "in.wav", 0.1 * np.random.default_rng(1).standard_normal(16000), 16000)
    base = ["separate", str(tmp_path / "in.wav"), "-q", "dog", "-m", "test-tiny", "--no-ats"]
    clash = run(*base, "-o", str(tmp_path / "out.wav"), "--format", "flac")
    assert clash.exit_code == 2 and "names a file, whose extension sets its format" in (
        clash.stderr
    )  # was: out.wav written as WAV, exit 0, --format ignored in silence
    assert not (tmp_path / "out.wav").exists()
    same = run(*base, "-o", str(tmp_path / "out.flac"), "--format", "flac")
    assert same.exit_code == 0 and sf.info(tmp_path / "out.flac").format == "FLAC"
