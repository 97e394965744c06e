from __future__ import annotations

import json
from pathlib import Path

import pytest

from querysep.data import (
    Clip,
    MixtureRow,
    audio_names,
    find_audio,
    read_datafile,
    read_manifest,
    read_mixture_list,
    write_datafile,
    write_manifest,
    write_mixture_list,
)
from querysep.errors import DataError


def _clip(tmp_path: Path, clip_id: str = "a", **kwargs: object) -> Clip:
    fields: dict = {
        "audio": str(tmp_path / "audio" / f"{clip_id}.wav"),
        "duration": 1.5,
        "sample_rate": 16000,
        "captions": ["a dog barks", "a dog"],
        "keywords": ["dog"],
        "labels": ["dog"],
        "source": "test",
        "split": "train",
    }
    fields.update(kwargs)
    return Clip(id=clip_id, **fields)


def test_manifest_round_trip_with_relative_paths(tmp_path: Path) -> None:
    inside = _clip(tmp_path, "a")
    outside = _clip(tmp_path, "b", audio="/elsewhere/b.flac", captions=["ünïcode"])
    path = tmp_path / "manifest.jsonl"
    write_manifest([inside, outside], path)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0]["audio"] == "audio/a.wav"
    assert records[1]["audio"] == "/elsewhere/b.flac"
    assert read_manifest(path) == [inside, outside]
    # moving the folder keeps relative paths valid
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "m.jsonl").write_text(path.read_text())
    assert read_manifest(moved / "m.jsonl")[0].audio == str(moved / "audio" / "a.wav")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_manifest_skips_blank_lines_and_ignores_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('\n{"id": "x", "audio": "x.wav", "future_field": 1}\n\n')
    (clip,) = read_manifest(path)
    assert clip.id == "x" and clip.audio == str(tmp_path / "x.wav")
    assert clip.captions == [] and clip.duration == 0.0


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "malformed"),
        ('{"audio": "x.wav"}', "'id'"),
        ('{"id": "x", "audio": "x.wav", "captions": "one"}', "'captions'"),
        ('{"id": "x", "audio": "x.wav", "sample_rate": 16000.5}', "'sample_rate'"),
        ("[1, 2]", "JSON object"),
        # JSON may escape half a surrogate pair: not text (it crashed the augment job)
        ('{"id": "x", "audio": "x.wav", "captions": ["a dog \\ud83d barks"]}', "surrogate"),
        ('{"id": "x", "audio": "x.wav", "labels": ["dog\\udcff"]}', "'labels' holds .*udcff"),
    ],
)
def test_manifest_malformed_line_names_file_and_line(
    tmp_path: Path, line: str, reason: str
) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "ok", "audio": "ok.wav"}\n' + line + "\n")
    with pytest.raises(DataError, match=rf"m\.jsonl:2: .*{reason}"):
        read_manifest(path)


def test_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_manifest(tmp_path / "nope.jsonl")
    path = tmp_path / "dup.jsonl"
    path.write_text('{"id": "x", "audio": "a.wav"}\n{"id": "x", "audio": "b.wav"}\n')
    with pytest.raises(DataError, match=r"dup\.jsonl: duplicate clip id 'x' \(lines 1 and 2\)"):
        read_manifest(path)


def test_datafile_groups_captions_and_writes_one_entry_per_caption(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(
        json.dumps(
            {
                "data": [
                    {"wav": "wavs/x.wav", "caption": "first  caption"},
                    {"wav": "/abs/y.flac", "caption": "other"},
                    {"wav": "wavs/x.wav", "caption": "second caption"},
                    {"wav": "more/x.wav", "caption": "same stem"},
                ]
            }
        )
    )
    clips = read_datafile(path)
    assert [c.id for c in clips] == ["x", "y", "x-2"]
    assert clips[0].audio == str(tmp_path / "wavs" / "x.wav")
    assert clips[0].captions == ["first caption", "second caption"]
    assert clips[1].audio == "/abs/y.flac"
    assert read_datafile(path, audio_dir="/data")[0].audio == "/data/wavs/x.wav"

    out = tmp_path / "out.json"
    unlabelled = Clip(id="z", audio="/z.wav", labels=["Dog_bark"])
    assert write_datafile([*clips, unlabelled, Clip(id="n", audio="/n.wav")], out) == 5
    entries = json.loads(out.read_text())["data"]
    assert entries[0] == {"wav": str(tmp_path / "wavs" / "x.wav"), "caption": "first caption"}
    assert entries[-1] == {"wav": "/z.wav", "caption": "Dog bark"}
    assert [c.captions for c in read_datafile(out)] == [c.captions for c in clips] + [["Dog bark"]]


@pytest.mark.parametrize("payload", ["[1]", '{"data": {}}', '{"data": [{"wav": "x.wav"}]}', "nope"])
def test_datafile_malformed(tmp_path: Path, payload: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(payload)
    with pytest.raises(DataError, match=r"bad\.json"):
        read_datafile(path)


def test_dcase_mixture_list_round_trip_keeps_extra_columns(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        "source,noise,snr,caption,set\n"
        'dog_1,rain_2,-5,"a dog, barking",a\n'
        "siren_3,dog_1,12.5,a siren,b\n"
    )
    rows = read_mixture_list(path)
    assert [r.kind for r in rows] == ["dcase", "dcase"]
    assert rows[0] == MixtureRow(
        "a dog, barking", source="dog_1", noise="rain_2", snr=-5.0, extra={"set": "a"}
    )
    assert rows[1].snr == 12.5
    assert rows[0].id == "dog_1__rain_2__-5dB"
    out = tmp_path / "out.csv"
    write_mixture_list(rows, out)
    assert out.read_text() == path.read_text()
    assert read_mixture_list(out) == rows


def test_triplet_mixture_list(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("mixture,target,caption\nmix/1.wav,tgt/1.wav,a bird\n\n")
    (row,) = read_mixture_list(path)
    assert row.kind == "triplet" and row.mixture == "mix/1.wav" and row.target == "tgt/1.wav"
    assert row.id == "1"
    write_mixture_list([row], tmp_path / "t2.csv")
    assert (
        tmp_path / "t2.csv"
    ).read_text() == "mixture,target,caption\nmix/1.wav,tgt/1.wav,a bird\n"
    with pytest.raises(DataError, match="cannot write"):
        write_mixture_list([row, MixtureRow("x", source="a", noise="b", snr=0)], tmp_path / "x.csv")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty mixture list"),
        ("a,b,c\n1,2,3\n", "unknown mixture list header"),
        ("source,noise,snr,caption\na,b,loud,x\n", r"t\.csv:2: snr 'loud'"),
        ("source,noise,snr,caption\na,b,1\n", r"t\.csv:2: expected 4 columns"),
        ("source,noise,snr,caption\na,b,1,x\na,b,1,\n", r"t\.csv:3: empty caption"),
        ("source,noise,snr,caption\na,,1,x\n", "empty source or noise"),
    ],
)
def test_mixture_list_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_mixture_list(path)


def test_mixture_row_needs_one_kind() -> None:
    with pytest.raises(ValueError):
        MixtureRow("x", source="a")
    with pytest.raises(ValueError):
        MixtureRow("x", source="a", noise="b", snr=0, mixture="m", target="t")


def test_find_audio_tries_extensions(tmp_path: Path) -> None:
    (tmp_path / "a.flac").write_bytes(b"")
    (tmp_path / "b.wav").write_bytes(b"")
    (tmp_path / "v1.2.ogg").write_bytes(b"")
    assert find_audio(tmp_path, "a") == tmp_path / "a.flac"
    assert find_audio(tmp_path, "b.wav") == tmp_path / "b.wav"
    assert find_audio(tmp_path, "v1.2") == tmp_path / "v1.2.ogg"
    with pytest.raises(DataError, match="no audio file for 'c'"):
        find_audio(tmp_path, "c")
    for name in ("/", ""):  # no file name at all: an error, not a ValueError traceback
        with pytest.raises(DataError, match="not a file name"):
            find_audio(tmp_path, name)


def test_find_audio_refuses_a_name_two_files_share(tmp_path: Path) -> None:
    """x.wav beside x.flac: 'x' is refused rather than silently read as the wav."""
    (tmp_path / "x.wav").write_bytes(b"")
    (tmp_path / "x.flac").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "y.flac").write_bytes(b"")
    with pytest.raises(DataError) as caught:
        find_audio(tmp_path, "x")
    assert str(caught.value) == (
        f"audio file for 'x' in {tmp_path} is ambiguous: x.wav, x.flac; name it with its extension"
    )
    assert find_audio(tmp_path, "x.flac") == tmp_path / "x.flac"
    assert find_audio(tmp_path, "x.wav") == tmp_path / "x.wav"
    assert find_audio(tmp_path, "sub/y") == tmp_path / "sub" / "y.flac"


def test_audio_names_are_what_find_audio_finds(tmp_path: Path) -> None:
    files = [tmp_path / n for n in ("a/x.wav", "a/x.flac", "a/y.wav", "b/x.wav", "b/v1.2.ogg")]
    for path in files:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"")
    folder, names = audio_names(files)
    assert folder == tmp_path
    assert names == ["a/x.wav", "a/x.flac", "a/y", "b/x", "b/v1.2"]
    assert [find_audio(folder, name) for name in names] == files
    # all in one folder, each stem its own: bare stems, as DCASE lists name clips
    assert audio_names([files[2]]) == (tmp_path / "a", ["y"])
    assert audio_names([files[2], files[3]], folder=tmp_path)[1] == ["a/y", "b/x"]


def test_writer_refuses_what_the_reader_refuses(tmp_path: Path) -> None:
    clips = [Clip(id=name, audio=f"{name}.wav") for name in ("a", "b", "a", "c", "c", "a")]
    path = tmp_path / "m.jsonl"
    with pytest.raises(DataError) as info:
        write_manifest(clips, path)
    assert str(info.value) == (
        f"cannot write {path}: duplicate clip id 'a' (clips 1, 3 and 6), and 1 more repeated id; "
        "ids must be unique"
    )
    assert not path.exists()
    # the reader applies the same rule, with the file's line numbers
    path.write_text("".join(json.dumps(c.to_dict()) + "\n\n" for c in clips[:3]))
    with pytest.raises(DataError, match=r"m\.jsonl: duplicate clip id 'a' \(lines 1 and 5\)"):
        read_manifest(path)


def test_blank_captions_fall_back_to_the_labels() -> None:
    clip = Clip(id="c", audio="c.wav", captions=["  ", ""], labels=["dog_bark", " "])
    assert clip.texts() == ["dog bark"]  # was ["  ", ""]: the labels hidden behind blanks
    assert Clip(id="c", audio="c.wav", captions=[" ", "a dog"], labels=["dog"]).texts() == ["a dog"]


@pytest.mark.parametrize("name", [" lead", "trail ", "cr\rname", "nl\nname"])
def test_a_file_name_a_list_cannot_hold_is_refused(tmp_path: Path, name: str) -> None:
    rows = [MixtureRow("a dog", source=name, noise="rain", snr=0.0)]
    with pytest.raises(DataError, match="would not read back as written"):
        write_mixture_list(rows, tmp_path / "list.csv")  # was: written, then unreadable
    assert not (tmp_path / "list.csv").exists()


def test_a_caption_with_a_line_break_is_written_on_one_line(tmp_path: Path) -> None:
    rows = [MixtureRow("a car\rhorn  honks", source="car", noise="rain", snr=3.0)]
    write_mixture_list(rows, tmp_path / "list.csv")
    (row,) = read_mixture_list(tmp_path / "list.csv")  # was: "expected 4 columns, found 1"
    assert row.caption == "a car horn honks"
