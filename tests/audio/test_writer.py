"""querysep.audio.writer split from io, and the one streaming resampler they and api.py share."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from querysep.audio import (
    RESAMPLE_QUALITY,
    AudioWriter,
    StreamResampler,
    commit_writers,
    load_audio,
    resample,
    save_audio,
    supported_save_extensions,
)
from querysep.errors import AudioError


def test_old_import_paths_still_work() -> None:
    from querysep.audio import io, writer

    assert io.save_audio is writer.save_audio is save_audio
    assert io.AudioWriter is AudioWriter
    assert io.supported_save_extensions is supported_save_extensions
    with pytest.raises(AttributeError):
        _ = io.no_such_name  # type: ignore[attr-defined]


@pytest.mark.parametrize(("orig", "target"), [(44100, 16000), (16000, 48000), (16000, 16000)])
def test_stream_resampler_equals_one_shot_resample(orig: int, target: int) -> None:
    rng = np.random.default_rng(0)
    signal = rng.uniform(-0.5, 0.5, (2, orig)).astype(np.float32)
    stream = StreamResampler(orig, target, 2)
    sizes = [1, 999, 0, 4096, orig]  # uneven chunks, an empty one, the rest
    pieces, start = [], 0
    for size in sizes:
        pieces.append(stream(signal[:, start : start + size]))
        start += size
    pieces.append(stream(np.zeros((2, 0), np.float32), last=True))
    streamed = np.concatenate(pieces, axis=1)
    whole = resample(signal, orig, target)
    assert streamed.shape == whole.shape and streamed.dtype == np.float32
    np.testing.assert_allclose(streamed, whole, atol=1e-5)
    assert RESAMPLE_QUALITY == "VHQ"


def test_stream_resampler_checks_the_channel_count() -> None:
    with pytest.raises(ValueError, match=r"\(2, n\)"):
        StreamResampler(16000, 8000, 2)(np.zeros((1, 10), np.float32))


def test_api_streams_with_the_io_resampler() -> None:
    import querysep.api as api

    assert api.StreamResampler is StreamResampler
    assert not hasattr(api, "_StreamResampler")


def test_audio_under_a_file_is_one_audio_error_naming_the_output(tmp_path: Path) -> None:
    (tmp_path / "FILE").write_text("x")
    target = tmp_path / "FILE" / "out.wav"
    with pytest.raises(AudioError) as info:
        save_audio(target, np.zeros(100, np.float32), 16000)
    assert str(info.value) == f"cannot write {target}: {tmp_path / 'FILE'} is a file, not a folder"
    (tmp_path / "dir.wav").mkdir()
    with pytest.raises(AudioError, match=r"dir\.wav: it is a folder"):
        save_audio(tmp_path / "dir.wav", np.zeros(100, np.float32), 16000)


def test_audio_files_get_the_umasks_permissions(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        path = save_audio(tmp_path / "a.flac", np.zeros((2, 100), np.float32), 16000)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert load_audio(path)[0].shape == (2, 100)


def test_commit_writers_commits_all_or_discards_the_rest(tmp_path: Path) -> None:
    tone = np.full((1, 800), 0.25, np.float32)
    outs = [tmp_path / f"{n}.wav" for n in "abc"]
    writers = [AudioWriter(p, 8000, 1).__enter__() for p in outs]
    for w in writers:
        w.write(tone)
    commit_writers(writers)
    assert all(load_audio(p)[0].shape == (1, 800) for p in outs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav", "c.wav"]

    # A Ctrl-C while flushing: nothing is renamed, no temporary file stays, old files stay.
    writers = [AudioWriter(p, 8000, 1).__enter__() for p in outs]
    for w in writers:
        w.write(2 * tone)

    def interrupted() -> None:
        raise KeyboardInterrupt

    writers[2].finish = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        commit_writers(writers)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav", "c.wav"]
    assert all(np.allclose(load_audio(p)[0], 0.25, atol=1e-4) for p in outs)
    with pytest.raises(RuntimeError, match="needs finish"):
        writers[0].commit()  # aborted: nothing left to commit


def test_only_samples_beyond_full_scale_count_as_clipped(tmp_path: Path) -> None:
    """+1.0 itself loses only the last step of a 16-bit file: not reported as clipped."""
    with AudioWriter(tmp_path / "x.flac", 16000, 1) as writer:
        writer.write(np.array([1.0, 0.99999, -1.0, 1.5, -2.0, 0.0], np.float32))
    assert writer.clipped == 2
    with AudioWriter(tmp_path / "x.wav", 16000, 1, subtype="FLOAT") as writer:
        writer.write(np.array([1.5, -2.0], np.float32))
    assert writer.clipped == 0  # a float file keeps them


def test_a_wav_past_the_size_limit_is_rf64_when_its_length_is_known(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past 4 GiB (here 1000 bytes) a plain WAV's sizes wrap and it reads back short: with the
    length known up front it is written as RF64, without it the write is refused."""
    import soundfile as sf

    from querysep.audio import writer

    monkeypatch.setattr(writer, "_WAV_MAX_BYTES", 1000)
    tone = np.full((2, 400), 0.25, np.float32)  # 1600 bytes of 16-bit samples
    path = save_audio(tmp_path / "big.wav", tone, 16000)
    assert sf.info(path).format == "RF64"
    np.testing.assert_allclose(load_audio(path)[0], tone, atol=1 / 32768)
    small = save_audio(tmp_path / "small.wav", tone[:, :100], 16000)
    assert sf.info(small).format == "WAV"  # under the limit: plain WAV, as before
    # samples just under the limit, header over it: RF64 too (was: refused at the end)
    edge = save_audio(tmp_path / "edge.wav", tone[:, :240], 16000)
    assert sf.info(edge).format == "RF64" and sf.info(edge).frames == 240
    with AudioWriter(tmp_path / "flac.flac", 16000, 2, total_frames=400) as w:
        w.write(tone)  # the limit is WAV's alone
    assert sf.info(w.path).format == "FLAC"
    with (
        pytest.raises(AudioError, match=r"unknown\.wav: its samples pass 4 GiB, more than a WAV"),
        AudioWriter(tmp_path / "unknown.wav", 16000, 2) as w,
    ):
        for _ in range(4):
            w.write(tone[:, :100])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "big.wav",
        "edge.wav",
        "flac.flac",
        "small.wav",
    ]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("suffix", [".wav", ".ogg"])  # fails on opening (header) / on writing
def test_a_full_disk_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    """libsndfile's "System error" becomes the system's reason: the temporary file is made a
    link to /dev/full, where every write fails with ENOSPC."""
    from querysep.audio import writer

    class FullDisk(writer.AtomicFile):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            self.temp.unlink()
            self.temp.symlink_to("/dev/full")

    monkeypatch.setattr(writer, "AtomicFile", FullDisk)
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 48000).astype(np.float32)
    target = tmp_path / f"out{suffix}"
    with pytest.raises(AudioError) as info:
        save_audio(target, noise, 48000)
    assert str(info.value) == f"cannot write {target}: No space left on device"
    assert list(tmp_path.iterdir()) == []  # the link is gone, /dev/full untouched
    assert os.path.exists("/dev/full")


@pytest.mark.parametrize(
    ("name", "rate", "channels", "message"),
    [
        ("x.ogg", 256000, 1, "Ogg Vorbis takes at most 200000 Hz, not 256000 Hz"),
        ("x.mp3", 16000, 3, "MP3 holds at most 2 channels, not 3"),
    ],
)
def test_format_limits_libsndfile_does_not_state_are_refused_up_front(
    tmp_path: Path, name: str, rate: int, channels: int, message: str
) -> None:
    """libvorbis crashes the process above 200 kHz (a segfault, not an error), and libsndfile
    calls a 3-channel MP3 only "Format not recognised": refused before libsndfile sees them."""
    if Path(name).suffix not in supported_save_extensions():
        pytest.skip(f"this libsndfile build cannot write {name}")
    with pytest.raises(AudioError) as info:
        AudioWriter(tmp_path / name, rate, channels).check()
    assert str(info.value) == f"cannot write {tmp_path / name}: {message}"
    AudioWriter(tmp_path / name, min(rate, 48000), min(channels, 2)).check()  # within: fine
    assert list(tmp_path.iterdir()) == []
