"""Tests for querysep.audio.io: round trips, resampling, streaming, atomic writes, errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from querysep.audio import (
    MAX_CHANNELS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    AudioInfo,
    AudioWriter,
    audio_info,
    iter_audio_blocks,
    load_audio,
    resample,
    save_audio,
    supported_save_extensions,
)
from querysep.audio.io import check_duration
from querysep.errors import AudioError
from querysep.testing import synth

PCM16_STEP = 1.0 / 32768.0


def sines(sample_rate: int, seconds: float, freqs: tuple[float, ...] = (440.0, 1000.0)):
    """One sine per channel, amplitude 0.5, float32 ``(channels, time)``."""
    t = np.arange(round(sample_rate * seconds)) / sample_rate
    return np.stack([0.5 * np.sin(2 * np.pi * f * t) for f in freqs]).astype(np.float32)


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((estimate - reference) ** 2)))


def peak_frequency(signal: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / sample_rate)[np.argmax(spectrum)])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- round trips


def test_wav_pcm16_round_trip_within_one_step(tmp_path: Path) -> None:
    audio = sines(16000, 1.0)
    path = save_audio(tmp_path / "a.wav", audio, 16000)
    assert path == tmp_path / "a.wav"
    loaded, rate = load_audio(path)
    assert rate == 16000
    assert loaded.dtype == np.float32
    assert loaded.shape == audio.shape
    np.testing.assert_allclose(loaded, audio, atol=PCM16_STEP)
    info = audio_info(path)
    assert (info.format, info.subtype) == ("WAV", "PCM_16")


def test_wav_float_round_trip_is_exact(tmp_path: Path) -> None:
    audio = sines(22050, 0.5) * 3.0  # floats are not clipped
    save_audio(tmp_path / "f.wav", audio, 22050, subtype="FLOAT")
    loaded, _ = load_audio(tmp_path / "f.wav")
    np.testing.assert_array_equal(loaded, audio)
    assert audio_info(tmp_path / "f.wav").subtype == "FLOAT"


def test_flac_round_trip(tmp_path: Path) -> None:
    audio = sines(48000, 0.5)
    save_audio(tmp_path / "a.flac", audio, 48000)
    loaded, rate = load_audio(tmp_path / "a.flac")
    assert rate == 48000
    np.testing.assert_allclose(loaded, audio, atol=PCM16_STEP)
    assert audio_info(tmp_path / "a.flac").format == "FLAC"


def test_explicit_subtype_is_honoured(tmp_path: Path) -> None:
    audio = sines(16000, 0.25)
    save_audio(tmp_path / "a.flac", audio, 16000, subtype="PCM_24")
    assert audio_info(tmp_path / "a.flac").subtype == "PCM_24"
    loaded, _ = load_audio(tmp_path / "a.flac")
    np.testing.assert_allclose(loaded, audio, atol=2.0**-23)


@pytest.mark.parametrize(
    ("suffix", "sample_rate", "min_snr"),
    [(".ogg", 44100, 25.0), (".opus", 48000, 20.0), (".mp3", 44100, 25.0)],
)
def test_lossy_round_trip(tmp_path: Path, suffix: str, sample_rate: int, min_snr: float) -> None:
    if suffix not in supported_save_extensions():
        pytest.skip(f"this libsndfile cannot write {suffix}")
    audio = sines(sample_rate, 2.0)
    save_audio(tmp_path / f"a{suffix}", audio, sample_rate)
    loaded, rate = load_audio(tmp_path / f"a{suffix}")
    assert rate == sample_rate
    assert loaded.shape[0] == 2
    assert abs(loaded.shape[1] - audio.shape[1]) <= sample_rate // 100
    n = min(loaded.shape[1], audio.shape[1])
    for channel in range(2):
        assert snr_db(audio[channel, :n], loaded[channel, :n]) > min_snr


def test_stereo_channels_are_kept_in_order(tmp_path: Path) -> None:
    audio = sines(16000, 1.0, freqs=(300.0, 2000.0))
    save_audio(tmp_path / "s.wav", audio, 16000)
    loaded, _ = load_audio(tmp_path / "s.wav")
    assert loaded.shape == (2, 16000)
    assert peak_frequency(loaded[0], 16000) == pytest.approx(300.0, abs=2.0)
    assert peak_frequency(loaded[1], 16000) == pytest.approx(2000.0, abs=2.0)


def test_mono_downmix_averages_channels(tmp_path: Path) -> None:
    audio = np.stack([np.full(8000, 0.5), np.full(8000, -0.25)]).astype(np.float32)
    save_audio(tmp_path / "s.wav", audio, 8000, subtype="FLOAT")
    loaded, _ = load_audio(tmp_path / "s.wav", mono=True)
    assert loaded.shape == (1, 8000)
    np.testing.assert_allclose(loaded, 0.125)


def test_one_dimensional_input_is_saved_as_mono(tmp_path: Path) -> None:
    save_audio(tmp_path / "m.wav", np.zeros(1000, dtype=np.float32) + 0.25, 16000)
    info = audio_info(tmp_path / "m.wav")
    assert (info.num_channels, info.num_frames) == (1, 1000)


def test_audio_info_reads_header(tmp_path: Path) -> None:
    save_audio(tmp_path / "x" / "y" / "a.wav", sines(32000, 1.5), 32000)  # parents created
    info = audio_info(tmp_path / "x" / "y" / "a.wav")
    assert info == AudioInfo(32000, 2, 48000, 1.5, "WAV", "PCM_16")


# --------------------------------------------------------------------------- clipping


def test_pcm16_clips_instead_of_wrapping(tmp_path: Path) -> None:
    audio = np.array([1.5, -1.5, 1.0, -1.0, 0.5], dtype=np.float32)
    save_audio(tmp_path / "c.wav", audio, 16000)
    loaded, _ = load_audio(tmp_path / "c.wav")
    np.testing.assert_allclose(loaded[0], [32767 / 32768, -1.0, 32767 / 32768, -1.0, 0.5])
    raw, _ = sf.read(tmp_path / "c.wav", dtype="int16")
    assert raw.tolist() == [32767, -32768, 32767, -32768, 16384]


@pytest.mark.parametrize(
    ("subtype", "top"), [("PCM_24", (2**23 - 1) << 8), ("PCM_32", None), ("PCM_U8", 127 << 24)]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_other_integer_subtypes_never_wrap(
    tmp_path: Path, subtype: str, top: int | None, dtype: type
) -> None:
    audio = np.array([1.5, 1.0, -1.5], dtype=dtype)
    save_audio(tmp_path / "c.wav", audio, 16000, subtype=subtype)
    raw, _ = sf.read(tmp_path / "c.wav", dtype="int32")  # left-aligned to 32 bits
    assert raw[0] == raw[1] > 0.99 * 2**31  # positive full scale stays positive
    assert raw[2] == -(2**31)
    if top is not None:
        assert raw[0] == top


# --------------------------------------------------------------------------- resampling


def test_resample_keeps_frequency_and_length() -> None:
    audio = sines(44100, 1.0, freqs=(1000.0, 3000.0))
    out = resample(audio, 44100, 16000)
    assert out.dtype == np.float32
    assert out.shape == (2, round(44100 * 16000 / 44100))
    assert peak_frequency(out[0], 16000) == pytest.approx(1000.0, abs=1.0)
    assert peak_frequency(out[1], 16000) == pytest.approx(3000.0, abs=1.0)
    # Amplitude is kept too (away from the edges).
    assert np.abs(out[0, 1000:-1000]).max() == pytest.approx(0.5, abs=5e-3)


def test_resample_one_dimensional_and_float64() -> None:
    audio = sines(44100, 0.5, freqs=(1000.0,))[0].astype(np.float64)
    out = resample(audio, 44100, 16000)
    assert out.shape == (round(len(audio) * 16000 / 44100),)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, resample(audio[None], 44100, 16000)[0])


def test_resample_same_rate_returns_input_itself() -> None:
    audio = sines(16000, 0.1)
    assert resample(audio, 16000, 16000) is audio


def test_resample_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match="orig_sr"):
        resample(np.zeros(10, dtype=np.float32), 0, 16000)


def test_load_audio_resamples(tmp_path: Path) -> None:
    save_audio(tmp_path / "a.wav", sines(44100, 1.0, freqs=(1000.0, 1000.0)), 44100)
    loaded, rate = load_audio(tmp_path / "a.wav", 16000, mono=True)
    assert rate == 16000
    assert loaded.shape == (1, 16000)
    assert peak_frequency(loaded[0], 16000) == pytest.approx(1000.0, abs=1.0)


# --------------------------------------------------------------------------- streaming


def test_streamed_resampling_matches_one_shot(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((2, 441000))).astype(np.float32)  # 10 s at 44.1 kHz
    save_audio(tmp_path / "long.wav", audio, 44100, subtype="FLOAT")
    one_shot = resample(audio, 44100, 16000)
    blocks = list(iter_audio_blocks(tmp_path / "long.wav", 4000, 16000))
    assert all(b.dtype == np.float32 and b.shape[0] == 2 for b in blocks)
    assert all(b.shape[1] == 4000 for b in blocks[:-1])
    assert 0 < blocks[-1].shape[1] <= 4000
    streamed = np.concatenate(blocks, axis=1)
    assert abs(streamed.shape[1] - one_shot.shape[1]) <= 1
    n = min(streamed.shape[1], one_shot.shape[1])
    assert np.abs(streamed[:, :n] - one_shot[:, :n]).max() < 1e-3


def test_streamed_blocks_without_resampling_equal_the_file(tmp_path: Path) -> None:
    audio = sines(16000, 1.0)
    save_audio(tmp_path / "a.wav", audio, 16000, subtype="FLOAT")
    blocks = list(iter_audio_blocks(tmp_path / "a.wav", 3000))
    assert [b.shape[1] for b in blocks] == [3000] * 5 + [1000]
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), audio)
    mono = np.concatenate(list(iter_audio_blocks(tmp_path / "a.wav", 3000, mono=True)), axis=1)
    np.testing.assert_allclose(mono, audio.mean(axis=0, keepdims=True), atol=1e-7)


def test_streamed_mono_resampling_matches_load_audio(tmp_path: Path) -> None:
    save_audio(tmp_path / "a.flac", sines(48000, 1.3), 48000)
    loaded, _ = load_audio(tmp_path / "a.flac", 22050, mono=True)
    blocks = list(iter_audio_blocks(tmp_path / "a.flac", 5000, 22050, mono=True))
    streamed = np.concatenate(blocks, axis=1)
    assert streamed.shape == loaded.shape
    assert np.abs(streamed - loaded).max() < 1e-4


def test_stream_reports_time_of_nan(tmp_path: Path) -> None:
    audio = np.zeros((1, 32000), dtype=np.float32)
    audio[0, 20000] = np.nan  # 2.5 s at 8 kHz
    sf.write(tmp_path / "nan.wav", audio.T, 8000, subtype="FLOAT")
    blocks = iter_audio_blocks(tmp_path / "nan.wav", 4000)
    assert next(blocks).shape == (1, 4000)  # the early blocks are fine
    with pytest.raises(AudioError, match=r"nan\.wav.*NaN or Inf.*2\.500 s"):
        list(blocks)


def test_stream_checks_the_file_when_called(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="not found"):
        iter_audio_blocks(tmp_path / "missing.wav", 1000)
    with pytest.raises(ValueError, match="block_frames"):
        iter_audio_blocks(tmp_path / "missing.wav", 0)


# --------------------------------------------------------------------------- atomic writes


class BoomError(Exception):
    pass


def fail_on_second_write(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> list[Path]:
    """Make the second libsndfile write raise ``exc``; return the temp files seen."""
    seen: list[Path] = []
    real_write = sf.SoundFile.write

    def write(self: sf.SoundFile, data: np.ndarray) -> None:
        seen.append(Path(os.fsdecode(self.name)))  # bytes: querysep opens by fsencode
        if len(seen) == 2:
            raise exc
        real_write(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", write)
    return seen


@pytest.mark.parametrize("exc", [BoomError("disk on fire"), KeyboardInterrupt()])
def test_failed_save_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    seen = fail_on_second_write(monkeypatch, exc)
    audio = np.zeros((1, 200_000), dtype=np.float32)  # more than one internal block
    with pytest.raises(type(exc)):
        save_audio(tmp_path / "out.wav", audio, 16000)
    assert len(seen) == 2
    temp = seen[0]
    assert temp.parent == tmp_path
    assert temp.name.startswith(".out.wav.") and temp.name.endswith(".part.wav")
    assert leftovers(tmp_path) == []


def test_failed_save_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = save_audio(tmp_path / "out.flac", sines(16000, 0.1), 16000)
    before = target.read_bytes()
    fail_on_second_write(monkeypatch, BoomError("fail"))
    with pytest.raises(BoomError):
        save_audio(target, np.zeros((2, 200_000), dtype=np.float32), 16000)
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == ["out.flac"]


def test_writer_file_appears_only_on_clean_exit(tmp_path: Path) -> None:
    target = tmp_path / "w.wav"
    with AudioWriter(target, 16000, 2) as writer:
        writer.write(np.zeros((2, 100), dtype=np.float32))
        writer.write(np.full((2, 50), 0.5, dtype=np.float32))
        assert not target.exists()
        (temp,) = leftovers(tmp_path)
        assert temp.startswith(".w.wav.") and temp.endswith(".part.wav")
    assert leftovers(tmp_path) == ["w.wav"]
    assert writer.num_frames == 150
    loaded, _ = load_audio(target)
    assert loaded.shape == (2, 150)
    np.testing.assert_allclose(loaded[:, 100:], 0.5)


def test_writer_removes_temp_file_on_exception(tmp_path: Path) -> None:
    with pytest.raises(BoomError), AudioWriter(tmp_path / "w.ogg", 16000, 1) as writer:
        writer.write(np.zeros(1000, dtype=np.float32))
        raise BoomError
    assert leftovers(tmp_path) == []


def test_writer_rejects_wrong_block_shape(tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match=r"\(2, n\)"),
        AudioWriter(tmp_path / "w.wav", 16000, 2) as writer,
    ):
        writer.write(np.zeros((1, 10), dtype=np.float32))
    assert leftovers(tmp_path) == []


def test_nan_on_save_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    audio = np.zeros((1, 16000), dtype=np.float32)
    audio[0, 8000] = np.inf
    with pytest.raises(AudioError, match=r"NaN or Inf.*0\.500 s"):
        save_audio(tmp_path / "bad.wav", audio, 16000)
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- save errors


def test_unknown_extension_lists_supported_ones(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"'\.xyz'.*\.wav, \.flac, \.ogg"):
        save_audio(tmp_path / "a.xyz", np.zeros(100, dtype=np.float32), 16000)
    assert leftovers(tmp_path) == []


def test_subtype_that_does_not_fit_the_format(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"FLOAT.*FLAC.*PCM_16"):
        save_audio(tmp_path / "a.flac", np.zeros(100, dtype=np.float32), 16000, subtype="FLOAT")


def test_save_refuses_empty_and_transposed_audio(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="empty"):
        save_audio(tmp_path / "a.wav", np.zeros((1, 0), dtype=np.float32), 16000)
    with pytest.raises(AudioError, match=r"\(channels, time\)"):
        save_audio(tmp_path / "a.wav", np.zeros((16000, 2), dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="sample rate"):
        save_audio(tmp_path / "a.wav", np.zeros(100, dtype=np.float32), 4000)
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- read errors


def write_raw(path: Path, frames: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    sf.write(path, frames, sample_rate, subtype=subtype)
    return path


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "missing.wav"


def _folder(tmp_path: Path) -> Path:
    (tmp_path / "folder.wav").mkdir()
    return tmp_path / "folder.wav"


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty.wav").write_bytes(b"")
    return tmp_path / "empty.wav"


def _garbage(tmp_path: Path) -> Path:
    (tmp_path / "garbage.wav").write_bytes(np.random.default_rng(0).bytes(4096))
    return tmp_path / "garbage.wav"


def _zero_frames(tmp_path: Path) -> Path:
    return write_raw(tmp_path / "zero.wav", np.zeros((0, 1), dtype=np.float32), 16000)


def _low_rate(tmp_path: Path) -> Path:
    return write_raw(tmp_path / "low.wav", np.zeros((100, 1), dtype=np.float32), 4000)


def _high_rate(tmp_path: Path) -> Path:
    try:
        return write_raw(tmp_path / "high.wav", np.zeros((100, 1), dtype=np.float32), 400_000)
    except sf.LibsndfileError as exc:  # pragma: no cover - depends on the libsndfile build
        pytest.skip(f"libsndfile cannot write a 400 kHz wav here: {exc}")


def _zero_rate(tmp_path: Path) -> Path:
    """A WAV whose fmt chunk says 0 Hz (libsndfile only says "SF_INFO struct incomplete")."""
    path = write_raw(tmp_path / "zero_rate.wav", np.zeros((100, 1), dtype=np.float32), 16000)
    data = bytearray(path.read_bytes())
    fmt = data.index(b"fmt ")
    assert int.from_bytes(data[fmt + 12 : fmt + 16], "little") == 16000
    data[fmt + 12 : fmt + 16] = bytes(4)
    path.write_bytes(bytes(data))
    return path


def _huge_rate(tmp_path: Path) -> Path:
    """A fmt chunk saying 4e9 Hz, beyond libsndfile's signed 32-bit field ("SF_INFO struct
    incomplete" too)."""
    path = write_raw(tmp_path / "huge_rate.wav", np.zeros((100, 1), dtype=np.float32), 16000)
    data = bytearray(path.read_bytes())
    fmt = data.index(b"fmt ")
    data[fmt + 12 : fmt + 16] = (4_000_000_000).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def _pipe(tmp_path: Path) -> Path:
    """A named pipe, as ``<(cat a.wav)`` or a piped /dev/stdin gives (its size says 0)."""
    path = tmp_path / "pipe.wav"
    os.mkfifo(path)
    return path


def _short_fmt(tmp_path: Path) -> Path:
    """A fmt chunk of 0 bytes, then a junk chunk: libsndfile's own message is the right one."""
    body = b"WAVE" + b"fmt " + bytes(4) + b"junk" + bytes(4) + b"data" + bytes(4)
    path = tmp_path / "short_fmt.wav"
    path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    return path


def _nine_channels(tmp_path: Path) -> Path:
    return write_raw(tmp_path / "nine.wav", np.zeros((100, 9), dtype=np.float32), 16000)


BAD_FILES = {
    "missing": (_missing, "not found"),
    "folder": (_folder, "folder"),
    "empty": (_empty, r"empty \(0 bytes\)"),
    "garbage": (_garbage, "cannot read audio file .*: Format not recognised"),
    "zero_frames": (_zero_frames, r"no audio \(0 frames\)"),
    "low_rate": (_low_rate, f"4000 Hz is outside .*{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"),
    "high_rate": (_high_rate, "400000 Hz is outside"),
    "nine_channels": (_nine_channels, f"9 channels.*{MAX_CHANNELS}"),
    "short_fmt": (_short_fmt, "cannot read audio file .*: .*Short 'fmt ' chunk"),
    "zero_rate": (_zero_rate, "cannot read audio file .*: its WAV header gives a sample rate of 0"),
    "huge_rate": (_huge_rate, "its WAV header gives a sample rate of 4000000000 Hz$"),
    "pipe": (_pipe, r"pipe\.wav is a pipe, not a file: .*save it to a file"),
}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no mkfifo"))
        if c == "pipe"
        else c
        for c in sorted(BAD_FILES)
    ],
)
@pytest.mark.parametrize("reader", ["load_audio", "audio_info", "iter_audio_blocks"])
def test_bad_files_raise_audio_error(tmp_path: Path, case: str, reader: str) -> None:
    make, message = BAD_FILES[case]
    path = make(tmp_path)
    read = {
        "load_audio": lambda: load_audio(path),
        "audio_info": lambda: audio_info(path),
        "iter_audio_blocks": lambda: list(iter_audio_blocks(path, 1000)),
    }[reader]
    with pytest.raises(AudioError, match=message) as info:
        read()
    text = str(info.value)
    assert path.name in text
    assert "\n" not in text


def test_nan_samples_are_refused_with_their_time(tmp_path: Path) -> None:
    frames = np.zeros((16000, 2), dtype=np.float32)
    frames[4000, 1] = np.nan
    path = write_raw(tmp_path / "nan.wav", frames, 16000, subtype="FLOAT")
    assert audio_info(path).num_frames == 16000  # the header is fine
    with pytest.raises(AudioError, match=r"nan\.wav: contains NaN or Inf samples.*0\.250 s"):
        load_audio(path)


def test_too_short_audio_says_a_duration_below_the_minimum() -> None:
    """4409 samples at 44.1 kHz are 99.977 ms, not "(100 ms) is too short ... at least 0.1 s"."""
    with pytest.raises(AudioError, match=r"4409 samples at 44100 Hz \(99\.98 ms\) is too sh"):
        check_duration(4409, 44100, "x.wav", "too short to separate")
    with pytest.raises(AudioError, match=r"\(99\.997 ms\)"):  # 1 sample short at 384 kHz
        check_duration(38399, 384000, "x.wav", "too short to separate")
    check_duration(4410, 44100, "x.wav", "too short to separate")  # 0.1 s itself is enough


def test_a_non_seekable_codec_loads_whole(tmp_path: Path) -> None:
    """GSM 6.10 in WAV cannot seek, so it has no length to read "to the end" by: it loads
    (as it streams) instead of raising soundfile's ValueError."""
    path = tmp_path / "gsm.wav"
    sf.write(path, sines(8000, 1.0, (440.0,)).T, 8000, subtype="GSM610")
    loaded, rate = load_audio(path)
    streamed = np.concatenate(list(iter_audio_blocks(path, 1000)), axis=1)
    assert rate == 8000 and loaded.shape == streamed.shape == (1, audio_info(path).num_frames)
    np.testing.assert_array_equal(loaded, streamed)
    assert abs(peak_frequency(loaded[0], 8000) - 440.0) < 5


@pytest.mark.parametrize("num_frames", [16000, 65536, 4096 * 5 + 7])
def test_a_flac_with_no_length_in_its_header_reads_whole(tmp_path: Path, num_frames: int) -> None:
    """A FLAC written to a pipe says its length is unknown: libsndfile gives SF_COUNT_MAX
    frames, which made load_audio ask numpy for an exabyte array (a bare ValueError) and
    every read that reached the end fail ("Internal psf_fseek() failed"). It reads to its
    end, whole blocks included (65536 and 4096 are the read sizes)."""
    audio = sines(16000, num_frames / 16000)
    want, _ = load_audio(synth.write_wav(tmp_path / "known.flac", audio, 16000))
    path = synth.write_streamed_flac(tmp_path / "piped.flac", audio, 16000)
    assert sf.info(path).frames == 2**63 - 1  # libsndfile does not know its length
    info = audio_info(path)
    assert (info.num_frames, info.num_channels) == (num_frames, 2)
    assert info.duration == num_frames / 16000
    loaded, rate = load_audio(path)
    assert rate == 16000
    np.testing.assert_array_equal(loaded, want)
    streamed = np.concatenate(list(iter_audio_blocks(path, 3000)), axis=1)
    np.testing.assert_array_equal(streamed, want)
    resampled, _ = load_audio(path, 22050, mono=True)
    assert resampled.shape == (1, round(num_frames * 22050 / 16000))


def test_a_flac_with_no_length_and_no_frames_holds_no_audio(tmp_path: Path) -> None:
    path = synth.write_streamed_flac(tmp_path / "piped.flac", sines(16000, 0.1), 16000)
    data, at = path.read_bytes(), 4
    while not data[at] & 0x80:  # up to the last metadata block: no audio frames after it
        at += 4 + int.from_bytes(data[at + 1 : at + 4], "big")
    path.write_bytes(data[: at + 4 + int.from_bytes(data[at + 1 : at + 4], "big")])
    assert sf.info(path).frames == 2**63 - 1
    for read in (audio_info, load_audio):
        with pytest.raises(AudioError, match=r"piped\.flac: contains no audio \(0 frames\)"):
            read(path)


@pytest.mark.parametrize("streaming", [False, True])
def test_a_cut_flac_is_one_plain_line(tmp_path: Path, streaming: bool) -> None:
    """libsndfile's "Error : " is not shown, and the time is the stretch the failed read
    asked for (it started at 0 s, where nothing is wrong)."""
    path = save_audio(tmp_path / "cut.flac", sines(16000, 2.0), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError) as info:
        list(iter_audio_blocks(path, 32000)) if streaming else load_audio(path)
    where = " between 0.000 s and 2.000 s" if streaming else ""
    assert str(info.value) == f"cannot decode audio file {path}{where}: flac decoder lost sync"


def test_truncated_file_still_loads_what_is_there(tmp_path: Path) -> None:
    path = save_audio(tmp_path / "t.wav", np.full(16000, 0.5, dtype=np.float32), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    loaded, _ = load_audio(path)
    assert 0 < loaded.shape[1] < 16000
    np.testing.assert_allclose(loaded, 0.5, atol=PCM16_STEP)


def test_permission_error_becomes_audio_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The suite may run as root, where chmod 0 does not lock anyone out, so fake it.
    path = save_audio(tmp_path / "locked.wav", np.zeros(100, dtype=np.float32), 16000)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(sf, "SoundFile", refuse)
    with pytest.raises(AudioError, match=r"cannot read audio file .*locked\.wav: .*denied"):
        load_audio(path)


@pytest.mark.parametrize("streaming", [False, True])
def test_decoding_error_becomes_audio_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streaming: bool
) -> None:
    path = save_audio(tmp_path / "broken.flac", sines(16000, 1.0), 16000)

    def broken_read(self: sf.SoundFile, *args: object, **kwargs: object) -> np.ndarray:
        raise sf.LibsndfileError(3)

    monkeypatch.setattr(sf.SoundFile, "read", broken_read)
    with pytest.raises(AudioError, match=r"cannot decode audio file .*broken\.flac.*malformed"):
        if streaming:
            list(iter_audio_blocks(path, 1000))
        else:
            load_audio(path)


def test_check_sample_rate_takes_whole_numbers_in_range() -> None:
    from querysep.audio.io import check_sample_rate
    from querysep.errors import ConfigError

    for rate in (16000, 16000.0, np.int32(16000), np.float64(16000)):
        assert check_sample_rate(rate) == 16000 and type(check_sample_rate(rate)) is int
    with pytest.raises(AudioError, match=r"whole number of Hz, got 44100\.5"):
        check_sample_rate(44100.5)
    with pytest.raises(AudioError, match="number of Hz, got False"):
        check_sample_rate(False)
    with pytest.raises(ConfigError, match=r"10\*\*400|Hz is outside"):
        check_sample_rate(10**400, ConfigError)
