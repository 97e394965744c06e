from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from querysep.data import RECIPES, read_datafile
from querysep.data.recipes import (
    metadata_files,
    prepare_audiocaps,
    prepare_clotho,
    prepare_dcase2024_val,
    prepare_esc50,
    prepare_folder,
    prepare_fsd50k,
)
from querysep.errors import ConfigError, DataError

# ``shared/`` sits beside the repository (CI: beside the fresh clone), so find it from here.
SHARED = Path(__file__).resolve().parents[3] / "shared"
ESC50_REAL = SHARED / "datasets" / "esc50-16k"
ESC50_HEADER = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]

WriteAudio = Callable[..., Path]
WriteCsv = Callable[..., Path]


def test_registry_names() -> None:
    assert set(RECIPES) == {"esc50", "clotho", "fsd50k", "audiocaps", "dcase2024-val", "folder"}


def test_esc50(tmp_path: Path, write_audio: WriteAudio, write_csv: WriteCsv) -> None:
    write_csv(
        tmp_path / "meta" / "esc50.csv",
        ESC50_HEADER,
        [
            ["1-100032-A-0.wav", 1, 0, "dog", "True", 100032, "A"],
            ["1-100038-A-14.wav", 1, 14, "chirping_birds", "False", 100038, "A"],
            ["4-1000-A-14.wav", 4, 14, "chirping_birds", "False", 1000, "A"],
            ["5-9999-A-0.wav", 5, 0, "dog", "True", 9999, "A"],  # missing
            ["2-5-A-1.wav", 2, 1, "rooster", "False", 5, "A"],  # unreadable
        ],
    )
    write_audio(tmp_path / "audio" / "1-100032-A-0.wav", seconds=0.25)
    write_audio(tmp_path / "audio" / "1-100038-A-14.wav")
    write_audio(tmp_path / "audio" / "4-1000-A-14.flac")  # converted copy
    (tmp_path / "audio" / "2-5-A-1.wav").write_bytes(b"RIFF garbage")
    result = prepare_esc50(tmp_path)
    assert [c.id for c in result.clips] == ["1-100032-A-0", "1-100038-A-14", "4-1000-A-14"]
    birds = result.clips[1]
    assert birds.captions == ["chirping birds"] and birds.labels == ["chirping_birds"]
    assert (birds.split, birds.source, birds.sample_rate) == ("fold1", "esc50", 8000)
    assert result.clips[0].duration == pytest.approx(0.25)
    assert result.clips[2].audio.endswith("4-1000-A-14.flac")
    assert result.clips[2].split == "fold4"
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert reasons["5-9999-A-0.wav"] == "missing"
    assert reasons["2-5-A-1.wav"].startswith("unreadable")
    assert metadata_files("esc50", tmp_path) == [tmp_path / "meta" / "esc50.csv"]
    # without probing, the unreadable file is kept and nothing is opened
    assert len(prepare_esc50(tmp_path, check_audio=False).clips) == 4


def test_esc50_short_or_blank_rows_are_refused_with_their_line(
    tmp_path: Path, write_audio: WriteAudio, write_csv: WriteCsv
) -> None:
    """A row cut short (no category) was a clip with the caption and label '' before."""
    write_audio(tmp_path / "audio" / "1-1-A-0.wav")
    write_audio(tmp_path / "audio" / "1-2-A-14.wav")
    good = ["1-1-A-0.wav", 1, 0, "dog", "True", 1, "A"]
    write_csv(tmp_path / "esc50.csv", ESC50_HEADER, [good, ["1-2-A-14.wav", 1, 14]])
    with pytest.raises(DataError, match=r"esc50\.csv:3: no category \(a short or blank row\)"):
        prepare_esc50(tmp_path)
    write_csv(tmp_path / "esc50.csv", ESC50_HEADER, [good, [""] * 7])
    with pytest.raises(DataError, match=r"esc50\.csv:3: no filename"):
        prepare_esc50(tmp_path)
    write_csv(tmp_path / "esc50.csv", ESC50_HEADER, [good, ["1-2-A-14.wav", "x", 14, "birds"]])
    with pytest.raises(DataError, match=r"esc50\.csv: 1-2-A-14\.wav: fold 'x' is not a whole"):
        prepare_esc50(tmp_path)  # it was the split "foldx"
    write_csv(tmp_path / "esc50.csv", ESC50_HEADER, [good, good])
    with pytest.raises(DataError, match=r"esc50\.csv: 1-1-A-0\.wav is listed twice"):
        prepare_esc50(tmp_path)  # it was "cannot write ...: duplicate clip id"


def test_esc50_missing_csv(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"esc50\.csv not found"):
        prepare_esc50(tmp_path)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def test_esc50_real_copy() -> None:
    from querysep.audio.io import audio_info

    if not (ESC50_REAL / "esc50.csv").is_file():
        if _in_ci():  # CI provides ../shared: a missing copy is a broken setup, not a skip
            pytest.fail(f"CI is set but the ESC-50 copy is missing: {ESC50_REAL}")
        pytest.skip(f"no ESC-50 copy at {ESC50_REAL}")
    result = prepare_esc50(ESC50_REAL, check_audio=False)
    assert len(result.clips) == 1600 and not result.skipped
    assert {c.split for c in result.clips} == {"fold1", "fold2", "fold3", "fold4"}
    assert len({c.labels[0] for c in result.clips}) == 50
    for clip in result.clips[::800]:
        info = audio_info(clip.audio)
        assert (info.sample_rate, info.num_channels) == (16000, 1)
        assert info.duration == pytest.approx(5.0)


def test_clotho(tmp_path: Path, write_audio: WriteAudio, write_csv: WriteCsv) -> None:
    captions = [f"caption_{k}" for k in range(1, 6)]
    write_csv(
        tmp_path / "clotho_captions_development.csv",
        ["file_name", *captions],
        [
            ["Birds at dawn.wav", "Birds sing.", "Many  birds chirp.", "", "x", "y"],
            ["gone.wav", "a", "b", "c", "d", "e"],
        ],
    )
    write_csv(
        tmp_path / "clotho_metadata_development.csv",
        [
            "file_name",
            "keywords",
            "sound_id",
            "sound_link",
            "start_end_samples",
            "manufacturer",
            "license",
        ],
        [["Birds at dawn.wav", "birds;dawn; morning;", "1", "l", "", "m", "cc"]],
    )
    write_csv(
        tmp_path / "clotho_captions_validation.csv",
        ["file_name", *captions],
        [["rain.wav", "Rain falls.", "r2", "r3", "r4", "r5"]],
    )
    # a metadata file in Latin-1, as some Clotho releases are
    (tmp_path / "clotho_metadata_validation.csv").write_bytes(
        "file_name,keywords\nrain.wav,pluie;caf\xe9\n".encode("latin-1")
    )
    write_audio(tmp_path / "development" / "Birds at dawn.wav")
    write_audio(tmp_path / "clotho_audio_validation" / "rain.wav")
    result = prepare_clotho(tmp_path)
    birds, rain = result.clips
    assert (birds.id, birds.split) == ("Birds at dawn", "development")
    assert birds.captions == ["Birds sing.", "Many birds chirp.", "x", "y"]
    assert birds.keywords == ["birds", "dawn", "morning"] and birds.labels == []
    assert rain.split == "validation" and rain.keywords == ["pluie", "café"]
    assert [p.name for p in metadata_files("clotho", tmp_path)] == [
        "clotho_captions_development.csv",
        "clotho_captions_validation.csv",
        "clotho_metadata_development.csv",
        "clotho_metadata_validation.csv",
    ]
    assert [s.path for s in result.skipped] == ["gone.wav"]
    only = prepare_clotho(tmp_path, splits=["validation"])
    assert [c.id for c in only.clips] == ["rain"]
    with pytest.raises(DataError, match="metadata file not found"):
        prepare_clotho(tmp_path, splits=["evaluation"])


def test_fsd50k(tmp_path: Path, write_audio: WriteAudio, write_csv: WriteCsv) -> None:
    gt = tmp_path / "FSD50K.ground_truth"
    write_csv(
        gt / "dev.csv",
        ["fname", "labels", "mids", "split"],
        [
            ["64760", "Electric_guitar,Guitar,Music", "/m/a,/m/b,/m/c", "train"],
            ["16399", "Bark,Dog,Animal", "/m/d,/m/e,/m/f", "val"],
            ["404", "Bark", "/m/d", "train"],
        ],
    )
    write_csv(gt / "eval.csv", ["fname", "labels", "mids"], [["37199", "Rain", "/m/g"]])
    meta = tmp_path / "FSD50K.metadata"
    meta.mkdir()
    (meta / "dev_clips_info_FSD50K.json").write_text(
        json.dumps({"64760": {"title": "t", "description": "d", "tags": ["guitar", "rock"]}})
    )
    write_audio(tmp_path / "FSD50K.dev_audio" / "64760.wav")
    write_audio(tmp_path / "FSD50K.dev_audio" / "16399.wav")
    write_audio(tmp_path / "FSD50K.eval_audio" / "37199.wav")
    result = prepare_fsd50k(tmp_path)
    guitar, dog, rain = result.clips
    assert guitar.labels == ["Electric_guitar", "Guitar", "Music"]
    assert guitar.captions == ["Electric guitar", "Guitar", "Music"]
    assert guitar.keywords == ["guitar", "rock"] and guitar.split == "train"
    assert dog.split == "val" and dog.keywords == []
    assert (rain.split, rain.captions) == ("eval", ["Rain"])
    assert [s.path for s in result.skipped] == ["404"]
    assert metadata_files("fsd50k", tmp_path) == [
        gt / "dev.csv",
        meta / "dev_clips_info_FSD50K.json",
        gt / "eval.csv",
    ]


def test_fsd50k_needs_ground_truth(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no FSD50K ground truth"):
        prepare_fsd50k(tmp_path)


def test_audiocaps(tmp_path: Path, write_audio: WriteAudio, write_csv: WriteCsv) -> None:
    header = ["audiocap_id", "youtube_id", "start_time", "caption"]
    write_csv(
        tmp_path / "train.csv",
        header,
        [[1, "abcDEF12345", 30, "A man speaks"], [2, "zzz", 0, "A car passes by"]],
    )
    write_csv(
        tmp_path / "val.csv",
        header,
        [
            [3, "valid_1", 10, "Water runs"],
            [4, "valid_1", 10, "Water  runs"],
            [5, "valid_1", 10, "A stream flows"],
        ],
    )
    write_audio(tmp_path / "audio" / "train" / "abcDEF12345_30.wav")
    write_audio(tmp_path / "audio" / "val" / "valid_1.flac")
    result = prepare_audiocaps(tmp_path)
    speech, water = result.clips
    assert (speech.id, speech.split, speech.captions) == (
        "abcDEF12345_30",
        "train",
        ["A man speaks"],
    )
    assert (water.id, water.split) == ("valid_1", "val")
    assert water.captions == ["Water runs", "A stream flows"]
    assert [s.path for s in result.skipped] == ["zzz_0"]
    assert metadata_files("audiocaps", tmp_path) == [tmp_path / "train.csv", tmp_path / "val.csv"]
    with pytest.raises(DataError, match="no AudioCaps CSV"):
        prepare_audiocaps(tmp_path / "audio")


def test_dcase2024_val(tmp_path: Path, write_audio: WriteAudio, write_csv: WriteCsv) -> None:
    (tmp_path / "lass_validation.json").write_text(
        json.dumps(
            {
                "data": [
                    {"wav": "lass_validation/s1.wav", "caption": "a dog barks"},
                    {"wav": "s2.wav", "caption": "rain on a roof"},
                    {"wav": "lass_validation/s1.wav", "caption": "barking"},
                ]
            }
        )
    )
    write_csv(
        tmp_path / "lass_synthetic_validation.csv",
        ["source", "noise", "snr", "caption"],
        [["s1", "n1", 5, "a dog barks"], ["s2", "s1", -3, "rain on a roof"]],
    )
    for name in ("s1", "s2", "n1"):
        write_audio(tmp_path / "lass_validation" / f"{name}.wav")
    result = prepare_dcase2024_val(tmp_path)
    assert [c.id for c in result.clips] == ["s1", "s2", "n1"]
    s1, s2, n1 = result.clips
    assert s1.captions == ["a dog barks", "barking"]
    assert s2.audio == str((tmp_path / "lass_validation" / "s2.wav").resolve())
    assert n1.captions == [] and n1.split == "validation" and n1.source == "dcase2024-val"
    assert not result.skipped
    assert [c.id for c in read_datafile(tmp_path / "lass_validation.json")] == ["s1", "s2"]
    assert metadata_files("dcase2024-val", tmp_path) == [
        tmp_path / "lass_validation.json",
        tmp_path / "lass_synthetic_validation.csv",
    ]


def test_folder_with_txt_captions(tmp_path: Path, write_audio: WriteAudio) -> None:
    write_audio(tmp_path / "a" / "bell.wav")
    (tmp_path / "a" / "bell.txt").write_text("a bell rings\n\n  church bell \n")
    write_audio(tmp_path / "b" / "hum.flac")
    (tmp_path / "b" / "broken.wav").write_bytes(b"")
    result = prepare_folder(tmp_path, split="validation")
    assert [(c.id, c.captions) for c in result.clips] == [
        ("bell", ["a bell rings", "church bell"]),
        ("hum", []),
    ]
    assert result.clips[0].split == "validation"
    assert [Path(s.path).name for s in result.skipped] == ["broken.wav"]


def test_folder_keeps_files_that_share_a_name_in_other_subfolders(
    tmp_path: Path, write_audio: WriteAudio
) -> None:
    """a/x.wav and b/x.wav are two clips (ids x and x-2), each with its own captions."""
    for rel in ("a/x", "b/x", "b/y"):
        write_audio(tmp_path / f"{rel}.wav")
        (tmp_path / f"{rel}.txt").write_text(f"caption of {rel}\n")
    result = prepare_folder(tmp_path)
    assert [(c.id, c.captions) for c in result.clips] == [
        ("x", ["caption of a/x"]),
        ("x-2", ["caption of b/x"]),
        ("y", ["caption of b/y"]),
    ]
    assert [Path(c.audio) for c in result.clips] == [
        (tmp_path / rel).with_suffix(".wav").resolve() for rel in ("a/x", "b/x", "b/y")
    ]
    assert not result.skipped
    # a CSV naming a file by a name two files share is refused (it picked the first); by
    # its path under the folder, or by a name only one file has, it is found
    (tmp_path / "caps.csv").write_text("file_name,caption\nx.wav,which one?\n")
    with pytest.raises(DataError, match=r"'x.wav' names 2 files under .* \(a/x.wav, b/x.wav\)"):
        prepare_folder(tmp_path, captions_csv=tmp_path / "caps.csv")
    (tmp_path / "caps.csv").write_text("file_name,caption\nb/x.wav,this one\ny,by stem\n")
    listed = prepare_folder(tmp_path, captions_csv=tmp_path / "caps.csv")
    assert [(c.id, Path(c.audio)) for c in listed.clips] == [
        ("x", (tmp_path / "b" / "x.wav").resolve()),
        ("y", (tmp_path / "b" / "y.wav").resolve()),
    ]


def test_folder_with_captions_csv(
    tmp_path: Path, write_audio: WriteAudio, write_csv: WriteCsv
) -> None:
    write_audio(tmp_path / "x" / "one.wav")
    write_audio(tmp_path / "two.wav")
    captions = write_csv(
        tmp_path / "captions.csv",
        ["file_name", "caption"],
        [["one.wav", "first"], ["two.wav", "second"], ["one.wav", "again"], ["three.wav", "?"]],
    )
    result = prepare_folder(tmp_path, captions_csv=captions)
    assert [(c.id, c.captions) for c in result.clips] == [
        ("one", ["first", "again"]),
        ("two", ["second"]),
    ]
    assert [s.path for s in result.skipped] == ["three.wav"]
    with pytest.raises(DataError, match="not a folder"):
        prepare_folder(tmp_path / "nope")
    # a header alone is named as such, not as "no clips found" in the folder
    write_csv(captions, ["file_name", "caption"], [])
    with pytest.raises(DataError, match=r"captions\.csv: lists no files \(a header and no rows\)"):
        prepare_folder(tmp_path, captions_csv=captions)


def test_a_caption_with_an_unquoted_comma_is_refused_not_cut(
    tmp_path: Path, write_audio: WriteAudio
) -> None:
    write_audio(tmp_path / "car.wav")
    captions = tmp_path / "captions.csv"
    captions.write_text("file_name,caption\ncar.wav,a car, honking loudly\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"captions\.csv:2: 3 fields, but the header has 2"):
        prepare_folder(tmp_path, captions_csv=captions)  # was: the caption "a car"
    captions.write_text('file_name,caption\ncar.wav,"a car, honking loudly"\n', encoding="utf-8")
    (clip,) = prepare_folder(tmp_path, captions_csv=captions).clips
    assert clip.captions == ["a car, honking loudly"]
    # a spreadsheet's trailing commas hold nothing: read as before
    captions.write_text("file_name,caption\ncar.wav,a car honking,,\n", encoding="utf-8")
    (clip,) = prepare_folder(tmp_path, captions_csv=captions).clips
    assert clip.captions == ["a car honking"]


def test_folder_captions_with_control_characters_are_refused(
    tmp_path: Path, write_audio: WriteAudio, write_csv: WriteCsv
) -> None:
    """An escape sequence in a caption (which rewrites the terminal that prints it) or a
    row without a file name is named, from a CSV or a .txt file; tabs are whitespace."""
    write_audio(tmp_path / "a" / "bell.wav")
    csv_path = write_csv(
        tmp_path / "caps.csv", ["file_name", "caption"], [["bell.wav", "a \x1b[2Jbell"]]
    )
    with pytest.raises(DataError, match=r"caps\.csv: caption 'a \\x1b\[2Jbell' holds a control"):
        prepare_folder(tmp_path, captions_csv=csv_path)
    write_csv(csv_path, ["file_name", "caption"], [["bell.wav", "a\tbell"], ["", "what?"]])
    with pytest.raises(DataError, match=r"caps\.csv:3: no file_name"):
        prepare_folder(tmp_path, captions_csv=csv_path)
    (tmp_path / "a" / "bell.txt").write_text("a bell rings\nding\x07\n")
    with pytest.raises(
        DataError, match=r"bell\.txt: caption 'ding\\x07' holds a control .*U\+0007"
    ):
        prepare_folder(tmp_path)
    (tmp_path / "a" / "bell.txt").write_text("a\tbell\trings\n")
    assert prepare_folder(tmp_path).clips[0].captions == ["a bell rings"]


def test_esc50_builtin_captions_extend_the_label(tmp_path: Path) -> None:
    from querysep.data.recipes.esc50 import builtin_captions, prepare_esc50

    root = tmp_path / "esc"
    (root / "audio").mkdir(parents=True)
    (root / "esc50.csv").write_text(
        "filename,fold,target,category,esc10,src_file,take\n1-1-A-0.wav,1,0,dog,True,1,A\n"
    )
    (root / "audio" / "1-1-A-0.wav").write_bytes(b"")
    clips = prepare_esc50(root, check_audio=False, captions="builtin").clips
    assert clips[0].captions[0] == "dog"
    assert clips[0].captions[1:] == builtin_captions("train")["dog"]
    train = {c for v in builtin_captions("train").values() for c in v}
    heldout = {c for v in builtin_captions("heldout").values() for c in v}
    assert len(builtin_captions("train")) == len(builtin_captions("heldout")) == 50
    assert not train & heldout
    more = prepare_esc50(root, check_audio=False, captions="builtin+more").clips
    assert more[0].captions == [*clips[0].captions, *builtin_captions("more")["dog"]]
    everything = {c for v in builtin_captions("more").values() for c in v}
    assert not everything & heldout and not everything & train
    extra = prepare_esc50(root, check_audio=False, captions="builtin+more+extra").clips
    assert extra[0].captions == [*more[0].captions, *builtin_captions("extra")["dog"]]
    with pytest.raises(ConfigError, match="'builtin\\+more', 'builtin\\+more\\+extra', not 'more'"):
        prepare_esc50(root, check_audio=False, captions="more")


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def _stem(word: str) -> str:
    """A crude stem: barking/barks/barked -> bark."""
    for suffix in ("ing", "es", "s", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


@pytest.mark.parametrize("part", ["more", "extra"])
def test_later_esc50_phrasings_bring_nothing_of_the_heldout_ones(part: str) -> None:
    """The rule the ``more`` and ``extra`` captions were filtered by, so that the held-out
    captions list (benchmarks/esc50-fold4-captions.csv) stays unseen: no word (by stem) that
    the held-out captions use and the ``train`` captions and labels do not, no run of three
    words of a held-out caption, no repeat of another text, no other class's label (unless
    the class's own ``train`` captions use that word: a rooster's crow)."""
    from querysep.data.recipes.esc50 import builtin_captions

    train = builtin_captions("train")
    labels = {category: category.replace("_", " ") for category in train}
    heldout = [c for v in builtin_captions("heldout").values() for c in v]
    seen = {
        _stem(w)
        for t in [*labels.values(), *(c for v in train.values() for c in v)]
        for w in _words(t)
    }
    heldout_only = {_stem(w) for t in heldout for w in _words(t)} - seen
    runs = {tuple(_words(t)[i : i + 3]) for t in heldout for i in range(len(_words(t)) - 2)}
    others = [
        c
        for p in ("train", "heldout", "more", "extra")
        if p != part
        for v in builtin_captions(p).values()
        for c in v
    ]
    captions = builtin_captions(part)
    assert set(captions) == set(train)
    texts = [c for v in captions.values() for c in v]
    assert len(texts) == len(set(texts)) and not set(texts) & {*others, *labels.values()}
    for category, phrasings in captions.items():
        for text in phrasings:
            words = _words(text)
            assert not {_stem(w) for w in words} & heldout_only, text
            assert not any(tuple(words[i : i + 3]) in runs for i in range(len(words) - 2)), text
            own = " ".join([labels[category], *train[category]]).lower()
            named = [  # another class's label, unless the class's own captions use it too
                label
                for other, label in labels.items()
                if other != category
                and re.search(rf"\b{re.escape(label)}\b", text.lower())
                and not re.search(rf"\b{re.escape(label)}\b", own)
            ]
            assert not named, (text, named)


# recipe: (its metadata file, what it lists, the name the error gives, the folder both copies
# are under, the two copies there)
TWO_COPIES = {
    "audiocaps": ("train.csv", "abc,30,a man", "abc_30", "audio", ("a/abc_30.wav", "b/abc_30.wav")),
    "clotho": (
        "clotho_captions_development.csv",
        "x.wav,birds",
        "x.wav",
        "",
        ("development/x.wav", "clotho_audio_development/x.wav"),
    ),
    "dcase2024-val": (
        "lass_validation.json",
        json.dumps({"data": [{"wav": "s1.wav", "caption": "a dog"}]}),
        "s1.wav",
        "",
        ("lass_validation/s1.wav", "lass_validation_16k/s1.wav"),  # a resampled copy
    ),
    "dcase2024-val noise": (
        "lass_synthetic_validation.csv",
        "s0,n1,0,rain",  # s0 is missing: skipped
        "n1",
        "",
        ("lass_validation/n1.wav", "old/n1.wav"),
    ),
    "fsd50k": (
        "FSD50K.ground_truth/dev.csv",
        "123,Bark",
        "123",
        "",
        ("FSD50K.dev_audio/123.wav", "dev_audio/123.wav"),
    ),
    "esc50": (  # one folder: the CSV's .wav is gone, two conversions of it are there
        "esc50.csv",
        "1-1-A-0.wav,1,0,dog,True,1,A",
        "1-1-A-0.wav",
        "audio",
        ("1-1-A-0.flac", "1-1-A-0.ogg"),
    ),
}
HEADERS = {
    "train.csv": "youtube_id,start_time,caption",
    "clotho_captions_development.csv": "file_name,caption_1",
    "lass_synthetic_validation.csv": "source,noise,snr,caption",
    "FSD50K.ground_truth/dev.csv": "fname,labels",
    "esc50.csv": ",".join(ESC50_HEADER),
}


@pytest.mark.parametrize("case", list(TWO_COPIES))
def test_a_name_several_files_have_is_refused_not_given_to_the_first(
    tmp_path: Path, write_audio: WriteAudio, case: str
) -> None:
    """As `prepare folder --captions-csv` does: each recipe took the first of the files (in
    scan order) that its metadata's name matched, without a word, whichever copy that was."""
    metadata, listed, name, folder, copies = TWO_COPIES[case]
    listed_in, under = tmp_path / metadata, tmp_path / folder
    listed_in.parent.mkdir(parents=True, exist_ok=True)
    header = HEADERS.get(metadata)
    listed_in.write_text(f"{header}\n{listed}\n" if header else listed)
    if case == "dcase2024-val noise":
        (tmp_path / "lass_validation.json").write_text('{"data": []}')
    for rel in copies:
        write_audio(under / rel)
    recipe = RECIPES[case.split()[0]]
    with pytest.raises(DataError) as info:
        recipe(tmp_path)
    assert str(info.value) == (
        f"{listed_in}: {name!r} names 2 audio files under {under} ({copies[0]}, {copies[1]}): "
        "keep only one of them"
    )
    (under / copies[1]).unlink()  # with one copy left, it is the clip's audio
    (clip,) = recipe(tmp_path).clips
    assert Path(clip.audio) == (under / copies[0]).resolve()
